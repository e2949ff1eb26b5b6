//! `kassa bench`: the cost of a checkout, measured end to end. It starts `kassa sim` (Stripe)
//! and `kassa serve` (live mode against it) as processes of their own, so each one's memory is
//! its own, measures the database's raw durable-commit rate on the same file system first, then
//! runs a closed loop of customers — cart, three lines, checkout, confirmation at the emulator —
//! for a while without faults, and ends with the invariant check. No figure here is asserted by
//! a test: this prints what it measured, and what each process spent on the CPU doing it.
//!
//! A figure measured while checkouts fail is not a figure: every checkout is a customer of its
//! own (its own e-mail, so the per-e-mail velocity limit stays on and is never reached), the
//! limits that cannot tell customers apart here are turned off and named in the output, and any
//! failed checkout makes the run fail, with the first answers printed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::json;

use crate::chaos::{self, Placed, Shop};

/// What `kassa bench` was asked for.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub customers: usize,
    pub seconds: u64,
    /// `None`: a fresh SQLite file in a scratch directory.
    pub database_url: Option<String>,
    /// Checkouts started per second (open loop); `None`: `customers` in a closed loop.
    pub rate: Option<u64>,
    /// `on` or `off` for the server's KASSA_GROUP_COMMIT; `None`: the database's default.
    pub group_commit: Option<String>,
}

const SECRET: &str = "sk_bench_0123456789abcdef0123";
const PUBLISHABLE: &str = "pk_bench_0123456789abcdef0123";
/// How long the raw commit rate is measured.
const PROBE: Duration = Duration::from_secs(3);
/// How long the background work may take to apply every event after the load stops.
const CATCH_UP_MAX: Duration = Duration::from_secs(120);
/// The API calls timed, in the order a checkout makes them.
const CALLS: [&str; 4] = ["cart", "line", "checkout", "confirm"];
/// How many failed checkouts' answers are printed.
const FAILURES_SHOWN: usize = 5;
/// How much of a failed answer's body is printed.
const ANSWER_SHOWN_MAX_CHARS: usize = 300;
/// The server's limits the bench turns off, and why: every bench customer connects from
/// 127.0.0.1, so a per-address limit would count them all as one.
const LIMITS_OFF: [(&str, &str); 2] = [
    ("KASSA_RATE_LIMIT", "0"),
    ("KASSA_CHECKOUT_LIMIT_PER_IP", "0"),
];

/// How a bench ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchOutcome {
    /// Checkouts that did not end confirmed; any makes the figures meaningless.
    pub failed_checkouts: usize,
    /// Whether the invariant check passed once the background work caught up.
    pub check_passed: bool,
}

/// The bench's scratch directory, removed when the bench ends, however it ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn create() -> Result<Scratch> {
        let path = std::env::temp_dir().join(format!("kassa-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).context("cannot create a scratch directory")?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed with the bench.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// `kassa <command>` in `dir` with only `env`; the first `lines` lines it printed.
    fn start(
        command: &str,
        dir: &std::path::Path,
        env: &[(&str, &str)],
        lines: usize,
    ) -> Result<(Running, Vec<String>)> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut child = Command::new(exe)
            .arg(command)
            // Whatever it keeps beside itself (a generated notification secret) stays in the
            // scratch directory, never in the caller's.
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start kassa {command}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let running = Running(child);
        let mut reader = BufReader::new(stdout).lines();
        let printed: Vec<String> = (0..lines)
            .filter_map(|_| reader.next().and_then(Result::ok))
            .collect();
        std::thread::spawn(move || reader.for_each(drop));
        if printed.len() < lines {
            bail!("kassa {command} stopped before it started: {printed:?}");
        }
        Ok((running, printed))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The most memory the process has held (VmHWM), in KiB; 0 where /proc cannot say.
    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_default()
        .to_owned()
}

fn after(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_owned()
}

/// Latencies of each kind of call, in microseconds.
#[derive(Default)]
struct Timings(Mutex<BTreeMap<&'static str, Vec<u64>>>);

impl Timings {
    fn record(&self, call: &'static str, since: Instant) {
        let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(call)
            .or_default()
            .push(micros);
    }

    /// p50 and p99 of `call` in microseconds.
    fn percentiles(&self, call: &str) -> (u64, u64) {
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(call)
            .cloned()
            .unwrap_or_default();
        all.sort_unstable();
        let at = |per_mille: usize| {
            all.get((all.len() * per_mille / 1_000).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        (at(500), at(990))
    }
}

/// `count` per second over `elapsed`, with one decimal.
fn per_second(count: u64, elapsed: Duration) -> String {
    let millis = u64::try_from(elapsed.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let tenths = count * 10_000 / millis;
    format!("{}.{}", tenths / 10, tenths % 10)
}

fn millis(micros: u64) -> String {
    format!("{}.{}", micros / 1_000, micros % 1_000 / 100)
}

/// The CPU time a process has used so far, user and system, all its threads (`utime` and
/// `stime` of `/proc/{pid}/stat`, in clock ticks), in milliseconds; `None` where /proc cannot
/// say (not Linux, the process gone).
fn cpu_millis(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); the first after the name is field 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    let ticks_per_second = rustix::param::clock_ticks_per_second().max(1);
    Some((utime + stime) * 1_000 / ticks_per_second)
}

/// CPU milliseconds of `kassa serve`, `kassa sim` and this driver.
#[derive(Debug, Clone, Copy)]
struct CpuUse {
    serve: Option<u64>,
    sim: Option<u64>,
    driver: Option<u64>,
}

impl CpuUse {
    fn now(server: &Running, sim: &Running) -> CpuUse {
        CpuUse {
            serve: cpu_millis(&server.pid().to_string()),
            sim: cpu_millis(&sim.pid().to_string()),
            driver: cpu_millis("self"),
        }
    }

    /// `cpu per checkout: serve X.X ms, sim Y.Y ms, driver Z.Z ms` over `checkouts` done since
    /// `before`.
    fn per_checkout(&self, before: &CpuUse, checkouts: u64) -> String {
        let each = |after: Option<u64>, before: Option<u64>| match (after, before) {
            (Some(after), Some(before)) if checkouts > 0 => {
                let tenths = after.saturating_sub(before) * 10 / checkouts;
                format!("{}.{} ms", tenths / 10, tenths % 10)
            }
            _ => "not measured".to_owned(),
        };
        format!(
            "cpu per checkout: serve {}, sim {}, driver {}",
            each(self.serve, before.serve),
            each(self.sim, before.sim),
            each(self.driver, before.driver)
        )
    }
}

/// Runs the bench: what failed, and whether the invariant check passed at the end.
pub async fn run(options: &BenchOptions) -> Result<BenchOutcome> {
    let scratch_dir = Scratch::create()?;
    let scratch = scratch_dir.0.clone();
    let database_url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", scratch.join("kassa.db").display()));
    // SQLite: a scratch file beside Kassa's, so the probe meets the same file system.
    let probe_file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|path| {
            let path = std::path::Path::new(path.split('?').next().unwrap_or(path));
            let dir = path.parent().unwrap_or(&scratch);
            dir.join(format!("kassa-commit-probe-{}.db", std::process::id()))
        });
    let probe_url = match &probe_file {
        Some(file) => format!("sqlite://{}", file.display()),
        None => database_url.clone(),
    };
    let load_shape = match options.rate {
        Some(rate) => format!("{rate} checkouts started per second"),
        None => format!("{} customers", options.customers),
    };
    println!(
        "kassa bench: {load_shape} for {} s on {database_url}",
        options.seconds
    );
    let raw_commits = kassa_store::commits_per_second(&probe_url, PROBE)
        .await
        .context("cannot measure the raw commit rate")?;
    println!("raw durable commits, one connection, same file system: {raw_commits}/s");
    if let Some(file) = &probe_file {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }

    let (sim, printed) =
        Running::start("sim", &scratch, &[("KASSA_SIM_LISTEN", "127.0.0.1:0")], 4)?;
    let stripe = url_in(&printed[0]);
    let stripe_secret = after(&printed, "secret key:");
    let webhook_secret = after(&printed, "webhook secret:");
    let (server, printed) = Running::start(
        "serve",
        &scratch,
        &[
            ("KASSA_LISTEN", "127.0.0.1:0"),
            ("KASSA_DATABASE_URL", &database_url),
            ("KASSA_SECRET_KEY", SECRET),
            ("KASSA_PUBLISHABLE_KEY", PUBLISHABLE),
            ("STRIPE_SECRET_KEY", &stripe_secret),
            ("STRIPE_API_BASE", &stripe),
            ("STRIPE_WEBHOOK_SECRETS", &webhook_secret),
            ("RUST_LOG", "warn"),
        ]
        .into_iter()
        .chain(LIMITS_OFF)
        .chain(
            options
                .group_commit
                .as_deref()
                .map(|on_or_off| ("KASSA_GROUP_COMMIT", on_or_off)),
        )
        .collect::<Vec<_>>(),
        1,
    )?;
    let base = url_in(&printed[0]);
    // For a profiler attached from outside (`perf record -p`).
    println!(
        "kassa serve (pid {}) at {base}, kassa sim (pid {}) at {stripe}",
        server.pid(),
        sim.pid()
    );
    println!(
        "limits off for the server under test: {} (every customer connects from 127.0.0.1); \
         the per-e-mail checkout limit stays on: each checkout is a customer with an e-mail of its own",
        LIMITS_OFF
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(options.customers)
        .build()
        .context("cannot build an HTTP client")?;
    http.post(format!("{stripe}/_emulator/webhook_endpoints"))
        .bearer_auth(&stripe_secret)
        .json(&json!({"url": format!("{base}/v1/webhooks/stripe")}))
        .send()
        .await
        .context("the emulator does not answer")?;
    let shop = Arc::new(
        Shop::new(
            http,
            vec![base.clone()],
            (SECRET.to_owned(), PUBLISHABLE.to_owned()),
            (stripe, stripe_secret.clone(), stripe_secret),
        )
        .await?,
    );
    // Names this run's SKUs and idempotency keys apart from any other run's.
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let prefix = format!("BENCH-{}-{since_epoch}", std::process::id());
    let skus = chaos::stock_the_shelves(&shop, &prefix, [1_000_000_000; 3]).await?;

    let load = Arc::new(Load {
        shop: shop.clone(),
        skus,
        prefix: prefix.clone(),
        timings: Timings::default(),
        checkouts: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
        failed_answers: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let progress = ProgressBar::new(options.seconds).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // A database used before holds earlier runs' events: only this run's are counted.
    let before = ServerCounts::scrape(&shop).await;
    let cpu_before = CpuUse::now(&server, &sim);
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    match options.rate {
        // Closed loop: each customer checks out again as soon as the last one is confirmed.
        None => {
            for customer in 0..options.customers {
                let load = load.clone();
                running.spawn(async move {
                    let mut n = 0;
                    while !load.stop.load(Ordering::Relaxed) {
                        load.checkout(&format!("bench-{customer}-{n}")).await;
                        n += 1;
                    }
                });
            }
        }
        // Open loop: a new customer arrives every 1/rate s, however slow the answers are.
        Some(rate) => {
            let load = load.clone();
            running.spawn(async move {
                let every = Duration::from_micros(1_000_000 / rate.max(1));
                let mut arrivals = tokio::time::interval(every);
                let mut customers = tokio::task::JoinSet::new();
                let mut n = 0;
                while !load.stop.load(Ordering::Relaxed) {
                    arrivals.tick().await;
                    let load = load.clone();
                    customers.spawn(async move { load.checkout(&format!("bench-at-{n}")).await });
                    n += 1;
                }
                while customers.join_next().await.is_some() {}
            });
        }
    }
    while started.elapsed() < Duration::from_secs(options.seconds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        progress.set_position(started.elapsed().as_secs());
        progress.set_message(format!(
            "{} checkouts",
            load.checkouts.load(Ordering::Relaxed)
        ));
    }
    load.stop.store(true, Ordering::Relaxed);
    while running.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    // The load's window only: the catch-up below runs the invariant check, which is not a
    // checkout's cost. Events still queued at the stop are not counted either (the webhook line
    // says how many there were).
    let cpu_after = CpuUse::now(&server, &sim);
    progress.finish_and_clear();
    let at_stop = ServerCounts::scrape(&shop).await.since(&before);
    let (events_at_stop, units, batches) = (at_stop.events, at_stop.units, at_stop.batches);
    let caught_up = catch_up(&shop).await;
    let events_in_all = ServerCounts::scrape(&shop).await.since(&before).events;
    let caught_up_after = caught_up.as_ref().map(|(after, _)| *after);
    let check = caught_up.map(|(_, check)| check);

    let done = u64::try_from(load.checkouts.load(Ordering::Relaxed)).unwrap_or(u64::MAX);
    let failed = load.failures.load(Ordering::Relaxed);
    let elapsed_ms = u64::try_from(elapsed.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    // Checkouts per second over raw commits per second, in thousandths.
    let ratio = done * 1_000_000 / (elapsed_ms * raw_commits.max(1));
    println!(
        "checkouts: {done} in {:.1?} = {}/s ({} failed); {}.{:03} checkouts per raw commit",
        elapsed,
        per_second(done, elapsed),
        failed,
        ratio / 1_000,
        ratio % 1_000,
    );
    if failed > 0 {
        println!("FAILED checkouts: {failed}; the first answers:");
        let answers = load
            .failed_answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for answer in answers.iter() {
            println!("  {answer}");
        }
    }
    println!(
        "webhook events: {events_at_stop} recorded while loaded = {}/s; {events_in_all} once caught up{}",
        per_second(events_at_stop, elapsed),
        caught_up_after
            .map(|after| format!(" ({after:.1?} after the load)"))
            .unwrap_or_default()
    );
    match (units * 10).checked_div(batches) {
        Some(tenths) => println!(
            "group commit: {units} units of work in {batches} commits = {}.{} units per commit",
            tenths / 10,
            tenths % 10
        ),
        None => println!("group commit: off"),
    }
    println!("per call, p50 / p99 in ms:");
    for call in CALLS {
        let (p50, p99) = load.timings.percentiles(call);
        println!("  {call:<10} {:>8} / {:>8}", millis(p50), millis(p99));
    }
    println!(
        "peak RSS: kassa serve {} MiB, kassa sim {} MiB",
        server.peak_rss_kib() / 1_024,
        sim.peak_rss_kib() / 1_024
    );
    println!("{}", cpu_after.per_checkout(&cpu_before, done));
    let check_passed = match check {
        Some(payments) => {
            println!("invariant check: PASS ({payments} payments compared with the emulator)");
            true
        }
        None => {
            println!("invariant check: FAIL or not settled within {CATCH_UP_MAX:?}");
            false
        }
    };
    if failed > 0 {
        println!(
            "result: FAIL, {failed} checkouts failed (answers above): these figures are not a measurement"
        );
    }
    drop(server);
    drop(sim);
    Ok(BenchOutcome {
        failed_checkouts: failed,
        check_passed,
    })
}

/// What the load's customers share: the shop, the SKUs, what was measured, when to stop.
struct Load {
    shop: Arc<Shop>,
    skus: Arc<Vec<(String, i64)>>,
    /// The run's prefix of idempotency keys.
    prefix: String,
    timings: Timings,
    checkouts: AtomicUsize,
    failures: AtomicUsize,
    /// The first failed checkouts' answers, for the output.
    failed_answers: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Load {
    /// One checkout with `key`, counted as done or failed.
    async fn checkout(&self, key: &str) {
        let key = format!("{}-{key}", self.prefix);
        match one_checkout(&self.shop, &self.skus, &self.timings, &key).await {
            Ok(()) => {
                self.checkouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(answer) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let mut shown = self
                    .failed_answers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if shown.len() < FAILURES_SHOWN {
                    shown.push(answer);
                }
            }
        }
    }
}

/// A failed call and what it answered, for the output.
fn failed(call: &str, status: u16, body: &serde_json::Value) -> String {
    let status = match status {
        0 => "no answer".to_owned(),
        status => format!("HTTP {status}"),
    };
    let body: String = body
        .to_string()
        .chars()
        .take(ANSWER_SHOWN_MAX_CHARS)
        .collect();
    format!("{call}: {status} {body}")
}

/// One customer's checkout: a cart, three lines, the checkout, the confirmation; the first
/// call that failed and its answer, if one did. The customer's e-mail is theirs alone, made of
/// the checkout's key.
async fn one_checkout(
    shop: &Shop,
    skus: &[(String, i64)],
    timings: &Timings,
    key: &str,
) -> Result<(), String> {
    let at = Instant::now();
    let cart = shop.new_cart().await;
    timings.record("cart", at);
    let cart_id = cart.text("/id");
    if !cart.ok() {
        return Err(failed("POST /v1/carts", cart.status, &cart.body));
    }
    let mut total = 0;
    for (sku, price) in skus {
        let at = Instant::now();
        let line = shop.add_line(&cart_id, sku, 1).await;
        timings.record("line", at);
        if !line.ok() {
            return Err(failed("POST /v1/carts/{id}/lines", line.status, &line.body));
        }
        total += price;
    }
    let email = format!("{}@bench.example.com", key.to_ascii_lowercase());
    let at = Instant::now();
    let placed = chaos::checkout(shop, &cart_id, total, key, &email).await;
    timings.record("checkout", at);
    let placed: Placed = placed
        .map_err(|answer| failed("POST /v1/carts/{id}/checkout", answer.status, &answer.body))?;
    let at = Instant::now();
    let confirmed = chaos::confirm(shop, &placed, "pm_card_visa").await;
    timings.record("confirm", at);
    if confirmed["status"] != "succeeded" {
        let body: String = confirmed
            .to_string()
            .chars()
            .take(ANSWER_SHOWN_MAX_CHARS)
            .collect();
        return Err(format!("confirm at the emulator: {body}"));
    }
    Ok(())
}

/// What the server counts, from one scrape of its metrics.
#[derive(Debug, Clone, Copy, Default)]
struct ServerCounts {
    /// Webhook events recorded.
    events: u64,
    /// Units of work group-committed, and the commits they shared (0 when group commit is off).
    units: u64,
    batches: u64,
}

impl ServerCounts {
    async fn scrape(shop: &Shop) -> ServerCounts {
        let text = match shop
            .http
            .get(format!("{}/metrics", shop.urls[0]))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        ServerCounts {
            events: metric_sum(&text, "kassa_webhook_events{"),
            units: metric_sum(&text, "kassa_group_commit_units_total "),
            batches: metric_sum(&text, "kassa_group_commit_batches_total "),
        }
    }

    /// What was counted after `earlier`: a database used before holds earlier runs' counts.
    fn since(&self, earlier: &ServerCounts) -> ServerCounts {
        ServerCounts {
            events: self.events.saturating_sub(earlier.events),
            units: self.units.saturating_sub(earlier.units),
            batches: self.batches.saturating_sub(earlier.batches),
        }
    }
}

/// The sum of the values of the metric lines in `text` that start with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        // Whole counts, printed by the exporter with or without a ".0".
        .filter_map(|line| {
            line.rsplit(' ')
                .next()?
                .split('.')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Waits for the background work to apply everything: the invariant check passing. How long
/// it took and how many payments it compared.
async fn catch_up(shop: &Shop) -> Option<(Duration, u64)> {
    let started = Instant::now();
    while started.elapsed() < CATCH_UP_MAX {
        let check = shop
            .kassa(Method::POST, "/v1/admin/check", &shop.secret, None, None)
            .await;
        if check.body["passed"] == true && check.body["provider_errors"] == 0 {
            return Some((started.elapsed(), check.body["payments_checked"].as_u64()?));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}
