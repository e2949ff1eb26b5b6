//! The official `stripe` Python package (pinned in requirements-test.txt) must work against the
//! emulator. A missing interpreter or package fails the test with the command that installs it.

use std::process::Command;

use kassa_emulator::{Emulator, EmulatorConfig};

#[tokio::test]
async fn official_stripe_python_client_works_against_the_emulator() {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let python = std::env::var("KASSA_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{workspace}/.venv/bin/python"));
    let hint = "run: python3 -m venv .venv && .venv/bin/pip install -r requirements-test.txt (scripts/test does this)";
    let has_stripe = Command::new(&python)
        .args(["-c", "import stripe"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_stripe,
        "{python} with the stripe package is required; {hint}"
    );

    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("emulator starts");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/stripe_client_check.py"
    );
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("STRIPE_API_BASE", emulator.base_url())
        .env("STRIPE_SECRET_KEY", &emulator.config().secret_key)
        .output()
        .await
        .expect("python runs");
    emulator.shutdown().await;
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
