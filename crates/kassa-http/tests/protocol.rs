//! The protocol edge over real sockets (risk S6): every answer, whatever the request, is the
//! API's JSON error shape with a request id, and each protocol limit — header read time, body
//! read time, keep-alive idle time, open connections — is reached and holds.
//! These tests exercise the HTTP server, not storage, so they run on SQLite only.

use std::time::Duration;

use kassa_http::ServerLimits;
use kassa_testkit::{TEST_PUBLISHABLE_KEY, TEST_SECRET_KEY, TestDb};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHECKOUT_BODY: &str = r#"{"email":"ada@example.com","shipping_address":{"name":"Ada","line1":"1 St","city":"London","postal_code":"N1","country":"GB"},"expected_total":100}"#;

/// Every wait in these tests is bounded by this; a limit that does not hold fails here.
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    address: std::net::SocketAddr,
    _db: TestDb,
}

async fn start(limits: ServerLimits) -> Server {
    let db = TestDb::sqlite().await;
    let address = kassa_testkit::serve_http(kassa_testkit::app(&db), None, limits).await;
    Server { address, _db: db }
}

/// Limits long enough not to interfere, with the one under test set short by the caller.
fn relaxed() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_secs(60),
        body_read_timeout: Duration::from_secs(60),
        keep_alive_idle_timeout: Duration::from_secs(60),
        connections_max: 100,
    }
}

struct Answer {
    status: u16,
    head: String,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }
}

/// Reads one response (head, then `Content-Length` bytes) from a kept-alive connection.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut answer = Answer {
        status: head[9..12].parse().expect("status code"),
        head,
        body: Value::Null,
    };
    let length: usize = answer
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    answer.body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    answer
}

async fn exchange(server: &Server, request: &str) -> Answer {
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    tokio::time::timeout(PATIENCE, read_answer(&mut stream))
        .await
        .expect("answered in time")
}

fn get(path: &str, key: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: kassa\r\nAuthorization: Bearer {key}\r\n{extra}\r\n")
}

fn post(path: &str, key: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: kassa\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// Waits for the server to close `stream`; returns how long it took.
async fn closed_by_server(stream: &mut TcpStream) -> Duration {
    let started = std::time::Instant::now();
    let mut sink = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection within its limit");
    started.elapsed()
}

#[tokio::test]
async fn risk_s6_every_answer_is_the_error_shape_with_a_request_id() {
    let server = start(relaxed()).await;
    let pk = TEST_PUBLISHABLE_KEY;
    let sk = TEST_SECRET_KEY;
    let cases = [
        (
            get("/v1/carts/%ff%fe", pk, ""),
            400,
            "invalid_request",
            Some("path"),
        ),
        (
            get("/v1/admin/webhook-events", sk, ""),
            400,
            "invalid_request",
            Some("status"),
        ),
        (
            get("/v1/admin/webhook-events?status=failed&status=dead", sk, ""),
            400,
            "invalid_request",
            Some("status"),
        ),
        (
            get("/v1/admin/webhook-events?status=failed&limit=5", sk, ""),
            400,
            "invalid_request",
            Some("limit"),
        ),
        (get("/v1/nothing-here", pk, ""), 404, "not_found", None),
        (
            format!(
                "DELETE /v1/carts HTTP/1.1\r\nHost: kassa\r\nAuthorization: Bearer {pk}\r\n\r\n"
            ),
            405,
            "method_not_allowed",
            None,
        ),
        (
            post("/v1/carts", pk, "", "{\"currency\": 1e400}"),
            400,
            "invalid_request",
            Some("currency"),
        ),
        (
            post(
                "/v1/carts/cart_x/checkout",
                pk,
                "Idempotency-Key: one\r\nIdempotency-Key: two\r\n",
                CHECKOUT_BODY,
            ),
            400,
            "invalid_request",
            Some("Idempotency-Key"),
        ),
        (
            format!(
                "POST /v1/carts HTTP/1.1\r\nHost: kassa\r\nAuthorization: Bearer {pk}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
            ),
            400,
            "invalid_request",
            None,
        ),
    ];
    for (request, status, code, param) in cases {
        let answer = exchange(&server, &request).await;
        let first_line = request.lines().next().unwrap_or_default();
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{first_line}: {}",
            answer.body
        );
        assert_eq!(
            answer.body["error"]["param"].as_str(),
            param,
            "{first_line}"
        );
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{first_line}"
        );
        assert!(
            answer
                .header("x-request-id")
                .is_some_and(|id| id.starts_with("req_")),
            "{first_line}: {}",
            answer.head
        );
    }
    let method = exchange(&server, "DELETE /v1/carts HTTP/1.1\r\nHost: k\r\n\r\n").await;
    assert!(
        method
            .header("allow")
            .is_some_and(|allow| allow.contains("POST"))
    );
    let traced = exchange(&server, &get("/healthz", pk, "X-Request-Id: trace-42\r\n")).await;
    assert_eq!(
        (traced.status, traced.header("x-request-id")),
        (200, Some("trace-42"))
    );
    let large_number = exchange(
        &server,
        &post(
            "/v1/carts/c/lines",
            pk,
            "",
            "{\"sku\":\"A\",\"quantity\":1e400}",
        ),
    )
    .await;
    assert_eq!(large_number.body["error"]["param"], "quantity");
}

#[tokio::test]
async fn risk_s6_slow_headers_are_cut_off_at_the_header_read_limit() {
    let limit = Duration::from_millis(400);
    let server = start(ServerLimits {
        header_read_timeout: limit,
        ..relaxed()
    })
    .await;
    // Twenty clients each trickle a header byte every 50 ms, forever: activity must not extend
    // the limit, and every one of them is closed.
    let trickles: Vec<_> = (0..20)
        .map(|_| {
            let address = server.address;
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(address).await.expect("connect");
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\n")
                    .await
                    .expect("write");
                let started = std::time::Instant::now();
                let mut sink = [0u8; 64];
                loop {
                    tokio::select! {
                        read = stream.read(&mut sink) => {
                            if matches!(read, Ok(0) | Err(_)) {
                                return started.elapsed();
                            }
                        }
                        () = tokio::time::sleep(Duration::from_millis(50)) => {
                            if stream.write_all(b"X").await.is_err() {
                                return started.elapsed();
                            }
                        }
                    }
                    assert!(
                        started.elapsed() < PATIENCE,
                        "a trickling client was never cut off"
                    );
                }
            })
        })
        .collect();
    for trickle in trickles {
        let held = trickle.await.expect("task");
        assert!(held >= limit, "closed after {held:?}, before the limit");
    }
    // A client that connects and never sends a byte is a slow header too.
    let mut silent = TcpStream::connect(server.address).await.expect("connect");
    assert!(closed_by_server(&mut silent).await >= limit);
    // A client that sends its headers in time is served as usual.
    let answer = exchange(&server, &get("/healthz", "", "")).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn risk_s6_a_body_that_never_arrives_is_answered_408() {
    let server = start(ServerLimits {
        body_read_timeout: Duration::from_millis(400),
        ..relaxed()
    })
    .await;
    // Declares 100 bytes, sends 18.
    let request = format!(
        "POST /v1/carts HTTP/1.1\r\nHost: kassa\r\nAuthorization: Bearer {TEST_PUBLISHABLE_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"currency\":\"eur\""
    );
    let answer = exchange(&server, &request).await;
    assert_eq!((answer.status, answer.code()), (408, "request_timeout"));
}

#[tokio::test]
async fn risk_s6_idle_keep_alive_connections_are_closed() {
    let limit = Duration::from_millis(400);
    let server = start(ServerLimits {
        keep_alive_idle_timeout: limit,
        ..relaxed()
    })
    .await;
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    // Requests closer together than the limit share the connection…
    for _ in 0..3 {
        stream
            .write_all(get("/healthz", "", "").as_bytes())
            .await
            .expect("write");
        assert_eq!(read_answer(&mut stream).await.status, 200);
        tokio::time::sleep(limit / 4).await;
    }
    // …and once it sits idle past the limit, the server closes it.
    let waited = closed_by_server(&mut stream).await;
    assert!(waited + limit / 4 >= limit, "closed after {waited:?}");
}

#[tokio::test]
async fn risk_s6_connections_beyond_the_maximum_are_refused_with_503() {
    let server = start(ServerLimits {
        connections_max: 2,
        ..relaxed()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.address).await.expect("connect");
        stream
            .write_all(get("/healthz", "", "").as_bytes())
            .await
            .expect("write");
        assert_eq!(read_answer(&mut stream).await.status, 200);
        held.push(stream);
    }
    let refused = exchange(&server, &get("/healthz", "", "")).await;
    assert_eq!(
        (refused.status, refused.code()),
        (503, "service_unavailable")
    );
    assert!(refused.header("retry-after").is_some());
    // A held connection closes; its slot is free again.
    drop(held.pop());
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let answer = exchange(&server, &get("/healthz", "", "")).await;
            if answer.status == 200 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a freed slot is used again");
    assert_eq!(served.status, 200);
}

/// A client that writes its whole oversized body before reading (most HTTP libraries do) reads
/// a 413 in the error shape: the server reads the rest and drops it before answering, instead of
/// closing on unread bytes (which resets the connection and loses the answer).
#[tokio::test]
async fn risk_s6_an_oversized_body_written_whole_gets_a_readable_413() {
    let server = start(relaxed()).await;
    let body = " ".repeat(3 * 1024 * 1024);
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    let request = post("/v1/carts", kassa_testkit::TEST_PUBLISHABLE_KEY, "", &body);
    tokio::time::timeout(PATIENCE, stream.write_all(request.as_bytes()))
        .await
        .expect("the whole body is taken")
        .expect("write");
    let answer = tokio::time::timeout(PATIENCE, read_answer(&mut stream))
        .await
        .expect("answered in time");
    assert_eq!((answer.status, answer.code()), (413, "payload_too_large"));
    assert!(answer.header("x-request-id").is_some());
}
