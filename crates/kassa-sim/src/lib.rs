//! Deterministic simulation (issue 11; TigerBeetle's VOPR is the model). One seed drives
//! everything: the workload of customers and operators, a simulated Stripe and its faults, the
//! clock, the ids, the order events arrive in, and where the process dies. Use cases run one at
//! a time on one thread, so the same seed replays the same run exactly.
//!
//! The store is Kassa's own SQL store on an in-memory SQLite database: the same transactions
//! and constraints as production, not a second model of them that could disagree. A crash is
//! the running use case's future dropped at a transaction boundary or around a provider call
//! (`crash.rs` says why those points cover every state a crash can leave), after which a new
//! `App` starts on the same database, as `kassa serve` would after a restart.
//!
//! At the end the faults stop, time passes, the background work runs, every event is delivered,
//! and the run must pass the invariant checker and the simulation's own checks.

pub mod crash;
pub mod provider;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use kassa_app::order_commands::Requester;
use kassa_app::ports::{Actor, CaptureMethod, IdSource, ProviderEvent, ShippingAddress};
use kassa_app::reconcile::Quietly;
use kassa_app::refunds::RefundInput;
use kassa_app::{App, AppParts, Settings};
use kassa_store::{Protection, SqlStore};
use kassa_testkit::TestClock;
use kassa_testkit::verifier::MemoryVerifier;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::crash::Crashes;
use crate::provider::{Card, SimProvider};

/// The seed's one source of randomness, shared by the driver, the provider and the crash
/// switch; only one of them rolls at a time.
#[derive(Clone)]
pub struct Dice(Arc<Mutex<StdRng>>);

impl Dice {
    fn new(seed: u64) -> Dice {
        Dice(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    pub fn roll<T>(&self, with: impl FnOnce(&mut StdRng) -> T) -> T {
        with(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// How hard a run is.
#[derive(Debug, Clone)]
pub struct Options {
    pub steps: usize,
    /// Out of 1,000 crash points (transactions and provider calls), how many kill the process.
    pub crash_per_mille: u32,
    /// Out of 1,000 provider calls, how many lose the request, and as many the answer.
    pub fault_per_mille: u32,
    /// A protection switched off, to show the simulation notices.
    pub switched_off: Option<Protection>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            steps: 60,
            crash_per_mille: 30,
            fault_per_mille: 60,
            switched_off: None,
        }
    }
}

/// What a passing run did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub orders: usize,
    pub crashes: usize,
    pub deliveries: usize,
    pub payments_checked: usize,
    /// PaymentIntents that took money, and refunds that gave some back, at the provider.
    pub captured: usize,
    pub refunded: usize,
    /// A hash of where the run ended (every order Kassa holds as the customers saw it, every
    /// event the simulated Stripe sent): the same seed must end in the same place.
    pub digest: u64,
}

impl Summary {
    pub fn add(&mut self, other: &Summary) {
        self.orders += other.orders;
        self.crashes += other.crashes;
        self.deliveries += other.deliveries;
        self.payments_checked += other.payments_checked;
        self.captured += other.captured;
        self.refunded += other.refunded;
    }
}

/// What a failing run broke; `seed` replays it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {} failed: {}", self.seed, self.what)
    }
}

/// Ids numbered in order of creation: replayable, and still shaped like Kassa's.
#[derive(Default)]
struct CountedIds(AtomicU64);

impl IdSource for CountedIds {
    fn new_id(&self, prefix: &str) -> String {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        format!("{prefix}_{n:032x}")
    }
}

const UNIT_MINOR: i64 = 1_250;
const STOCK: i64 = 12;
const SKUS: &[&str] = &["MUG", "TEE"];

struct Placed {
    order_id: String,
    intent_id: String,
}

struct Sim {
    dice: Dice,
    store: SqlStore,
    provider: Arc<SimProvider>,
    verifier: Arc<MemoryVerifier>,
    clock: Arc<TestClock>,
    ids: Arc<CountedIds>,
    crashes: Arc<Crashes>,
    capture: CaptureMethod,
    app: App,
    /// Carts with lines, and the key their checkout uses.
    carts: Vec<(String, i64)>,
    orders: Vec<Placed>,
    /// Events held back to arrive later.
    late: Vec<ProviderEvent>,
    summary: Summary,
}

fn actor() -> Actor {
    Actor {
        kind: "simulation".into(),
        request_id: None,
        client_ip: None,
    }
}

/// One database per run, never shared with another run in the same process.
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// Runs `count` consecutive seeds from `from` on every core, each seed on a single-threaded
/// runtime of its own thread; stops at the first failure. (One thread per core, not one
/// runtime for all: each seed's SQLite connection lives on a thread of its own, and seeds side
/// by side keep both busy.)
pub fn simulate_seeds(from: u64, count: u64, options: &Options) -> Result<Summary, Failure> {
    let next = AtomicU64::new(from);
    let end = from.saturating_add(count);
    let failure: Mutex<Option<Failure>> = Mutex::new(None);
    let total = Mutex::new(Summary::default());
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let what = format!("no runtime: {error}");
                        *failure.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(Failure { seed: from, what });
                        return;
                    }
                };
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    let failed = failure
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .is_some();
                    if seed >= end || failed {
                        return;
                    }
                    match runtime.block_on(simulate(seed, options)) {
                        Ok(summary) => total
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .add(&summary),
                        Err(found) => {
                            let mut first = failure.lock().unwrap_or_else(PoisonError::into_inner);
                            if first
                                .as_ref()
                                .is_none_or(|earlier| found.seed < earlier.seed)
                            {
                                *first = Some(found);
                            }
                        }
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(failure) => Err(failure),
        None => Ok(total.into_inner().unwrap_or_else(PoisonError::into_inner)),
    }
}

/// Runs `seed`.
pub async fn simulate(seed: u64, options: &Options) -> Result<Summary, Failure> {
    let fail = |what: String| Failure { seed, what };
    let dice = Dice::new(seed);
    let n = DATABASES.fetch_add(1, Ordering::SeqCst);
    let store = SqlStore::open(&format!("sqlite:kassa-sim-{n}?mode=memory"))
        .await
        .map_err(|error| fail(format!("cannot open the database: {error}")))?;
    let crashes = Crashes::new(dice.clone(), options.crash_per_mille);
    store.faults().crash_with(crashes.clone());
    if let Some(protection) = options.switched_off {
        store.faults().switch_off(protection);
    }
    let clock = TestClock::new();
    let verifier = Arc::new(MemoryVerifier::default());
    let provider = Arc::new(SimProvider::new(
        dice.clone(),
        crashes.clone(),
        clock.clone(),
        verifier.clone(),
        options.fault_per_mille,
    ));
    let capture = if dice.roll(|rng| rng.random_bool(0.5)) {
        CaptureMethod::Automatic
    } else {
        CaptureMethod::Manual
    };
    let ids = Arc::default();
    let mut sim = Sim {
        app: new_app(&store, &provider, &verifier, &clock, &ids, capture),
        ids,
        dice,
        store,
        provider,
        verifier,
        clock,
        crashes,
        capture,
        carts: Vec::new(),
        orders: Vec::new(),
        late: Vec::new(),
        summary: Summary::default(),
    };
    for sku in SKUS {
        kassa_testkit::seed_product(&sim.app, sku, sku, UNIT_MINOR, "eur", STOCK).await;
    }
    for _ in 0..options.steps {
        sim.step().await;
    }
    let outcome = sim.settle_and_check().await.map_err(fail);
    sim.store.close().await;
    outcome
}

fn new_app(
    store: &SqlStore,
    provider: &Arc<SimProvider>,
    verifier: &Arc<MemoryVerifier>,
    clock: &Arc<TestClock>,
    ids: &Arc<CountedIds>,
    capture: CaptureMethod,
) -> App {
    App::new(AppParts {
        store: Arc::new(store.clone()),
        provider: provider.clone(),
        clock: clock.clone(),
        ids: ids.clone(),
        renderer: Arc::new(kassa_http::JsonCheckoutRenderer),
        verifier: verifier.clone(),
        order_tokens: kassa_app::order_token::OrderTokens::new(
            "sk_simulation_secret",
            30 * 86_400,
            3_600,
        ),
        settings: Settings {
            capture_method: capture,
            ..Settings::default()
        },
    })
}

impl Sim {
    fn restarted_app(&self) -> App {
        new_app(
            &self.store,
            &self.provider,
            &self.verifier,
            &self.clock,
            &self.ids,
            self.capture,
        )
    }

    fn roll<T>(&self, with: impl FnOnce(&mut StdRng) -> T) -> T {
        self.dice.roll(with)
    }

    /// Runs one use case as the process would; after a crash, the process restarts a little
    /// later with nothing in memory.
    async fn act<T, F>(&mut self, work: impl FnOnce(App) -> F) -> Option<T>
    where
        F: Future<Output = T>,
    {
        let finished = self.crashes.run(work(self.app.clone())).await;
        if finished.is_none() {
            self.summary.crashes += 1;
            self.app = self.restarted_app();
            let downtime = self.roll(|rng| rng.random_range(1..90));
            self.clock.advance(downtime);
        }
        finished
    }

    async fn step(&mut self) {
        match self.roll(|rng| rng.random_range(0..18)) {
            0..=2 => self.new_checkout().await,
            3 => self.retry_checkout().await,
            4 => {
                // An abandoned cart.
                if let Some(Ok(cart)) = self
                    .act(|app| async move { app.create_cart("eur").await })
                    .await
                {
                    self.act(|app| async move { app.add_cart_line(&cart.id, "TEE", 1).await })
                        .await;
                }
            }
            5..=6 => {
                if let Some(intent) = self.some_intent() {
                    let card = match self.roll(|rng| rng.random_range(0..6)) {
                        0 => Card::Declined,
                        1 => Card::Authenticates,
                        _ => Card::Succeeds,
                    };
                    self.provider.confirm(&intent, card);
                }
            }
            7 => {
                if let Some(intent) = self.some_intent() {
                    let passes = self.roll(|rng| rng.random_bool(0.8));
                    self.provider.authenticate(&intent, passes);
                }
            }
            8 => {
                if let Some(order) = self.some_order() {
                    let amount = self.roll(|rng| {
                        rng.random_bool(0.3)
                            .then(|| rng.random_range(1..=UNIT_MINOR * 4))
                    });
                    self.act(
                        |app| async move { app.capture_order(&order, amount, &actor()).await },
                    )
                    .await;
                }
            }
            9 => {
                if let Some(order) = self.some_order() {
                    self.act(|app| async move {
                        app.cancel_order(&order, &Requester::Operator, &actor())
                            .await
                    })
                    .await;
                }
            }
            10..=11 => self.refund().await,
            12 => {
                let (which, succeeds) =
                    self.roll(|rng| (rng.random_range(0..8), rng.random_bool(0.8)));
                self.provider.settle_refund(which, succeeds);
            }
            13..=14 => self.deliver_chaotically().await,
            15..=16 => self.one_worker().await,
            _ => {
                let seconds = self.roll(|rng| rng.random_range(1..600));
                self.clock.advance(seconds);
            }
        }
    }

    fn some_intent(&self) -> Option<String> {
        self.roll(|rng| self.orders.choose(rng).map(|o| o.intent_id.clone()))
            .filter(|id| !id.is_empty())
    }

    fn some_order(&self) -> Option<String> {
        self.roll(|rng| self.orders.choose(rng).map(|o| o.order_id.clone()))
    }

    async fn new_checkout(&mut self) {
        let Some(Ok(cart)) = self
            .act(|app| async move { app.create_cart("eur").await })
            .await
        else {
            return;
        };
        let mut total = 0;
        for sku in SKUS {
            let quantity = self.roll(|rng| rng.random_range(0..3));
            if quantity == 0 {
                continue;
            }
            let id = cart.id.clone();
            if let Some(Ok(_)) = self
                .act(|app| async move { app.add_cart_line(&id, sku, quantity).await })
                .await
            {
                total += quantity * UNIT_MINOR;
            }
        }
        if total == 0 {
            return;
        }
        self.carts.push((cart.id.clone(), total));
        self.checkout(cart.id, total).await;
    }

    /// The customer's retry or double click: the same cart, the same key.
    async fn retry_checkout(&mut self) {
        let cart = self.roll(|rng| self.carts.choose(rng).cloned());
        if let Some((cart_id, total)) = cart {
            self.checkout(cart_id, total).await;
        }
    }

    async fn checkout(&mut self, cart_id: String, total: i64) {
        let input = kassa_app::checkout::CheckoutInput {
            idempotency_key: Some(format!("checkout-{cart_id}")),
            cart_id,
            key_scope: "publishable".into(),
            email: "ada@example.com".into(),
            shipping: ShippingAddress {
                name: "Ada Lovelace".into(),
                line1: "1 Analytical St".into(),
                city: "London".into(),
                postal_code: "N1 1AA".into(),
                country: "GB".into(),
            },
            expected_total_minor: total,
            flow: kassa_app::checkout::CheckoutFlow::Embedded,
            actor: actor(),
        };
        let Some(Ok(reply)) = self
            .act(|app| async move { app.checkout(input).await })
            .await
        else {
            return;
        };
        let body: serde_json::Value =
            serde_json::from_str(&reply.response.body).unwrap_or_default();
        let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
        let placed = Placed {
            order_id: text(&body["order"]["id"]),
            intent_id: text(&body["payment"]["payment_intent_id"]),
        };
        if !placed.order_id.is_empty() && !self.orders.iter().any(|o| o.order_id == placed.order_id)
        {
            self.summary.orders += 1;
            self.orders.push(placed);
        }
    }

    async fn refund(&mut self) {
        let Some(order_id) = self.some_order() else {
            return;
        };
        let (key, amount, restock) = self.roll(|rng| {
            (
                // A few keys per run, so operators' retries reuse them.
                format!("refund-{}", rng.random_range(0..6)),
                rng.random_bool(0.6)
                    .then(|| rng.random_range(1..=UNIT_MINOR * 3)),
                rng.random_bool(0.3),
            )
        });
        self.act(|app| async move {
            app.create_refund(RefundInput {
                order_id,
                key_scope: "secret".into(),
                idempotency_key: Some(key),
                amount_minor: amount,
                reason: None,
                restock,
                actor: actor(),
            })
            .await
        })
        .await;
    }

    /// Stripe's webhook sender on a bad day: each event dropped for good, held back to arrive
    /// later, or delivered once or twice, in shuffled order.
    async fn deliver_chaotically(&mut self) {
        let mut batch = std::mem::take(&mut self.late);
        batch.extend(self.provider.take_undelivered());
        let mut now = Vec::new();
        for event in batch {
            match self.roll(|rng| rng.random_range(0..10)) {
                0 => {}
                1..=2 => self.late.push(event),
                3 => {
                    now.push(event.clone());
                    now.push(event);
                }
                _ => now.push(event),
            }
        }
        self.roll(|rng| now.shuffle(rng));
        for event in now {
            self.deliver(&event.id).await;
        }
    }

    async fn deliver(&mut self, event_id: &str) {
        self.summary.deliveries += 1;
        let payload = event_id.as_bytes().to_vec();
        self.act(|app| async move { app.receive_webhook(&payload, Some("valid")).await })
            .await;
    }

    /// One round of one of `kassa serve`'s workers.
    async fn one_worker(&mut self) {
        let worker = self.roll(|rng| rng.random_range(0..WORKERS));
        self.act(|app| async move { run_worker(&app, worker).await })
            .await;
    }

    /// The faults stop; time passes while the workers run and every event arrives; then the
    /// checks.
    async fn settle_and_check(&mut self) -> Result<Summary, String> {
        self.provider.stop_faults();
        self.crashes.stop();
        for round in 0..6 {
            // Past every lease and, by the last rounds, every reservation's expiry.
            self.clock.advance(if round < 3 { 120 } else { 1_200 });
            let mut events = std::mem::take(&mut self.late);
            events.extend(self.provider.take_undelivered());
            for event in events {
                self.deliver(&event.id).await;
            }
            for worker in 0..WORKERS {
                run_worker(&self.app, worker).await;
            }
        }
        let report = self
            .app
            .check_invariants()
            .await
            .map_err(|error| format!("the invariant check could not run: {error}"))?;
        if !report.passed() {
            return Err(format!("invariants broken: {:#?}", report.violations));
        }
        let over_refunds = self.provider.over_refunds();
        if !over_refunds.is_empty() {
            return Err(format!(
                "Kassa asked for refunds beyond what the payment had left (risk P6): {over_refunds:?}"
            ));
        }
        self.summary.payments_checked = report.payments_checked;
        (self.summary.captured, self.summary.refunded) = self.provider.money_moved();
        let mut digest = std::hash::DefaultHasher::new();
        for placed in &self.orders {
            format!("{:?}", self.app.order(&placed.order_id).await).hash(&mut digest);
        }
        self.provider.fingerprint().hash(&mut digest);
        self.summary.digest = digest.finish();
        Ok(self.summary.clone())
    }
}

const WORKERS: u32 = 7;

/// Worker `n` of `kassa serve`'s periodic runner, one round; its outcome is the worker's own
/// business (logged in production), the simulation judges only the end state.
async fn run_worker(app: &App, n: u32) {
    let _ = match n {
        0 => app.process_inbox(100).await.map(drop),
        1 => app.complete_stalled_checkouts(100).await.map(drop),
        2 => app.finish_pending_operations(100).await.map(drop),
        3 => app.capture_due_orders(100).await.map(drop),
        4 => app.send_unsent_refunds(100).await.map(drop),
        5 => app.reconcile(&Quietly).await.map(drop),
        _ => app.run_janitor().await.map(drop),
    };
}
