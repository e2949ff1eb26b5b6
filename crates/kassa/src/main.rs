//! The `kassa` binary: parses the command line, loads and validates configuration, wires the
//! crates together and runs. No business logic lives here.

mod bench;
mod chaos;
mod config;
mod demo;
mod operator;
mod serve;
mod workers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "kassa",
    version,
    about = "Self-hosted checkout and payments server"
)]
struct Cli {
    /// A KEY=VALUE file with the same names as the environment (the environment wins).
    #[arg(long, global = true, env = "KASSA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, the Stripe webhook endpoint and the workers. Without STRIPE_SECRET_KEY:
    /// sandbox mode (SQLite under ./kassa-data, demo catalog, printed test keys).
    Serve,
    /// Run the built-in Stripe emulator alone on KASSA_SIM_LISTEN (default 127.0.0.1:12111).
    Sim,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and exit (0 when valid).
    CheckConfig,
    /// Bring Kassa's books back to Stripe's: check every payment and refund still in motion and
    /// recover missed webhook events, then print a summary. In sandbox mode it asks the running
    /// `kassa serve`.
    Reconcile,
    /// List orders with a status (pending_payment, authorized, paid, …) or those that need
    /// attention, newest first.
    Orders {
        #[arg(long, default_value = "needs_attention")]
        status: String,
    },
    /// Resolve an order flagged for attention with one of the actions its reason takes (`kassa
    /// orders` lists them; see docs/guides/after-payment.md, "When an order needs attention"), e.g.
    /// `kassa resolve ord_… --action refund --note "stock gone, customer refunded"`.
    Resolve {
        /// The flagged order.
        order: String,
        /// refund, commit, retry, accept, cancel or dismiss.
        #[arg(long)]
        action: String,
        /// Why, for the audit trail.
        #[arg(long)]
        note: String,
    },
    /// Show the background workers' work: due queues, operations in progress, holds.
    Jobs,
    /// Check the invariants of docs/risks.md against the database and Stripe (in sandbox mode: ask
    /// the running server); exit status 0 when they all hold, 1 when one is broken.
    Check,
    /// Measure a checkout end to end: starts `kassa sim` and `kassa serve` (on a fresh SQLite
    /// file, or --database-url), measures the raw durable-commit rate, runs a closed loop of
    /// customers without faults, and prints checkouts/s, p50/p99 per call, webhook events/s,
    /// peak memory, CPU time per checkout of each process and the invariant check (exit status 1
    /// when any checkout failed or the check fails).
    Bench {
        /// Customers at once, each checking out again as soon as the last one is confirmed.
        #[arg(long, default_value_t = 32)]
        customers: usize,
        /// How long the load runs.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The database to run on (sqlite://… or postgres://…), empty: the bench's emulator is
        /// new each run and knows no earlier payments. Default: a fresh SQLite file.
        #[arg(long)]
        database_url: Option<String>,
        /// Start this many checkouts per second whatever the answers (an open loop, for
        /// latency at a given rate) instead of --customers in a closed loop.
        #[arg(long)]
        rate: Option<u64>,
        /// Group commit on or off for the server under test (KASSA_GROUP_COMMIT); default: the
        /// database's default.
        #[arg(long, value_parser = ["on", "off"])]
        group_commit: Option<String>,
    },
    /// Drive a seeded workload of customers and operators against running Kassa instances
    /// while the Stripe emulator injects faults; then stop the faults, let the background work
    /// settle and run the invariant check (exit status 1 when it fails). Needs the emulator:
    /// sandbox mode, or `kassa sim` as STRIPE_API_BASE.
    Chaos {
        /// The workload's seed (printed; the same seed asks for the same actions).
        #[arg(long)]
        seed: Option<u64>,
        /// Customers at once.
        #[arg(long, default_value_t = 8)]
        customers: usize,
        /// Actions per customer.
        #[arg(long, default_value_t = 30)]
        steps: usize,
        /// A Kassa instance to send requests to (repeat for several; default: KASSA_LISTEN).
        #[arg(long = "url")]
        urls: Vec<String>,
        /// No faults: the workload alone.
        #[arg(long)]
        no_faults: bool,
        /// How long the background work may take to bring everything to rest.
        #[arg(long, default_value_t = 120)]
        settle_secs: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every HTTPS client in this process (Stripe, the operator commands) uses ring, installed
    // once here; a second install (a test harness did it first) changes nothing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logs();
    let config = match load_config(cli.config.as_deref()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("kassa: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kassa: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(config).await,
            Command::Sim => serve::sim(&config).await,
            Command::Migrate => serve::migrate(&config).await,
            Command::Reconcile => operator::reconcile(&config).await,
            Command::Orders { status } => operator::orders(&config, &status).await,
            Command::Resolve {
                order,
                action,
                note,
            } => operator::resolve(&config, &order, &action, &note).await,
            Command::Jobs => operator::jobs(&config).await,
            Command::Check => match operator::check(&config).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow::anyhow!("an invariant is broken (listed above)")),
                Err(error) => Err(error),
            },
            Command::Chaos {
                seed,
                customers,
                steps,
                urls,
                no_faults,
                settle_secs,
            } => {
                let options = chaos::ChaosOptions {
                    seed: seed.unwrap_or_else(rand::random),
                    customers: customers.max(1),
                    steps,
                    urls,
                    faults: !no_faults,
                    settle_secs,
                };
                match chaos::run(&config, &options).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(anyhow::anyhow!(
                        "seed {} broke an invariant (listed above); replay: kassa chaos --seed {}",
                        options.seed,
                        options.seed
                    )),
                    Err(error) => Err(error),
                }
            }
            Command::Bench {
                customers,
                seconds,
                database_url,
                rate,
                group_commit,
            } => {
                let options = bench::BenchOptions {
                    customers: customers.max(1),
                    seconds: seconds.max(1),
                    database_url,
                    rate: rate.filter(|rate| *rate > 0),
                    group_commit,
                };
                match bench::run(&options).await {
                    Ok(outcome) if outcome.failed_checkouts > 0 => Err(anyhow::anyhow!(
                        "{} checkouts failed (the first answers are above); a figure measured \
                         with failures is not a figure",
                        outcome.failed_checkouts
                    )),
                    Ok(outcome) if !outcome.check_passed => {
                        Err(anyhow::anyhow!("the invariant check failed after the load"))
                    }
                    Ok(_) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Command::CheckConfig => {
                println!("configuration is valid");
                Ok(())
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kassa: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries only what the operator is meant to read, the banner): plain
/// text on a terminal, one JSON object per line otherwise, for a log collector. They never
/// carry secrets, card data or a customer's e-mail or address (risk S8): the code logs ids.
fn init_logs() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::io::stderr().is_terminal() {
        logs.init();
    } else {
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    }
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, String> {
    let file = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                format!(
                    "configuration error: KASSA_CONFIG: cannot read {}: {error}",
                    path.display()
                )
            })?;
            config::parse_file(&text).map_err(|error| error.to_string())?
        }
        None => BTreeMap::new(),
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    Config::from_sources(&env, &file).map_err(|error| error.to_string())
}
