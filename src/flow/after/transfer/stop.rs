//! The transfer's stop: SIGTERM or SIGINT asks it to stop between batches,
//! and every wait of the transfer ends early for it.

use std::time::Duration;

use anyhow::{Context as _, Result};

/// SIGTERM or SIGINT asks the transfer to stop between batches.
pub(super) struct StopRequest {
    receiver: tokio::sync::watch::Receiver<bool>,
}

impl StopRequest {
    pub(super) fn listen() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let (sender, receiver) = tokio::sync::watch::channel(false);
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("the transfer stops after this batch; the next start resumes");
            let _ = sender.send(true);
        });
        Ok(Self { receiver })
    }

    pub(super) fn requested(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Sleeps `duration`, less if a stop is requested; whether it was.
    pub(super) async fn sleep(&self, duration: Duration) -> bool {
        let mut receiver = self.receiver.clone();
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = receiver.wait_for(|stop| *stop) => {}
        }
        self.requested()
    }
}
