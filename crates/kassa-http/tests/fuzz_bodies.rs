//! Property tests over every request body (issue 11): whatever bytes arrive — garbage, or JSON of
//! the right shape carrying hostile values (huge or negative numbers, control characters, very
//! long text) — the answer is a 2xx or a 4xx in the API's error shape: never a 5xx, never a
//! dropped connection (a panicking handler drops it).
//!
//! The server is the real router on a socket, wired to the Stripe emulator through the real
//! adapter, with a cart, a line and an authorized order to aim at. One runtime serves every case;
//! proptest drives the cases and shrinks a failure to its smallest body.

use kassa_app::ports::CaptureMethod;
use kassa_http::{PublicRateLimit, ServerLimits};
use kassa_testkit::shop::EmulatedShop;
use kassa_testkit::{TEST_PUBLISHABLE_KEY, TEST_SECRET_KEY, TestDb};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

/// Cases per property; each is one request.
const CASES: u32 = 400;

struct Target {
    base: String,
    http: reqwest::Client,
    cart_id: String,
    line_id: String,
    order_id: String,
    _shop: EmulatedShop,
}

async fn target() -> Target {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shop = EmulatedShop::new(TestDb::sqlite().await, CaptureMethod::Manual).await;
    let order_id = shop.paid(&[("MUG", 1)]).await.order_id;
    let address = kassa_testkit::serve_http(
        shop.app.clone(),
        PublicRateLimit::new(1_000_000),
        ServerLimits::default(),
    )
    .await;
    let base = format!("http://{address}");
    let http = reqwest::Client::new();
    let cart: Value = http
        .post(format!("{base}/v1/carts"))
        .bearer_auth(TEST_PUBLISHABLE_KEY)
        .json(&json!({"currency": "eur"}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let cart_id = cart["id"].as_str().expect("cart id").to_owned();
    let cart: Value = http
        .post(format!("{base}/v1/carts/{cart_id}/lines"))
        .bearer_auth(TEST_PUBLISHABLE_KEY)
        .json(&json!({"sku": "TEE", "quantity": 1}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let line_id = cart["lines"][0]["id"].as_str().expect("line id").to_owned();
    Target {
        base,
        http,
        cart_id,
        line_id,
        order_id,
        _shop: shop,
    }
}

/// Every operation that reads a body: method, path, key, and a body of the right shape built
/// from hostile values (two texts, two numbers, a flag).
type Shaped = fn(&Values) -> Value;
#[derive(Debug)]
struct Values {
    text: String,
    other_text: String,
    number: i64,
    other_number: i64,
    flag: bool,
}

fn operations(target: &Target) -> Vec<(reqwest::Method, String, &'static str, Shaped)> {
    use reqwest::Method;
    let (cart, line, order) = (&target.cart_id, &target.line_id, &target.order_id);
    vec![
        (Method::POST, "/v1/products".into(), TEST_SECRET_KEY, |v| {
            json!({"name": v.text, "variants": [{"sku": v.other_text, "unit_amount": v.number,
                   "currency": v.text, "attributes": {v.other_text.clone(): v.text}}]})
        }),
        (
            Method::PATCH,
            "/v1/variants/MUG".into(),
            TEST_SECRET_KEY,
            |v| json!({"unit_amount": v.number, "active": v.flag}),
        ),
        (
            Method::PUT,
            "/v1/inventory/TEE".into(),
            TEST_SECRET_KEY,
            |v| json!({"location": v.text, "on_hand": v.number}),
        ),
        (
            Method::POST,
            "/v1/carts".into(),
            TEST_PUBLISHABLE_KEY,
            |v| json!({"currency": v.text}),
        ),
        (
            Method::POST,
            format!("/v1/carts/{cart}/lines"),
            TEST_PUBLISHABLE_KEY,
            |v| json!({"sku": v.text, "quantity": v.number}),
        ),
        (
            Method::PATCH,
            format!("/v1/carts/{cart}/lines/{line}"),
            TEST_PUBLISHABLE_KEY,
            |v| json!({"quantity": v.number}),
        ),
        (
            Method::POST,
            format!("/v1/carts/{cart}/checkout"),
            TEST_PUBLISHABLE_KEY,
            |v| {
                json!({"email": v.text, "expected_total": v.number,
                   "shipping_address": {"name": v.text, "line1": v.other_text, "city": v.text,
                                        "postal_code": v.other_text, "country": v.text}})
            },
        ),
        (
            Method::PATCH,
            format!("/v1/orders/{order}"),
            TEST_SECRET_KEY,
            |v| {
                json!({"lines": [{"sku": v.text, "quantity": v.number},
                             {"sku": "MUG", "quantity": v.other_number}]})
            },
        ),
        (
            Method::POST,
            format!("/v1/orders/{order}/capture"),
            TEST_SECRET_KEY,
            |v| json!({"amount": v.number}),
        ),
        (
            Method::POST,
            format!("/v1/orders/{order}/cancel"),
            TEST_SECRET_KEY,
            |_| json!({}),
        ),
        (Method::POST, "/v1/refunds".into(), TEST_SECRET_KEY, |v| {
            json!({"order_id": v.text, "amount": v.number, "reason": v.other_text,
                   "restock": v.flag})
        }),
        (
            Method::POST,
            "/v1/webhooks/stripe".into(),
            TEST_SECRET_KEY,
            |v| {
                json!({"id": v.text, "type": v.other_text, "created": v.number,
                   "data": {"object": {"id": v.text, "amount": v.other_number}}})
            },
        ),
        (
            Method::PATCH,
            format!("/v1/orders/{order}"),
            TEST_SECRET_KEY,
            |v| {
                json!({"shipping_address": {"name": v.text, "line1": v.other_text, "city": v.text,
                                        "postal_code": v.other_text, "country": v.text}})
            },
        ),
    ]
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,12}",
        "\\PC{0,40}",
        "[\\x00-\\x1f]{1,8}",
        Just("MUG".to_owned()),
        Just("eur".to_owned()),
        (0usize..3).prop_map(|n| "é".repeat(10_000 * (n + 1))),
    ]
}

fn hostile_number() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -3i64..5,
        Just(i64::MAX),
        Just(i64::MIN),
        0i64..1_000_000,
    ]
}

fn hostile_values() -> impl Strategy<Value = Values> {
    (
        hostile_text(),
        hostile_text(),
        hostile_number(),
        hostile_number(),
        any::<bool>(),
    )
        .prop_map(|(text, other_text, number, other_number, flag)| Values {
            text,
            other_text,
            number,
            other_number,
            flag,
        })
}

/// Sends `body` and fails the case on a 5xx, a non-JSON error, or a dropped connection.
async fn send(
    target: &Target,
    (method, path, key): (&reqwest::Method, &str, &str),
    body: Vec<u8>,
    signature: &str,
) -> Result<(), TestCaseError> {
    let answer = target
        .http
        .request(method.clone(), format!("{}{path}", target.base))
        .bearer_auth(key)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key_for(&body))
        .header("Stripe-Signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|error| TestCaseError::fail(format!("{method} {path}: no answer: {error}")))?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    prop_assert!(
        !status.is_server_error(),
        "{method} {path} answered {status}: {text}"
    );
    if !status.is_success() {
        let error: Value = serde_json::from_str(&text).map_err(|_| {
            TestCaseError::fail(format!("{method} {path} {status}: not JSON: {text}"))
        })?;
        prop_assert!(
            error["error"]["code"].is_string(),
            "{method} {path} {status}: {text}"
        );
    }
    Ok(())
}

/// A fresh idempotency key per body, so each case is a new request rather than a replay.
fn key_for(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("fuzz-{:016x}-{}", hasher.finish(), body.len())
}

fn run(property: impl Fn(&tokio::runtime::Runtime, &Target, &mut TestRunner)) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let target = runtime.block_on(target());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    property(&runtime, &target, &mut runner);
}

#[test]
fn arbitrary_bytes_to_any_body_never_get_a_5xx_or_a_dropped_connection() {
    run(|runtime, target, runner| {
        let operations = operations(target);
        let strategy = (
            0..operations.len(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..512),
                any::<String>().prop_map(String::into_bytes),
                "[\\[\\]{}\",:0-9a-z -]{0,64}".prop_map(String::into_bytes),
            ],
            "[ -~]{0,120}",
        );
        let result = runner.run(&strategy, |(index, body, signature)| {
            let (method, path, key, _) = &operations[index];
            runtime.block_on(send(target, (method, path, key), body, &signature))
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    });
}

#[test]
fn well_shaped_bodies_with_hostile_values_never_get_a_5xx() {
    run(|runtime, target, runner| {
        let operations = operations(target);
        let strategy = (0..operations.len(), hostile_values());
        let result = runner.run(&strategy, |(index, values)| {
            let (method, path, key, shaped) = &operations[index];
            let body = serde_json::to_vec(&shaped(&values))
                .map_err(|error| TestCaseError::fail(format!("the body serializes: {error}")))?;
            runtime.block_on(send(target, (method, path, key), body, "t=1,v1=00"))
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    });
}
