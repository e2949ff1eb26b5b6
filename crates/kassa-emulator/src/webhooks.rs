//! Webhook delivery: each event is POSTed to every endpoint, signed as Stripe signs
//! (`Stripe-Signature: t=…,v1=hex(HMAC-SHA256(secret, "t.body"))`), and retried on a non-2xx
//! answer or a connection error on Stripe's schedule compressed in time (doubling delays, capped,
//! for about a minute rather than three days). Deliveries run concurrently, up to
//! [`IN_FLIGHT_MAX`]; events wait in the world's outbound list, which is never truncated, so under
//! load delivery falls behind and catches up but never drops. Faults (copies, reordering, delay,
//! dropped first attempts, dropping everything) apply here. Delivery never blocks an API request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::world::{WebhookFaults, World};

/// Attempts per event and endpoint: the first and the retries.
pub const ATTEMPTS_MAX: u32 = 16;
/// First retry delay (real time, so tests stay fast); doubles per attempt up to
/// [`RETRY_DELAY_MAX`]: all attempts span about a minute.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);
/// Deliveries in flight at once.
pub const IN_FLIGHT_MAX: usize = 64;
/// Most events taken from the outbound list in one batch (and reordered together).
const BATCH_MAX: usize = 256;
/// Under the reorder fault: how long events are gathered, and the gap between their starts.
const REORDER_GATHER: Duration = Duration::from_millis(50);
const REORDER_STAGGER: Duration = Duration::from_millis(100);
/// Most deliveries remembered for `GET /_emulator/webhook_deliveries`.
const DELIVERIES_KEPT_MAX: usize = 10_000;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

pub async fn deliver(world: Arc<Mutex<World>>, secret: String, mut stopped: watch::Receiver<bool>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(http) = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() else {
        tracing::error!("emulator cannot build its webhook client");
        return;
    };
    let ready: Arc<Notify> = lock(&world).outbound_ready.clone();
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut deliveries = JoinSet::new();
    loop {
        if lock(&world).webhook_faults.reorder {
            // Let the operation that emitted this finish emitting, then send newest first.
            tokio::time::sleep(REORDER_GATHER).await;
        }
        let batch = next_batch(&world);
        if batch.is_empty() {
            tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                () = ready.notified() => {}
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            }
            continue;
        }
        let (faults, endpoints) = {
            let world = lock(&world);
            (world.webhook_faults.clone(), world.endpoints.clone())
        };
        for (position, event) in batch.into_iter().enumerate() {
            if faults.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
            }
            // Reordered events start one after another, so they arrive in the order chosen.
            let start_after = if faults.reorder {
                REORDER_STAGGER.saturating_mul(u32::try_from(position).unwrap_or(u32::MAX))
            } else {
                Duration::ZERO
            };
            for _ in 0..faults.copies.max(1) {
                for endpoint in &endpoints {
                    let delivery = Delivery {
                        http: http.clone(),
                        world: world.clone(),
                        secret: secret.clone(),
                        endpoint: endpoint.clone(),
                        event: event.clone(),
                        faults: faults.clone(),
                        in_flight: in_flight.clone(),
                        start_after,
                    };
                    deliveries.spawn(delivery.run(stopped.clone()));
                }
            }
        }
        // Reap what finished, so the set holds only deliveries still running or waiting.
        while deliveries.try_join_next().is_some() {}
    }
}

/// Up to [`BATCH_MAX`] events from the outbound list, oldest first (newest first under the
/// reorder fault).
fn next_batch(world: &Arc<Mutex<World>>) -> Vec<Value> {
    let mut world = lock(world);
    let take = world.outbound.len().min(BATCH_MAX);
    let mut batch: Vec<Value> = world.outbound.drain(..take).collect();
    if world.webhook_faults.reorder {
        batch.reverse();
    }
    batch
}

fn lock(world: &Arc<Mutex<World>>) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One event to one endpoint, with its retries.
struct Delivery {
    http: reqwest::Client,
    world: Arc<Mutex<World>>,
    secret: String,
    endpoint: String,
    event: Value,
    faults: WebhookFaults,
    in_flight: Arc<Semaphore>,
    start_after: Duration,
}

impl Delivery {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(self.start_after) => {},
        }
        let body = self.event.to_string();
        for attempt in 1..=ATTEMPTS_MAX {
            // Read at each attempt: a drop fault set or cleared meanwhile applies at once.
            if lock(&self.world).webhook_faults.drop {
                record(
                    &self.world,
                    &self.event,
                    &self.endpoint,
                    attempt,
                    "dropped (fault)",
                );
                return;
            }
            let outcome = if attempt == 1 && self.faults.drop_first {
                "dropped".to_owned()
            } else {
                self.attempt(&body).await
            };
            let delivered = outcome.starts_with('2');
            record(&self.world, &self.event, &self.endpoint, attempt, &outcome);
            if delivered {
                return;
            }
            let wait = RETRY_BASE
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(RETRY_DELAY_MAX);
            tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep(wait) => {},
            }
        }
    }

    /// One POST, holding an in-flight slot only while it runs.
    async fn attempt(&self, body: &str) -> String {
        let Ok(_slot) = self.in_flight.acquire().await else {
            return "error: shutting down".into();
        };
        // Signed at the wall clock's time, as Stripe signs with test clocks: emulated time moves
        // objects and events, never the receiver's view of when a delivery was sent.
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let request = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .header(
                "stripe-signature",
                signature_header(&self.secret, timestamp, body),
            )
            .body(body.to_owned());
        match request.send().await {
            Ok(response) => response.status().as_u16().to_string(),
            Err(error) => format!("error: {error}"),
        }
    }
}

fn record(world: &Arc<Mutex<World>>, event: &Value, endpoint: &str, attempt: u32, outcome: &str) {
    let mut world = lock(world);
    if world.deliveries.len() >= DELIVERIES_KEPT_MAX {
        world.deliveries.remove(0);
    }
    world.deliveries.push(json!({
        "event": event["id"],
        "type": event["type"],
        "endpoint": endpoint,
        "attempt": attempt,
        "outcome": outcome,
    }));
}
