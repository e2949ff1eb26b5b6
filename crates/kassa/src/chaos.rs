//! `kassa chaos`: a seeded workload of customers and operators against running Kassa
//! instances, through the HTTP API, while the Stripe emulator misbehaves; then the faults stop,
//! the background work catches up, and the invariant check must pass.
//!
//! Customers browse, build carts (some abandoned), check out (retrying with the same key,
//! double-clicking), pay with good, declined and 3-D Secure cards, edit and cancel inside the
//! window; operators capture, cancel and refund (reusing keys as a retrying operator does). The
//! emulator meanwhile answers Kassa's calls with 500, 429, hangs and lost answers, and delivers
//! events duplicated, reordered, late or not at all. Each step's choices come from the seed, the
//! customer and the step alone, so the same seed asks for the same actions; which earlier order
//! an operator's action lands on depends on which checkouts the servers accepted.
//!
//! It needs the emulator's control API: sandbox mode, or live mode with `kassa sim` as
//! `STRIPE_API_BASE`. Requests are spread over every `--url`; a server that is down (killed and
//! restarting) is waited for and the request repeated, with the same key where it has one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use crate::config::{Config, Mode};
use crate::operator::counts_table;

/// What `kassa chaos` was asked for.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub seed: u64,
    /// Customers at once.
    pub customers: usize,
    /// Actions per customer.
    pub steps: usize,
    /// Kassa instances to spread requests over; empty: `http://KASSA_LISTEN`.
    pub urls: Vec<String>,
    pub faults: bool,
    /// How long the background work may take to bring everything to rest afterwards.
    pub settle_secs: u64,
}

/// How long a request is repeated while no server answers (one being restarted).
const UNREACHABLE_FOR_MAX: Duration = Duration::from_secs(60);
/// Longer than a Kassa run with `KASSA_STRIPE_TIMEOUT_SECS=2` takes to give up on Stripe, so
/// `hang` faults are timeouts there; with the default 15 s they are slow answers.
const HANG_MS: u64 = 2_500;
const UNIT_PRICES: [i64; 3] = [1_500, 2_500, 999];
/// Little stock of the last SKU, so customers run out of it.
const STOCK: [i64; 3] = [100_000, 100_000, 25];
/// Odd prices, so fees and shares round.
const SELLER_PRICES: [i64; 2] = [1_250, 3_333];

/// Kassa's calls to Stripe, each of which a fault may hit.
const KASSA_CALLS: &[&str] = &[
    "POST /v1/payment_intents",
    "POST /v1/payment_intents/*",
    "GET /v1/payment_intents/*",
    "POST /v1/payment_intents/*/capture",
    "POST /v1/payment_intents/*/cancel",
    "POST /v1/refunds",
    "GET /v1/refunds/*",
    "GET /v1/refunds",
    "GET /v1/events",
    "POST /v1/checkout/sessions",
    "GET /v1/checkout/sessions/*",
    "POST /v1/checkout/sessions/*/expire",
    "POST /v1/customers",
    "POST /v1/subscriptions/*",
    "DELETE /v1/subscriptions/*",
    "GET /v1/invoices",
    "POST /v1/accounts",
    "GET /v1/accounts/*",
    "POST /v1/transfers",
    "POST /v1/transfers/*/reversals",
    "GET /v1/transfers",
];

#[derive(Default)]
struct Counts {
    carts: AtomicUsize,
    abandoned: AtomicUsize,
    checkouts: AtomicUsize,
    double_clicks: AtomicUsize,
    confirmations: AtomicUsize,
    declines: AtomicUsize,
    three_d_secure: AtomicUsize,
    hosted_pages: AtomicUsize,
    captures: AtomicUsize,
    edits: AtomicUsize,
    cancels: AtomicUsize,
    refunds: AtomicUsize,
    subscriptions: AtomicUsize,
    debits: AtomicUsize,
    /// Refusals by error code (or HTTP status when there is none).
    refused: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
    retries: AtomicUsize,
    faults: AtomicUsize,
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The servers, the keys, the emulator: what a workload talks to.
pub(crate) struct Shop {
    pub(crate) http: reqwest::Client,
    pub(crate) urls: Vec<String>,
    next_url: AtomicUsize,
    pub(crate) secret: String,
    pub(crate) publishable: String,
    stripe: String,
    stripe_secret: String,
    /// What confirms a payment as Stripe.js would (the emulator's publishable key in sandbox
    /// mode; its secret key otherwise).
    stripe_confirm_key: String,
    counts: Counts,
}

/// An answer: the status (0: no server answered) and the JSON body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn text(&self, pointer: &str) -> String {
        self.body
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

impl Shop {
    /// A call to Kassa, on the next instance; repeated, with the same key, while no instance
    /// answers or the answer is a 5xx or `request_in_progress`.
    pub(crate) async fn kassa(
        &self,
        method: Method,
        path: &str,
        key: &str,
        idempotency_key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let n = self.next_url.fetch_add(1, Ordering::Relaxed);
            let base = &self.urls[n % self.urls.len()];
            let mut request = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(key);
            if let Some(idempotency_key) = idempotency_key {
                request = request.header("Idempotency-Key", idempotency_key);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let answer = match request.send().await {
                Ok(response) => Answer {
                    status: response.status().as_u16(),
                    body: response.json().await.unwrap_or(Value::Null),
                },
                Err(_) => Answer {
                    status: 0,
                    body: Value::Null,
                },
            };
            let in_progress = answer.body["error"]["code"] == "request_in_progress";
            let again = answer.status == 0 || answer.status >= 500 || in_progress;
            // Only what the key makes safe is repeated after an answer; a lost connection
            // repeats anything, as a browser's retry would.
            let may_repeat =
                answer.status == 0 || idempotency_key.is_some() || method == Method::GET;
            attempt += 1;
            if !again || !may_repeat || started.elapsed() > UNREACHABLE_FOR_MAX {
                if !answer.ok() {
                    let code = match answer.body["error"]["code"].as_str() {
                        Some(code) => code.to_owned(),
                        None if answer.status == 0 => "no answer".to_owned(),
                        None => format!("HTTP {}", answer.status),
                    };
                    *self
                        .counts
                        .refused
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(code)
                        .or_default() += 1;
                }
                return answer;
            }
            bump(&self.counts.retries);
            tokio::time::sleep(Duration::from_millis(100 * attempt.min(10))).await;
        }
    }

    /// `GET /v1/orders/{id}` with the customer's order token.
    pub(crate) async fn order_as_customer(&self, placed: &Placed) -> Answer {
        let path = format!("/v1/orders/{}", placed.order_id);
        self.kassa(Method::GET, &path, &placed.token, None, None)
            .await
    }

    /// `POST /v1/carts` in euros, as a storefront does.
    pub(crate) async fn new_cart(&self) -> Answer {
        let body = json!({"currency": "eur"});
        self.kassa(
            Method::POST,
            "/v1/carts",
            &self.publishable,
            None,
            Some(body),
        )
        .await
    }

    /// `POST /v1/carts/{cart_id}/lines`.
    pub(crate) async fn add_line(&self, cart_id: &str, sku: &str, quantity: i64) -> Answer {
        let line = json!({"sku": sku, "quantity": quantity});
        let path = format!("/v1/carts/{cart_id}/lines");
        self.kassa(Method::POST, &path, &self.publishable, None, Some(line))
            .await
    }

    /// A call of the emulator's Stripe API, form-encoded as Stripe takes it.
    async fn stripe(&self, method: Method, path: &str, key: &str, form: &[(&str, &str)]) -> Value {
        let request = self
            .http
            .request(method, format!("{}{path}", self.stripe))
            .bearer_auth(key)
            .form(form);
        match request.send().await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// A call of the emulator's control API (JSON, its secret key).
    async fn control(&self, method: Method, path: &str, body: Value) -> Result<()> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.stripe))
            .bearer_auth(&self.stripe_secret)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("the emulator at {} does not answer", self.stripe))?;
        if !response.status().is_success() {
            bail!(
                "{} is not the Kassa emulator (its control API answered {}); kassa chaos needs \
                 sandbox mode, or `kassa sim` as STRIPE_API_BASE",
                self.stripe,
                response.status()
            );
        }
        Ok(())
    }
}

/// An order a customer placed, with what they hold for it.
#[derive(Clone)]
pub(crate) struct Placed {
    order_id: String,
    token: String,
    intent_id: String,
    client_secret: String,
    /// Set when the order is paid on the hosted page (a Checkout Session).
    session_id: Option<String>,
}

/// Runs the workload; `Ok(true)` when the invariant check passed at the end.
pub async fn run(config: &Config, options: &ChaosOptions) -> Result<bool> {
    let shop = Arc::new(connect(config, options).await?);
    println!(
        "kassa chaos: seed {} · {} customers × {} steps · faults {} · {}",
        options.seed,
        options.customers,
        options.steps,
        if options.faults { "on" } else { "off" },
        shop.urls.join(", ")
    );
    let prefix = format!("CHAOS-{}", options.seed);
    let mut goods = stock_the_shelves(&shop, &prefix, STOCK).await?.to_vec();
    goods.extend(open_sellers_stalls(&shop, &prefix).await?);
    goods.push(put_up_a_credit_pack(&shop, &prefix).await?);
    let skus = Arc::new(goods);
    let plan = Arc::new(create_plan(&shop).await?);
    let total = u64::try_from(options.customers * options.steps).unwrap_or(u64::MAX);
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let working = Arc::new(AtomicUsize::new(options.customers));
    let monkey = options.faults.then(|| {
        let (shop, working) = (shop.clone(), working.clone());
        let seed = options.seed;
        tokio::spawn(async move { inject_faults(&shop, seed, &working).await })
    });
    let mut customers = tokio::task::JoinSet::new();
    for index in 0..options.customers {
        let (shop, skus, plan, progress, working) = (
            shop.clone(),
            skus.clone(),
            plan.clone(),
            progress.clone(),
            working.clone(),
        );
        let (seed, steps) = (options.seed, options.steps);
        customers.spawn(async move {
            let goods = Goods {
                skus: &skus,
                plan_id: &plan,
            };
            customer(&shop, goods, seed, index, steps, &progress).await;
            working.fetch_sub(1, Ordering::SeqCst);
        });
    }
    let mut crashed_customers = 0;
    while let Some(joined) = customers.join_next().await {
        if joined.is_err() {
            crashed_customers += 1;
        }
    }
    // A customer that panicked never said it was done; the faults stop anyway.
    if let Some(monkey) = monkey {
        monkey.abort();
        let _ = monkey.await;
    }
    progress.finish_and_clear();
    if crashed_customers > 0 {
        bail!("{crashed_customers} customer tasks of kassa chaos panicked (a bug in the driver)");
    }
    shop.control(Method::DELETE, "/_emulator/faults", json!({}))
        .await?;
    let passed = settle(&shop, Duration::from_secs(options.settle_secs)).await?;
    print!("{}", summary(&shop.counts, options.seed, passed));
    Ok(passed)
}

async fn connect(config: &Config, options: &ChaosOptions) -> Result<Shop> {
    let keys = crate::serve::api_keys(config)?;
    let urls = if options.urls.is_empty() {
        vec![format!("http://{}", config.listen)]
    } else {
        options
            .urls
            .iter()
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect()
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("cannot build an HTTP client")?;
    let (stripe, stripe_secret, stripe_confirm_key) = match &config.mode {
        Mode::Stripe(stripe) => (
            stripe.api_base.clone(),
            stripe.secret_key.clone(),
            stripe.secret_key.clone(),
        ),
        Mode::Sandbox { .. } => {
            let url = format!("{}/v1/sandbox", urls[0]);
            let answer = http
                .get(&url)
                .bearer_auth(&keys.secret)
                .send()
                .await
                .with_context(|| format!("is `kassa serve` running? cannot reach {url}"))?;
            if !answer.status().is_success() {
                bail!(
                    "{url} answered {} (is KASSA_SECRET_KEY the server's?)",
                    answer.status()
                );
            }
            let sandbox: Value = answer
                .json()
                .await
                .with_context(|| format!("{url} did not answer JSON"))?;
            let field = |name: &str| sandbox[name].as_str().unwrap_or_default().to_owned();
            (
                field("stripe_api_base"),
                field("stripe_secret_key"),
                field("stripe_publishable_key"),
            )
        }
    };
    Shop::new(
        http,
        urls,
        (keys.secret, keys.publishable),
        (stripe, stripe_secret, stripe_confirm_key),
    )
    .await
}

impl Shop {
    /// Kassa at `urls` with its (secret, publishable) keys, the emulator at `stripe.0` with
    /// its secret key and the key that confirms payments; fails, saying why, if that is not
    /// the emulator.
    pub(crate) async fn new(
        http: reqwest::Client,
        urls: Vec<String>,
        keys: (String, String),
        stripe: (String, String, String),
    ) -> Result<Shop> {
        let shop = Shop {
            http,
            urls,
            next_url: AtomicUsize::new(0),
            secret: keys.0,
            publishable: keys.1,
            stripe: stripe.0,
            stripe_secret: stripe.1,
            stripe_confirm_key: stripe.2,
            counts: Counts::default(),
        };
        shop.control(Method::DELETE, "/_emulator/faults", json!({}))
            .await?;
        Ok(shop)
    }
}

/// The run's own products (SKUs `{prefix}-0` …), stocked; the SKUs and their prices.
pub(crate) async fn stock_the_shelves(
    shop: &Shop,
    prefix: &str,
    stock: [i64; 3],
) -> Result<Arc<Vec<(String, i64)>>> {
    let mut skus = Vec::new();
    for (n, (price, stock)) in UNIT_PRICES.iter().zip(stock).enumerate() {
        let sku = format!("{prefix}-{n}");
        let product = json!({
            "name": format!("Chaos item {n}"),
            "variants": [{"sku": sku, "unit_amount": price, "currency": "eur"}],
        });
        offer(shop, &sku, product, stock).await?;
        skus.push((sku, *price));
    }
    Ok(Arc::new(skus))
}

/// Makes `product` (a second run with the same prefix finds it made) and stocks its `sku`.
async fn offer(shop: &Shop, sku: &str, product: Value, stock: i64) -> Result<()> {
    shop.kassa(
        Method::POST,
        "/v1/products",
        &shop.secret,
        None,
        Some(product),
    )
    .await;
    let stocked = shop
        .kassa(
            Method::PUT,
            &format!("/v1/inventory/{sku}"),
            &shop.secret,
            None,
            Some(json!({"on_hand": stock})),
        )
        .await;
    if !stocked.ok() {
        bail!("cannot stock {sku}: {} {}", stocked.status, stocked.body);
    }
    Ok(())
}

/// Two marketplace sellers, onboarded at the emulator, each selling one product (SKUs
/// `{prefix}-S0`, `{prefix}-S1`), so carts hold one seller's products (a destination charge),
/// several sellers' or a seller's and the shop's (one charge, a transfer to each seller).
async fn open_sellers_stalls(shop: &Shop, prefix: &str) -> Result<Vec<(String, i64)>> {
    let mut skus = Vec::new();
    for (n, price) in SELLER_PRICES.iter().enumerate() {
        let key = format!("{prefix}-seller-{n}");
        let body = json!({"name": format!("Chaos seller {n}"), "email": "seller@example.com", "country": "DE"});
        let seller = shop
            .kassa(
                Method::POST,
                "/v1/sellers",
                &shop.secret,
                Some(&key),
                Some(body),
            )
            .await;
        let account_id = seller.text("/account_id");
        if !seller.ok() || account_id.is_empty() {
            bail!("cannot make a seller: {} {}", seller.status, seller.body);
        }
        shop.control(
            Method::POST,
            &format!("/_emulator/accounts/{account_id}"),
            json!({"charges_enabled": true, "payouts_enabled": true}),
        )
        .await?;
        let sku = format!("{prefix}-S{n}");
        let product = json!({
            "name": format!("Chaos seller {n}'s item"),
            "seller_id": seller.text("/id"),
            "variants": [{"sku": sku, "unit_amount": price, "currency": "eur"}],
        });
        offer(shop, &sku, product, 100_000).await?;
        skus.push((sku, *price));
    }
    Ok(skus)
}

/// A pack of 100 credits for 10.00 (SKU `{prefix}-PACK`), so refunds in parts, back to back or
/// failing later, claw credits back.
async fn put_up_a_credit_pack(shop: &Shop, prefix: &str) -> Result<(String, i64)> {
    let sku = format!("{prefix}-PACK");
    let price = 1_000;
    let product = json!({
        "name": "Chaos credit pack",
        "variants": [{"sku": sku, "unit_amount": price, "currency": "eur", "credits": 100}],
    });
    offer(shop, &sku, product, 100_000).await?;
    Ok((sku, price))
}

/// A monthly plan of 100 credits, for the customers who subscribe.
async fn create_plan(shop: &Shop) -> Result<String> {
    let plan = json!({"name": "Chaos plan", "unit_amount": 900, "currency": "eur",
                      "interval": "month", "credits": 100});
    let created = shop
        .kassa(Method::POST, "/v1/plans", &shop.secret, None, Some(plan))
        .await;
    if !created.ok() {
        bail!("cannot create a plan: {} {}", created.status, created.body);
    }
    Ok(created.text("/id"))
}

/// What the shop sells: the SKUs with their prices, and a plan.
#[derive(Clone, Copy)]
struct Goods<'a> {
    skus: &'a [(String, i64)],
    plan_id: &'a str,
}

/// A subscription a customer started: (Kassa's customer id, subscription id).
type Subscribed = (String, String);

/// Subscribes (with a key of its own), and pays the page with a card, or one that is declined
/// (the page then stays open until it expires).
async fn subscribe(
    shop: &Shop,
    rng: &mut StdRng,
    plan_id: &str,
    email: &str,
    key: &str,
) -> Option<Subscribed> {
    bump(&shop.counts.subscriptions);
    let answer = shop
        .kassa(
            Method::POST,
            "/v1/subscriptions/checkout_session",
            &shop.publishable,
            Some(key),
            Some(json!({"plan_id": plan_id, "email": email})),
        )
        .await;
    if !answer.ok() {
        return None;
    }
    let card = if rng.random_bool(0.85) {
        "pm_card_visa"
    } else {
        bump(&shop.counts.declines);
        "pm_card_chargeDeclined"
    };
    pay_page(shop, &answer.text("/checkout_session/id"), card).await;
    Some((answer.text("/customer_id"), answer.text("/subscription_id")))
}

/// Spends some of a subscriber's credits; few keys per customer, so some repeat (the same
/// amount: replayed; another: refused as a reused key).
async fn spend_credits(shop: &Shop, rng: &mut StdRng, customer_id: &str, key: &str) {
    bump(&shop.counts.debits);
    shop.kassa(
        Method::POST,
        &format!("/v1/customers/{customer_id}/credits/debit"),
        &shop.secret,
        Some(key),
        Some(json!({"amount": rng.random_range(1..60)})),
    )
    .await;
}

/// Re-arms the emulator's faults every few hundred milliseconds until the customers are done.
async fn inject_faults(shop: &Shop, seed: u64, working: &AtomicUsize) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    while working.load(Ordering::SeqCst) > 0 {
        let mut api = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let endpoint = KASSA_CALLS.choose(&mut rng).copied().unwrap_or_default();
            let answer = match rng.random_range(0..10) {
                0..=3 => json!({"status": 500}),
                4..=5 => json!({"status": 429}),
                6..=7 => json!({"hang_ms": HANG_MS}),
                _ => json!("lose_response"),
            };
            api.push(json!({"endpoint": endpoint, "answers": [answer]}));
        }
        let webhooks = json!({
            "copies": rng.random_range(1..4),
            "reorder": rng.random_bool(0.5),
            "delay_ms": rng.random_range(0..400),
            "drop_first": rng.random_bool(0.3),
            "drop": rng.random_bool(0.15),
        });
        let faults = json!({"api": api, "webhooks": webhooks});
        if shop
            .control(Method::POST, "/_emulator/faults", faults)
            .await
            .is_ok()
        {
            bump(&shop.counts.faults);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    }
}

/// One customer (and the operator looking after their orders), `steps` actions long.
async fn customer(
    shop: &Shop,
    goods: Goods<'_>,
    seed: u64,
    index: usize,
    steps: usize,
    progress: &ProgressBar,
) {
    let index_bits = u64::try_from(index).unwrap_or(u64::MAX);
    let skus = goods.skus;
    let mut orders: Vec<Placed> = Vec::new();
    let mut subscriptions: Vec<Subscribed> = Vec::new();
    for step in 0..steps {
        // Each step's choices from (seed, customer, step) alone, so what an earlier answer was
        // never shifts what a later step asks for.
        let step_bits = u64::try_from(step).unwrap_or(u64::MAX);
        let mut rng = StdRng::seed_from_u64(
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index_bits.rotate_left(32) ^ step_bits,
        );
        let key = format!("chaos-{seed}-{index}-{step}");
        match rng.random_range(0..23) {
            0..=8 => {
                if let Some(placed) = buy(shop, skus, &mut rng, &key).await {
                    pay(shop, &mut rng, &placed).await;
                    orders.push(placed);
                }
            }
            9 => abandon_a_cart(shop, skus, &mut rng).await,
            10 => {
                if let Some(placed) = orders.choose(&mut rng) {
                    // Paying again after a decline, with a card that works.
                    match &placed.session_id {
                        Some(session_id) => pay_page(shop, session_id, "pm_card_visa").await,
                        None => {
                            confirm(shop, placed, "pm_card_visa").await;
                        }
                    }
                }
            }
            11..=12 => {
                if let Some(placed) = orders.choose(&mut rng) {
                    let amount = rng.random_bool(0.3).then(|| rng.random_range(1..3_000));
                    bump(&shop.counts.captures);
                    shop.kassa(
                        Method::POST,
                        &format!("/v1/orders/{}/capture", placed.order_id),
                        &shop.secret,
                        None,
                        Some(json!({"amount": amount})),
                    )
                    .await;
                }
            }
            13 => {
                if let Some(placed) = orders.choose(&mut rng) {
                    edit(shop, &mut rng, placed).await;
                }
            }
            14 => {
                if let Some(placed) = orders.choose(&mut rng) {
                    let key = if rng.random_bool(0.5) {
                        &placed.token
                    } else {
                        &shop.secret
                    };
                    bump(&shop.counts.cancels);
                    shop.kassa(
                        Method::POST,
                        &format!("/v1/orders/{}/cancel", placed.order_id),
                        key,
                        None,
                        None,
                    )
                    .await;
                }
            }
            15..=17 => {
                if let Some(placed) = orders.choose(&mut rng) {
                    // Few keys per customer: operators repeat themselves.
                    let refund_key = format!("refund-{seed}-{index}-{}", rng.random_range(0..4));
                    let body = json!({
                        "order_id": placed.order_id,
                        "amount": rng.random_bool(0.6).then(|| rng.random_range(1..4_000)),
                        "restock": rng.random_bool(0.3),
                    });
                    bump(&shop.counts.refunds);
                    shop.kassa(
                        Method::POST,
                        "/v1/refunds",
                        &shop.secret,
                        Some(&refund_key),
                        Some(body),
                    )
                    .await;
                }
            }
            20 => {
                let email = format!("chaos-{seed}-{index}@example.com");
                if let Some(subscribed) =
                    subscribe(shop, &mut rng, goods.plan_id, &email, &key).await
                {
                    subscriptions.push(subscribed);
                }
            }
            21 => {
                if let Some((customer_id, _)) = subscriptions.choose(&mut rng) {
                    let debit_key = format!("debit-{seed}-{index}-{}", rng.random_range(0..4));
                    spend_credits(shop, &mut rng, customer_id, &debit_key).await;
                }
            }
            22 => {
                if let Some((_, subscription_id)) = subscriptions.choose(&mut rng) {
                    bump(&shop.counts.cancels);
                    let at_period_end = rng.random_bool(0.5);
                    shop.kassa(
                        Method::POST,
                        &format!("/v1/subscriptions/{subscription_id}/cancel"),
                        &shop.secret,
                        None,
                        Some(json!({"at_period_end": at_period_end})),
                    )
                    .await;
                }
            }
            _ => {
                if let Some(placed) = orders.choose(&mut rng) {
                    shop.order_as_customer(placed).await;
                }
            }
        }
        progress.inc(1);
    }
}

/// A cart of one to three lines; its id and total as the storefront shows it.
async fn fill_a_cart(
    shop: &Shop,
    skus: &[(String, i64)],
    rng: &mut StdRng,
) -> Option<(String, i64)> {
    let cart = shop.new_cart().await;
    let cart_id = cart.text("/id");
    if cart_id.is_empty() {
        return None;
    }
    bump(&shop.counts.carts);
    for _ in 0..rng.random_range(1..4) {
        let (sku, _) = skus.choose(rng)?;
        shop.add_line(&cart_id, sku, rng.random_range(1..4)).await;
    }
    // The total the customer is shown, read back: a repeated line request may have added twice.
    let cart = shop
        .kassa(
            Method::GET,
            &format!("/v1/carts/{cart_id}"),
            &shop.publishable,
            None,
            None,
        )
        .await;
    let total = cart.body["total"].as_i64().filter(|total| *total > 0)?;
    Some((cart_id, total))
}

async fn abandon_a_cart(shop: &Shop, skus: &[(String, i64)], rng: &mut StdRng) {
    if fill_a_cart(shop, skus, rng).await.is_some() {
        bump(&shop.counts.abandoned);
    }
}

/// A checkout with `key`, double-clicked now and then.
async fn buy(shop: &Shop, skus: &[(String, i64)], rng: &mut StdRng, key: &str) -> Option<Placed> {
    let (cart_id, total) = fill_a_cart(shop, skus, rng).await?;
    // A third of the customers pay on the hosted page.
    let hosted = rng.random_bool(0.3);
    let place = || async {
        place_order(shop, &cart_id, total, key, hosted, CHAOS_EMAIL)
            .await
            .ok()
    };
    if rng.random_bool(0.2) {
        bump(&shop.counts.double_clicks);
        let (first, second) = tokio::join!(place(), place());
        first.or(second)
    } else {
        place().await
    }
}

/// Every chaos customer checks out as Ada: past the per-e-mail velocity limit (live mode) the
/// refusals are part of the workload, counted with the others.
const CHAOS_EMAIL: &str = "ada@example.com";

fn checkout_body(total: i64, email: &str) -> Value {
    json!({
        "email": email,
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Analytical St",
                             "city": "London", "postal_code": "N1 1AA", "country": "GB"},
        "expected_total": total,
    })
}

/// `POST /v1/carts/{cart_id}/checkout` (or `/checkout_session`, the hosted page's flow) with
/// `key`, as the storefront sends it.
async fn place_order(
    shop: &Shop,
    cart_id: &str,
    total: i64,
    key: &str,
    hosted: bool,
    email: &str,
) -> Result<Placed, Answer> {
    bump(&shop.counts.checkouts);
    if hosted {
        bump(&shop.counts.hosted_pages);
    }
    let path = if hosted {
        "checkout_session"
    } else {
        "checkout"
    };
    let answer = shop
        .kassa(
            Method::POST,
            &format!("/v1/carts/{cart_id}/{path}"),
            &shop.publishable,
            Some(key),
            Some(checkout_body(total, email)),
        )
        .await;
    if !answer.ok() {
        return Err(answer);
    }
    Ok(Placed {
        order_id: answer.text("/order/id"),
        token: answer.text("/order_token"),
        intent_id: answer.text("/payment/payment_intent_id"),
        client_secret: answer.text("/payment/client_secret"),
        session_id: hosted.then(|| answer.text("/checkout_session/id")),
    })
}

/// The customer pays the hosted page with `payment_method` (the emulator's control call).
async fn pay_page(shop: &Shop, session_id: &str, payment_method: &str) {
    bump(&shop.counts.confirmations);
    // Refused when the page is no longer open (paid, expired): nothing to do then.
    let _ = shop
        .control(
            Method::POST,
            &format!("/_emulator/checkout_sessions/{session_id}/pay"),
            json!({"payment_method": payment_method}),
        )
        .await;
}

/// The embedded flow's checkout as `kassa bench` drives it, as the customer `email`: the order,
/// or Kassa's answer when it placed none.
pub(crate) async fn checkout(
    shop: &Shop,
    cart_id: &str,
    total: i64,
    key: &str,
    email: &str,
) -> Result<Placed, Answer> {
    place_order(shop, cart_id, total, key, false, email).await
}

/// The customer at the payment page: a good card, a declined one, 3-D Secure passed or
/// failed, or walking away.
async fn pay(shop: &Shop, rng: &mut StdRng, placed: &Placed) {
    if let Some(session_id) = &placed.session_id {
        return pay_on_page(shop, rng, session_id).await;
    }
    match rng.random_range(0..20) {
        0..=10 => {
            confirm(shop, placed, "pm_card_visa").await;
        }
        11..=12 => {
            bump(&shop.counts.declines);
            confirm(shop, placed, "pm_card_chargeDeclined").await;
        }
        13..=15 => {
            bump(&shop.counts.three_d_secure);
            confirm(shop, placed, "pm_card_authenticationRequired").await;
            let outcome = if rng.random_bool(0.8) {
                "succeed"
            } else {
                "fail"
            };
            // Refused when the card needed no authentication after all: nothing to do then.
            let _ = shop
                .control(
                    Method::POST,
                    &format!(
                        "/_emulator/payment_intents/{}/authenticate",
                        placed.intent_id
                    ),
                    json!({"outcome": outcome}),
                )
                .await;
        }
        // A card whose refunds fail after they succeeded: the cancels and refunds of these
        // orders must leave the order following the money.
        16..=17 => {
            confirm(shop, placed, "pm_card_refundFail").await;
        }
        _ => {}
    }
}

/// The customer on the hosted page: a good card, a declined one, 3-D Secure passed or failed,
/// a bank transfer that settles or fails later, or walking away.
async fn pay_on_page(shop: &Shop, rng: &mut StdRng, session_id: &str) {
    let method = match rng.random_range(0..20) {
        0..=9 => "pm_card_visa",
        10..=11 => {
            bump(&shop.counts.declines);
            "pm_card_chargeDeclined"
        }
        12..=14 => {
            bump(&shop.counts.three_d_secure);
            "pm_card_authenticationRequired"
        }
        15..=16 => "pm_bank_transfer_settles",
        17 => "pm_bank_transfer_fails",
        _ => return,
    };
    pay_page(shop, session_id, method).await;
    if method == "pm_card_authenticationRequired" {
        let session = shop
            .stripe(
                Method::GET,
                &format!("/v1/checkout/sessions/{session_id}"),
                &shop.stripe_secret,
                &[],
            )
            .await;
        if let Some(intent_id) = session["payment_intent"].as_str() {
            let outcome = if rng.random_bool(0.8) {
                "succeed"
            } else {
                "fail"
            };
            let _ = shop
                .control(
                    Method::POST,
                    &format!("/_emulator/payment_intents/{intent_id}/authenticate"),
                    json!({"outcome": outcome}),
                )
                .await;
        }
    }
}

pub(crate) async fn confirm(shop: &Shop, placed: &Placed, payment_method: &str) -> Value {
    bump(&shop.counts.confirmations);
    shop.stripe(
        Method::POST,
        &format!("/v1/payment_intents/{}/confirm", placed.intent_id),
        &shop.stripe_confirm_key,
        &[
            ("payment_method", payment_method),
            ("client_secret", placed.client_secret.as_str()),
        ],
    )
    .await
}

/// The customer (with their token) lowers a quantity or changes the address.
async fn edit(shop: &Shop, rng: &mut StdRng, placed: &Placed) {
    let order = shop.order_as_customer(placed).await;
    let line = order.body["lines"]
        .as_array()
        .and_then(|lines| lines.choose(rng))
        .cloned()
        .unwrap_or(Value::Null);
    let body = match line["quantity"].as_i64() {
        Some(quantity) if quantity > 1 && rng.random_bool(0.7) => {
            json!({"lines": [{"sku": line["sku"], "quantity": quantity - 1}]})
        }
        _ => json!({"shipping_address": {"name": "Ada King", "line1": "2 Engine Row",
                    "city": "London", "postal_code": "N2 2BB", "country": "GB"}}),
    };
    bump(&shop.counts.edits);
    shop.kassa(
        Method::PATCH,
        &format!("/v1/orders/{}", placed.order_id),
        &placed.token,
        None,
        Some(body),
    )
    .await;
}

/// With the faults gone: reconciliation and the invariant check, again until the check passes
/// or `within` is over. The last check's violations are printed if it never does.
async fn settle(shop: &Shop, within: Duration) -> Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        shop.kassa(
            Method::POST,
            "/v1/admin/reconcile",
            &shop.secret,
            None,
            None,
        )
        .await;
        let check = shop
            .kassa(Method::POST, "/v1/admin/check", &shop.secret, None, None)
            .await;
        // Passed, and every payment compared: a Stripe lookup that failed proves nothing.
        if check.body["passed"] == true && check.body["provider_errors"] == 0 {
            return Ok(true);
        }
        if Instant::now() > deadline {
            println!("the invariant check still fails after {within:?}:");
            for violation in check.body["violations"].as_array().into_iter().flatten() {
                println!(
                    "  invariant {}: {} ({})",
                    violation["invariant"],
                    violation["what"].as_str().unwrap_or_default(),
                    violation["ids"]
                );
            }
            if check.status != 200 {
                println!("  (the check answered {}: {})", check.status, check.body);
            }
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn summary(counts: &Counts, seed: u64, passed: bool) -> String {
    let n = |counter: &AtomicUsize| counter.load(Ordering::Relaxed);
    let refused = counts
        .refused
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(code, count)| (format!("refused: {code}"), *count))
        .collect::<Vec<_>>();
    let mut table = counts_table(
        &format!(
            "kassa chaos seed {seed}: {}",
            if passed {
                "PASS, every invariant holds"
            } else {
                "FAIL"
            }
        ),
        &[
            ("carts", n(&counts.carts)),
            ("abandoned", n(&counts.abandoned)),
            ("checkouts", n(&counts.checkouts)),
            ("double clicks", n(&counts.double_clicks)),
            ("payment confirmations", n(&counts.confirmations)),
            ("declined cards", n(&counts.declines)),
            ("3-D Secure", n(&counts.three_d_secure)),
            ("hosted pages", n(&counts.hosted_pages)),
            ("captures asked", n(&counts.captures)),
            ("edits asked", n(&counts.edits)),
            ("cancels asked", n(&counts.cancels)),
            ("refunds asked", n(&counts.refunds)),
            ("subscriptions started", n(&counts.subscriptions)),
            ("credit debits asked", n(&counts.debits)),
            ("requests repeated", n(&counts.retries)),
            ("fault rounds injected", n(&counts.faults)),
        ],
    );
    let rows: Vec<(&str, usize)> = refused.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    table.push_str(&counts_table("answers that were not 2xx", &rows));
    table
}
