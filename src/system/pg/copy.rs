//! The binary `COPY` pipe between two servers: rows move without being
//! decoded.

use anyhow::{Context, Result};
use tokio_postgres::Client;

/// Bytes handed to the target server at a time. `COPY TO STDOUT` yields one
/// message per row; forwarding each on its own costs more than the copy.
const COPY_PIPE_CHUNK: usize = 256 * 1024;

/// Copies rows from one server to another through a raw binary `COPY` pipe:
/// `copy_out_sql` (`COPY … TO STDOUT (FORMAT binary)`) on `source` feeds
/// `copy_in_sql` (`COPY … FROM STDIN (FORMAT binary)`) on `target`, in
/// large chunks, without decoding a row. Returns the rows the target took.
pub async fn copy_pipe(
    source: &Client,
    copy_out_sql: &str,
    target: &Client,
    copy_in_sql: &str,
) -> Result<u64> {
    use futures_util::{SinkExt, TryStreamExt};
    let rows_out = source
        .copy_out(copy_out_sql)
        .await
        .with_context(|| format!("starting {copy_out_sql}"))?;
    let sink = target
        .copy_in::<_, bytes::Bytes>(copy_in_sql)
        .await
        .with_context(|| format!("starting {copy_in_sql}"))?;
    futures_util::pin_mut!(rows_out);
    futures_util::pin_mut!(sink);
    let mut pending = bytes::BytesMut::with_capacity(COPY_PIPE_CHUNK * 2);
    while let Some(row) = rows_out
        .try_next()
        .await
        .context("reading from the source server")?
    {
        pending.extend_from_slice(&row);
        if pending.len() >= COPY_PIPE_CHUNK {
            sink.send(pending.split().freeze())
                .await
                .context("writing to the target server")?;
        }
    }
    if !pending.is_empty() {
        sink.send(pending.freeze())
            .await
            .context("writing to the target server")?;
    }
    sink.finish()
        .await
        .context("finishing the copy on the target server")
}
