//! A stateful, fault-injecting Stripe emulator: the subset of Stripe's HTTP API that Kassa uses
//! (PaymentIntents, Refunds, Events), Stripe's JSON objects and error shapes, `Idempotency-Key`
//! semantics, test payment methods, signed webhooks with retries, and faults on request.
//!
//! It depends on no other Kassa crate on purpose: a disagreement between Kassa's idea of Stripe
//! and this one shows up in tests instead of being shared. Control endpoints live under
//! `/_emulator/` (see README.md beside this crate).

// Handlers return a ready `Response` as their error, the axum idiom; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

mod accounts;
mod control;
mod currency;
mod http;
mod objects;
mod page;
mod sessions;
mod subscriptions;
mod transfers;
mod webhooks;
mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use webhooks::signature_header;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the emulator starts.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    /// Requests must carry it (`Authorization: Bearer`, or Basic with the key as user).
    pub secret_key: String,
    /// Allowed only to confirm or retrieve an intent together with its `client_secret`.
    pub publishable_key: String,
    /// Signs webhooks (`Stripe-Signature`).
    pub webhook_secret: String,
    /// Where events are POSTed; the control API can add more.
    pub webhook_endpoints: Vec<String>,
    /// Makes ids and fault choices reproducible.
    pub seed: u64,
}

impl EmulatorConfig {
    /// Ephemeral port, fixed keys, no endpoints, fixed seed.
    pub fn for_tests() -> EmulatorConfig {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret_key: "sk_test_emulator0000000000000000".into(),
            publishable_key: "pk_test_emulator0000000000000000".into(),
            webhook_secret: "whsec_emulator00000000000000000000".into(),
            webhook_endpoints: Vec::new(),
            seed: 7,
        }
    }
}

/// A running emulator. Dropping it without [`Emulator::shutdown`] leaves its tasks to the runtime.
pub struct Emulator {
    config: EmulatorConfig,
    address: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// How often the emulator settles what happens "a moment later" at Stripe.
const SETTLE_PERIOD: std::time::Duration = std::time::Duration::from_millis(50);

/// Settles delayed outcomes until shutdown: refunds of `pm_card_refundFail` failing, delayed
/// payments settling, Checkout Sessions running out of time.
async fn settle(world: Arc<Mutex<world::World>>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(SETTLE_PERIOD) => {}
        }
        let mut world = world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        world.fail_due_refunds(now);
        world.settle_delayed_payments(now);
        world.expire_due_sessions();
    }
}

impl Emulator {
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let mut world = world::World::new(&config);
        world.base_url = format!("http://{address}");
        let world = Arc::new(Mutex::new(world));
        let shared = http::Shared {
            world: world.clone(),
            config: config.clone(),
            stopped: stopped.clone(),
        };
        let mut tasks = JoinSet::new();
        let world_for_settling = world.clone();
        tasks.spawn(webhooks::deliver(
            world,
            config.webhook_secret.clone(),
            stopped.clone(),
        ));
        tasks.spawn(settle(world_for_settling, stopped.clone()));
        let router = http::router(shared);
        let mut until_stopped = stopped;
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = until_stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "emulator server stopped");
            }
        });
        Ok(Emulator {
            config,
            address,
            stop,
            tasks,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// Stops the server and the webhook deliverer and waits for both.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
