//! Kassa behind a real nginx (risk D1), configured with the file the docs ship
//! (`docs/nginx/kassa.conf`), `kassa serve` trusting only nginx's address. Clients connect to
//! nginx from different loopback addresses (127.0.0.2, 127.0.0.3), so nginx sees two clients
//! as it would on the internet. scripts/test installs Debian's nginx; without it this fails
//! with the install hint rather than skip.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{PUBLISHABLE, Process, SECRET, Sim, free_port, spawn, url_in};
use kassa_testkit::{TestDb, both_backends};
use serde_json::{Value, json};

const NGINX: &str = "/usr/sbin/nginx";
/// Kassa's public limit in this test: 2 requests a second, bursts of 4.
const RATE_LIMIT: &str = "2";

/// nginx with the shipped configuration in front of `upstream`, listening on `port`.
fn start_nginx(dir: &Path, port: u16, upstream: &str) -> Process {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} is missing; scripts/test installs it (apt-get install nginx)"
    );
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/nginx/kassa.conf"),
    )
    .expect("docs/nginx/kassa.conf");
    assert!(shipped.contains("127.0.0.1:8080"), "the shipped upstream");
    std::fs::write(
        dir.join("kassa.conf"),
        shipped.replace("127.0.0.1:8080", upstream),
    )
    .expect("write");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0"));
    let user = if root { "user root;" } else { "" };
    let dir_text = dir.display();
    let main = format!(
        "{user}
daemon off;
worker_processes 1;
pid {dir_text}/nginx.pid;
error_log {dir_text}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir_text}/body;
    proxy_temp_path {dir_text}/proxy;
    fastcgi_temp_path {dir_text}/fastcgi;
    uwsgi_temp_path {dir_text}/uwsgi;
    scgi_temp_path {dir_text}/scgi;
    server {{
        listen 127.0.0.1:{port};
        include {dir_text}/kassa.conf;
    }}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("write");
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nginx did not listen: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Process(child)
}

/// A client that connects from `source` (a loopback address of its own).
fn client_from(source: &str) -> reqwest::Client {
    let address: IpAddr = source.parse().expect("address");
    reqwest::Client::builder()
        .local_address(address)
        .build()
        .expect("client")
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("nginx answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A fresh directory for one nginx (the two backends' runs go on at once).
fn scratch(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kassa-proxy-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

async fn risk_d1_behind_nginx_each_client_is_itself_and_stripe_is_never_starved(db: TestDb) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Sim::start();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = sim.live_env(&db.url, &listen);
    env.retain(|(name, _)| *name != "KASSA_RATE_LIMIT");
    env.extend([
        ("KASSA_RATE_LIMIT", RATE_LIMIT),
        ("KASSA_TRUSTED_PROXIES", "127.0.0.1"),
        ("KASSA_CHECKOUT_LIMIT_PER_EMAIL", "0"),
    ]);
    let (_kassa, printed) = spawn("serve", &env, 1, None);
    let kassa = url_in(printed.first().map_or("", String::as_str));
    let port = free_port();
    let dir = scratch(port);
    let _nginx = start_nginx(&dir, port, kassa.trim_start_matches("http://"));
    let proxy = format!("http://127.0.0.1:{port}");
    let (ada, grace) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let post = reqwest::Method::POST;

    // The operator stocks a mug (the secret key is not the public surface).
    let product = json!({"name": "Mug", "variants": [{"sku": "MUG", "unit_amount": 1250, "currency": "eur"}]});
    let (status, _) = call(
        &ada,
        post.clone(),
        &format!("{proxy}/v1/products"),
        SECRET,
        Some(product),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    let stock = Some(json!({"on_hand": 10}));
    call(
        &ada,
        reqwest::Method::PUT,
        &format!("{proxy}/v1/inventory/MUG"),
        SECRET,
        stock,
        &[],
    )
    .await;

    // Ada floods the storefront until she is limited.
    let carts = format!("{proxy}/v1/carts");
    let mut limited = false;
    for _ in 0..20 {
        let (status, body) = call(
            &ada,
            post.clone(),
            &carts,
            PUBLISHABLE,
            Some(json!({"currency": "eur"})),
            &[],
        )
        .await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limited");
            limited = true;
            break;
        }
    }
    assert!(limited, "Ada's bucket ran out");
    // A forged X-Forwarded-For does not buy her a fresh bucket: nginx appends her address.
    let (status, _) = call(
        &ada,
        post.clone(),
        &carts,
        PUBLISHABLE,
        Some(json!({"currency": "eur"})),
        &[("X-Forwarded-For", "198.51.100.1")],
    )
    .await;
    assert_eq!(status, 429, "still Ada");
    // Grace, behind the same proxy, has her own bucket: she checks out.
    let (status, cart) = call(
        &grace,
        post.clone(),
        &carts,
        PUBLISHABLE,
        Some(json!({"currency": "eur"})),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{cart}");
    let cart_id = cart["id"].as_str().expect("cart id").to_owned();
    let line = json!({"sku": "MUG", "quantity": 1});
    let (status, _) = call(
        &grace,
        post.clone(),
        &format!("{carts}/{cart_id}/lines"),
        PUBLISHABLE,
        Some(line),
        &[],
    )
    .await;
    assert_eq!(status, 200, "the line is added");
    let checkout = json!({
        "email": "grace@example.com",
        "shipping_address": {"name": "Grace Hopper", "line1": "1 Harbour St", "city": "London",
                             "postal_code": "N1 1AA", "country": "GB"},
        "expected_total": 1250
    });
    let (status, placed) = call(
        &grace,
        post.clone(),
        &format!("{carts}/{cart_id}/checkout"),
        PUBLISHABLE,
        Some(checkout),
        &[("Idempotency-Key", "grace-1")],
    )
    .await;
    assert_eq!(status, 201, "{placed}");
    let order_id = placed["order"]["id"].as_str().expect("order id").to_owned();

    // The audit trail says Grace's address, not nginx's.
    let (status, events) = call(
        &ada,
        reqwest::Method::GET,
        &format!("{proxy}/v1/orders/{order_id}/events"),
        SECRET,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let addresses: Vec<&str> = events["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|event| event["client_ip"].as_str())
        .collect();
    assert!(
        !addresses.is_empty() && addresses.iter().all(|ip| *ip == "127.0.0.3"),
        "{events}"
    );

    // Stripe's signed delivery, from Ada's exhausted address, is taken.
    let listed = reqwest::Client::new()
        .get(format!("{}/v1/events?limit=1", sim.base))
        .bearer_auth(&sim.secret)
        .send()
        .await
        .expect("emulator answers")
        .json::<Value>()
        .await
        .expect("json");
    let event = listed["data"][0].to_string();
    let signed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let signature = kassa_emulator::signature_header(&sim.webhook_secret, signed_at, &event);
    let webhook = format!("{proxy}/v1/webhooks/stripe");
    let answer = ada
        .post(&webhook)
        .header("Stripe-Signature", &signature)
        .header("Content-Type", "application/json")
        .body(event.clone())
        .send()
        .await
        .expect("answers");
    assert_eq!(
        answer.status().as_u16(),
        200,
        "a signed delivery is never 429"
    );
    // Unsigned deliveries spend a tight budget of their own: 400s, then 429.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let answer = grace
            .post(&webhook)
            .header("Stripe-Signature", "t=1,v1=00")
            .header("Content-Type", "application/json")
            .body(event.clone())
            .send()
            .await
            .expect("answers");
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(statuses[0], 400);
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // A body far over every limit gets a 413 in the API's shape, through the proxy.
    let answer = grace
        .post(&carts)
        .bearer_auth(PUBLISHABLE)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status().as_u16(), 413);
    let body: Value = answer.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "payload_too_large");
}
both_backends!(risk_d1_behind_nginx_each_client_is_itself_and_stripe_is_never_starved);
