//! The whole product as a shop meets it: the real `kassa serve` binary in sandbox mode on each
//! backend, a checkout paid through the built-in emulator with Stripe.js's call, webhooks
//! duplicated and reordered by the emulator — and the order ends paid exactly once.

use std::process::Command;
use std::time::{Duration, Instant};

use kassa_testkit::{TestDb, both_backends};
use serde_json::{Value, json};

mod common;

use common::{PUBLISHABLE, SECRET};

/// `kassa serve` in sandbox mode, with a client.
struct Kassa {
    _server: common::Kassa,
    base: String,
    http: reqwest::Client,
}

fn start(database_url: &str) -> Kassa {
    start_with(database_url, None, &[])
}

/// `kassa serve` with its logs (stderr) written to `logs` when given, and extra settings.
fn start_with(
    database_url: &str,
    logs: Option<&std::path::Path>,
    settings: &[(&str, &str)],
) -> Kassa {
    let server = common::serve(database_url, settings, logs);
    Kassa {
        base: server.base.clone(),
        _server: server,
        http: reqwest::Client::new(),
    }
}

fn uuid_like() -> String {
    format!("{}-{:?}", std::process::id(), Instant::now())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

impl Kassa {
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        key: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self.http.request(method, url).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json")
    }

    async fn get(&self, path: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("{}{path}", self.base),
            SECRET,
            None,
        )
        .await
    }
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A checkout of 2 TEE-M and 1 MUG, confirmed at the emulator as Stripe.js would (publishable
/// key and client secret); returns the order id.
async fn checkout_and_confirm(kassa: &Kassa, sandbox: &Value) -> String {
    let stripe = sandbox["stripe_api_base"]
        .as_str()
        .expect("emulator address");
    let cart = kassa
        .call(
            reqwest::Method::POST,
            &format!("{}/v1/carts", kassa.base),
            PUBLISHABLE,
            Some(json!({"currency": "eur"})),
        )
        .await;
    let cart_id = cart["id"].as_str().expect("cart");
    let lines = format!("{}/v1/carts/{cart_id}/lines", kassa.base);
    kassa
        .call(
            reqwest::Method::POST,
            &lines,
            PUBLISHABLE,
            Some(json!({"sku": "TEE-M", "quantity": 2})),
        )
        .await;
    kassa
        .call(
            reqwest::Method::POST,
            &lines,
            PUBLISHABLE,
            Some(json!({"sku": "MUG", "quantity": 1})),
        )
        .await;
    let checkout = kassa
        .http
        .post(format!("{}/v1/carts/{cart_id}/checkout", kassa.base))
        .bearer_auth(PUBLISHABLE)
        .header("Idempotency-Key", "e2e-1")
        .json(&json!({
            "email": "ada@example.com",
            "shipping_address": {"name": "Ada", "line1": "1 St", "city": "London", "postal_code": "N1", "country": "GB"},
            "expected_total": 2 * 1999 + 1250
        }))
        .send()
        .await
        .expect("answers");
    assert_eq!(checkout.status().as_u16(), 201);
    let checkout: Value = checkout.json().await.expect("json");
    let order_id = checkout["order"]["id"].as_str().expect("order").to_owned();
    let intent = checkout["payment"]["payment_intent_id"]
        .as_str()
        .expect("intent")
        .to_owned();
    let client_secret = checkout["payment"]["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    // The storefront confirms exactly as Stripe.js would: publishable key + client secret.
    let confirmed: Value = kassa
        .http
        .post(format!("{stripe}/v1/payment_intents/{intent}/confirm"))
        .bearer_auth(sandbox["stripe_publishable_key"].as_str().expect("pk"))
        .form(&[
            ("payment_method", "pm_card_visa"),
            ("client_secret", client_secret.as_str()),
        ])
        .send()
        .await
        .expect("emulator answers")
        .json()
        .await
        .expect("json");
    assert_eq!(confirmed["status"], "succeeded");

    order_id
}

async fn checkout_paid_through_the_emulator_ends_paid_once_despite_duplicate_and_reordered_webhooks(
    db: TestDb,
) {
    let kassa = start(&db.url);
    let sandbox = kassa.get("/v1/sandbox").await;
    let stripe = sandbox["stripe_api_base"]
        .as_str()
        .expect("emulator address")
        .to_owned();
    let stripe_secret = sandbox["stripe_secret_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let faults = json!({"webhooks": {"copies": 3, "reorder": true}});
    kassa
        .call(
            reqwest::Method::POST,
            &format!("{stripe}/_emulator/faults"),
            &stripe_secret,
            Some(faults),
        )
        .await;

    let order_id = checkout_and_confirm(&kassa, &sandbox).await;

    let order_path = format!("/v1/orders/{order_id}");
    wait_until("the order to be paid", async || {
        kassa.get(&order_path).await["status"] == "paid"
    })
    .await;
    // Let every duplicate arrive (3 copies of created, charge.succeeded, succeeded), then check
    // that nothing applied twice.
    wait_until("all deliveries", async || {
        let deliveries = kassa
            .call(
                reqwest::Method::GET,
                &format!("{stripe}/_emulator/webhook_deliveries"),
                &stripe_secret,
                None,
            )
            .await;
        deliveries["data"].as_array().map_or(0, Vec::len) >= 9
    })
    .await;
    let order = kassa.get(&order_path).await;
    assert_eq!(
        (order["status"].as_str(), order["captured_amount"].as_i64()),
        (Some("paid"), Some(5248))
    );
    let tee = kassa.get("/v1/inventory/TEE-M").await;
    assert_eq!(
        (
            tee["locations"][0]["reserved"].as_i64(),
            tee["locations"][0]["committed"].as_i64()
        ),
        (Some(0), Some(2))
    );
    let events = kassa.get(&format!("{order_path}/events")).await;
    let actions: Vec<String> = events["data"]
        .as_array()
        .expect("trail")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["entity_type"].as_str().unwrap_or(""),
                e["after"].as_str().unwrap_or("")
            )
        })
        .collect();
    for expected in [
        "order pending_payment",
        "payment creating",
        "payment requires_payment_method",
        "payment succeeded",
        "order paid",
    ] {
        assert_eq!(
            actions.iter().filter(|a| *a == expected).count(),
            1,
            "{expected} once in {actions:?}"
        );
    }
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "reservation committed")
            .count(),
        2,
        "{actions:?}"
    );

    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    let outbox: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(outbox, 1, "exactly one order.paid notification");
    let inbox: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(inbox, 3, "each distinct event recorded once");
    pool.close().await;

    // The operator's scraper sees what happened, in Prometheus text.
    let metrics = kassa
        .http
        .get(format!("{}/metrics", kassa.base))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    for expected in [
        "kassa_checkouts_total{result=\"created\"} 1",
        // payment_intent.succeeded applied; payment_intent.created and charge.succeeded not
        // acted on.
        "kassa_webhook_events{status=\"processed\"} 1",
        "kassa_webhook_events{status=\"ignored\"} 2",
        "kassa_reservations_held_units 0",
        "kassa_provider_call_seconds_count{operation=\"POST /v1/payment_intents\",outcome=\"ok\"} 1",
        "kassa_webhook_lag_seconds_bucket",
        "kassa_work_due{queue=\"outbox\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} in:\n{metrics}");
    }
}
both_backends!(
    checkout_paid_through_the_emulator_ends_paid_once_despite_duplicate_and_reordered_webhooks
);

/// `kassa {command}` run against the sandbox listening on `listen`, as an operator would.
fn operator_command(listen: &str, database_url: &str, command: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kassa"))
        .arg(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KASSA_LISTEN", listen)
        .env("KASSA_DATABASE_URL", database_url)
        .env("KASSA_SECRET_KEY", SECRET)
        .env("KASSA_PUBLISHABLE_KEY", PUBLISHABLE)
        .output()
        .unwrap_or_else(|error| panic!("kassa {command} runs: {error}"))
}

/// Makes the sandbox's emulator drop every webhook from now on (the endpoint is down); its
/// base URL and secret key.
async fn drop_every_webhook(kassa: &Kassa, sandbox: &Value) -> (String, String) {
    let stripe = sandbox["stripe_api_base"]
        .as_str()
        .expect("emulator")
        .to_owned();
    let stripe_secret = sandbox["stripe_secret_key"]
        .as_str()
        .expect("key")
        .to_owned();
    kassa
        .call(
            reqwest::Method::POST,
            &format!("{stripe}/_emulator/faults"),
            &stripe_secret,
            Some(json!({"webhooks": {"drop": true}})),
        )
        .await;
    (stripe, stripe_secret)
}

/// Every webhook is dropped (the endpoint was down): the confirmed order stays unpaid until
/// `kassa reconcile` asks the running sandbox to reconcile; then it is paid, stock committed.
async fn risk_r1_kassa_reconcile_recovers_a_payment_whose_webhooks_were_all_lost(db: TestDb) {
    let kassa = start(&db.url);
    let sandbox = kassa.get("/v1/sandbox").await;
    let (stripe, stripe_secret) = drop_every_webhook(&kassa, &sandbox).await;
    let order_id = checkout_and_confirm(&kassa, &sandbox).await;
    wait_until("the payment's webhooks to be dropped", async || {
        let deliveries = kassa
            .call(
                reqwest::Method::GET,
                &format!("{stripe}/_emulator/webhook_deliveries"),
                &stripe_secret,
                None,
            )
            .await;
        deliveries["data"].as_array().is_some_and(|list| {
            list.iter().any(|d| {
                d["type"] == "payment_intent.succeeded" && d["outcome"] == "dropped (fault)"
            })
        })
    })
    .await;
    let order_path = format!("/v1/orders/{order_id}");
    assert_eq!(kassa.get(&order_path).await["status"], "pending_payment");

    let listen = kassa.base.trim_start_matches("http://").to_owned();
    let output = operator_command(&listen, &db.url, "reconcile");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("payments checked"), "{stdout}");
    let order = kassa.get(&order_path).await;
    assert_eq!(
        (order["status"].as_str(), order["captured_amount"].as_i64()),
        (Some("paid"), Some(5248))
    );
    let tee = kassa.get("/v1/inventory/TEE-M").await;
    assert_eq!(tee["locations"][0]["committed"].as_i64(), Some(2));

    // Afterwards the books agree with the provider: `kassa check` passes.
    let output = operator_command(&listen, &db.url, "check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("invariant check: PASS"), "{stdout}");
}
both_backends!(risk_r1_kassa_reconcile_recovers_a_payment_whose_webhooks_were_all_lost);

/// What Kassa logs is JSON a collector reads, every request's lines carry its id, and nothing in
/// them is a secret, a client secret or a customer's e-mail, name or street (risk S8).
async fn risk_s8_logs_carry_request_ids_and_no_secrets_or_personal_data(db: TestDb) {
    let logs = std::env::temp_dir().join(format!("kassa-e2e-logs-{}.log", uuid_like()));
    let kassa = start_with(&db.url, Some(&logs), &[]);
    let sandbox = kassa.get("/v1/sandbox").await;
    let order_id = checkout_and_confirm(&kassa, &sandbox).await;
    let order_path = format!("/v1/orders/{order_id}");
    wait_until("the order to be paid", async || {
        kassa.get(&order_path).await["status"] == "paid"
    })
    .await;
    // Requests that are refused, logged as warnings: a forged webhook, a wrong key.
    let forged = kassa
        .http
        .post(format!("{}/v1/webhooks/stripe", kassa.base))
        .header("stripe-signature", "t=1,v1=00")
        .body("{\"id\":\"evt_forged\"}")
        .send()
        .await
        .expect("answers");
    assert_eq!(forged.status().as_u16(), 400);
    let text = std::fs::read_to_string(&logs).expect("logs");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["span"]["request_id"].is_string()),
        "request ids in the logs: {text}"
    );
    let client_secret_marker = "_secret_";
    // The name as a JSON string (quoted): bare, three letters turn up inside random ids.
    for secret in [
        "ada@example.com",
        "\"Ada\"",
        "1 St",
        SECRET,
        PUBLISHABLE,
        client_secret_marker,
        sandbox["stripe_secret_key"].as_str().expect("key"),
        sandbox["webhook_secret"].as_str().expect("whsec"),
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} appears in the logs:\n{text}"
        );
    }
    let _ = std::fs::remove_file(&logs);
}
both_backends!(risk_s8_logs_carry_request_ids_and_no_secrets_or_personal_data);

/// Nobody runs anything: with every webhook dropped, the periodic reconciliation inside
/// `kassa serve` makes the confirmed order paid within its period (risk R1).
async fn risk_r1_the_periodic_reconciliation_recovers_dropped_webhooks(db: TestDb) {
    let kassa = start_with(&db.url, None, &[("KASSA_RECONCILE_INTERVAL_SECS", "5")]);
    let sandbox = kassa.get("/v1/sandbox").await;
    drop_every_webhook(&kassa, &sandbox).await;
    let order_id = checkout_and_confirm(&kassa, &sandbox).await;
    let order_path = format!("/v1/orders/{order_id}");
    assert_eq!(kassa.get(&order_path).await["status"], "pending_payment");
    wait_until("the periodic reconciliation to make it paid", async || {
        kassa.get(&order_path).await["status"] == "paid"
    })
    .await;
}
both_backends!(risk_r1_the_periodic_reconciliation_recovers_dropped_webhooks);

impl Kassa {
    /// POST with a key and an `Idempotency-Key`: the status and the body.
    async fn post_keyed(
        &self,
        path: &str,
        key: &str,
        idempotency_key: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency_key)
            .json(&body)
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }
}

/// The subscription flow of docs/guides/subscriptions.md, on the real binary in sandbox mode, with every webhook
/// delivered twice and out of order: a plan, a subscription paid on the hosted page, its
/// credits granted once, spent once per key and never overdrawn, a renewal's credits, and a
/// cancel at the period's end.
async fn a_subscription_grants_its_credits_once_and_spending_never_overdraws(db: TestDb) {
    let kassa = start(&db.url);
    let sandbox = kassa.get("/v1/sandbox").await;
    let stripe = sandbox["stripe_api_base"]
        .as_str()
        .expect("emulator")
        .to_owned();
    let stripe_secret = sandbox["stripe_secret_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let emulator = async |path: &str, body: Value| {
        kassa
            .call(
                reqwest::Method::POST,
                &format!("{stripe}{path}"),
                &stripe_secret,
                Some(body),
            )
            .await
    };
    emulator(
        "/_emulator/faults",
        json!({"webhooks": {"copies": 2, "reorder": true}}),
    )
    .await;

    let plan = kassa
        .call(
            reqwest::Method::POST,
            &format!("{}/v1/plans", kassa.base),
            SECRET,
            Some(json!({"name": "Pro", "unit_amount": 900, "currency": "eur", "interval": "month", "credits": 500})),
        )
        .await;
    let plan_id = plan["id"].as_str().expect("plan").to_owned();
    let request = json!({"plan_id": plan_id, "email": "ada@example.com"});
    let (status, started) = kassa
        .post_keyed(
            "/v1/subscriptions/checkout_session",
            PUBLISHABLE,
            "sub-1",
            request.clone(),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let (status, replayed) = kassa
        .post_keyed(
            "/v1/subscriptions/checkout_session",
            PUBLISHABLE,
            "sub-1",
            request,
        )
        .await;
    assert_eq!((status, &replayed), (201, &started));
    let customer = started["customer_id"]
        .as_str()
        .expect("customer")
        .to_owned();
    let session = started["checkout_session"]["id"].as_str().expect("session");
    let paid = emulator(
        &format!("/_emulator/checkout_sessions/{session}/pay"),
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(paid["status"], "complete", "{paid}");

    let credits = format!("/v1/customers/{customer}/credits");
    wait_until("the first period's credits", async || {
        kassa.get(&credits).await["balance"] == 500
    })
    .await;
    // Where the hosted page sends the subscriber back, in the sandbox's demo storefront.
    let returned = kassa
        .http
        .get(format!("{}/demo/return?session_id={session}", kassa.base))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("page");
    assert!(
        returned.contains("<strong id=\"subscription-status\">active</strong>"),
        "{returned}"
    );
    let view = kassa.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(view["subscriptions"][0]["status"], "active", "{view}");
    assert_eq!(view["credits"]["balance"], 500);

    let debit = format!("/v1/customers/{customer}/credits/debit");
    let (status, spent) = kassa
        .post_keyed(
            &debit,
            SECRET,
            "spend-1",
            json!({"amount": 200, "reason": "report"}),
        )
        .await;
    assert_eq!(
        (status, spent["amount"].as_i64()),
        (201, Some(-200)),
        "{spent}"
    );
    let (status, again) = kassa
        .post_keyed(
            &debit,
            SECRET,
            "spend-1",
            json!({"amount": 200, "reason": "report"}),
        )
        .await;
    assert_eq!((status, &again), (201, &spent), "the same key spends once");
    let (status, reused) = kassa
        .post_keyed(
            &debit,
            SECRET,
            "spend-1",
            json!({"amount": 250, "reason": "report"}),
        )
        .await;
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let (status, refused) = kassa
        .post_keyed(&debit, SECRET, "spend-2", json!({"amount": 301}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "insufficient_credits");
    assert_eq!(refused["error"]["balance"], 300);
    let (status, missing) = kassa
        .post_keyed(&debit, SECRET, "", json!({"amount": 1}))
        .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (400, Some("idempotency_key_required"))
    );

    // A month passes: the renewal's credits, once.
    emulator("/_emulator/clock/advance", json!({"seconds": 30 * 86_400})).await;
    wait_until("the renewal's credits", async || {
        kassa.get(&credits).await["balance"] == 800
    })
    .await;
    let subscription = started["subscription_id"].as_str().expect("subscription");
    let (status, canceling) = kassa
        .post_keyed(
            &format!("/v1/subscriptions/{subscription}/cancel"),
            SECRET,
            "cancel-1",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{canceling}");
    assert_eq!(canceling["cancel_at_period_end"], true);
    assert_eq!(canceling["status"], "active");
    // Let both copies of every event arrive, then check nothing was granted twice.
    let get_emulator = async |path: &str| {
        kassa
            .call(
                reqwest::Method::GET,
                &format!("{stripe}{path}"),
                &stripe_secret,
                None,
            )
            .await
    };
    let events = get_emulator("/v1/events?limit=100").await["data"]
        .as_array()
        .map_or(0, Vec::len);
    wait_until("all deliveries", async || {
        let deliveries = get_emulator("/_emulator/webhook_deliveries").await;
        deliveries["data"].as_array().map_or(0, Vec::len) >= 2 * events
    })
    .await;
    let ledger = kassa.get(&credits).await;
    assert_eq!(ledger["balance"], 800);
    let kinds: Vec<&str> = ledger["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["grant", "debit", "grant"], "{ledger}");
}
both_backends!(a_subscription_grants_its_credits_once_and_spending_never_overdraws);
