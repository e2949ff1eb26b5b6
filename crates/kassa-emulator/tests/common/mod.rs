//! What the emulator's test files share: a client that speaks to it as Stripe's libraries do.
// Each test file uses part of it.
#![allow(dead_code)]

use kassa_emulator::Emulator;
use serde_json::Value;

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Client {
    pub fn new(emulator: &Emulator) -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client {
            http: reqwest::Client::new(),
            base: emulator.base_url(),
            key: emulator.config().secret_key.clone(),
        }
    }

    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        key: Option<&str>,
    ) -> (u16, Value, bool) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .form(form);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("answers");
        let replayed = response.headers().contains_key("idempotent-replayed");
        (
            response.status().as_u16(),
            response.json().await.expect("json"),
            replayed,
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("answers");
        response.json().await.expect("json")
    }

    pub async fn control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .expect("answers");
        response.json().await.expect("json")
    }

    pub async fn paid_intent(&self) -> Value {
        let (_, intent, _) = self
            .post(
                "/v1/payment_intents",
                &[("amount", "2000"), ("currency", "eur")],
                None,
            )
            .await;
        let id = intent["id"].as_str().expect("id").to_owned();
        let (_, intent, _) = self
            .post(
                &format!("/v1/payment_intents/{id}/confirm"),
                &[("payment_method", "pm_card_visa")],
                None,
            )
            .await;
        intent
    }
}

/// Stripe's own example object of `resource` (`payment_intent`, `checkout.session`, …) from the
/// conformance material beside the repository.
pub fn stripe_example(resource: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/stripe/stripe_openapi_fixtures3.json"
    );
    let fixtures: Value = serde_json::from_str(
        &std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (fixtures/stripe/ of the repository)")),
    )
    .expect("json");
    fixtures["resources"][resource].clone()
}
