//! The mail health check: one test message through a scanner's SMTP port,
//! which must answer 250. The upgrade calls 9.1 healthy, and a rolled-back
//! 7.1 back in service, only when this passes.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::message::Mailbox;
use lettre::{Message, SmtpTransport, Transport};

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
