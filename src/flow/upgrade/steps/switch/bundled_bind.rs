//! The switch's part for the bundled BIND (seed item 6): ports that
//! collide with no DNS server already on the host, its configuration in
//! the staged tree, checked by `named-checkconf` before anything is
//! swapped in, and, once it runs, proof that it answers.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use serde::{Deserialize, Serialize};

use crate::flow::context::Context;
use crate::flow::layout::{BIND_CONFIG_DIR, BIND_PROGRAMS_DIR, BIND_WORKING_DIR};
use crate::support::fsutil;
use crate::support::logging::events;
use crate::support::no_follow;
use crate::system::bind::{self, BindPrograms, PortChoice};
use crate::system::listeners;

/// The choice, kept beside the configuration for `status`.
const CHOICE_FILE: &str = "ports.json";

/// What `status` and the report show of the bundled BIND.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindChoice {
    /// `named`'s DNS port.
    pub dns_port: u16,
    /// `rndc`'s control port.
    pub rndc_port: u16,
    /// Why these ports.
    pub reason: String,
}

/// Chooses the ports, writes the configuration, the localhost zone and a
/// new control key into the staged tree `staging` and the working
/// directory. Returns the choice; [`check`] checks it once in place.
pub fn configure(ctx: &Context, staging: &Path) -> Result<BindChoice> {
    let found = listeners::listeners_on(&bind::candidate_ports())?;
    let PortChoice { ports, reason } = bind::choose_ports(&found)?;
    let files = crate::flow::layout::Layout::bind_files();
    let in_staging = |path: &Path| -> Result<std::path::PathBuf> {
        let relative = path
            .strip_prefix(crate::support::constants::PROGRAM_DIR)
            .with_context(|| format!("{} is not in the program tree", path.display()))?;
        Ok(staging.join(relative))
    };
    let group = ctx.service_user()?.gid;
    let config_dir = in_staging(Path::new(BIND_CONFIG_DIR))?;
    if !config_dir.exists() {
        fsutil::create_dir_with_mode(&config_dir, 0o755)?;
    }
    // named reads the key as the imss group; nobody else may.
    fsutil::atomic_write_as(
        &in_staging(&files.rndc_key)?,
        bind::new_rndc_key()?.expose(),
        0o640,
        Some((0, group)),
    )?;
    fsutil::atomic_write(
        &in_staging(&files.named_conf)?,
        bind::named_conf(&files, ports).as_bytes(),
        0o644,
    )?;
    fsutil::atomic_write(
        &in_staging(&files.rndc_conf)?,
        bind::rndc_conf(&files, ports).as_bytes(),
        0o644,
    )?;
    let choice = BindChoice {
        dns_port: ports.dns,
        rndc_port: ports.rndc,
        reason,
    };
    fsutil::atomic_write(
        &config_dir.join(CHOICE_FILE),
        serde_json::to_vec_pretty(&choice)?.as_slice(),
        0o644,
    )?;
    // In /var/imss, which the service account can write: created and
    // written through handles, never through a link planted there.
    let owner = ctx.service_user()?;
    let owner = Some((owner.uid, owner.gid));
    let (data_dir, name) = no_follow::open_parent(&ctx.root.resolve_parent(BIND_WORKING_DIR)?)?;
    let working = match data_dir.entry(&name)? {
        None => data_dir.create_dir(&name, 0o750, owner)?,
        // Left by this switch before an interruption; its undo note names it.
        Some(_) => {
            let working = data_dir.open_subdir(&name)?;
            working.set_owner_and_mode(0o750, owner)?;
            working
        }
    };
    let zone = files.localhost_zone();
    let zone_name = zone
        .file_name()
        .with_context(|| format!("{} names no file", zone.display()))?;
    working.replace_file(zone_name, bind::localhost_zone().as_bytes(), 0o644, owner)?;
    tracing::info!(
        message_id = events::BIND_PORTS_CHOSEN,
        imss_dns_port = choice.dns_port,
        imss_rndc_port = choice.rndc_port,
        imss_reason = %choice.reason,
        "the bundled BIND will answer on port {} (rndc {}): {}",
        choice.dns_port,
        choice.rndc_port,
        choice.reason
    );
    Ok(choice)
}

/// `named-checkconf` on the configuration of the tree in place, as
/// `named` will read it (from inside the root, zones loaded): a
/// configuration `named` would refuse fails the switch before 9.1 starts.
pub fn check(ctx: &Context) -> Result<()> {
    let programs = live_programs(ctx)?;
    let chroot = (ctx.root.dir() != Path::new("/")).then(|| ctx.root.dir());
    programs.check(
        &crate::flow::layout::Layout::bind_files().named_conf,
        chroot,
    )
}

/// The BIND programs of the tree in place (on this machine).
fn live_programs(ctx: &Context) -> Result<BindPrograms> {
    let sbin = ctx.root.resolve(BIND_PROGRAMS_DIR)?;
    Ok(BindPrograms {
        checkconf: sbin.join("named-checkconf"),
        rndc: sbin.join("rndc"),
    })
}

/// The choice the switch made, from the live tree; `None` before 9.1.
pub fn load_choice(root: &crate::support::root::Root) -> Result<Option<BindChoice>> {
    let path = root.resolve(Path::new(BIND_CONFIG_DIR).join(CHOICE_FILE))?;
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} does not read as the bundled BIND's ports",
                path.display()
            )
        })?)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Proves the running bundled BIND: `rndc status` under the generated key,
/// and `localhost.` looked up through it on the chosen port. Its unit is
/// up once `named` runs, which is before it listens: asked again until it
/// answers, within the run's time limit for services.
pub fn prove_running(ctx: &Context, choice: &BindChoice) -> Result<()> {
    let deadline = std::time::Instant::now() + ctx.service_timeout;
    loop {
        match answers(ctx, choice) {
            Ok(()) => return Ok(()),
            Err(err) if std::time::Instant::now() > deadline => {
                return Err(err.context(format!(
                    "the bundled BIND did not answer within {:?} of its unit's start: \
                     `journalctl -u imss-named` says why",
                    ctx.service_timeout
                )));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

fn answers(ctx: &Context, choice: &BindChoice) -> Result<()> {
    let programs = live_programs(ctx)?;
    programs.status(&crate::flow::layout::Layout::bind_files())?;
    let answer = bind::look_up_localhost(choice.dns_port)?;
    ensure!(
        answer.contains(&std::net::Ipv4Addr::LOCALHOST),
        "the bundled BIND on port {} answered localhost. with {answer:?}, not 127.0.0.1",
        choice.dns_port
    );
    Ok(())
}

/// How many queries the running bundled BIND has received.
pub fn queries_so_far(ctx: &Context) -> Result<u64> {
    let programs = live_programs(ctx)?;
    programs.queries_received(&crate::flow::layout::Layout::bind_files())
}

/// The scanner asked the bundled BIND while it took the health-check mail:
/// more queries now than `before` it.
pub fn check_scanner_resolved(ctx: &Context, before: u64, choice: &BindChoice) -> Result<()> {
    let after = queries_so_far(ctx)?;
    ensure!(
        after > before,
        "the 9.1 scanner took the health-check mail without asking the bundled BIND on port {} \
         ({after} queries before and after): check [dns] in {}",
        choice.dns_port,
        crate::support::constants::IMSS_INI
    );
    Ok(())
}
