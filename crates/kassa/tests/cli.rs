//! The binary as an operator meets it: configuration errors at startup, and a sandbox start
//! that serves the demo catalog. Runs the real `kassa` executable.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kassa() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

#[test]
fn risk_c1_malformed_setting_stops_startup_naming_it() {
    for (name, value) in [
        ("KASSA_RATE_LIMIT", "fast"),
        ("KASSA_DATABASE_URL", "mysql://localhost/kassa"),
        ("KASSA_LISTEN", "everywhere"),
        ("KASSA_DATABSE_URL", "sqlite://typo.db"),
    ] {
        let output = kassa()
            .arg("serve")
            .env(name, value)
            .output()
            .expect("kassa runs");
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[test]
fn risk_c1_live_mode_without_webhook_secrets_does_not_start() {
    let output = kassa()
        .arg("serve")
        .env("STRIPE_SECRET_KEY", "sk_test_abc")
        .env("KASSA_SECRET_KEY", "sk_0123456789abcdef")
        .env("KASSA_PUBLISHABLE_KEY", "pk_0123456789abcdef")
        .output()
        .expect("kassa runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("STRIPE_WEBHOOK_SECRETS"));
}

#[test]
fn sandbox_serve_starts_with_the_demo_catalog() {
    let dir = std::env::temp_dir().join(format!("kassa-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut child = kassa()
        .arg("serve")
        .current_dir(&dir)
        .env("KASSA_LISTEN", "127.0.0.1:0")
        .env("KASSA_SIM_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kassa starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut banner = Vec::new();
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => {
                let done = line.contains("curl -s http");
                banner.push(line);
                if done {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let text = banner.join("\n");
    assert!(
        text.contains("Kassa is listening on http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("publishable key: pk_test_"), "{text}");
    assert!(text.contains("TEE-M"), "{text}");
}

#[tokio::test]
async fn kassa_sim_runs_the_emulator_standalone() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut child = kassa()
        .arg("sim")
        .env("KASSA_SIM_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kassa sim starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let banner: Vec<String> = lines.by_ref().take(2).map_while(Result::ok).collect();
    // Keep reading so the emulator never prints into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let word_after = |prefix: &str| {
        banner
            .iter()
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no {prefix:?} in {banner:?}"))
    };
    let base = word_after("Stripe emulator listening on");
    let key = word_after("secret key:");
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/payment_intents"))
        .bearer_auth(&key)
        .form(&[("amount", "1999"), ("currency", "eur")])
        .send()
        .await
        .expect("emulator answers")
        .json()
        .await
        .expect("json");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        (created["object"].as_str(), created["amount"].as_i64()),
        (Some("payment_intent"), Some(1999))
    );
}

#[test]
fn operator_commands_print_tables_and_refuse_an_unknown_status() {
    let dir = std::env::temp_dir().join(format!("kassa-cli-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}/ops.db", dir.display());
    let run = |args: &[&str]| {
        kassa()
            .args(args)
            .env("KASSA_DATABASE_URL", &url)
            .output()
            .expect("kassa runs")
    };
    assert!(run(&["migrate"]).status.success());
    let jobs = run(&["jobs"]);
    let text = String::from_utf8_lossy(&jobs.stdout);
    assert!(jobs.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("orders needing attention") && l.ends_with(" 0")),
        "{text}"
    );
    let orders = run(&["orders", "--status", "paid"]);
    let text = String::from_utf8_lossy(&orders.stdout);
    assert!(
        orders.status.success() && text.contains("0 orders"),
        "{text}"
    );
    let bad = run(&["orders", "--status", "shipped"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs_attention"));
    let _ = std::fs::remove_dir_all(&dir);
}
