//! `kassa bench` runs and reports every figure it promises, on each backend. What the figures
//! are is measured, never asserted (docs/benchmarks.md holds them); only that a short run completes
//! with no failed checkout, prints them and ends with a passing invariant check.

use std::process::Command;

use kassa_testkit::{TestDb, both_backends};

/// A few seconds of a handful of customers: in a debug build that is more checkouts than the
/// per-e-mail velocity limit allows one customer (10 an hour), so a bench whose customers shared
/// an e-mail would fail here.
async fn kassa_bench_prints_every_figure_and_no_checkout_fails(db: TestDb) {
    let url = db.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kassa"))
            .current_dir(std::env::temp_dir())
            .args([
                "bench",
                "--customers",
                "4",
                "--seconds",
                "3",
                "--database-url",
                &url,
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
    })
    .await
    .expect("joined")
    .expect("kassa bench runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for figure in [
        "raw durable commits",
        "limits off for the server under test: KASSA_RATE_LIMIT=0, KASSA_CHECKOUT_LIMIT_PER_IP=0",
        "checkouts per raw commit",
        "webhook events:",
        "checkout ",
        "peak RSS: kassa serve",
        "cpu per checkout: serve ",
        "invariant check: PASS",
    ] {
        assert!(printed.contains(figure), "no {figure:?} in:\n{printed}");
    }
    let checkouts = printed
        .lines()
        .find_map(|line| line.strip_prefix("checkouts: "))
        .unwrap_or_default();
    assert!(
        checkouts.contains("(0 failed)"),
        "a checkout failed:\n{printed}"
    );
    let done: u64 = checkouts
        .split_whitespace()
        .next()
        .and_then(|done| done.parse().ok())
        .unwrap_or(0);
    assert!(done > 0, "no checkout was done:\n{printed}");
    // Each process's CPU time was read from the operating system, not left out.
    let cpu = printed
        .lines()
        .find(|line| line.starts_with("cpu per checkout:"))
        .unwrap_or_default();
    assert!(!cpu.contains("not measured"), "{cpu}");
    let events: u64 = printed
        .lines()
        .find_map(|line| line.strip_prefix("webhook events: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(events > 0, "no webhook event was recorded:\n{printed}");
}
both_backends!(kassa_bench_prints_every_figure_and_no_checkout_fails);
