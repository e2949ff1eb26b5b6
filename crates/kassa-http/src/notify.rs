//! Outgoing merchant notifications over HTTP: the body a receiver gets and its signature, the
//! way Stripe signs its webhooks — `Kassa-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`
//! under `KASSA_NOTIFY_SECRET` — so the same few lines verify both.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use kassa_app::notifications::Notifier;
use kassa_app::ports::Notification;
use sha2::Sha256;

/// Longest wait for a receiver's answer; a slower one counts as not delivered and is retried.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpNotifier {
    http: reqwest::Client,
    secret: String,
}

impl HttpNotifier {
    pub fn new(secret: String) -> Result<HttpNotifier, String> {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .build()
            .map_err(|error| format!("cannot build the notification client: {error}"))?;
        Ok(HttpNotifier { http, secret })
    }
}

/// `Kassa-Signature` for `body` sent at `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// `{"id", "object": "event", "type", "created", "data"}`; `id` is the same on every retry.
pub fn body_of(notification: &Notification) -> String {
    let data: serde_json::Value =
        serde_json::from_str(&notification.payload).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": notification.id,
        "object": "event",
        "type": notification.topic,
        "created": notification.created_at,
        "data": data,
    })
    .to_string()
}

#[async_trait]
impl Notifier for HttpNotifier {
    async fn deliver(&self, url: &str, notification: &Notification) -> Result<(), String> {
        let body = body_of(notification);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let answer = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header(
                "kassa-signature",
                signature_header(&self.secret, now, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|error| format!("no answer: {error}"))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", answer.status().as_u16()))
        }
    }
}
