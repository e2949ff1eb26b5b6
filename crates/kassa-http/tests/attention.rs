//! `POST /v1/orders/{id}/resolve` over a real socket (risk N1): the operator's key only, the
//! flag's reason and actions shown on the order, every refusal in the API's error shape with
//! nothing changed, and a resolution that clears the flag with who and why in the audit trail.
//! What each action does to money and stock is tested in `kassa-store/tests/attention.rs`.

use kassa_app::ports::{Actor, OrderStore};
use kassa_http::{PublicRateLimit, ServerLimits};
use kassa_testkit::{TEST_PUBLISHABLE_KEY, TEST_SECRET_KEY, TestDb, both_backends};
use serde_json::{Value, json};

struct Server {
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

async fn risk_n1_a_flagged_order_is_resolved_over_http_by_the_operator_only(db: TestDb) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = db.store.clone();
    let app = kassa_testkit::app(&db);
    kassa_testkit::seed_product(&app, "Mug", "MUG", 1250, "eur", 3).await;
    let cart = app.create_cart("eur").await.expect("cart");
    app.add_cart_line(&cart.id, "MUG", 1).await.expect("line");
    let input = kassa_testkit::shop::checkout_input(
        &cart.id,
        1250,
        "place",
        kassa_app::checkout::CheckoutFlow::Embedded,
    );
    let placed: Value =
        serde_json::from_str(&app.checkout(input).await.expect("checkout").response.body)
            .expect("json");
    let order_id = placed["order"]["id"].as_str().expect("order").to_owned();
    let address =
        kassa_testkit::serve_http(app, PublicRateLimit::new(0), ServerLimits::default()).await;
    let server = Server {
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
    };
    let resolve = format!("/v1/orders/{order_id}/resolve");
    let dismiss = json!({"action": "dismiss", "note": "checked at Stripe: one payment"});

    let (status, body) = server
        .post(&resolve, TEST_SECRET_KEY, dismiss.clone())
        .await;
    assert_eq!((status, code(&body)), (409, "invalid_state"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not need attention")),
        "{body}"
    );

    let flag = "paid_while_paid: the payment succeeded but the order is paid";
    let robot = Actor {
        kind: "test".into(),
        request_id: None,
        client_ip: None,
    };
    store
        .flag_order(&order_id, flag, &robot, 1_800_000_000)
        .await
        .expect("flagged");
    let (status, order) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/orders/{order_id}"),
            TEST_SECRET_KEY,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        order["attention"],
        json!({
            "reason": "paid_while_paid",
            "detail": "the payment succeeded but the order is paid",
            "actions": ["dismiss"],
        }),
        "{order}"
    );
    assert_eq!(
        order["attention_reason"], "paid_while_paid",
        "API.md's field"
    );

    for (key, expected) in [
        (TEST_PUBLISHABLE_KEY, (403, "forbidden")),
        ("sk_wrong", (401, "unauthorized")),
    ] {
        let (status, body) = server.post(&resolve, key, dismiss.clone()).await;
        assert_eq!((status, code(&body)), expected, "{body}");
    }
    let (status, body) = server
        .post(
            "/v1/orders/ord_missing/resolve",
            TEST_SECRET_KEY,
            dismiss.clone(),
        )
        .await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    for (request, param) in [
        (json!({"action": "explode", "note": "x"}), "action"),
        (json!({"action": "dismiss", "note": "\u{202e}"}), "note"),
        (json!({"action": "dismiss"}), "note"),
        (
            json!({"action": "dismiss", "note": "x", "amount": 1}),
            "amount",
        ),
    ] {
        let (status, body) = server.post(&resolve, TEST_SECRET_KEY, request).await;
        assert_eq!(
            (status, code(&body), body["error"]["param"].as_str()),
            (400, "invalid_request", Some(param)),
            "{body}"
        );
    }
    let (status, body) = server
        .post(
            &resolve,
            TEST_SECRET_KEY,
            json!({"action": "refund", "note": "give it back"}),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "invalid_state"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("resolved by dismiss")),
        "the refusal names the actions that resolve it: {body}"
    );

    let (status, order) = server.post(&resolve, TEST_SECRET_KEY, dismiss).await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["attention"], Value::Null, "{order}");
    assert_eq!(order["needs_attention"], Value::Null, "{order}");
    assert_eq!(order["attention_reason"], Value::Null, "{order}");
    let (_, events) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/orders/{order_id}/events"),
            TEST_SECRET_KEY,
            None,
        )
        .await;
    let resolved: Vec<&Value> = events["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "attention_resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{events}");
    assert_eq!(resolved[0]["actor"], "operator (secret key)");
    assert_eq!(resolved[0]["detail"], "checked at Stripe: one payment");
    assert_eq!(resolved[0]["before"], "paid_while_paid");
    assert_eq!(resolved[0]["after"], "dismiss");
}
both_backends!(risk_n1_a_flagged_order_is_resolved_over_http_by_the_operator_only);
