//! The webhook verifier: signature first, then parsing. Both failures look the same to the sender.

use kassa_app::ports::{ProviderEvent, WebhookRejected, WebhookVerifier};

use crate::parse;
use crate::signature::verify_signature;

/// Stripe's default tolerance: a signed delivery older than this is a replay.
pub const WEBHOOK_TOLERANCE_SECS: i64 = 300;

pub struct StripeWebhookVerifier {
    secrets: Vec<String>,
    tolerance_secs: i64,
}

impl StripeWebhookVerifier {
    pub fn new(secrets: Vec<String>) -> StripeWebhookVerifier {
        StripeWebhookVerifier {
            secrets,
            tolerance_secs: WEBHOOK_TOLERANCE_SECS,
        }
    }
}

impl WebhookVerifier for StripeWebhookVerifier {
    fn verify_and_parse(
        &self,
        payload: &[u8],
        header: &str,
        now_secs: i64,
    ) -> Result<ProviderEvent, WebhookRejected> {
        verify_signature(
            payload,
            header,
            &self.secrets,
            now_secs,
            self.tolerance_secs,
        )
        .map_err(|reason| {
            tracing::debug!(?reason, "Stripe-Signature refused");
            WebhookRejected::Signature
        })?;
        self.parse(payload)
    }

    fn parse(&self, payload: &[u8]) -> Result<ProviderEvent, WebhookRejected> {
        let body: serde_json::Value =
            serde_json::from_slice(payload).map_err(|_| WebhookRejected::Malformed)?;
        parse::event(&body).map_err(|error| {
            tracing::warn!(reason = %error.0, "signed webhook body is not a readable event");
            WebhookRejected::Malformed
        })
    }
}
