//! What the binary's tests share: `kassa` started as a child process with a clean environment,
//! and what its banner says. Each test binary uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const SECRET: &str = "sk_test_binary_0123456789abcdef";
pub const PUBLISHABLE: &str = "pk_test_binary_0123456789abcdef";

/// A running `kassa` process, killed (`SIGKILL`) when dropped.
pub struct Process(pub Child);

impl Process {
    /// `kill -9`: no shutdown, nothing flushed.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh working directory per process, so no two share a SQLite file by accident.
fn scratch_dir() -> std::path::PathBuf {
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("kassa-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Starts `kassa <command>` with only `PATH` and `env` set, its logs (stderr) in `logs` if
/// given; returns it with the first `lines` lines it printed.
pub fn spawn(
    command: &str,
    env: &[(&str, &str)],
    lines: usize,
    logs: Option<&Path>,
) -> (Process, Vec<String>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .arg(command)
        .current_dir(scratch_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(match logs {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        })
        .spawn()
        .expect("kassa starts");
    let stdout = child.stdout.take().expect("piped");
    let mut reader = BufReader::new(stdout).lines();
    let printed: Vec<String> = (0..lines)
        .filter_map(|_| reader.next().and_then(Result::ok))
        .collect();
    // Keep reading so the process never writes into a closed pipe.
    std::thread::spawn(move || reader.for_each(drop));
    (Process(child), printed)
}

/// `kassa serve` in sandbox mode on `database_url` (ephemeral ports, the test keys, no rate
/// limit) with `settings` on top; its address.
pub fn serve(database_url: &str, settings: &[(&str, &str)], logs: Option<&Path>) -> Kassa {
    let mut env = vec![
        ("KASSA_LISTEN", "127.0.0.1:0"),
        ("KASSA_SIM_LISTEN", "127.0.0.1:0"),
        ("KASSA_DATABASE_URL", database_url),
        ("KASSA_SECRET_KEY", SECRET),
        ("KASSA_PUBLISHABLE_KEY", PUBLISHABLE),
        ("KASSA_RATE_LIMIT", "0"),
    ];
    env.extend_from_slice(settings);
    let (process, printed) = spawn("serve", &env, 1, logs);
    let base = url_in(printed.first().map_or("", String::as_str));
    Kassa { process, base }
}

pub struct Kassa {
    pub process: Process,
    pub base: String,
}

/// The value after `label` on the line that starts with it.
pub fn field(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(label))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_else(|| panic!("no {label:?} in {lines:?}"))
}

pub fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

/// The test virtualenv's executable `name` (scripts/test makes it from requirements-test.txt).
pub fn venv_tool(name: &str) -> std::path::PathBuf {
    let python = std::env::var("KASSA_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/../../.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let tool = Path::new(&python).with_file_name(name);
    assert!(
        tool.exists(),
        "{} is missing; run scripts/test, or: python3 -m venv .venv && \
         .venv/bin/pip install -r requirements-test.txt",
        tool.display()
    );
    tool
}

/// `kassa sim` playing Stripe on its own (it outlives the `kassa serve`s a test kills), with
/// the keys it printed.
pub struct Sim {
    _process: Process,
    pub base: String,
    pub secret: String,
    pub publishable: String,
    pub webhook_secret: String,
}

impl Sim {
    pub fn start() -> Sim {
        let (process, printed) = spawn("sim", &[("KASSA_SIM_LISTEN", "127.0.0.1:0")], 4, None);
        Sim {
            _process: process,
            base: url_in(&printed[0]),
            secret: field(&printed, "secret key:"),
            publishable: field(&printed, "publishable key:"),
            webhook_secret: field(&printed, "webhook secret:"),
        }
    }

    /// The environment of a `kassa serve` (or another command) in live mode against this
    /// emulator, on `database_url`, listening on `listen`.
    pub fn live_env<'a>(
        &'a self,
        database_url: &'a str,
        listen: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("KASSA_LISTEN", listen),
            ("KASSA_DATABASE_URL", database_url),
            ("KASSA_SECRET_KEY", SECRET),
            ("KASSA_PUBLISHABLE_KEY", PUBLISHABLE),
            ("KASSA_RATE_LIMIT", "0"),
            ("STRIPE_SECRET_KEY", self.secret.as_str()),
            ("STRIPE_API_BASE", self.base.as_str()),
            ("STRIPE_WEBHOOK_SECRETS", self.webhook_secret.as_str()),
        ]
    }

    /// Makes the emulator send its events to the Kassa at `base` (as well).
    pub async fn send_webhooks_to(&self, base: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_emulator/webhook_endpoints", self.base))
            .bearer_auth(&self.secret)
            .json(&serde_json::json!({"url": format!("{base}/v1/webhooks/stripe")}))
            .send()
            .await
            .expect("the emulator answers");
        assert!(answer.status().is_success(), "webhook endpoint added");
    }
}

/// `kassa chaos` as a child process with `env`: passed, and what it printed.
pub async fn chaos(env: Vec<(String, String)>, args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_kassa"))
            .arg("chaos")
            .args(&args)
            .current_dir(scratch_dir())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .output()
            .expect("kassa chaos runs");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), printed)
    })
    .await
    .expect("joined")
}

/// A port free now, for a server that must come back on the same address after a restart.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
