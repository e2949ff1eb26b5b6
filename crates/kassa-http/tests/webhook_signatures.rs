//! `POST /v1/webhooks/stripe` with the real verifier, on both backends: only a correctly signed,
//! fresh delivery is recorded; every refusal is the same 400 that names no check (risks G6, S8).
//! Deliveries are signed by the emulator's signer, which shares no code with the verifier.

use std::sync::Arc;

use kassa_app::ports::SystemClock;
use kassa_http::ServerLimits;
use kassa_stripe::StripeWebhookVerifier;
use kassa_testkit::provider::FakeProvider;
use kassa_testkit::{TestDb, app_with_parts, both_backends};
use serde_json::{Value, json};

const OLD_SECRET: &str = "whsec_old_0123456789";
const NEW_SECRET: &str = "whsec_new_0123456789";

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

async fn start(db: &TestDb) -> String {
    let verifier = StripeWebhookVerifier::new(vec![NEW_SECRET.into(), OLD_SECRET.into()]);
    let app = app_with_parts(
        db,
        Arc::new(FakeProvider::new()),
        Arc::new(SystemClock),
        Arc::new(verifier),
    );
    let address = kassa_testkit::serve_http(app, None, ServerLimits::default()).await;
    format!("http://{address}")
}

async fn deliver(base: &str, body: &str, signature: Option<String>) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/webhooks/stripe"))
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    let response = request.send().await.expect("answers");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn event(id: &str) -> String {
    json!({
        "id": id, "object": "event", "type": "payment_intent.succeeded", "created": now_secs(),
        "data": {"object": {"id": "pi_unknown", "object": "payment_intent", "amount": 100, "currency": "eur",
                            "status": "succeeded", "metadata": {}}}
    })
    .to_string()
}

async fn recorded(db: &TestDb) -> i64 {
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    count
}

async fn risk_g6_forged_replayed_or_unsigned_deliveries_change_nothing(db: TestDb) {
    let base = start(&db).await;
    let sign = |secret: &str, at: i64, body: &str| {
        Some(kassa_emulator::signature_header(secret, at, body))
    };
    let body = event("evt_g6");

    let mut refusals = Vec::new();
    refusals.push(deliver(&base, &body, None).await);
    refusals.push(deliver(&base, &body, sign("whsec_attacker", now_secs(), &body)).await);
    refusals.push(deliver(&base, &body, sign(NEW_SECRET, now_secs() - 301, &body)).await);
    // Signed "for later": a year ahead, or just beyond the clock-skew allowance.
    refusals.push(
        deliver(
            &base,
            &body,
            sign(NEW_SECRET, now_secs() + 365 * 86_400, &body),
        )
        .await,
    );
    refusals.push(deliver(&base, &body, sign(NEW_SECRET, now_secs() + 120, &body)).await);
    // A header of more entries than the bound, the valid signature last.
    let padded = sign(NEW_SECRET, now_secs(), &body)
        .map(|valid| format!("{},{valid}", vec!["v1=00"; 70].join(",")));
    refusals.push(deliver(&base, &body, padded).await);
    let tampered = body.replace("\"amount\":100", "\"amount\":1");
    refusals.push(deliver(&base, &tampered, sign(NEW_SECRET, now_secs(), &body)).await);
    refusals.push(deliver(&base, &body, Some("t=1,v1=zz".into())).await);
    for (status, answer) in &refusals {
        assert_eq!(*status, 400);
        assert_eq!(answer, &refusals[0].1, "every refusal looks the same");
    }
    assert_eq!(refusals[0].1["error"]["message"], "webhook not accepted");
    assert_eq!(recorded(&db).await, 0, "nothing unverified was recorded");

    // Oversized deliveries are refused before anything else, in the API's error shape.
    let huge = "x".repeat(600 * 1024);
    let (status, answer) = deliver(&base, &huge, sign(NEW_SECRET, now_secs(), &huge)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // Signed with either secret during a rotation: recorded once, duplicates acknowledged.
    assert_eq!(
        deliver(&base, &body, sign(OLD_SECRET, now_secs(), &body))
            .await
            .0,
        200
    );
    assert_eq!(
        deliver(&base, &body, sign(NEW_SECRET, now_secs(), &body))
            .await
            .0,
        200
    );
    assert_eq!(recorded(&db).await, 1);
}
both_backends!(risk_g6_forged_replayed_or_unsigned_deliveries_change_nothing);
