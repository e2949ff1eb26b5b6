//! The HTTP client of Stripe's API. One request path for every call: form-encoded body,
//! pinned `Stripe-Version`, the caller's `Idempotency-Key` on every POST, a connect timeout and a
//! total timeout per attempt, and bounded, jittered retries that reuse the key.

use std::time::Duration;

use async_trait::async_trait;
use kassa_app::ports::{
    CaptureMethod, CreateCheckoutSession, CreateConnectedAccount, CreateCustomer,
    CreatePaymentIntent, CreateRefund, CreateSubscriptionSession, CreateTransfer,
    CreateTransferReversal, EventPage, PaymentProvider, ProviderAccount, ProviderCheckoutSession,
    ProviderCustomer, ProviderError, ProviderInvoice, ProviderPaymentIntent, ProviderRefund,
    ProviderResult, ProviderSubscription, ProviderTransfer, ProviderTransferReversal, SessionLine,
};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::parse;

/// The Stripe API version Kassa's parsing is written against.
pub const STRIPE_API_VERSION: &str = "2025-03-31.basil";

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub api_base: String,
    pub secret_key: String,
    pub connect_timeout: Duration,
    /// Bound on one attempt, from sending to the whole body read (risk G7).
    pub request_timeout: Duration,
    /// Attempts per call, the first included.
    pub attempts_max: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl StripeConfig {
    pub fn new(api_base: &str, secret_key: &str) -> StripeConfig {
        StripeConfig {
            api_base: api_base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            attempts_max: 3,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(2),
        }
    }
}

pub struct StripeClient {
    http: reqwest::Client,
    config: StripeConfig,
}

/// One attempt's result, before classification.
enum Attempt {
    Answer {
        status: StatusCode,
        should_retry: Option<bool>,
        body: String,
    },
    Transport(String),
}

impl StripeClient {
    pub fn new(config: StripeConfig) -> Result<StripeClient, String> {
        // reqwest is built without a default TLS provider; ring is the one this build carries.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        Ok(StripeClient { http, config })
    }

    /// One API call with its retries, timed for `kassa_provider_call_seconds` by operation
    /// (the path with its id replaced) and outcome.
    async fn call(
        &self,
        method: Method,
        path: &str,
        form: &[(String, String)],
        key: Option<&str>,
    ) -> ProviderResult<Value> {
        let started = std::time::Instant::now();
        let result = self
            .call_with_retries(method.clone(), path, form, key)
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ProviderError::Definite { .. }) => "refused",
            Err(ProviderError::Unknown { .. }) => "unknown",
        };
        metrics::histogram!(
            "kassa_provider_call_seconds",
            "operation" => operation_of(&method, path),
            "outcome" => outcome,
        )
        .record(started.elapsed().as_secs_f64());
        result
    }

    async fn call_with_retries(
        &self,
        method: Method,
        path: &str,
        form: &[(String, String)],
        key: Option<&str>,
    ) -> ProviderResult<Value> {
        let mut last_failure = String::new();
        for attempt in 1..=self.config.attempts_max {
            let outcome = self.attempt(method.clone(), path, form, key).await;
            match classify(outcome) {
                Verdict::Done(body) => return Ok(body),
                Verdict::Refused(error) => return Err(error),
                Verdict::Retry(reason) => last_failure = reason,
                Verdict::Unknown(reason) => return Err(ProviderError::Unknown { reason }),
            }
            if attempt < self.config.attempts_max {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
        }
        Err(ProviderError::Unknown {
            reason: format!(
                "{path}: gave up after {} attempts: {last_failure}",
                self.config.attempts_max
            ),
        })
    }

    async fn attempt(
        &self,
        method: Method,
        path: &str,
        form: &[(String, String)],
        key: Option<&str>,
    ) -> Attempt {
        let url = format!("{}{path}", self.config.api_base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.config.secret_key)
            .header("Stripe-Version", STRIPE_API_VERSION);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request = if method == Method::GET {
            request.query(form)
        } else {
            request.form(form)
        };
        let response = match request.send().await {
            Ok(response) => response,
            // reqwest's text names the URL, never the key.
            Err(error) => return Attempt::Transport(error.to_string()),
        };
        let status = response.status();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|value| value.to_str().ok())
            .map(|value| value == "true");
        match response.text().await {
            Ok(body) => Attempt::Answer {
                status,
                should_retry,
                body,
            },
            Err(error) => Attempt::Transport(format!("reading the answer: {error}")),
        }
    }

    /// Exponential backoff with full jitter, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .config
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.config.backoff_max);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

enum Verdict {
    Done(Value),
    Refused(ProviderError),
    Retry(String),
    Unknown(String),
}

/// Stripe's rules: honour `Stripe-Should-Retry`; else 409 (idempotency lock), 429 and 5xx are
/// retryable; other 4xx are definite; a transport failure is retryable with the same key.
fn classify(attempt: Attempt) -> Verdict {
    let (status, should_retry, body) = match attempt {
        Attempt::Transport(reason) => return Verdict::Retry(reason),
        Attempt::Answer {
            status,
            should_retry,
            body,
        } => (status, should_retry, body),
    };
    if status.is_success() {
        return match serde_json::from_str(&body) {
            Ok(value) => Verdict::Done(value),
            Err(_) => Verdict::Unknown(format!("unreadable {status} answer")),
        };
    }
    let retryable = should_retry.unwrap_or(
        status == StatusCode::CONFLICT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error(),
    );
    if retryable {
        return Verdict::Retry(format!("status {status}"));
    }
    if status.is_server_error() {
        return Verdict::Unknown(format!("status {status}"));
    }
    let error: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let error = &error["error"];
    let code = error["decline_code"]
        .as_str()
        .or_else(|| error["code"].as_str())
        .or_else(|| error["type"].as_str())
        .unwrap_or("http_error")
        .to_owned();
    let message = error["message"].as_str().unwrap_or("refused").to_owned();
    // The key was used before with other parameters: that earlier request may have happened,
    // so nothing may be compensated as if none did.
    if error["type"] == "idempotency_error" {
        return Verdict::Unknown(format!("idempotency_error: {message}"));
    }
    Verdict::Refused(ProviderError::Definite { code, message })
}

impl StripeClient {
    /// One page of a list, each item read with `parse`, and whether more follow.
    async fn list<T>(
        &self,
        path: &str,
        query: &[(String, String)],
        parse: fn(&Value) -> Result<T, parse::ParseError>,
        what: &str,
    ) -> ProviderResult<(Vec<T>, bool)> {
        let body = self.call(Method::GET, path, query, None).await?;
        let items = body["data"]
            .as_array()
            .map(|list| list.iter().map(parse).collect::<Result<Vec<_>, _>>())
            .unwrap_or_else(|| Ok(Vec::new()))
            .map_err(|e| unreadable(what, e))?;
        Ok((items, body["has_more"] == true))
    }

    /// Every page of a list, each page after the last item of the one before.
    async fn list_all<T>(
        &self,
        path: &str,
        query: &[(String, String)],
        parse: fn(&Value) -> Result<T, parse::ParseError>,
        id: fn(&T) -> &str,
        what: &str,
    ) -> ProviderResult<Vec<T>> {
        let mut items: Vec<T> = Vec::new();
        loop {
            let mut page_query = query.to_vec();
            page_query.push(("limit".to_owned(), "100".to_owned()));
            if let Some(last) = items.last() {
                page_query.push(("starting_after".to_owned(), id(last).to_owned()));
            }
            let (page, more) = self.list(path, &page_query, parse, what).await?;
            let empty = page.is_empty();
            items.extend(page);
            if !more || empty {
                return Ok(items);
            }
        }
    }
}

fn unreadable(what: &str, error: parse::ParseError) -> ProviderError {
    // The call succeeded at Stripe; only our reading failed: unknown, never "failed".
    ProviderError::Unknown {
        reason: format!("unreadable {what}: {}", error.0),
    }
}

/// One line of a Checkout Session, priced by Kassa (`price_data`).
fn line_item(index: usize, currency: &str, line: &SessionLine) -> [(String, String); 4] {
    let field = |name: &str| format!("line_items[{index}]{name}");
    [
        (field("[price_data][currency]"), currency.to_owned()),
        (
            field("[price_data][unit_amount]"),
            line.unit_amount_minor.to_string(),
        ),
        (field("[price_data][product_data][name]"), line.name.clone()),
        (field("[quantity]"), line.quantity.to_string()),
    ]
}

fn metadata_fields(metadata: &[(String, String)]) -> impl Iterator<Item = (String, String)> + '_ {
    metadata
        .iter()
        .map(|(key, value)| (format!("metadata[{key}]"), value.clone()))
}

#[async_trait]
impl PaymentProvider for StripeClient {
    async fn create_payment_intent(
        &self,
        request: CreatePaymentIntent,
    ) -> ProviderResult<ProviderPaymentIntent> {
        let capture = match request.capture_method {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::Manual => "manual",
        };
        let mut form = vec![
            ("amount".to_owned(), request.amount_minor.to_string()),
            ("currency".to_owned(), request.currency.code().to_owned()),
            ("capture_method".to_owned(), capture.to_owned()),
            ("payment_method_types[]".to_owned(), "card".to_owned()),
        ];
        if let Some(destination) = &request.destination {
            form.extend([
                (
                    "transfer_data[destination]".to_owned(),
                    destination.account_id.clone(),
                ),
                (
                    "application_fee_amount".to_owned(),
                    destination.application_fee_minor.to_string(),
                ),
            ]);
        }
        if let Some(group) = &request.transfer_group {
            form.push(("transfer_group".to_owned(), group.clone()));
        }
        form.extend(metadata_fields(&request.metadata));
        let body = self
            .call(
                Method::POST,
                "/v1/payment_intents",
                &form,
                Some(&request.idempotency_key),
            )
            .await?;
        parse::payment_intent(&body).map_err(|e| unreadable("PaymentIntent", e))
    }

    async fn retrieve_payment_intent(&self, id: &str) -> ProviderResult<ProviderPaymentIntent> {
        let body = self
            .call(Method::GET, &format!("/v1/payment_intents/{id}"), &[], None)
            .await?;
        parse::payment_intent(&body).map_err(|e| unreadable("PaymentIntent", e))
    }

    async fn create_checkout_session(
        &self,
        request: CreateCheckoutSession,
    ) -> ProviderResult<ProviderCheckoutSession> {
        let capture = match request.capture_method {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::Manual => "manual",
        };
        let currency = request.currency.code();
        let mut form = vec![
            ("mode".to_owned(), "payment".to_owned()),
            ("success_url".to_owned(), request.success_url.clone()),
            ("cancel_url".to_owned(), request.cancel_url.clone()),
            (
                "client_reference_id".to_owned(),
                request.client_reference_id.clone(),
            ),
            ("customer_email".to_owned(), request.customer_email.clone()),
            ("expires_at".to_owned(), request.expires_at_secs.to_string()),
            (
                "payment_intent_data[capture_method]".to_owned(),
                capture.to_owned(),
            ),
        ];
        for (index, line) in request.lines.iter().enumerate() {
            form.extend(line_item(index, currency, line));
        }
        if let Some(group) = &request.transfer_group {
            form.push((
                "payment_intent_data[transfer_group]".to_owned(),
                group.clone(),
            ));
        }
        form.extend(metadata_fields(&request.metadata));
        form.extend(request.metadata.iter().map(|(key, value)| {
            (
                format!("payment_intent_data[metadata][{key}]"),
                value.clone(),
            )
        }));
        let body = self
            .call(
                Method::POST,
                "/v1/checkout/sessions",
                &form,
                Some(&request.idempotency_key),
            )
            .await?;
        parse::checkout_session(&body).map_err(|e| unreadable("Checkout Session", e))
    }

    async fn retrieve_checkout_session(&self, id: &str) -> ProviderResult<ProviderCheckoutSession> {
        let body = self
            .call(
                Method::GET,
                &format!("/v1/checkout/sessions/{id}"),
                &[],
                None,
            )
            .await?;
        parse::checkout_session(&body).map_err(|e| unreadable("Checkout Session", e))
    }

    async fn expire_checkout_session(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> ProviderResult<ProviderCheckoutSession> {
        let path = format!("/v1/checkout/sessions/{id}/expire");
        let body = self
            .call(Method::POST, &path, &[], Some(idempotency_key))
            .await?;
        parse::checkout_session(&body).map_err(|e| unreadable("Checkout Session", e))
    }

    async fn create_connected_account(
        &self,
        request: CreateConnectedAccount,
    ) -> ProviderResult<ProviderAccount> {
        let mut form = vec![
            ("type".to_owned(), "express".to_owned()),
            ("email".to_owned(), request.email.clone()),
            ("country".to_owned(), request.country.clone()),
            (
                "capabilities[card_payments][requested]".to_owned(),
                "true".to_owned(),
            ),
            (
                "capabilities[transfers][requested]".to_owned(),
                "true".to_owned(),
            ),
        ];
        form.extend(metadata_fields(&request.metadata));
        let body = self
            .call(
                Method::POST,
                "/v1/accounts",
                &form,
                Some(&request.idempotency_key),
            )
            .await?;
        parse::account(&body).map_err(|e| unreadable("Account", e))
    }

    async fn retrieve_account(&self, id: &str) -> ProviderResult<ProviderAccount> {
        let body = self
            .call(Method::GET, &format!("/v1/accounts/{id}"), &[], None)
            .await?;
        parse::account(&body).map_err(|e| unreadable("Account", e))
    }

    async fn create_customer(&self, request: CreateCustomer) -> ProviderResult<ProviderCustomer> {
        let mut form = vec![("email".to_owned(), request.email.clone())];
        form.extend(metadata_fields(&request.metadata));
        let body = self
            .call(
                Method::POST,
                "/v1/customers",
                &form,
                Some(&request.idempotency_key),
            )
            .await?;
        let id = body["id"].as_str().ok_or_else(|| {
            unreadable("Customer", parse::ParseError("id is not a string".into()))
        })?;
        Ok(ProviderCustomer { id: id.to_owned() })
    }

    async fn create_subscription_session(
        &self,
        request: CreateSubscriptionSession,
    ) -> ProviderResult<ProviderCheckoutSession> {
        let line = SessionLine {
            name: request.plan_name.clone(),
            unit_amount_minor: request.unit_amount_minor,
            quantity: 1,
        };
        let mut form = vec![
            ("mode".to_owned(), "subscription".to_owned()),
            ("customer".to_owned(), request.provider_customer_id.clone()),
            ("success_url".to_owned(), request.success_url.clone()),
            ("cancel_url".to_owned(), request.cancel_url.clone()),
            (
                "client_reference_id".to_owned(),
                request.client_reference_id.clone(),
            ),
            ("expires_at".to_owned(), request.expires_at_secs.to_string()),
            (
                "line_items[0][price_data][recurring][interval]".to_owned(),
                request.interval.clone(),
            ),
        ];
        form.extend(line_item(0, request.currency.code(), &line));
        form.extend(metadata_fields(&request.metadata));
        form.extend(
            request
                .metadata
                .iter()
                .map(|(key, value)| (format!("subscription_data[metadata][{key}]"), value.clone())),
        );
        let body = self
            .call(
                Method::POST,
                "/v1/checkout/sessions",
                &form,
                Some(&request.idempotency_key),
            )
            .await?;
        parse::checkout_session(&body).map_err(|e| unreadable("Checkout Session", e))
    }

    async fn cancel_subscription(
        &self,
        id: &str,
        at_period_end: bool,
        idempotency_key: &str,
    ) -> ProviderResult<ProviderSubscription> {
        let path = format!("/v1/subscriptions/{id}");
        let body = if at_period_end {
            let form = [("cancel_at_period_end".to_owned(), "true".to_owned())];
            self.call(Method::POST, &path, &form, Some(idempotency_key))
                .await?
        } else {
            self.call(Method::DELETE, &path, &[], Some(idempotency_key))
                .await?
        };
        parse::subscription(&body).map_err(|e| unreadable("Subscription", e))
    }

    async fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> ProviderResult<ProviderPaymentIntent> {
        let path = format!("/v1/payment_intents/{id}/cancel");
        let body = self
            .call(Method::POST, &path, &[], Some(idempotency_key))
            .await?;
        parse::payment_intent(&body).map_err(|e| unreadable("PaymentIntent", e))
    }

    async fn capture_payment_intent(
        &self,
        id: &str,
        amount_to_capture_minor: Option<i64>,
        application_fee_minor: Option<i64>,
        idempotency_key: &str,
    ) -> ProviderResult<ProviderPaymentIntent> {
        let form: Vec<(String, String)> = amount_to_capture_minor
            .map(|amount| ("amount_to_capture".to_owned(), amount.to_string()))
            .into_iter()
            .chain(
                application_fee_minor
                    .map(|fee| ("application_fee_amount".to_owned(), fee.to_string())),
            )
            .collect();
        let path = format!("/v1/payment_intents/{id}/capture");
        let body = self
            .call(Method::POST, &path, &form, Some(idempotency_key))
            .await?;
        parse::payment_intent(&body).map_err(|e| unreadable("PaymentIntent", e))
    }

    async fn create_refund(&self, request: CreateRefund) -> ProviderResult<ProviderRefund> {
        let mut form = vec![
            (
                "payment_intent".to_owned(),
                request.payment_intent_id.clone(),
            ),
            ("amount".to_owned(), request.amount_minor.to_string()),
        ];
        if let Some(reason) = &request.reason {
            form.push(("reason".to_owned(), reason.clone()));
        }
        if request.reverse_transfer {
            form.push(("reverse_transfer".to_owned(), "true".to_owned()));
            form.push(("refund_application_fee".to_owned(), "true".to_owned()));
        }
        form.extend(metadata_fields(&request.metadata));
        let body = self
            .call(
                Method::POST,
                "/v1/refunds",
                &form,
                Some(&request.idempotency_key),
            )
            .await?;
        parse::refund(&body).map_err(|e| unreadable("Refund", e))
    }

    async fn list_refunds(&self, payment_intent_id: &str) -> ProviderResult<Vec<ProviderRefund>> {
        let query = [
            ("payment_intent".to_owned(), payment_intent_id.to_owned()),
            ("limit".to_owned(), "100".to_owned()),
        ];
        let (refunds, _) = self
            .list("/v1/refunds", &query, parse::refund, "Refund list")
            .await?;
        Ok(refunds)
    }

    async fn list_paid_invoices(
        &self,
        subscription_id: &str,
    ) -> ProviderResult<Vec<ProviderInvoice>> {
        let query = [
            ("subscription".to_owned(), subscription_id.to_owned()),
            ("status".to_owned(), "paid".to_owned()),
        ];
        let id: fn(&ProviderInvoice) -> &str = |invoice| &invoice.id;
        self.list_all("/v1/invoices", &query, parse::invoice, id, "Invoice list")
            .await
    }

    async fn create_transfer(&self, request: CreateTransfer) -> ProviderResult<ProviderTransfer> {
        let mut form = vec![
            ("amount".to_owned(), request.amount_minor.to_string()),
            ("currency".to_owned(), request.currency.clone()),
            ("destination".to_owned(), request.destination.clone()),
            ("transfer_group".to_owned(), request.transfer_group.clone()),
        ];
        if let Some(charge) = &request.source_charge {
            form.push(("source_transaction".to_owned(), charge.clone()));
        }
        form.extend(metadata_fields(&request.metadata));
        let body = self
            .call(
                Method::POST,
                "/v1/transfers",
                &form,
                Some(&request.idempotency_key),
            )
            .await?;
        parse::transfer(&body).map_err(|e| unreadable("Transfer", e))
    }

    async fn reverse_transfer(
        &self,
        request: CreateTransferReversal,
    ) -> ProviderResult<ProviderTransferReversal> {
        let mut form = vec![("amount".to_owned(), request.amount_minor.to_string())];
        form.extend(metadata_fields(&request.metadata));
        let path = format!("/v1/transfers/{}/reversals", request.transfer_id);
        let body = self
            .call(Method::POST, &path, &form, Some(&request.idempotency_key))
            .await?;
        parse::transfer_reversal(&body).map_err(|e| unreadable("Transfer reversal", e))
    }

    async fn list_transfer_reversals(
        &self,
        transfer_id: &str,
    ) -> ProviderResult<Vec<ProviderTransferReversal>> {
        let path = format!("/v1/transfers/{transfer_id}/reversals");
        let id: fn(&ProviderTransferReversal) -> &str = |reversal| &reversal.id;
        self.list_all(&path, &[], parse::transfer_reversal, id, "Reversal list")
            .await
    }

    async fn list_transfers(&self, transfer_group: &str) -> ProviderResult<Vec<ProviderTransfer>> {
        let query = [("transfer_group".to_owned(), transfer_group.to_owned())];
        let id: fn(&ProviderTransfer) -> &str = |transfer| &transfer.id;
        self.list_all(
            "/v1/transfers",
            &query,
            parse::transfer,
            id,
            "Transfer list",
        )
        .await
    }

    async fn retrieve_refund(&self, id: &str) -> ProviderResult<ProviderRefund> {
        let body = self
            .call(Method::GET, &format!("/v1/refunds/{id}"), &[], None)
            .await?;
        parse::refund(&body).map_err(|e| unreadable("Refund", e))
    }

    async fn list_events(
        &self,
        created_gte_secs: i64,
        starting_after: Option<&str>,
        limit: u32,
    ) -> ProviderResult<EventPage> {
        let mut query = vec![
            ("created[gte]".to_owned(), created_gte_secs.to_string()),
            ("limit".to_owned(), limit.clamp(1, 100).to_string()),
        ];
        if let Some(after) = starting_after {
            query.push(("starting_after".to_owned(), after.to_owned()));
        }
        let body = self.call(Method::GET, "/v1/events", &query, None).await?;
        parse::event_page(&body).map_err(|e| unreadable("event list", e))
    }
}

/// `POST /v1/payment_intents/{id}/confirm`: the call without the object's id, so metrics stay
/// few labels however many objects there are.
fn operation_of(method: &Method, path: &str) -> String {
    let path: Vec<&str> = path
        .split('/')
        .enumerate()
        .map(|(index, segment)| if index == 3 { "{id}" } else { segment })
        .collect();
    format!("{method} {}", path.join("/"))
}
