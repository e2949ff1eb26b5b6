//! Background workers: each a periodic round of bounded work on `App`, run by one loop that
//! sleeps, runs a round, logs what it did, and stops at the shutdown signal. Every task is owned
//! by [`Workers`] and joined on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kassa_app::notifications::Notifier;
use kassa_app::{App, AppResult};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Most items any worker handles in one round.
const BATCH_MAX: i64 = 100;

pub struct Workers {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// Starts every worker; reconciliation runs every `reconcile_every`; notifications go to
    /// `notify_urls` through `notifier`.
    pub fn start(
        app: App,
        reconcile_every: Duration,
        notifier: Arc<dyn Notifier>,
        notify_urls: Vec<String>,
    ) -> Workers {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let every = |secs| Duration::from_secs(secs);
        tasks.spawn(periodic(
            "checkout completer: checkouts resumed",
            every(5),
            stopped.clone(),
            app.clone(),
            |app| async move { app.complete_stalled_checkouts(BATCH_MAX).await },
        ));
        tasks.spawn(periodic(
            "webhook inbox: events applied on retry",
            every(2),
            stopped.clone(),
            app.clone(),
            |app| async move { app.process_inbox(BATCH_MAX).await },
        ));
        tasks.spawn(periodic(
            "refund sender: refunds sent",
            every(5),
            stopped.clone(),
            app.clone(),
            |app| async move { app.send_unsent_refunds(BATCH_MAX).await },
        ));
        tasks.spawn(periodic(
            "seller payouts: transfers and reversals answered",
            every(5),
            stopped.clone(),
            app.clone(),
            |app| async move { app.pay_sellers(BATCH_MAX).await },
        ));
        tasks.spawn(periodic(
            "scheduled capture: orders captured",
            every(5),
            stopped.clone(),
            app.clone(),
            |app| async move { app.capture_due_orders(BATCH_MAX).await },
        ));
        tasks.spawn(periodic(
            "operation finisher: captures and cancels finished",
            every(10),
            stopped.clone(),
            app.clone(),
            |app| async move { app.finish_pending_operations(BATCH_MAX).await },
        ));
        let urls = Arc::new(notify_urls);
        tasks.spawn(periodic(
            "outbox: merchant notifications delivered",
            every(2),
            stopped.clone(),
            app.clone(),
            move |app| {
                let (notifier, urls) = (notifier.clone(), urls.clone());
                async move {
                    app.deliver_notifications(notifier.as_ref(), &urls, BATCH_MAX)
                        .await
                }
            },
        ));
        tasks.spawn(periodic(
            "janitor: expired checkouts canceled",
            every(10),
            stopped.clone(),
            app.clone(),
            |app| async move {
                let report = app.run_janitor().await?;
                if report.extended + report.paid_meanwhile > 0
                    || report.carts_expired + report.pruned.total() > 0
                {
                    tracing::info!(?report, "janitor round");
                }
                Ok(report.canceled)
            },
        ));
        tasks.spawn(periodic(
            "reconciliation: missed provider events recovered",
            reconcile_every,
            stopped,
            app,
            |app| async move {
                let report = app.reconcile(&kassa_app::reconcile::Quietly).await?;
                if !report.differences.is_empty() {
                    tracing::warn!(differences = ?report.differences, "reconciliation found differences");
                }
                Ok(report.events_recovered)
            },
        ));
        Workers { tasks, stop }
    }

    /// Signals every worker and waits for all of them to finish their current round.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Runs `round` every `period` until the shutdown signal; `what` names the count it returns.
async fn periodic<F, Fut>(
    what: &'static str,
    period: Duration,
    mut stopped: watch::Receiver<bool>,
    app: App,
    round: F,
) where
    F: Fn(App) -> Fut,
    Fut: Future<Output = AppResult<usize>>,
{
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(period) => {}
        }
        match round(app.clone()).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "{what}"),
            Err(error) => tracing::warn!(%error, "round failed: {what}"),
        }
    }
}
