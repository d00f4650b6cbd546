//! `imss-upgrade transfer run|pause|resume`: the background transfer of
//! the older history, in the foreground (as its unit runs it, or where no
//! systemd manages the server), and its pause.

use anyhow::Result;

use crate::flow::after::transfer::{self, TransferEnd, TransferOptions, control};
use crate::flow::context::Context;
use crate::support::exit;

/// Runs the transfer until it is done or stopped; prints how it ended.
pub async fn run(ctx: &Context, options: &TransferOptions) -> Result<u8> {
    match transfer::run(ctx, options).await? {
        TransferEnd::Done(summary) => {
            println!(
                "The older history is in 9.1: {} rows, {} rejected (kept in upgrade_transfer.rejected).",
                summary.rows_done, summary.rows_rejected
            );
            for table in &summary.verified {
                println!(
                    "    {:<18} {:>10} rows, checksum {} on 7.1 and 9.1",
                    table.table, table.rows, table.checksum
                );
            }
            println!("`imss-upgrade finalize` may now remove the backup.");
        }
        TransferEnd::AlreadyDone => println!("The older history is in 9.1 already."),
        TransferEnd::Stopped => {
            println!("The transfer stopped; its next start resumes after the last committed batch.")
        }
    }
    Ok(exit::OK)
}

/// Pauses the transfer.
pub fn pause(ctx: &Context) -> Result<u8> {
    control::pause(ctx)?;
    println!(
        "The transfer is paused, across restarts and reboots, until `imss-upgrade transfer resume`."
    );
    Ok(exit::OK)
}

/// Lets a paused transfer go on.
pub fn resume(ctx: &Context) -> Result<u8> {
    control::resume(ctx)?;
    println!("The transfer goes on; `imss-upgrade status` shows where it is.");
    Ok(exit::OK)
}
