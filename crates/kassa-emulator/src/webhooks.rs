//! Webhook delivery: each event is POSTed to every endpoint, signed as Stripe signs
//! (`Stripe-Signature: t=…,v1=hex(HMAC-SHA256(secret, "t.body"))`), and retried with backoff on a
//! non-2xx answer or a connection error. Faults (copies, reordering, delay, dropped first
//! attempts) apply here. Delivery never blocks an API request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use crate::world::{WebhookFaults, World};

/// Events waiting for delivery; beyond this, events are only listed, not pushed.
pub const QUEUE_MAX: usize = 10_000;
/// Attempts per event and endpoint.
pub const ATTEMPTS_MAX: u32 = 6;
/// First retry delay (real time, so tests stay fast); doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(100);
/// Most events reordered together.
const REORDER_BATCH_MAX: usize = 64;
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

pub async fn deliver(
    world: Arc<Mutex<World>>,
    secret: String,
    mut queue: mpsc::Receiver<Value>,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(http) = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() else {
        tracing::error!("emulator cannot build its webhook client");
        return;
    };
    loop {
        let first = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            event = queue.recv() => match event { Some(event) => event, None => return },
        };
        let faults = lock(&world).webhook_faults.clone();
        let mut batch = vec![first];
        if faults.reorder {
            // Let the operation that emitted this finish emitting, then send newest first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while batch.len() < REORDER_BATCH_MAX {
                match queue.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            batch.reverse();
        }
        for event in batch {
            if faults.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
            }
            for _ in 0..faults.copies.max(1) {
                let endpoints = lock(&world).endpoints.clone();
                for endpoint in endpoints {
                    let sent = send_with_retries(
                        &http,
                        &world,
                        &secret,
                        &endpoint,
                        &event,
                        &faults,
                        &mut stopped,
                    )
                    .await;
                    if sent.is_none() {
                        return;
                    }
                }
            }
        }
    }
}

fn lock(world: &Arc<Mutex<World>>) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `None` when shutdown interrupted the retries.
async fn send_with_retries(
    http: &reqwest::Client,
    world: &Arc<Mutex<World>>,
    secret: &str,
    endpoint: &str,
    event: &Value,
    faults: &WebhookFaults,
    stopped: &mut watch::Receiver<bool>,
) -> Option<()> {
    let body = event.to_string();
    for attempt in 1..=ATTEMPTS_MAX {
        let outcome = if attempt == 1 && faults.drop_first {
            "dropped".to_owned()
        } else {
            let timestamp = lock(world).now();
            let request = http
                .post(endpoint)
                .header("content-type", "application/json")
                .header(
                    "stripe-signature",
                    signature_header(secret, timestamp, &body),
                )
                .body(body.clone());
            match request.send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(error) => format!("error: {error}"),
            }
        };
        let delivered = outcome.starts_with('2');
        record(world, event, endpoint, attempt, &outcome);
        if delivered {
            return Some(());
        }
        let wait = RETRY_BASE.saturating_mul(2u32.saturating_pow(attempt - 1));
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return None,
            () = tokio::time::sleep(wait) => {},
        }
    }
    Some(())
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
