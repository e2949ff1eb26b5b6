//! Under load, nothing confirmed is lost: the real `kassa serve` in sandbox mode on each backend,
//! 32 customers at once each buying in a loop (cart, line, checkout, confirmation at the
//! emulator) for `KASSA_TEST_LOAD_SECS` seconds (5 in the suite; the measurement is 20),
//! then every confirmed payment must be `paid` within 90 s and committed stock must equal what
//! the paid orders hold. Throughput is not asserted here: the benchmark command measures it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{PUBLISHABLE, SECRET};
use kassa_testkit::{TestDb, both_backends};
use serde_json::{Value, json};

const CUSTOMERS: usize = 32;
const PAID_WITHIN: Duration = Duration::from_secs(90);
const UNIT_AMOUNT: i64 = 500;
const STOCK: i64 = 1_000_000;

fn start(database_url: &str) -> common::Kassa {
    common::serve(database_url, &[("KASSA_SANDBOX_SEED", "none")], None)
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    stripe: String,
    stripe_pk: String,
}

impl Client {
    async fn send(&self, request: reqwest::RequestBuilder) -> Option<Value> {
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> Option<Value> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body);
        self.send(request).await
    }

    /// One purchase; the order id once its payment was confirmed at the emulator.
    async fn buy(&self, n: usize) -> Option<String> {
        let cart = self
            .post("/v1/carts", PUBLISHABLE, json!({"currency": "eur"}))
            .await?;
        let cart = cart["id"].as_str()?.to_owned();
        let line = json!({"sku": "LOAD", "quantity": 1});
        self.post(&format!("/v1/carts/{cart}/lines"), PUBLISHABLE, line)
            .await?;
        let checkout = self
            .http
            .post(format!("{}/v1/carts/{cart}/checkout", self.base))
            .bearer_auth(PUBLISHABLE)
            .header("Idempotency-Key", format!("load-{n}-{cart}"))
            .json(&json!({
                "email": "load@example.com",
                "shipping_address": {"name": "Load", "line1": "1 St", "city": "London",
                                     "postal_code": "N1", "country": "GB"},
                "expected_total": UNIT_AMOUNT
            }));
        let placed = self.send(checkout).await?;
        let intent = placed["payment"]["payment_intent_id"].as_str()?;
        let secret = placed["payment"]["client_secret"].as_str()?;
        let confirm = self
            .http
            .post(format!(
                "{}/v1/payment_intents/{intent}/confirm",
                self.stripe
            ))
            .bearer_auth(&self.stripe_pk)
            .form(&[
                ("payment_method", "pm_card_visa"),
                ("client_secret", secret),
            ]);
        let confirmed = self.send(confirm).await?;
        (confirmed["status"] == "succeeded")
            .then(|| placed["order"]["id"].as_str().map(str::to_owned))?
    }
}

fn load_secs() -> u64 {
    std::env::var("KASSA_TEST_LOAD_SECS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5)
}

async fn risk_r1_every_confirmed_payment_is_paid_after_a_load(db: TestDb) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kassa = start(&db.url);
    let http = reqwest::Client::new();
    let sandbox: Value = http
        .get(format!("{}/v1/sandbox", kassa.base))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let client = Client {
        http: http.clone(),
        base: kassa.base.clone(),
        stripe: sandbox["stripe_api_base"]
            .as_str()
            .expect("emulator")
            .to_owned(),
        stripe_pk: sandbox["stripe_publishable_key"]
            .as_str()
            .expect("pk")
            .to_owned(),
    };
    let product = json!({"name": "Load", "variants": [{"sku": "LOAD", "unit_amount": UNIT_AMOUNT, "currency": "eur"}]});
    client
        .post("/v1/products", SECRET, product)
        .await
        .expect("product");
    let stock = reqwest::Client::new()
        .put(format!("{}/v1/inventory/LOAD", kassa.base))
        .bearer_auth(SECRET)
        .json(&json!({"on_hand": STOCK}))
        .send()
        .await
        .expect("answers");
    assert!(stock.status().is_success());

    let stop = Arc::new(AtomicBool::new(false));
    let customers: Vec<_> = (0..CUSTOMERS)
        .map(|customer| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut confirmed = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if let Some(order) = client.buy(customer * 1_000_000 + n).await {
                        confirmed.push(order);
                    }
                }
                confirmed
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(load_secs())).await;
    stop.store(true, Ordering::Relaxed);
    let mut confirmed = Vec::new();
    for customer in customers {
        confirmed.extend(customer.await.expect("customer"));
    }
    assert!(!confirmed.is_empty(), "the load confirmed payments");

    // Every confirmed payment paid within the bound, by webhook or by reconciliation.
    let deadline = Instant::now() + PAID_WITHIN;
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    loop {
        let paid: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'paid'")
            .fetch_one(&pool)
            .await
            .expect("count");
        if usize::try_from(paid).unwrap_or(0) >= confirmed.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{paid} of {} confirmed payments paid after {PAID_WITHIN:?}",
            confirmed.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unpaid_confirmed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE p.status = 'succeeded' AND o.status <> 'paid'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(unpaid_confirmed, 0);
    let sold: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) FROM order_lines l
         JOIN orders o ON o.id = l.order_id WHERE o.status = 'paid'",
    )
    .fetch_one(&pool)
    .await
    .expect("sum");
    let committed: i64 =
        sqlx::query_scalar("SELECT committed FROM inventory_levels WHERE sku = 'LOAD'")
            .fetch_one(&pool)
            .await
            .expect("committed");
    assert_eq!(
        committed, sold,
        "committed stock equals what the paid orders hold"
    );
    let check: Value = http
        .post(format!("{}/v1/admin/check", kassa.base))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        check["passed"], true,
        "the invariants hold after the load: {check}"
    );
    eprintln!(
        "load: {} customers, {} s, {} confirmed payments, all paid",
        CUSTOMERS,
        load_secs(),
        confirmed.len()
    );
    pool.close().await;
}
both_backends!(risk_r1_every_confirmed_payment_is_paid_after_a_load);
