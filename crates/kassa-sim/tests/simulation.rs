//! The deterministic simulation in the test suite: a bounded run of consecutive seeds that must
//! all pass, exact replay, and the proof that it notices a protection switched off.
//! `KASSA_SIM_SEEDS=N` runs more; `cargo run --release -p kassa-sim -- --seeds 10000` is the
//! full run, and `--seed S` replays one.

use kassa_sim::{Options, simulate, simulate_seeds};
use kassa_store::Protection;

fn seeds() -> u64 {
    std::env::var("KASSA_SIM_SEEDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(400)
}

#[test]
fn risk_r2_simulation_passes_consecutive_seeds_with_crashes_and_faults() {
    let total = simulate_seeds(0, seeds(), &Options::default()).unwrap_or_else(|failure| {
        panic!(
            "{failure}\nreplay: cargo run -p kassa-sim -- --seed {}",
            failure.seed
        )
    });
    // A run that proves anything took money, gave some back, and died along the way.
    assert!(
        total.captured > 0 && total.refunded > 0 && total.crashes > 0,
        "{total:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn simulation_replays_a_seed_exactly() {
    let options = Options::default();
    let first = simulate(7, &options).await;
    let second = simulate(7, &options).await;
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
}

#[test]
fn risk_p6_simulation_catches_the_refund_bound_switched_off() {
    let options = Options {
        switched_off: Some(Protection::RefundBound),
        ..Options::default()
    };
    let failure = simulate_seeds(0, 10_000, &options)
        .expect_err("10,000 seeds ran with the refund bound switched off and none noticed");
    assert!(failure.what.contains("risk P6"), "{failure}");
}
