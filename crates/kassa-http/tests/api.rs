//! The HTTP contract over a real socket: auth, error shapes, input bounds, rate limits.
//! Each test starts the router on an ephemeral port against a fresh database of each backend.

use kassa_http::{PublicRateLimit, ServerLimits};
use kassa_testkit::{TestDb, both_backends};
use serde_json::{Value, json};

const SECRET: &str = "sk_test_0123456789abcdef";
const PUBLISHABLE: &str = "pk_test_0123456789abcdef";

struct Server {
    base: String,
    http: reqwest::Client,
    _db: TestDb,
}

async fn start(db: TestDb, rate_limit_per_sec: u32) -> Server {
    let app = kassa_testkit::app(&db);
    start_app(db, app, rate_limit_per_sec).await
}

async fn start_app(db: TestDb, app: kassa_app::App, rate_limit_per_sec: u32) -> Server {
    // reqwest is built without a default TLS provider; tests speak plain HTTP but it still asks.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let address = kassa_testkit::serve_http(
        app,
        PublicRateLimit::new(rate_limit_per_sec),
        ServerLimits::default(),
    )
    .await;
    Server {
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
        _db: db,
    }
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
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }

    async fn seed_mug(&self) -> String {
        let (status, _) = self
            .post(
                "/v1/products",
                SECRET,
                json!({"name": "Mug", "variants": [{"sku": "MUG", "unit_amount": 1250, "currency": "eur"}]}),
            )
            .await;
        assert_eq!(status, 201);
        let (status, cart) = self
            .post("/v1/carts", PUBLISHABLE, json!({"currency": "eur"}))
            .await;
        assert_eq!(status, 201);
        cart["id"].as_str().expect("cart id").to_owned()
    }
}

impl Server {
    /// A cart holding one MUG (of 3 on hand), ready for checkout.
    async fn cart_with_one_mug(&self) -> String {
        let cart = self.seed_mug().await;
        let stock = Some(json!({"on_hand": 3}));
        self.call(reqwest::Method::PUT, "/v1/inventory/MUG", SECRET, stock)
            .await;
        let line = json!({"sku": "MUG", "quantity": 1});
        self.post(&format!("/v1/carts/{cart}/lines"), PUBLISHABLE, line)
            .await;
        cart
    }
}

/// A checkout body for one MUG, shipped to `name` at `line1`, `postal_code`, London, GB.
fn checkout_body(name: &str, line1: &str, postal_code: &str) -> Value {
    json!({
        "email": "ada@example.com",
        "shipping_address": {"name": name, "line1": line1, "city": "London",
                             "postal_code": postal_code, "country": "GB"},
        "expected_total": 1250
    })
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

async fn keys_are_enforced(db: TestDb) {
    let server = start(db, 0).await;
    let product =
        json!({"name": "X", "variants": [{"sku": "X", "unit_amount": 1, "currency": "usd"}]});
    let (status, body) = server
        .post("/v1/products", "sk_wrong", product.clone())
        .await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, body) = server
        .post("/v1/products", PUBLISHABLE, product.clone())
        .await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, _) = server.post("/v1/products", SECRET, product).await;
    assert_eq!(status, 201);
    let (status, body) = server
        .post("/v1/carts", "", json!({"currency": "usd"}))
        .await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
}
both_backends!(keys_are_enforced);

async fn risk_s1_client_sent_prices_are_refused(db: TestDb) {
    let server = start(db, 0).await;
    let cart = server.seed_mug().await;
    for field in ["unit_amount", "price", "amount"] {
        let mut line = json!({"sku": "MUG", "quantity": 1});
        line[field] = json!(1);
        let (status, body) = server
            .post(&format!("/v1/carts/{cart}/lines"), PUBLISHABLE, line)
            .await;
        assert_eq!((status, code(&body)), (400, "invalid_request"), "{field}");
        assert_eq!(body["error"]["param"], field);
    }
    let (status, body) = server
        .post(
            &format!("/v1/carts/{cart}/lines"),
            PUBLISHABLE,
            json!({"sku": "MUG", "quantity": 2}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["lines"][0]["unit_amount"].as_i64(),
            body["total"].as_i64()
        ),
        (Some(1250), Some(2500))
    );
}
both_backends!(risk_s1_client_sent_prices_are_refused);

async fn risk_s6_unbounded_and_malformed_input_is_refused(db: TestDb) {
    let server = start(db, 0).await;
    let cart = server.seed_mug().await;
    let lines = format!("{}/v1/carts/{cart}/lines", server.base);

    let huge = format!(
        "{{\"sku\":\"MUG\",\"quantity\":1,\"pad\":\"{}\"}}",
        "x".repeat(200_000)
    );
    let response = server
        .http
        .post(&lines)
        .bearer_auth(PUBLISHABLE)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        response.headers()["connection"],
        "close",
        "the unread rest of the body means the connection cannot be reused"
    );
    let body: Value = response.json().await.expect("json error");
    assert_eq!(code(&body), "payload_too_large");

    let response = server
        .http
        .post(&lines)
        .bearer_auth(PUBLISHABLE)
        .header("content-type", "application/json")
        .body("{\"sku\": \"MUG\", \"quantity\": ")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        code(&response.json().await.expect("json error")),
        "invalid_request"
    );

    for (body, param) in [
        (json!({"sku": "MUG", "quantity": 1_000_000}), "quantity"),
        (json!({"sku": "MUG", "quantity": 0}), "quantity"),
        (json!({"sku": "MUG", "quantity": "2"}), "quantity"),
        (json!({"sku": "MUG", "quantity": 1e3}), "quantity"),
        (json!({"sku": "x".repeat(1000), "quantity": 1}), "sku"),
        (json!({"quantity": 1}), "sku"),
    ] {
        let (status, answer) = server
            .post(
                &format!("/v1/carts/{cart}/lines"),
                PUBLISHABLE,
                body.clone(),
            )
            .await;
        assert_eq!((status, code(&answer)), (400, "invalid_request"), "{body}");
        assert_eq!(answer["error"]["param"], param, "{body}");
    }
    let (status, body) = server
        .post("/v1/carts", PUBLISHABLE, json!({"currency": "xyz"}))
        .await;
    assert_eq!(
        (status, code(&body), body["error"]["param"].as_str()),
        (400, "invalid_request", Some("currency"))
    );
    let (_, cart_now) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/carts/{cart}"),
            PUBLISHABLE,
            None,
        )
        .await;
    assert_eq!(cart_now["lines"], json!([]), "nothing half-written");
}
both_backends!(risk_s6_unbounded_and_malformed_input_is_refused);

async fn risk_s7_public_endpoints_are_rate_limited_per_client(db: TestDb) {
    let server = start(db, 2).await;
    let cart = server.seed_mug().await;
    let path = format!("/v1/carts/{cart}");
    // Fire concurrently: a burst of 2×rate is allowed, the rest must be refused with Retry-After.
    let requests = (0..20).map(|_| {
        let http = server.http.clone();
        let url = format!("{}{path}", server.base);
        tokio::spawn(async move { http.get(url).bearer_auth(PUBLISHABLE).send().await })
    });
    let mut limited = 0;
    for request in requests {
        let response = request.await.expect("task").expect("answers");
        if response.status().as_u16() == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!(retry_after >= 1);
            assert_eq!(code(&response.json().await.expect("json")), "rate_limited");
            limited += 1;
        }
    }
    assert!(
        limited >= 14,
        "at most the burst of 4 (+ the one cart creation) may pass; {limited} were limited"
    );
    // Secret-key catalog endpoints are not the public surface and stay usable.
    let (status, _) = server
        .call(reqwest::Method::GET, "/v1/inventory/MUG", SECRET, None)
        .await;
    assert_eq!(status, 200);
}
both_backends!(risk_s7_public_endpoints_are_rate_limited_per_client);

async fn inventory_and_variants_round_trip(db: TestDb) {
    let server = start(db, 0).await;
    server.seed_mug().await;
    let (status, body) = server
        .call(
            reqwest::Method::PUT,
            "/v1/inventory/MUG",
            SECRET,
            Some(json!({"on_hand": 5})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["locations"][0],
        json!({"location": "default", "on_hand": 5, "reserved": 0, "committed": 0, "available": 5})
    );
    let (status, body) = server
        .call(
            reqwest::Method::PATCH,
            "/v1/variants/MUG",
            SECRET,
            Some(json!({"unit_amount": 999, "active": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["unit_amount"].as_i64(), body["active"].as_bool()),
        (Some(999), Some(false))
    );
    let (status, body) = server
        .call(reqwest::Method::GET, "/v1/inventory/NOPE", SECRET, None)
        .await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, _) = server.call(reqwest::Method::GET, "/readyz", "", None).await;
    assert_eq!(status, 200);
}
both_backends!(inventory_and_variants_round_trip);

async fn risk_g5_checkout_over_http_is_idempotent_and_says_so(db: TestDb) {
    let server = start(db, 0).await;
    let cart = server.cart_with_one_mug().await;
    let body = checkout_body("Ada", "1 St", "N1");
    let url = format!("{}/v1/carts/{cart}/checkout", server.base);
    let send = |key: Option<&'static str>| {
        let mut request = server.http.post(&url).bearer_auth(PUBLISHABLE).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send()
    };
    let missing = send(None).await.expect("answers");
    assert_eq!(missing.status().as_u16(), 400);
    assert_eq!(
        code(&missing.json().await.expect("json")),
        "idempotency_key_required"
    );

    let first = send(Some("click-1")).await.expect("answers");
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body: Value = first.json().await.expect("json");
    assert_eq!(first_body["order"]["total"], 1250);
    assert!(
        first_body["order_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("otk_"))
    );

    let again = send(Some("click-1")).await.expect("answers");
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.expect("json"), first_body);

    // A double click that sent a fresh key: the cart already became an order.
    let second = send(Some("click-2")).await.expect("answers");
    assert_eq!(second.status().as_u16(), 409);
    let second_body: Value = second.json().await.expect("json");
    assert_eq!(code(&second_body), "cart_already_checked_out");
    assert_eq!(second_body["error"]["order_id"], first_body["order"]["id"]);

    // The customer reads their order with the token; another credential cannot.
    let order_path = format!(
        "/v1/orders/{}",
        first_body["order"]["id"].as_str().expect("id")
    );
    let token = first_body["order_token"].as_str().expect("token");
    let (status, order) = server
        .call(reqwest::Method::GET, &order_path, token, None)
        .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (200, Some("pending_payment"))
    );
    assert_eq!(order["shipping_address"]["line1"], "1 S*");
    let (status, _) = server
        .call(reqwest::Method::GET, &order_path, "otk_forged.1.00", None)
        .await;
    assert_eq!(status, 401);
    let (status, events) = server
        .call(
            reqwest::Method::GET,
            &format!("{order_path}/events"),
            SECRET,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        events["data"].as_array().is_some_and(|e| e.len() >= 2),
        "{events}"
    );
}
both_backends!(risk_g5_checkout_over_http_is_idempotent_and_says_so);

/// Every customer- and operator-supplied text field has one shape: hostile or malformed values
/// are refused naming the field, and only the normalised spelling is stored (risk S6).
async fn risk_s6_text_fields_are_shaped_and_stored_normalised(db: TestDb) {
    let server = start(db, 0).await;
    let cart = server.seed_mug().await;
    let put = |body: Value| {
        server.call(
            reqwest::Method::PUT,
            "/v1/inventory/MUG",
            SECRET,
            Some(body),
        )
    };
    assert_eq!(put(json!({"on_hand": 3})).await.0, 200);
    server
        .post(
            &format!("/v1/carts/{cart}/lines"),
            PUBLISHABLE,
            json!({"sku": "MUG", "quantity": 1}),
        )
        .await;
    let good = json!({
        "email": " Ada.Lovelace@Example.COM ",
        "shipping_address": {"name": "  Ada   Lovelace ", "line1": "1 Analytical St",
                             "city": "Zu\u{308}rich", "postal_code": "n1  1aa", "country": "gb"},
        "expected_total": 1250
    });
    let hostile = [
        ("email", "ada\u{0}@example.com"),
        ("email", "ada@@example.com"),
        ("email", "ada@example"),
        ("shipping_address.city", "Lon\r\ndon"),
        ("shipping_address.postal_code", "\u{202e}N1"),
        ("shipping_address.line1", "1 St\u{200b}"),
        ("shipping_address.name", "   "),
        ("shipping_address.country", "XX"),
        ("shipping_address.country", "ZZ"),
    ];
    let checkout = format!("{}/v1/carts/{cart}/checkout", server.base);
    for (n, (param, value)) in hostile.into_iter().enumerate() {
        let mut body = good.clone();
        match param.split_once('.') {
            Some((_, field)) => body["shipping_address"][field] = json!(value),
            None => body[param] = json!(value),
        }
        let response = server
            .http
            .post(&checkout)
            .bearer_auth(PUBLISHABLE)
            .header("Idempotency-Key", format!("hostile-{n}"))
            .json(&body)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 400, "{param} = {value:?}");
        let answer: Value = response.json().await.expect("json error");
        assert_eq!(code(&answer), "invalid_request", "{param} = {value:?}");
        assert_eq!(answer["error"]["param"], param, "{param} = {value:?}");
    }
    let created = server
        .http
        .post(&checkout)
        .bearer_auth(PUBLISHABLE)
        .header("Idempotency-Key", "good")
        .json(&good)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        created.status().as_u16(),
        201,
        "no hostile attempt placed an order"
    );
    let created: Value = created.json().await.expect("json");
    let order_id = created["order"]["id"].as_str().expect("order id");
    let (_, order) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/orders/{order_id}"),
            SECRET,
            None,
        )
        .await;
    assert_eq!(order["email"], "Ada.Lovelace@example.com");
    assert_eq!(
        order["shipping_address"],
        json!({"name": "Ada Lovelace", "line1": "1 Analytical St", "city": "Z\u{fc}rich",
               "postal_code": "N1 1AA", "country": "GB"})
    );

    // Locations are identifiers: NUL and blank names are refused as such, nothing is created.
    for location in ["a\u{0}b", "   ", "Lager Nord"] {
        let (status, answer) = put(json!({"location": location, "on_hand": 1})).await;
        assert_eq!(
            (status, code(&answer)),
            (400, "invalid_request"),
            "{location:?}"
        );
        assert_eq!(answer["error"]["param"], "location");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("letters, digits")),
            "{answer}"
        );
    }
    let (_, stock) = server
        .call(reqwest::Method::GET, "/v1/inventory/MUG", SECRET, None)
        .await;
    assert_eq!(stock["locations"].as_array().map(Vec::len), Some(1));

    for (product, param) in [
        (
            json!({"name": "Mug\u{202e}", "variants": [{"sku": "M2", "unit_amount": 1, "currency": "eur"}]}),
            "name",
        ),
        (
            json!({"name": "Mug", "variants": [{"sku": "M2", "unit_amount": 1, "currency": "eur",
                "attributes": {"size": "L\nXL"}}]}),
            "variants[0].attributes.size",
        ),
    ] {
        let (status, answer) = server.post("/v1/products", SECRET, product).await;
        assert_eq!((status, code(&answer)), (400, "invalid_request"));
        assert_eq!(answer["error"]["param"], param);
    }
}
both_backends!(risk_s6_text_fields_are_shaped_and_stored_normalised);

/// Ids in paths are identifiers: NUL, CR/LF or non-ASCII never reach a query (on PostgreSQL a
/// NUL would be a database error, a 5xx), they are refused naming the segment.
async fn risk_s6_path_ids_are_identifiers(db: TestDb) {
    let server = start(db, 0).await;
    for (path, key, param) in [
        ("/v1/carts/%00", PUBLISHABLE, "id"),
        ("/v1/carts/a%0D%0Ab", PUBLISHABLE, "id"),
        ("/v1/orders/%E2%80%AEord", SECRET, "id"),
        ("/v1/inventory/%00", SECRET, "sku"),
        ("/v1/carts/%ff%fe", PUBLISHABLE, "path"),
    ] {
        let (status, body) = server.call(reqwest::Method::GET, path, key, None).await;
        assert_eq!((status, code(&body)), (400, "invalid_request"), "{path}");
        assert_eq!(body["error"]["param"], param, "{path}");
    }
}
both_backends!(risk_s6_path_ids_are_identifiers);

/// A shop on a test clock with one order placed over HTTP: (server, clock, order id, token,
/// PaymentIntent id).
async fn placed_order(
    db: TestDb,
) -> (
    Server,
    std::sync::Arc<kassa_testkit::TestClock>,
    String,
    String,
    String,
) {
    let clock = kassa_testkit::TestClock::new();
    let app = kassa_testkit::app_with_clock(
        &db,
        std::sync::Arc::new(kassa_testkit::provider::FakeProvider::new()),
        clock.clone(),
    );
    let server = start_app(db, app, 0).await;
    let cart = server.cart_with_one_mug().await;
    let body = checkout_body("Ada Lovelace", "1 Analytical St", "N1 1AA");
    let created: Value = server
        .http
        .post(format!("{}/v1/carts/{cart}/checkout", server.base))
        .bearer_auth(PUBLISHABLE)
        .header("Idempotency-Key", "place")
        .json(&body)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let text = |v: &Value| v.as_str().expect("string").to_owned();
    (
        server,
        clock,
        text(&created["order"]["id"]),
        text(&created["order_token"]),
        text(&created["payment"]["payment_intent_id"]),
    )
}

/// The customer reads their own order with its token only, masked, never cached; nothing is
/// found by a PaymentIntent id (risk S2).
async fn risk_s2_an_order_is_read_with_its_token_masked_and_never_cached(db: TestDb) {
    let (server, _, order_id, token, intent_id) = placed_order(db).await;
    let path = format!("/v1/orders/{order_id}");
    let response = server
        .http
        .get(format!("{}{path}", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let order: Value = response.json().await.expect("json");
    assert_eq!(order["email"], "a**************");
    assert_eq!(
        order["shipping_address"],
        json!({"name": "A** L*******", "line1": "1 A********* S*", "city": "London",
               "postal_code": "N* 1**", "country": "GB"})
    );
    assert_eq!(
        (order["total"].as_i64(), order["refunds"].clone()),
        (Some(1250), json!([]))
    );
    assert!(
        order.get("payment").is_none(),
        "no client secret or intent for the customer"
    );
    for (credential, status) in [
        (PUBLISHABLE.to_owned(), 403),
        ("otk_forged.1.00".to_owned(), 401),
        (token.replace(&order_id, "ord_other"), 401),
    ] {
        let (got, body) = server
            .call(reqwest::Method::GET, &path, &credential, None)
            .await;
        assert_eq!(got, status, "{credential}: {body}");
    }
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/orders/{intent_id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 401, "a PaymentIntent id is no way in");
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/orders/{intent_id}"),
            SECRET,
            None,
        )
        .await;
    assert_eq!(status, 404, "nor for the operator");
    let (status, full) = server.call(reqwest::Method::GET, &path, SECRET, None).await;
    assert_eq!(
        (status, full["email"].as_str()),
        (200, Some("ada@example.com"))
    );
}
both_backends!(risk_s2_an_order_is_read_with_its_token_masked_and_never_cached);

/// The token changes the order only within the window counted from the order's creation, and
/// reads it for 30 days (risk S3).
async fn risk_s3_the_token_changes_only_within_the_window(db: TestDb) {
    let (server, clock, order_id, token, _) = placed_order(db).await;
    let path = format!("/v1/orders/{order_id}");
    let address = json!({"shipping_address": {"name": "Ada King", "line1": "2 Engine Row",
                         "city": "London", "postal_code": "N1 2BB", "country": "GB"}});
    let (status, body) = server
        .call(reqwest::Method::PATCH, &path, &token, Some(address.clone()))
        .await;
    assert_eq!(
        (status, body["shipping_address"]["city"].as_str()),
        (200, Some("London")),
        "{body}"
    );
    assert_eq!(body["can_modify"], true);
    clock.advance(3_600);
    let (status, body) = server
        .call(reqwest::Method::PATCH, &path, &token, Some(address.clone()))
        .await;
    assert_eq!((status, code(&body)), (409, "invalid_state"), "{body}");
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            &format!("{path}/cancel"),
            &token,
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (409, "invalid_state"),
        "no cancel after the window"
    );
    let (status, body) = server.call(reqwest::Method::GET, &path, &token, None).await;
    assert_eq!(
        (status, body["can_modify"].as_bool()),
        (200, Some(false)),
        "still reads"
    );
    clock.advance(30 * 86_400);
    let (status, _) = server.call(reqwest::Method::GET, &path, &token, None).await;
    assert_eq!(status, 401, "reads for 30 days only");
}
both_backends!(risk_s3_the_token_changes_only_within_the_window);

/// Every change records who made it, the request id, the client's address, before and after
/// (risk A1), and the operator reads it at /events.
async fn risk_a1_changes_record_who_which_request_and_from_where(db: TestDb) {
    let (server, _, order_id, token, _) = placed_order(db).await;
    let canceled = server
        .http
        .post(format!("{}/v1/orders/{order_id}/cancel", server.base))
        .bearer_auth(&token)
        .header("X-Request-Id", "trace-a1")
        .send()
        .await
        .expect("answers");
    assert_eq!(canceled.status().as_u16(), 200);
    assert_eq!(
        canceled.json::<Value>().await.expect("json")["status"],
        "canceled"
    );
    let (_, events) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/orders/{order_id}/events"),
            SECRET,
            None,
        )
        .await;
    let events = events["data"].as_array().cloned().unwrap_or_default();
    let order_canceled = events
        .iter()
        .find(|e| e["entity_type"] == "order" && e["after"] == "canceled")
        .expect("the order's move is recorded");
    assert_eq!(order_canceled["before"], "pending_payment");
    assert_eq!(order_canceled["actor"], "customer (order token)");
    assert_eq!(order_canceled["request_id"], "trace-a1");
    assert_eq!(order_canceled["client_ip"], "127.0.0.1");
    let released = events
        .iter()
        .filter(|e| e["entity_type"] == "reservation" && e["after"] == "released")
        .count();
    assert_eq!(released, 1, "the stock's move too");
    assert!(
        events
            .iter()
            .all(|e| e["actor"].is_string() && e["created"].is_i64()),
        "{events:?}"
    );
}
both_backends!(risk_a1_changes_record_who_which_request_and_from_where);

/// The hosted page's return URLs are the configured ones whatever the request says: a body
/// cannot name one, and hostile `Origin`, `Referer` or forwarding headers change nothing (risk
/// S5). They carry the session placeholder and nothing of the order's credentials (risk S4).
async fn risk_s5_risk_s4_hosted_checkout_redirects_come_from_configuration_only(db: TestDb) {
    let provider = std::sync::Arc::new(kassa_testkit::provider::FakeProvider::new());
    let app = kassa_testkit::app_with(&db, provider.clone());
    let server = start_app(db, app, 0).await;
    let cart = server.cart_with_one_mug().await;
    let path = format!("/v1/carts/{cart}/checkout_session");
    let mut naming_a_url = checkout_body("Ada Lovelace", "1 Analytical St", "N1 1AA");
    naming_a_url["success_url"] = json!("https://evil.example/steal");
    let response = server
        .http
        .post(format!("{}{path}", server.base))
        .bearer_auth(PUBLISHABLE)
        .header("Idempotency-Key", "s5-body")
        .json(&naming_a_url)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 400);
    let refused: Value = response.json().await.expect("json");
    assert_eq!(code(&refused), "invalid_request");
    assert!(provider.sessions().is_empty(), "nothing was created");

    let response = server
        .http
        .post(format!("{}{path}", server.base))
        .bearer_auth(PUBLISHABLE)
        .header("Idempotency-Key", "s5-headers")
        .header("Origin", "https://evil.example")
        .header("Referer", "https://evil.example/cart")
        .header("X-Forwarded-Host", "evil.example")
        .header("Forwarded", "host=evil.example;proto=https")
        .json(&checkout_body("Ada Lovelace", "1 Analytical St", "N1 1AA"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.expect("json");
    let sessions = provider.sessions();
    let [(session, request)] = sessions.as_slice() else {
        panic!("one session: {sessions:?}");
    };
    assert_eq!(created["checkout_session"]["id"], session.id.as_str());
    assert_eq!(
        created["checkout_session"]["url"].as_str(),
        session.url.as_deref()
    );
    assert_eq!(request.success_url, kassa_testkit::shop::SUCCESS_URL);
    assert_eq!(request.cancel_url, kassa_testkit::shop::CANCEL_URL);
    let token = created["order_token"].as_str().expect("token");
    for url in [&request.success_url, &request.cancel_url] {
        assert!(!url.contains("evil"), "{url}");
        assert!(!url.contains(token), "{url}");
    }
    assert_eq!(
        request.client_reference_id,
        created["order"]["id"].as_str().expect("id")
    );
}
both_backends!(risk_s5_risk_s4_hosted_checkout_redirects_come_from_configuration_only);

/// Every answer says `Referrer-Policy: no-referrer` and carries a Content-Security-Policy (the
/// API's runs nothing); outside sandbox mode no demo page exists (risk S4).
async fn risk_s4_answers_send_no_referrer_and_a_policy_and_no_demo_outside_the_sandbox(db: TestDb) {
    let server = start(db, 0).await;
    for (path, key) in [
        ("/healthz", SECRET),
        ("/v1/carts/nope", PUBLISHABLE),
        ("/openapi.json", SECRET),
        ("/no/such/endpoint", SECRET),
        ("/demo/", SECRET),
        ("/demo", SECRET),
        ("/demo/return?session_id=cs_x", SECRET),
        ("/demo/app.js", SECRET),
    ] {
        let response = server
            .http
            .get(format!("{}{path}", server.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("answers");
        let headers = response.headers();
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(
            headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{path}"
        );
        if path.starts_with("/demo") {
            assert_eq!(response.status().as_u16(), 404, "{path}");
        }
    }
}
both_backends!(risk_s4_answers_send_no_referrer_and_a_policy_and_no_demo_outside_the_sandbox);

/// The hosted page's return page shows the order's status, total and lines — escaped — and
/// nothing about the customer, to whoever holds the session id (risk S4).
async fn risk_s4_the_demo_return_page_shows_no_customer_data(db: TestDb) {
    let provider = std::sync::Arc::new(kassa_testkit::provider::FakeProvider::new());
    let app = kassa_testkit::app_with(&db, provider.clone());
    let mut state = kassa_testkit::test_state(app, None, kassa_http::ServerLimits::default());
    state.demo = Some(std::sync::Arc::new(kassa_http::DemoStorefront {
        publishable_key: PUBLISHABLE.into(),
        stripe_api_base: "http://127.0.0.1:9".into(),
        stripe_publishable_key: "pk_test_emulator".into(),
        catalog: Vec::new(),
    }));
    let address = kassa_testkit::serve_state(state).await;
    let server = Server {
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
        _db: db,
    };
    let product = json!({"name": "<script>alert(1)</script>", "variants": [
        {"sku": "MUG", "unit_amount": 1250, "currency": "eur"}]});
    server.post("/v1/products", SECRET, product).await;
    server
        .call(
            reqwest::Method::PUT,
            "/v1/inventory/MUG",
            SECRET,
            Some(json!({"on_hand": 3})),
        )
        .await;
    let (_, cart) = server
        .post("/v1/carts", PUBLISHABLE, json!({"currency": "eur"}))
        .await;
    let cart = cart["id"].as_str().expect("cart").to_owned();
    server
        .post(
            &format!("/v1/carts/{cart}/lines"),
            PUBLISHABLE,
            json!({"sku": "MUG", "quantity": 1}),
        )
        .await;
    let response = server
        .http
        .post(format!("{}/v1/carts/{cart}/checkout_session", server.base))
        .bearer_auth(PUBLISHABLE)
        .header("Idempotency-Key", "return-page")
        .json(&checkout_body("Ada Lovelace", "1 Analytical St", "N1 1AA"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 201);
    let session = provider.sessions()[0].0.id.clone();
    let page = server
        .http
        .get(format!("{}/demo/return?session_id={session}", server.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text().await.expect("text");
    assert!(html.contains("pending_payment"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
    for private in ["ada@example.com", "Ada Lovelace", "Analytical", "N1 1AA"] {
        assert!(!html.contains(private), "{private} in {html}");
    }
    let unknown = server
        .http
        .get(format!("{}/demo/return?session_id=cs_unknown", server.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status().as_u16(), 404);
}
both_backends!(risk_s4_the_demo_return_page_shows_no_customer_data);

/// Commands that take no fields read their body like every other endpoint: an unknown field
/// (`{"amount": 100}` on a cancel), a body that is not JSON and an oversized one are refused and
/// change nothing; an empty body, whatever its content type, is no fields (risk S6).
async fn risk_s6_commands_without_fields_refuse_any_body(db: TestDb) {
    let (server, _clock, order_id, _token, _) = placed_order(db).await;
    let cancel = format!("{}/v1/orders/{order_id}/cancel", server.base);
    let send = |body: Vec<u8>, content_type: &'static str| {
        server
            .http
            .post(&cancel)
            .bearer_auth(SECRET)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let answer = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let (status, body) = answer(
        send(br#"{"amount": 100}"#.to_vec(), "application/json")
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    assert_eq!(body["error"]["param"], "amount", "{body}");
    let (status, body) = answer(
        send(b"cancel it".to_vec(), "text/plain")
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    let (status, body) = answer(
        send(vec![b' '; 100 * 1024], "application/json")
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!((status, code(&body)), (413, "payload_too_large"), "{body}");
    let (status, body) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/orders/{order_id}"),
            SECRET,
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("pending_payment")),
        "{body}"
    );
    let (status, body) = server
        .post("/v1/admin/check", SECRET, json!({"verbose": true}))
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    // An empty body with a JSON content type is no fields: capture's optional body too.
    let capture = format!("{}/v1/orders/{order_id}/capture", server.base);
    let response = server
        .http
        .post(&capture)
        .bearer_auth(SECRET)
        .header("Content-Type", "application/json")
        .send()
        .await
        .expect("answers");
    let (status, body) = answer(response).await;
    assert_eq!(
        (status, code(&body)),
        (409, "invalid_state"),
        "read as no body: {body}"
    );
    let (status, body) = answer(send(Vec::new(), "application/json").await.expect("answers")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("canceled")),
        "{body}"
    );
}
both_backends!(risk_s6_commands_without_fields_refuse_any_body);

/// A webhook over its own limit (512 KiB, not the API's 64 KiB) is told that limit.
async fn risk_s6_an_oversized_webhook_is_told_its_own_limit(db: TestDb) {
    let server = start(db, 0).await;
    let response = server
        .http
        .post(format!("{}/v1/webhooks/stripe", server.base))
        .header("Stripe-Signature", "t=1,v1=00")
        .header("Content-Type", "application/json")
        .body(vec![b' '; 520 * 1024])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&(512 * 1024).to_string()), "{message}");
}
both_backends!(risk_s6_an_oversized_webhook_is_told_its_own_limit);

/// A price Stripe could never charge is refused where it is set, not at checkout: a unit price
/// above Stripe's largest charge, a plan below its smallest one (risk S6).
async fn risk_s6_prices_stripe_cannot_charge_are_refused_when_set(db: TestDb) {
    let server = start(db, 0).await;
    let (status, body) = server
        .post(
            "/v1/products",
            SECRET,
            json!({"name": "Yacht", "variants": [{"sku": "YACHT", "unit_amount": 100_000_000, "currency": "eur"}]}),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    assert_eq!(body["error"]["param"], "variants[0].unit_amount", "{body}");
    for (amount, currency) in [(49, "eur"), (49, "jpy"), (490, "kwd")] {
        let plan = json!({"name": "Tiny", "unit_amount": amount, "currency": currency,
                          "interval": "month", "credits": 1});
        let (status, body) = server.post("/v1/plans", SECRET, plan).await;
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_request"),
            "{currency}: {body}"
        );
        assert_eq!(body["error"]["param"], "unit_amount", "{body}");
    }
    let plan = json!({"name": "Fine", "unit_amount": 500, "currency": "kwd",
                      "interval": "month", "credits": 1});
    assert_eq!(server.post("/v1/plans", SECRET, plan).await.0, 201);
}
both_backends!(risk_s6_prices_stripe_cannot_charge_are_refused_when_set);

/// A return page asks "is it paid?" with the order token: Kassa asks Stripe and applies the
/// answer as the webhook would, so the page shows `paid` without waiting for the event; a
/// stranger's token asks nothing, and one order cannot be refreshed in a loop (risks P7, S2).
async fn risk_p7_a_refresh_with_the_token_applies_what_stripe_says_now(db: TestDb) {
    let provider = std::sync::Arc::new(kassa_testkit::provider::FakeProvider::new());
    let app = kassa_testkit::app_with_clock(&db, provider.clone(), kassa_testkit::TestClock::new());
    let server = start_app(db, app, 1_000).await;
    let cart = server.cart_with_one_mug().await;
    let created: Value = server
        .http
        .post(format!("{}/v1/carts/{cart}/checkout", server.base))
        .bearer_auth(PUBLISHABLE)
        .header("Idempotency-Key", "place")
        .json(&checkout_body("Ada Lovelace", "1 Analytical St", "N1 1AA"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let order_id = created["order"]["id"].as_str().expect("order id");
    let token = created["order_token"].as_str().expect("token");
    let intent = created["payment"]["payment_intent_id"]
        .as_str()
        .expect("intent");
    let refresh = format!("/v1/orders/{order_id}/refresh");
    let (status, body) = server.post(&refresh, "not-the-token", json!({})).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    // The customer confirmed at Stripe; no webhook has arrived.
    provider.set_status(intent, kassa_domain::payment::PaymentStatus::Succeeded);
    let (status, body) = server
        .call(reqwest::Method::POST, &refresh, token, None)
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("paid")),
        "{body}"
    );
    // Again and again: the order's budget runs out.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            server
                .call(reqwest::Method::POST, &refresh, token, None)
                .await
                .0,
        );
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let (_, events) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/orders/{order_id}/events"),
            SECRET,
            None,
        )
        .await;
    assert!(
        events["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["after"] == "paid" && e["actor"] == "customer (order token)"),
        "{events}"
    );
}
both_backends!(risk_p7_a_refresh_with_the_token_applies_what_stripe_says_now);
