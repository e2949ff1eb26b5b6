//! Verifier doubles for tests that feed events in without Stripe's wire format. Signature tests
//! use the real verifier of `kassa-stripe`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kassa_app::ports::{ProviderEvent, WebhookRejected, WebhookVerifier};

/// Accepts nothing.
pub struct RejectingVerifier;

impl WebhookVerifier for RejectingVerifier {
    fn verify_and_parse(
        &self,
        _: &[u8],
        _: &str,
        _: i64,
    ) -> Result<ProviderEvent, WebhookRejected> {
        Err(WebhookRejected::Signature)
    }

    fn parse(&self, _: &[u8]) -> Result<ProviderEvent, WebhookRejected> {
        Err(WebhookRejected::Malformed)
    }
}

/// Knows events by id: the "payload" of a registered event is its id, and the only valid
/// signature header is `valid`.
#[derive(Default)]
pub struct MemoryVerifier(Mutex<BTreeMap<String, ProviderEvent>>);

impl MemoryVerifier {
    pub fn register(&self, event: ProviderEvent) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(event.id.clone(), event);
    }
}

impl WebhookVerifier for MemoryVerifier {
    fn verify_and_parse(
        &self,
        payload: &[u8],
        header: &str,
        _: i64,
    ) -> Result<ProviderEvent, WebhookRejected> {
        if header != "valid" {
            return Err(WebhookRejected::Signature);
        }
        self.parse(payload)
    }

    fn parse(&self, payload: &[u8]) -> Result<ProviderEvent, WebhookRejected> {
        let id = std::str::from_utf8(payload).map_err(|_| WebhookRejected::Malformed)?;
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or(WebhookRejected::Malformed)
    }
}
