//! The emulator over real HTTP: Stripe's shapes, signing, idempotency, faults and webhooks.

use std::time::{Duration, Instant};

use axum::routing::post;
use kassa_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

mod common;

use common::Client;

#[tokio::test]
async fn objects_have_every_key_of_stripes_own_examples() {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    let intent = client.paid_intent().await;
    let id = intent["id"].as_str().expect("id");
    let (_, refund, _) = client
        .post(
            "/v1/refunds",
            &[("payment_intent", id), ("amount", "100")],
            None,
        )
        .await;
    let dispute = client
        .control(
            &format!("/_emulator/payment_intents/{id}/dispute"),
            json!({}),
        )
        .await;
    let events = client.get("/v1/events?limit=100").await;
    let charge = events["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["type"] == "charge.refunded")
        .map(|e| e["data"]["object"].clone())
        .expect("charge.refunded event");
    for (name, ours) in [
        ("payment_intent", &intent),
        ("refund", &refund),
        ("charge", &charge),
        ("dispute", &dispute),
        ("event", &events["data"][0]),
    ] {
        let theirs = common::stripe_example(name);
        let theirs = theirs.as_object().expect("fixture object");
        let missing: Vec<&String> = theirs
            .keys()
            .filter(|key| ours.get(key.as_str()).is_none())
            .collect();
        assert!(missing.is_empty(), "{name} lacks {missing:?}");
        assert_eq!(ours["object"], theirs["object"], "{name}");
    }
    emulator.shutdown().await;
}

#[test]
fn webhook_signing_reproduces_the_official_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/stripe/stripe_webhook_signatures.json"
    );
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (fixtures/stripe/ of the repository)")),
    )
    .expect("json");
    let valid = file["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .filter(|v| v["name"] == "valid" || v["name"] == "unicode_payload");
    for vector in valid {
        let header = vector["header"].as_str().expect("header");
        let timestamp: i64 = header[2..header.find(',').expect("comma")]
            .parse()
            .expect("t");
        let ours = kassa_emulator::signature_header(
            vector["secret"].as_str().expect("secret"),
            timestamp,
            vector["payload"].as_str().expect("payload"),
        );
        assert_eq!(ours, header, "{}", vector["name"]);
    }
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_and_expire() {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    let form = [("amount", "1000"), ("currency", "usd")];
    let (status, first, replayed) = client.post("/v1/payment_intents", &form, Some("k1")).await;
    assert_eq!((status, replayed), (200, false));
    let (_, again, replayed) = client.post("/v1/payment_intents", &form, Some("k1")).await;
    assert!(replayed);
    assert_eq!(again["id"], first["id"]);
    let (status, error, _) = client
        .post(
            "/v1/payment_intents",
            &[("amount", "999"), ("currency", "usd")],
            Some("k1"),
        )
        .await;
    assert_eq!(
        (status, error["error"]["type"].as_str()),
        (400, Some("idempotency_error"))
    );
    // Errors are stored too.
    let (status, _, _) = client
        .post(
            "/v1/payment_intents",
            &[("amount", "1"), ("currency", "usd")],
            Some("k2"),
        )
        .await;
    let (again, _, replayed) = client
        .post(
            "/v1/payment_intents",
            &[("amount", "1"), ("currency", "usd")],
            Some("k2"),
        )
        .await;
    assert_eq!((status, again, replayed), (400, 400, true));
    client
        .control("/_emulator/clock/advance", json!({"seconds": 86_401}))
        .await;
    let (_, fresh, replayed) = client.post("/v1/payment_intents", &form, Some("k1")).await;
    assert!(!replayed);
    assert_ne!(fresh["id"], first["id"], "keys expire after 24 hours");
    let list = client.get("/v1/payment_intents?limit=100").await;
    assert_eq!(list["data"].as_array().expect("list").len(), 2);
    emulator.shutdown().await;
}

#[tokio::test]
async fn in_flight_key_is_refused_with_409() {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    client.control("/_emulator/faults", json!({"api": [{"endpoint": "POST /v1/payment_intents", "answers": [{"hang_ms": 500}]}]})).await;
    let slow = {
        let http = client.http.clone();
        let url = format!("{}/v1/payment_intents", client.base);
        let key = client.key.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "k")
                .form(&[("amount", "1000"), ("currency", "usd")])
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body, _) = client
        .post(
            "/v1/payment_intents",
            &[("amount", "1000"), ("currency", "usd")],
            Some("k"),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("idempotency_key_in_use"))
    );
    assert_eq!(
        slow.await
            .expect("task")
            .expect("answers")
            .status()
            .as_u16(),
        200
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn payment_methods_and_transitions_follow_stripe() {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    let (_, intent, _) = client
        .post(
            "/v1/payment_intents",
            &[("amount", "5000"), ("currency", "eur")],
            None,
        )
        .await;
    let id = intent["id"].as_str().expect("id").to_owned();
    let (status, error, _) = client
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_chargeDeclined")],
            None,
        )
        .await;
    assert_eq!(
        (status, error["error"]["decline_code"].as_str()),
        (402, Some("generic_decline"))
    );
    let (_, intent, _) = client
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_authenticationRequired")],
            None,
        )
        .await;
    assert_eq!(intent["status"], "requires_action");
    let intent = client
        .control(
            &format!("/_emulator/payment_intents/{id}/authenticate"),
            json!({"outcome": "succeed"}),
        )
        .await;
    assert_eq!(intent["status"], "succeeded");
    let (status, error, _) = client
        .post(&format!("/v1/payment_intents/{id}/cancel"), &[], None)
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("payment_intent_unexpected_state"))
    );
    // Zero- and three-decimal rules, minimums.
    let (status, _, _) = client
        .post(
            "/v1/payment_intents",
            &[("amount", "49"), ("currency", "jpy")],
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = client
        .post(
            "/v1/payment_intents",
            &[("amount", "1005"), ("currency", "kwd")],
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = client
        .post(
            "/v1/payment_intents",
            &[("amount", "1000"), ("currency", "kwd")],
            None,
        )
        .await;
    assert_eq!(status, 200);
    // An uncaptured authorization lapses after 7 days.
    let (_, manual, _) = client
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "usd"),
                ("capture_method", "manual"),
            ],
            None,
        )
        .await;
    let manual_id = manual["id"].as_str().expect("id").to_owned();
    client
        .post(
            &format!("/v1/payment_intents/{manual_id}/confirm"),
            &[("payment_method", "pm_card_visa")],
            None,
        )
        .await;
    client
        .control("/_emulator/clock/advance", json!({"seconds": 7 * 86_400}))
        .await;
    assert_eq!(
        client
            .get(&format!("/v1/payment_intents/{manual_id}"))
            .await["status"],
        "canceled"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn faults_answer_as_injected() {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    let faults = json!({"api": [{"endpoint": "POST /v1/payment_intents", "answers": [{"status": 500}, {"status": 429}, "lose_response"]}]});
    client.control("/_emulator/faults", faults).await;
    let form = [("amount", "1000"), ("currency", "usd")];
    assert_eq!(client.post("/v1/payment_intents", &form, None).await.0, 500);
    assert_eq!(client.post("/v1/payment_intents", &form, None).await.0, 429);
    let lost = client
        .http
        .post(format!("{}/v1/payment_intents", client.base))
        .bearer_auth(&client.key)
        .form(&form)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(lost.is_err(), "the response is never sent");
    let list = client.get("/v1/payment_intents").await;
    assert_eq!(
        list["data"].as_array().expect("list").len(),
        1,
        "but the intent exists"
    );
    assert_eq!(
        client.post("/v1/payment_intents", &form, None).await.0,
        200,
        "faults are consumed"
    );
    emulator.shutdown().await;
}

/// Every call of Stripe's API is counted by endpoint as it arrives, a faulted one too; the
/// control API is not Stripe's and is not counted.
#[tokio::test]
async fn calls_are_counted_by_endpoint() {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    let faults =
        json!({"api": [{"endpoint": "POST /v1/payment_intents", "answers": [{"status": 500}]}]});
    client.control("/_emulator/faults", faults).await;
    let form = [("amount", "1000"), ("currency", "usd")];
    assert_eq!(client.post("/v1/payment_intents", &form, None).await.0, 500);
    let (_, intent, _) = client.post("/v1/payment_intents", &form, None).await;
    let id = intent["id"].as_str().expect("id");
    client.get(&format!("/v1/payment_intents/{id}")).await;
    let counted = client.get("/_emulator/requests").await;
    assert_eq!(counted["total"], 3, "{counted}");
    assert_eq!(counted["by_endpoint"]["POST /v1/payment_intents"], 2);
    assert_eq!(counted["by_endpoint"]["GET /v1/payment_intents/*"], 1);
    emulator.shutdown().await;
}

async fn receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
) {
    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let sender = sender.clone();
            async move {
                let signature = headers
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = sender.send((
                    signature,
                    serde_json::from_str(&body).unwrap_or(Value::Null),
                ));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn collect(
    received: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    count: usize,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    while events.len() < count && Instant::now() < deadline {
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(200), received.recv()).await
        {
            events.push(event);
        }
    }
    events
}

#[tokio::test]
async fn webhooks_are_signed_duplicated_reordered_and_redelivered_on_request() {
    let (url, mut received) = receiver().await;
    let config = EmulatorConfig {
        webhook_endpoints: vec![url],
        ..EmulatorConfig::for_tests()
    };
    let secret = config.webhook_secret.clone();
    let emulator = Emulator::start(config).await.expect("starts");
    let client = Client::new(&emulator);
    client.paid_intent().await;
    let normal = collect(&mut received, 3).await;
    // Deliveries run concurrently: like Stripe, the emulator promises every event, not an order.
    let mut kinds: Vec<&str> = normal
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap_or_default())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "charge.succeeded",
            "payment_intent.created",
            "payment_intent.succeeded"
        ]
    );
    for (signature, event) in &normal {
        let timestamp: i64 = signature[2..signature.find(',').expect("comma")]
            .parse()
            .expect("t");
        assert_eq!(
            signature,
            &kassa_emulator::signature_header(&secret, timestamp, &event.to_string())
        );
    }
    client
        .control(
            "/_emulator/faults",
            json!({"webhooks": {"copies": 2, "reorder": true, "drop_first": true}}),
        )
        .await;
    client.paid_intent().await;
    let faulty = collect(&mut received, 6).await;
    let kinds: Vec<&str> = faulty
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    assert_eq!(
        kinds[0], "payment_intent.succeeded",
        "newest first: {kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "payment_intent.succeeded")
            .count(),
        2,
        "each event twice"
    );
    let deliveries = client.get("/_emulator/webhook_deliveries").await;
    assert!(
        deliveries["data"]
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["outcome"] == "dropped")
    );
    emulator.shutdown().await;
}
