//! Background workers, each a loop that takes a bounded batch, sleeps, and stops at the shutdown
//! signal. Every task is owned by [`Workers`] and joined on shutdown.

use std::time::Duration;

use kassa_app::App;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often the checkout completer looks for abandoned checkouts.
const COMPLETER_PERIOD: Duration = Duration::from_secs(5);
/// Most checkouts the completer resumes per round.
const COMPLETER_BATCH_MAX: i64 = 50;
/// How often the inbox worker retries due webhook events.
const INBOX_PERIOD: Duration = Duration::from_secs(2);
/// Most webhook events retried per round.
const INBOX_BATCH_MAX: i64 = 100;

pub struct Workers {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Workers {
    pub fn start(app: App) -> Workers {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(completer(app.clone(), stopped.clone()));
        tasks.spawn(inbox(app, stopped));
        Workers { tasks, stop }
    }

    /// Signals every worker and waits for all of them to finish their current round.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn completer(app: App, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(COMPLETER_PERIOD) => {}
        }
        match app.complete_stalled_checkouts(COMPLETER_BATCH_MAX).await {
            Ok(0) => {}
            Ok(driven) => tracing::info!(driven, "checkout completer resumed abandoned checkouts"),
            Err(error) => tracing::warn!(%error, "checkout completer round failed"),
        }
    }
}

async fn inbox(app: App, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(INBOX_PERIOD) => {}
        }
        match app.process_inbox(INBOX_BATCH_MAX).await {
            Ok(0) => {}
            Ok(applied) => tracing::info!(applied, "webhook events applied on retry"),
            Err(error) => tracing::warn!(%error, "webhook inbox round failed"),
        }
    }
}
