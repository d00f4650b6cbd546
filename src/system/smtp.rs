//! Mail health checks against a scanner's SMTP port.
//!
//! [`send_probe`] sends one test message, which must be answered 250: the
//! 9.1 switch is healthy only when it passes. [`check_accepting`] stops
//! short of DATA: a rolled-back 7.1 must take mail again, but its database
//! must stay exactly as it was before the upgrade, so nothing is logged.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::message::Mailbox;
use lettre::transport::smtp::client::SmtpConnection;
use lettre::transport::smtp::commands::{Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message, SmtpTransport, Transport};

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one test message to `host:port` with `message_id`; Ok when the
/// scanner accepted it (250 to the end of DATA).
pub fn send_probe(host: &str, port: u16, message_id: &str) -> Result<()> {
    let from: Mailbox = "imss-upgrade <postmaster@localhost>"
        .parse()
        .expect("a valid fixed address");
    let to: Mailbox = "postmaster@localhost"
        .parse()
        .expect("a valid fixed address");
    let message = Message::builder()
        .from(from)
        .to(to)
        .message_id(Some(message_id.to_string()))
        .subject("imss-upgrade health check")
        .body("This message checks that the scanner accepts mail.\r\n".to_string())
        .context("building the health check message")?;
    let transport = SmtpTransport::builder_dangerous(host)
        .port(port)
        .timeout(Some(PROBE_TIMEOUT))
        .build();
    transport.send(&message).with_context(|| {
        format!("the scanner at {host}:{port} did not accept the health check message {message_id}")
    })?;
    Ok(())
}

/// Opens an SMTP session to `host:port` and checks that a sender and a
/// recipient are accepted (250), then resets and quits without sending a
/// message.
pub fn check_accepting(host: &str, port: u16) -> Result<()> {
    let failed = || format!("the scanner at {host}:{port} does not accept mail");
    let mut session = SmtpConnection::connect(
        (host, port),
        Some(PROBE_TIMEOUT),
        &ClientId::Domain("localhost".to_string()),
        None,
        None,
    )
    .with_context(failed)?;
    let sender: Address = "postmaster@localhost"
        .parse()
        .expect("a valid fixed address");
    session
        .command(Mail::new(Some(sender.clone()), Vec::new()))
        .with_context(failed)?;
    session
        .command(Rcpt::new(sender, Vec::new()))
        .with_context(failed)?;
    session.command(Rset).with_context(failed)?;
    session.quit().with_context(failed)?;
    Ok(())
}
