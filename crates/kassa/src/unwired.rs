//! Placeholder provider used until the Stripe adapter is wired in: every call's outcome is
//! "unknown", which the checkout saga treats safely (nothing compensated, the completer retries
//! later). Never a fake success.

use async_trait::async_trait;
use kassa_app::ports::{
    CreatePaymentIntent, CreateRefund, EventPage, PaymentProvider, ProviderError,
    ProviderPaymentIntent, ProviderRefund, ProviderResult,
};

pub struct UnwiredProvider;

/// Placeholder verifier until the Stripe adapter is wired in: refuses every delivery (fail
/// closed), so nothing unverified is ever recorded.
pub struct UnwiredVerifier;

impl kassa_app::ports::WebhookVerifier for UnwiredVerifier {
    fn verify_and_parse(
        &self,
        _: &[u8],
        _: &str,
        _: i64,
    ) -> Result<kassa_app::ports::ProviderEvent, kassa_app::ports::WebhookRejected> {
        Err(kassa_app::ports::WebhookRejected::Signature)
    }

    fn parse(
        &self,
        _: &[u8],
    ) -> Result<kassa_app::ports::ProviderEvent, kassa_app::ports::WebhookRejected> {
        Err(kassa_app::ports::WebhookRejected::Malformed)
    }
}

fn unwired<T>() -> ProviderResult<T> {
    Err(ProviderError::Unknown {
        reason: "no payment provider is wired into this build yet".into(),
    })
}

#[async_trait]
impl PaymentProvider for UnwiredProvider {
    async fn create_payment_intent(
        &self,
        _: CreatePaymentIntent,
    ) -> ProviderResult<ProviderPaymentIntent> {
        unwired()
    }
    async fn retrieve_payment_intent(&self, _: &str) -> ProviderResult<ProviderPaymentIntent> {
        unwired()
    }
    async fn cancel_payment_intent(
        &self,
        _: &str,
        _: &str,
    ) -> ProviderResult<ProviderPaymentIntent> {
        unwired()
    }
    async fn capture_payment_intent(
        &self,
        _: &str,
        _: Option<i64>,
        _: &str,
    ) -> ProviderResult<ProviderPaymentIntent> {
        unwired()
    }
    async fn create_refund(&self, _: CreateRefund) -> ProviderResult<ProviderRefund> {
        unwired()
    }
    async fn retrieve_refund(&self, _: &str) -> ProviderResult<ProviderRefund> {
        unwired()
    }
    async fn list_events(&self, _: i64, _: Option<&str>, _: u32) -> ProviderResult<EventPage> {
        unwired()
    }
}
