//! A shop wired to the Stripe emulator through the real adapter: an `App` on a test database,
//! a clock the test moves, and the emulator's own events fed to Kassa's webhook path (signed with
//! the emulator's secret at the app's time). For tests of what happens after checkout.

use std::sync::Arc;
use std::time::Duration;

use kassa_app::App;
use kassa_app::checkout::{CheckoutFlow, CheckoutInput, HostedCheckoutUrls};
use kassa_app::ports::{Actor, CaptureMethod, Clock, ShippingAddress};
use kassa_emulator::{Emulator, EmulatorConfig};
use kassa_stripe::{StripeClient, StripeConfig, StripeWebhookVerifier};
use serde_json::{Value, json};

use crate::{TEST_SECRET_KEY, TestClock, TestDb};

/// The unit price of the shop's products (MUG and TEE).
pub const UNIT: i64 = 1250;
/// Units of each product on hand at the start.
pub const STOCK: i64 = 10;

pub struct EmulatedShop {
    pub app: App,
    pub emulator: Emulator,
    pub clock: Arc<TestClock>,
    pub db: TestDb,
    http: reqwest::Client,
}

/// Where the test shop's hosted page sends the customer back.
pub const SUCCESS_URL: &str = "https://shop.test/thanks?session_id={CHECKOUT_SESSION_ID}";
pub const CANCEL_URL: &str = "https://shop.test/cart";

/// A hosted checkout placed and not yet paid.
pub struct HostedPlaced {
    pub order_id: String,
    pub session_id: String,
    pub url: String,
    pub expires_at: i64,
    pub order_token: String,
}

/// A checkout placed and not yet paid.
#[derive(Debug)]
pub struct Placed {
    pub order_id: String,
    pub intent_id: String,
    pub client_secret: String,
    pub order_token: String,
}

pub fn actor() -> Actor {
    Actor {
        kind: "test".into(),
        request_id: None,
        client_ip: None,
    }
}

/// A storefront's checkout of `cart_id` for Ada, expecting `total_minor`, under `key`.
pub fn checkout_input(
    cart_id: &str,
    total_minor: i64,
    key: &str,
    flow: CheckoutFlow,
) -> CheckoutInput {
    CheckoutInput {
        cart_id: cart_id.to_owned(),
        key_scope: "publishable".into(),
        idempotency_key: Some(key.to_owned()),
        email: "ada@example.com".into(),
        shipping: ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical St".into(),
            city: "London".into(),
            postal_code: "N1 1AA".into(),
            country: "GB".into(),
        },
        expected_total_minor: total_minor,
        flow,
        actor: actor(),
    }
}

impl EmulatedShop {
    pub async fn new(db: TestDb, capture: CaptureMethod) -> EmulatedShop {
        EmulatedShop::with_settings(db, capture, |_| {}).await
    }

    /// The shop with its app's settings changed by `adjust` (a breaker rule, a limit).
    pub async fn with_settings(
        db: TestDb,
        capture: CaptureMethod,
        adjust: impl FnOnce(&mut kassa_app::Settings),
    ) -> EmulatedShop {
        let emulator = Emulator::start(EmulatorConfig::for_tests())
            .await
            .expect("emulator starts");
        let app = EmulatedShop::app_for(&db, &emulator, capture, 0, adjust);
        let clock = app.1;
        let app = app.0;
        for (name, sku) in [("Mug", "MUG"), ("Tee", "TEE")] {
            crate::seed_product(&app, name, sku, UNIT, "eur", STOCK).await;
        }
        let shop = EmulatedShop {
            app,
            emulator,
            clock,
            db,
            http: reqwest::Client::new(),
        };
        // The emulator's clock reads what the app's test clock reads, so event times and
        // cursors into the event list agree.
        let real_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        shop.control(
            "/_emulator/clock/advance",
            json!({"seconds": shop.clock.now_secs() - real_now}),
        )
        .await;
        shop
    }

    /// Another `App` on the same database and emulator (a second `kassa serve` instance).
    pub fn second_instance(&self, capture: CaptureMethod) -> App {
        self.instance_with_fee(capture, 0)
    }

    /// Another instance whose marketplace fee is `platform_fee_bps`.
    pub fn instance_with_fee(&self, capture: CaptureMethod, platform_fee_bps: i64) -> App {
        let (app, clock) =
            EmulatedShop::app_for(&self.db, &self.emulator, capture, platform_fee_bps, |_| {});
        clock.advance(self.clock.now_secs() - clock.now_secs());
        app
    }

    fn app_for(
        db: &TestDb,
        emulator: &Emulator,
        capture: CaptureMethod,
        platform_fee_bps: i64,
        adjust: impl FnOnce(&mut kassa_app::Settings),
    ) -> (App, Arc<TestClock>) {
        let mut config = StripeConfig::new(&emulator.base_url(), &emulator.config().secret_key);
        config.request_timeout = Duration::from_millis(800);
        config.attempts_max = 2;
        config.backoff_base = Duration::from_millis(10);
        let verifier = StripeWebhookVerifier::new(vec![emulator.config().webhook_secret.clone()]);
        let clock = TestClock::new();
        let mut settings = kassa_app::Settings {
            capture_method: capture,
            hosted_checkout: Some(HostedCheckoutUrls {
                success_url: SUCCESS_URL.into(),
                cancel_url: CANCEL_URL.into(),
            }),
            platform_fee_bps,
            ..kassa_app::Settings::default()
        };
        adjust(&mut settings);
        let app = App::new(kassa_app::AppParts {
            store: Arc::new(db.store.clone()),
            provider: Arc::new(StripeClient::new(config).expect("client")),
            clock: clock.clone(),
            ids: std::sync::Arc::new(kassa_app::ids::RandomIds),
            renderer: Arc::new(kassa_http::JsonCheckoutRenderer),
            verifier: Arc::new(verifier),
            order_tokens: kassa_app::order_token::OrderTokens::new(
                TEST_SECRET_KEY,
                30 * 86_400,
                3_600,
            ),
            settings,
        });
        (app, clock)
    }

    /// Places a checkout of `lines` (SKU, quantity) at the shop's prices.
    pub async fn checkout(&self, lines: &[(&str, i64)]) -> Placed {
        self.try_checkout(lines, "checkout")
            .await
            .expect("checkout")
    }

    /// A checkout that may fail (the provider down, stock gone): the cart, and the reply or the
    /// error. `key` distinguishes retries of one cart's checkout from new checkouts.
    pub async fn try_checkout(
        &self,
        lines: &[(&str, i64)],
        key: &str,
    ) -> Result<Placed, kassa_app::AppError> {
        let cart = self.app.create_cart("eur").await?;
        for (sku, quantity) in lines {
            self.app.add_cart_line(&cart.id, sku, *quantity).await?;
        }
        self.checkout_cart(&cart.id, lines, key).await
    }

    /// `POST /v1/carts/{cart_id}/checkout` with idempotency key `{key}-{cart_id}`: the same
    /// key again is the customer's retry (a double click, a lost answer).
    pub async fn checkout_cart(
        &self,
        cart_id: &str,
        lines: &[(&str, i64)],
        key: &str,
    ) -> Result<Placed, kassa_app::AppError> {
        let body = self
            .checkout_with(cart_id, lines, key, CheckoutFlow::Embedded)
            .await?;
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        Ok(Placed {
            order_id: text(&body["order"]["id"]),
            intent_id: text(&body["payment"]["payment_intent_id"]),
            client_secret: text(&body["payment"]["client_secret"]),
            order_token: text(&body["order_token"]),
        })
    }

    /// A new cart of `lines` checked out through the hosted page.
    pub async fn hosted_checkout(&self, lines: &[(&str, i64)]) -> HostedPlaced {
        let cart = self.app.create_cart("eur").await.expect("cart");
        for (sku, quantity) in lines {
            self.app
                .add_cart_line(&cart.id, sku, *quantity)
                .await
                .expect("line");
        }
        let body = self
            .checkout_with(&cart.id, lines, "hosted", CheckoutFlow::Hosted)
            .await
            .expect("hosted checkout");
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        HostedPlaced {
            order_id: text(&body["order"]["id"]),
            session_id: text(&body["checkout_session"]["id"]),
            url: text(&body["checkout_session"]["url"]),
            expires_at: body["checkout_session"]["expires_at"].as_i64().unwrap_or(0),
            order_token: text(&body["order_token"]),
        }
    }

    /// The customer pays the hosted page with `payment_method` (the emulator's control call).
    pub async fn pay_session(&self, session_id: &str, payment_method: &str) -> Value {
        self.control(
            &format!("/_emulator/checkout_sessions/{session_id}/pay"),
            json!({ "payment_method": payment_method }),
        )
        .await
    }

    /// The session's page closes at the emulator, as when its time runs out; the session.
    pub async fn expire_session(&self, session_id: &str) -> Value {
        self.stripe(
            reqwest::Method::POST,
            &format!("/v1/checkout/sessions/{session_id}/expire"),
            &[],
        )
        .await
    }

    /// Either flow's checkout of `cart_id`: the answer's body.
    async fn checkout_with(
        &self,
        cart_id: &str,
        lines: &[(&str, i64)],
        key: &str,
        flow: CheckoutFlow,
    ) -> Result<Value, kassa_app::AppError> {
        let total = lines.iter().map(|(_, q)| q * UNIT).sum();
        let input = checkout_input(cart_id, total, &format!("{key}-{cart_id}"), flow);
        let reply = self.app.checkout(input).await?;
        Ok(serde_json::from_str(&reply.response.body).unwrap_or(Value::Null))
    }

    /// The customer confirms with `payment_method`; returns the intent's status.
    pub async fn confirm(&self, placed: &Placed, payment_method: &str) -> Value {
        self.stripe(
            reqwest::Method::POST,
            &format!("/v1/payment_intents/{}/confirm", placed.intent_id),
            &[("payment_method", payment_method)],
        )
        .await
    }

    /// Checkout, confirmation with `pm_card_visa`, webhooks delivered.
    pub async fn paid(&self, lines: &[(&str, i64)]) -> Placed {
        let placed = self.checkout(lines).await;
        self.confirm(&placed, "pm_card_visa").await;
        self.deliver_events().await;
        placed
    }

    /// A call of the emulator's Stripe API with its secret key (form-encoded).
    pub async fn stripe(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> Value {
        self.http
            .request(method, format!("{}{path}", self.emulator.base_url()))
            .bearer_auth(&self.emulator.config().secret_key)
            .form(form)
            .send()
            .await
            .expect("emulator answers")
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    /// A call of the emulator's control API (`/_emulator/…`, JSON).
    pub async fn control(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.emulator.base_url()))
            .bearer_auth(&self.emulator.config().secret_key)
            .json(&body)
            .send()
            .await
            .expect("emulator answers")
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    /// Serves the shop's app over HTTP with the test keys and no rate limit; its address.
    pub async fn serve(&self) -> std::net::SocketAddr {
        crate::serve_http(self.app.clone(), None, kassa_http::ServerLimits::default()).await
    }

    /// How many calls of Stripe's API the emulator has received so far.
    pub async fn provider_calls(&self) -> u64 {
        let counted = self
            .http
            .get(format!("{}/_emulator/requests", self.emulator.base_url()))
            .bearer_auth(&self.emulator.config().secret_key)
            .send()
            .await
            .expect("emulator answers")
            .json::<Value>()
            .await
            .unwrap_or(Value::Null);
        counted["total"]
            .as_u64()
            .expect("the emulator counts calls")
    }

    /// Stops every injected fault.
    pub async fn clear_faults(&self) {
        self.http
            .delete(format!("{}/_emulator/faults", self.emulator.base_url()))
            .bearer_auth(&self.emulator.config().secret_key)
            .send()
            .await
            .expect("emulator answers");
    }

    /// Makes the emulator's next answers to `endpoint` (e.g. `POST /v1/refunds`) these faults;
    /// panics if the emulator refuses them, so a test never runs without the fault it asked for.
    pub async fn fault(&self, endpoint: &str, answers: Value) {
        let answer = self
            .control(
                "/_emulator/faults",
                json!({"api": [{"endpoint": endpoint, "answers": answers}]}),
            )
            .await;
        assert!(answer.get("error").is_none(), "fault refused: {answer}");
    }

    /// Every event the emulator has sent, oldest first (read page by page, as Stripe lists).
    pub async fn events(&self) -> Vec<Value> {
        let mut events: Vec<Value> = Vec::new();
        loop {
            let path = match events.last().and_then(|last| last["id"].as_str()) {
                Some(last) => format!("/v1/events?limit=100&starting_after={last}"),
                None => "/v1/events?limit=100".to_owned(),
            };
            let list = self.stripe(reqwest::Method::GET, &path, &[]).await;
            events.extend(list["data"].as_array().cloned().unwrap_or_default());
            if list["has_more"] != true {
                break;
            }
        }
        events.reverse();
        events
    }

    /// Feeds every event the emulator has sent to Kassa, oldest first, signed with its secret
    /// at the app's time (duplicates are recorded once).
    pub async fn deliver_events(&self) {
        for event in self.events().await {
            self.deliver(&event).await.expect("recorded");
        }
    }

    /// Feeds one event to Kassa, signed as the emulator signs it, at the app's time.
    pub async fn deliver(
        &self,
        event: &Value,
    ) -> Result<kassa_app::ports::Recorded, kassa_app::webhooks::WebhookError> {
        let body = event.to_string();
        let secret = &self.emulator.config().webhook_secret;
        let header = kassa_emulator::signature_header(secret, self.clock.now_secs(), &body);
        self.app
            .receive_webhook(body.as_bytes(), Some(&header))
            .await
    }

    pub async fn status(&self, order_id: &str) -> String {
        self.app
            .order(order_id)
            .await
            .expect("order")
            .status
            .as_str()
            .to_owned()
    }

    /// (available, reserved, committed) of `sku`.
    pub async fn stock(&self, sku: &str) -> (i64, i64, i64) {
        let level = &self.app.inventory(sku).await.expect("inventory")[0].stock;
        (level.available(), level.reserved, level.committed)
    }

    /// Changes the database by hand (`$1`, `$2`, … are `binds`), as a tamper test does to show
    /// that a check notices.
    pub async fn tamper(&self, sql: &'static str, binds: &[&str]) {
        let pool = sqlx::AnyPool::connect(&self.db.url).await.expect("pool");
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.execute(&pool).await.expect("tamper");
        pool.close().await;
    }

    pub async fn scalar(&self, sql: &'static str) -> i64 {
        let pool = sqlx::AnyPool::connect(&self.db.url).await.expect("pool");
        let value: i64 = sqlx::query_scalar(sql)
            .fetch_one(&pool)
            .await
            .expect("query");
        pool.close().await;
        value
    }

    /// The emulator's refunds of an intent: (count, succeeded total).
    pub async fn provider_refunds(&self, intent: &str) -> (usize, i64) {
        let list = self
            .stripe(
                reqwest::Method::GET,
                &format!("/v1/refunds?payment_intent={intent}&limit=100"),
                &[],
            )
            .await;
        let data = list["data"].as_array().cloned().unwrap_or_default();
        let succeeded = data
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .filter_map(|r| r["amount"].as_i64())
            .sum();
        (data.len(), succeeded)
    }

    /// The emulator's view of an intent.
    pub async fn intent(&self, intent: &str) -> Value {
        self.stripe(
            reqwest::Method::GET,
            &format!("/v1/payment_intents/{intent}"),
            &[],
        )
        .await
    }
}
