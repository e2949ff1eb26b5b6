//! `kassa-sim`: runs the deterministic simulation over many seeds, on every core.
//!
//! ```text
//! kassa-sim [--seeds N] [--from S]     N consecutive seeds starting at S (default 1000 from 0)
//! kassa-sim --seed S                   one seed, to replay a failure
//! kassa-sim --switch-off refund-bound  the same with a protection switched off
//! ```

use std::process::ExitCode;
use std::time::Instant;

use kassa_sim::{Options, simulate_seeds};
use kassa_store::Protection;

struct Args {
    from: u64,
    count: u64,
    options: Options,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        from: 0,
        count: 1_000,
        options: Options::default(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("not a number: {text}"))
        };
        match flag.as_str() {
            "--seeds" => parsed.count = number(value()?)?,
            "--from" => parsed.from = number(value()?)?,
            "--seed" => {
                parsed.from = number(value()?)?;
                parsed.count = 1;
            }
            "--switch-off" => match value()?.as_str() {
                "refund-bound" => parsed.options.switched_off = Some(Protection::RefundBound),
                other => return Err(format!("unknown protection {other:?}")),
            },
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("kassa-sim: {message}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let outcome = simulate_seeds(args.from, args.count, &args.options);
    let elapsed = started.elapsed();
    match outcome {
        Ok(total) => {
            println!(
                "{} seeds from {} passed in {:.1} s ({} per minute)",
                args.count,
                args.from,
                elapsed.as_secs_f32(),
                u128::from(args.count) * 60_000 / elapsed.as_millis().max(1),
            );
            println!(
                "in all: {} orders, {} payments taken, {} refunds, {} crashes, {} deliveries, \
                 {} payments checked",
                total.orders,
                total.captured,
                total.refunded,
                total.crashes,
                total.deliveries,
                total.payments_checked
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            let switched = match args.options.switched_off {
                Some(Protection::RefundBound) => " --switch-off refund-bound",
                None => "",
            };
            eprintln!(
                "{failure}\nreplay: cargo run -p kassa-sim -- --seed {}{switched}",
                failure.seed
            );
            ExitCode::FAILURE
        }
    }
}
