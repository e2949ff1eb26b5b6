//! `kassa bench` runs and reports every figure it promises, on each backend. What the figures
//! are is measured, never asserted (BENCHMARKS.md holds them); only that a short run completes,
//! prints them and ends with a passing invariant check.

use std::process::Command;

use kassa_testkit::{TestDb, both_backends};

async fn kassa_bench_prints_every_figure_and_a_passing_check(db: TestDb) {
    let url = db.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kassa"))
            .current_dir(std::env::temp_dir())
            .args([
                "bench",
                "--customers",
                "2",
                "--seconds",
                "2",
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
        "checkouts per raw commit",
        "webhook events:",
        "checkout ",
        "peak RSS: kassa serve",
        "invariant check: PASS",
    ] {
        assert!(printed.contains(figure), "no {figure:?} in:\n{printed}");
    }
    let events: u64 = printed
        .lines()
        .find_map(|line| line.strip_prefix("webhook events: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(events > 0, "no webhook event was recorded:\n{printed}");
}
both_backends!(kassa_bench_prints_every_figure_and_a_passing_check);
