//! Several instances on one PostgreSQL, as a shop runs them: `kassa sim` stands in for Stripe,
//! two `kassa serve` processes in live mode share the database, orders are placed through both
//! with manual capture and a one-second window, and the workers of both race to capture them.
//! Each order is captured once, counted at the emulator, and every order ends paid.

use std::time::{Duration, Instant};

use kassa_testkit::TestDb;
use serde_json::{Value, json};

mod common;

use common::{PUBLISHABLE, Process, SECRET, Sim, url_in};

const ORDERS: usize = 8;

fn spawn(command: &str, env: &[(&str, &str)], lines: usize) -> (Process, Vec<String>) {
    common::spawn(command, env, lines, None)
}

/// `kassa serve` in live mode against `sim` on `database_url`, manual capture, one more
/// `setting`.
fn live_env<'a>(
    sim: &'a Sim,
    database_url: &'a str,
    setting: (&'a str, &'a str),
) -> Vec<(&'a str, &'a str)> {
    let mut env = sim.live_env(database_url, "127.0.0.1:0");
    env.push(("KASSA_CAPTURE_METHOD", "manual"));
    env.push(setting);
    env
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json")
}

/// `POST /v1/admin/check` on `base`: the invariants of docs/risks.md hold, against the provider too.
async fn assert_invariants_hold(http: &reqwest::Client, base: &str) {
    let check = json_of(
        http.post(format!("{base}/v1/admin/check"))
            .bearer_auth(SECRET),
    )
    .await;
    assert_eq!(check["passed"], true, "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgresql_capture_each_order_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::postgres().await;
    let sim = Sim::start();
    let (stripe, stripe_secret, stripe_publishable) = (
        sim.base.clone(),
        sim.secret.clone(),
        sim.publishable.clone(),
    );
    let live = live_env(&sim, &db.url, ("KASSA_MODIFICATION_WINDOW_SECS", "1"));
    let (_first, first) = spawn("serve", &live, 1);
    let (_second, second) = spawn("serve", &live, 1);
    let bases = [url_in(&first[0]), url_in(&second[0])];
    let http = reqwest::Client::new();
    for base in &bases {
        sim.send_webhooks_to(base).await;
    }
    let product = json!({"name": "Mug", "variants": [{"sku": "MUG", "unit_amount": 1250, "currency": "eur"}]});
    json_of(
        http.post(format!("{}/v1/products", bases[0]))
            .bearer_auth(SECRET)
            .json(&product),
    )
    .await;
    json_of(
        http.put(format!("{}/v1/inventory/MUG", bases[0]))
            .bearer_auth(SECRET)
            .json(&json!({"on_hand": 100})),
    )
    .await;

    let mut orders = Vec::new();
    for n in 0..ORDERS {
        let base = &bases[n % 2];
        let cart = json_of(
            http.post(format!("{base}/v1/carts"))
                .bearer_auth(PUBLISHABLE)
                .json(&json!({"currency": "eur"})),
        )
        .await;
        let cart = cart["id"].as_str().expect("cart").to_owned();
        let line = json!({"sku": "MUG", "quantity": 1});
        json_of(
            http.post(format!("{base}/v1/carts/{cart}/lines"))
                .bearer_auth(PUBLISHABLE)
                .json(&line),
        )
        .await;
        let body = json!({"email": "ada@example.com", "expected_total": 1250,
            "shipping_address": {"name": "Ada", "line1": "1 St", "city": "London", "postal_code": "N1", "country": "GB"}});
        let placed = json_of(
            http.post(format!("{base}/v1/carts/{cart}/checkout"))
                .bearer_auth(PUBLISHABLE)
                .header("Idempotency-Key", format!("multi-{n}"))
                .json(&body),
        )
        .await;
        let intent = placed["payment"]["payment_intent_id"]
            .as_str()
            .expect("intent");
        let secret = placed["payment"]["client_secret"].as_str().expect("secret");
        let confirmed = json_of(
            http.post(format!("{stripe}/v1/payment_intents/{intent}/confirm"))
                .bearer_auth(&stripe_publishable)
                .form(&[
                    ("payment_method", "pm_card_visa"),
                    ("client_secret", secret),
                ]),
        )
        .await;
        assert_eq!(confirmed["status"], "requires_capture");
        orders.push(placed["order"]["id"].as_str().expect("order").to_owned());
    }

    // Both instances' scheduled-capture workers find the orders due after the window.
    let deadline = Instant::now() + Duration::from_secs(60);
    for order in &orders {
        loop {
            let status = json_of(
                http.get(format!("{}/v1/orders/{order}", bases[1]))
                    .bearer_auth(SECRET),
            )
            .await;
            if status["status"] == "paid" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{order} still {}",
                status["status"]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let captured = json_of(
        http.get(format!("{stripe}/v1/events?type=charge.captured&limit=100"))
            .bearer_auth(&stripe_secret),
    )
    .await;
    assert_eq!(
        captured["data"].as_array().map(Vec::len),
        Some(ORDERS),
        "each order captured once at the provider"
    );
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    let audit: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'capture_started'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        audit,
        i64::try_from(ORDERS).unwrap_or(0),
        "one capture started per order, by one instance"
    );
    pool.close().await;
    assert_invariants_hold(&http, &bases[1]).await;
}

/// An instance killed (SIGKILL) in the middle of a capture leaves the order marked; once the
/// lease (`KASSA_OPERATION_RESUME_SECS`) has passed, the other instance's worker finishes the
/// capture with the same key, once (risk R2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_r2_a_capture_whose_instance_is_killed_is_taken_over_after_the_lease() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::postgres().await;
    let sim = Sim::start();
    let (stripe, stripe_secret, stripe_publishable) = (
        sim.base.clone(),
        sim.secret.clone(),
        sim.publishable.clone(),
    );
    let live = live_env(&sim, &db.url, ("KASSA_OPERATION_RESUME_SECS", "2"));
    let (mut doomed, first) = spawn("serve", &live, 1);
    let (_survivor, second) = spawn("serve", &live, 1);
    let (doomed_base, base) = (url_in(&first[0]), url_in(&second[0]));
    let http = reqwest::Client::new();
    sim.send_webhooks_to(&base).await;
    let product = json!({"name": "Mug", "variants": [{"sku": "MUG", "unit_amount": 1250, "currency": "eur"}]});
    json_of(
        http.post(format!("{base}/v1/products"))
            .bearer_auth(SECRET)
            .json(&product),
    )
    .await;
    json_of(
        http.put(format!("{base}/v1/inventory/MUG"))
            .bearer_auth(SECRET)
            .json(&json!({"on_hand": 10})),
    )
    .await;
    let cart = json_of(
        http.post(format!("{base}/v1/carts"))
            .bearer_auth(PUBLISHABLE)
            .json(&json!({"currency": "eur"})),
    )
    .await;
    let cart = cart["id"].as_str().expect("cart").to_owned();
    json_of(
        http.post(format!("{base}/v1/carts/{cart}/lines"))
            .bearer_auth(PUBLISHABLE)
            .json(&json!({"sku": "MUG", "quantity": 1})),
    )
    .await;
    let body = json!({"email": "ada@example.com", "expected_total": 1250,
        "shipping_address": {"name": "Ada", "line1": "1 St", "city": "London", "postal_code": "N1", "country": "GB"}});
    let placed = json_of(
        http.post(format!("{base}/v1/carts/{cart}/checkout"))
            .bearer_auth(PUBLISHABLE)
            .header("Idempotency-Key", "killed")
            .json(&body),
    )
    .await;
    let order = placed["order"]["id"].as_str().expect("order").to_owned();
    let intent = placed["payment"]["payment_intent_id"]
        .as_str()
        .expect("intent");
    let secret = placed["payment"]["client_secret"].as_str().expect("secret");
    json_of(
        http.post(format!("{stripe}/v1/payment_intents/{intent}/confirm"))
            .bearer_auth(&stripe_publishable)
            .form(&[
                ("payment_method", "pm_card_visa"),
                ("client_secret", secret),
            ]),
    )
    .await;
    let status_of = async |http: &reqwest::Client| {
        json_of(
            http.get(format!("{base}/v1/orders/{order}"))
                .bearer_auth(SECRET),
        )
        .await["status"]
            .clone()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of(&http).await != "authorized" {
        assert!(Instant::now() < deadline, "authorized by the webhook");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The provider holds the capture; the instance asking for it dies while it waits.
    let hold = json!({"api": [{"endpoint": "POST /v1/payment_intents/*/capture", "answers": [{"hang_ms": 0}]}]});
    json_of(
        http.post(format!("{stripe}/_emulator/faults"))
            .bearer_auth(&stripe_secret)
            .json(&hold),
    )
    .await;
    let doomed_capture = {
        let http = http.clone();
        let url = format!("{doomed_base}/v1/orders/{order}/capture");
        tokio::spawn(async move { http.post(url).bearer_auth(SECRET).send().await })
    };
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    while sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM orders WHERE pending_operation = 'capture'",
    )
    .fetch_one(&pool)
    .await
    .expect("count")
        == 0
    {
        assert!(Instant::now() < deadline, "the capture started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    doomed.kill();
    assert!(
        doomed_capture.await.expect("task").is_err(),
        "the killed instance never answered"
    );

    let deadline = Instant::now() + Duration::from_secs(45);
    while status_of(&http).await != "paid" {
        assert!(
            Instant::now() < deadline,
            "the survivor finished the capture"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let captured = json_of(
        http.get(format!("{stripe}/v1/events?type=charge.captured&limit=100"))
            .bearer_auth(&stripe_secret),
    )
    .await;
    assert_eq!(
        captured["data"].as_array().map(Vec::len),
        Some(1),
        "captured once"
    );
    pool.close().await;
    assert_invariants_hold(&http, &base).await;
}
