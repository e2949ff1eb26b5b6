//! `kassa serve`, `kassa sim` and `kassa migrate`: open the store, pick the payment provider
//! (Stripe, or the built-in emulator in sandbox mode), build the app, bind, serve until a
//! shutdown signal, then drain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use kassa_app::order_token::OrderTokens;
use kassa_app::ports::{CaptureMethod, PaymentProvider, SystemClock, WebhookVerifier};
use kassa_app::{App, AppParts, Settings};
use kassa_emulator::{Emulator, EmulatorConfig};
use kassa_http::{ApiKeys, HttpState, JsonCheckoutRenderer, PublicRateLimit, SandboxBody};
use kassa_store::SqlStore;
use kassa_stripe::{StripeClient, StripeConfig, StripeWebhookVerifier};

use crate::config::{Config, Mode};
use crate::demo;

/// Where sandbox mode keeps what it generates, beside the default SQLite file.
const SANDBOX_DIR: &str = "./kassa-data";
const SANDBOX_KEYS_FILE: &str = "sandbox-keys.env";
/// A customer's order token reads the order for 30 days (and may change or cancel it within the
/// modification window).
const ORDER_TOKEN_READ_TTL_SECS: i64 = 30 * 86_400;

/// The payment side: the provider and verifier, and in sandbox mode the emulator behind them.
struct Payments {
    provider: Arc<dyn PaymentProvider>,
    verifier: Arc<dyn WebhookVerifier>,
    emulator: Option<Emulator>,
    sandbox: Option<SandboxBody>,
}

pub async fn migrate(config: &Config) -> Result<()> {
    create_sqlite_parent(&config.database_url)?;
    let store = SqlStore::open_with(&config.database_url, Some(config.commit_mode)).await?;
    store.close().await;
    println!("migrations applied");
    Ok(())
}

/// `kassa sim`: the emulator alone, until Ctrl-C.
pub async fn sim(config: &Config) -> Result<()> {
    let listen = match config.mode {
        Mode::Sandbox { sim_listen, .. } => sim_listen,
        Mode::Stripe(_) => "127.0.0.1:12111"
            .parse()
            .context("default emulator address")?,
    };
    let emulator = Emulator::start(EmulatorConfig {
        listen,
        ..emulator_keys()
    })
    .await
    .with_context(|| format!("cannot listen on {listen} (KASSA_SIM_LISTEN)"))?;
    println!("Stripe emulator listening on {}", emulator.base_url());
    println!("secret key:      {}", emulator.config().secret_key);
    println!("publishable key: {}", emulator.config().publishable_key);
    println!("webhook secret:  {}", emulator.config().webhook_secret);
    println!(
        "control API: {}/_emulator/… (see crates/kassa-emulator/README.md)",
        emulator.base_url()
    );
    shutdown_signal().await;
    emulator.shutdown().await;
    Ok(())
}

pub async fn run(config: Config) -> Result<()> {
    create_sqlite_parent(&config.database_url)?;
    let store = SqlStore::open_with(&config.database_url, Some(config.commit_mode)).await?;
    let keys = api_keys(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (KASSA_LISTEN)", config.listen))?;
    let address = listener.local_addr()?;
    let payments = payments(&config, address).await?;
    let hosted = config.hosted_checkout.clone().or_else(|| {
        payments
            .sandbox
            .as_ref()
            .map(|_| demo::return_urls(address))
    });
    let app = build_app(&config, &store, &payments, &keys, hosted);
    if let Mode::Sandbox {
        seed_demo: true, ..
    } = config.mode
    {
        demo::load(&app).await.context("loading the demo catalog")?;
    }
    let reconcile_every = std::time::Duration::from_secs(config.reconcile_interval_secs);
    let notify_secret = match &config.notify_secret {
        Some(secret) => secret.clone(),
        None => sandbox_value("KASSA_NOTIFY_SECRET", "whsec_kassa_")?,
    };
    let notifier =
        kassa_http::notify::HttpNotifier::new(notify_secret).map_err(anyhow::Error::msg)?;
    let workers = crate::workers::Workers::start(
        app.clone(),
        reconcile_every,
        Arc::new(notifier),
        config.notify_urls.clone(),
    );
    let demo = payments.sandbox.as_ref().map(|sandbox| {
        let seeded = matches!(
            config.mode,
            Mode::Sandbox {
                seed_demo: true,
                ..
            }
        );
        Arc::new(kassa_http::DemoStorefront {
            publishable_key: keys.publishable.clone(),
            stripe_api_base: sandbox.stripe_api_base.clone(),
            stripe_publishable_key: sandbox.stripe_publishable_key.clone(),
            catalog: if seeded { demo::catalog() } else { Vec::new() },
        })
    });
    let state = HttpState {
        app,
        keys: keys.clone(),
        rate_limit: PublicRateLimit::new(config.rate_limit_per_sec),
        trusted_proxies: config.trusted_proxies.clone(),
        sandbox: payments.sandbox.map(Arc::new),
        limits: config.server_limits,
        metrics: Some(metrics_render()?),
        demo,
    };
    print_banner(&config, address, &keys, payments.emulator.as_ref());
    kassa_http::serve(listener, state, shutdown_signal()).await?;
    workers.shutdown().await;
    if let Some(emulator) = payments.emulator {
        emulator.shutdown().await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The application over `store` and the payment side, with the configuration's policies.
fn build_app(
    config: &Config,
    store: &SqlStore,
    payments: &Payments,
    keys: &ApiKeys,
    hosted_checkout: Option<kassa_app::checkout::HostedCheckoutUrls>,
) -> App {
    App::new(AppParts {
        store: Arc::new(store.clone()),
        provider: payments.provider.clone(),
        clock: Arc::new(SystemClock),
        ids: std::sync::Arc::new(kassa_app::ids::RandomIds),
        renderer: Arc::new(JsonCheckoutRenderer),
        verifier: payments.verifier.clone(),
        order_tokens: OrderTokens::new(
            &keys.secret,
            ORDER_TOKEN_READ_TTL_SECS,
            config.modification_window_secs,
        ),
        settings: Settings {
            capture_method: if config.capture_manually {
                CaptureMethod::Manual
            } else {
                CaptureMethod::Automatic
            },
            modification_window_secs: config.modification_window_secs,
            reservation_ttl_secs: config.reservation_ttl_secs,
            cart_ttl_secs: config.cart_ttl_secs,
            operation_resume_secs: config.operation_resume_secs,
            hosted_checkout,
            checkout_velocity: config.checkout_velocity,
            stripe_breaker: config.stripe_breaker,
            platform_fee_bps: config.platform_fee_bps,
            retention: config.retention,
            ..Settings::default()
        },
    })
}

/// `kassa reconcile` in live mode: an app on the database and Stripe, for one run.
pub async fn live_app(config: &Config) -> Result<App> {
    let store = SqlStore::open_with(&config.database_url, Some(config.commit_mode)).await?;
    let keys = api_keys(config)?;
    let unused: SocketAddr = ([127, 0, 0, 1], 0).into();
    let payments = payments(config, unused).await?;
    Ok(build_app(
        config,
        &store,
        &payments,
        &keys,
        config.hosted_checkout.clone(),
    ))
}

/// The sandbox's secret key, as `kassa serve` generated and kept it.
pub fn sandbox_secret_key(config: &Config) -> Result<String> {
    Ok(api_keys(config)?.secret)
}

fn stripe_config(config: &Config, api_base: &str, secret_key: &str) -> StripeConfig {
    StripeConfig {
        request_timeout: std::time::Duration::from_secs(config.stripe_timeout_secs),
        ..StripeConfig::new(api_base, secret_key)
    }
}

/// Stripe in live mode; in sandbox mode the emulator, started here with its webhooks pointed at
/// this Kassa.
async fn payments(config: &Config, kassa_address: SocketAddr) -> Result<Payments> {
    match &config.mode {
        Mode::Stripe(stripe) => {
            let client =
                StripeClient::new(stripe_config(config, &stripe.api_base, &stripe.secret_key))
                    .map_err(anyhow::Error::msg)?;
            Ok(Payments {
                provider: Arc::new(client),
                verifier: Arc::new(StripeWebhookVerifier::new(stripe.webhook_secrets.clone())),
                emulator: None,
                sandbox: None,
            })
        }
        Mode::Sandbox { sim_listen, .. } => {
            let emulator = Emulator::start(EmulatorConfig {
                listen: *sim_listen,
                webhook_endpoints: vec![format!("http://{kassa_address}/v1/webhooks/stripe")],
                ..emulator_keys()
            })
            .await
            .with_context(|| {
                format!("cannot start the Stripe emulator on {sim_listen} (KASSA_SIM_LISTEN)")
            })?;
            let emulated = emulator.config().clone();
            let client = StripeClient::new(stripe_config(
                config,
                &emulator.base_url(),
                &emulated.secret_key,
            ))
            .map_err(anyhow::Error::msg)?;
            let sandbox = SandboxBody {
                stripe_api_base: emulator.base_url(),
                stripe_secret_key: emulated.secret_key.clone(),
                stripe_publishable_key: emulated.publishable_key.clone(),
                webhook_secret: emulated.webhook_secret.clone(),
            };
            Ok(Payments {
                provider: Arc::new(client),
                verifier: Arc::new(StripeWebhookVerifier::new(vec![emulated.webhook_secret])),
                emulator: Some(emulator),
                sandbox: Some(sandbox),
            })
        }
    }
}

/// Fresh emulator keys for this run (the emulator keeps nothing across restarts).
fn emulator_keys() -> EmulatorConfig {
    let random = || uuid::Uuid::new_v4().simple().to_string();
    EmulatorConfig {
        secret_key: format!("sk_test_sim_{}", random()),
        publishable_key: format!("pk_test_sim_{}", random()),
        webhook_secret: format!("whsec_{}", random()),
        seed: u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or_default(),
        ),
        ..EmulatorConfig::for_tests()
    }
}

/// Keys from the configuration; in sandbox mode, missing ones are generated once and kept in
/// ./kassa-data so a restart keeps working with the same storefront settings.
pub(crate) fn api_keys(config: &Config) -> Result<ApiKeys> {
    if let (Some(secret), Some(publishable)) = (&config.secret_key, &config.publishable_key) {
        return Ok(ApiKeys {
            secret: secret.clone(),
            publishable: publishable.clone(),
        });
    }
    let path = PathBuf::from(SANDBOX_DIR).join(SANDBOX_KEYS_FILE);
    let stored = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| crate::config::parse_file(&text).ok())
        .unwrap_or_default();
    let generated = |prefix: &str| format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let secret = config
        .secret_key
        .clone()
        .or_else(|| stored.get("KASSA_SECRET_KEY").cloned())
        .unwrap_or_else(|| generated("sk_test_"));
    let publishable = config
        .publishable_key
        .clone()
        .or_else(|| stored.get("KASSA_PUBLISHABLE_KEY").cloned())
        .unwrap_or_else(|| generated("pk_test_"));
    // Kept with whatever else the file holds (the notification secret).
    let mut kept = stored;
    kept.insert("KASSA_SECRET_KEY".into(), secret.clone());
    kept.insert("KASSA_PUBLISHABLE_KEY".into(), publishable.clone());
    let text: String = kept
        .iter()
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect();
    std::fs::create_dir_all(SANDBOX_DIR).with_context(|| format!("cannot create {SANDBOX_DIR}"))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(ApiKeys {
        secret,
        publishable,
    })
}

/// Installs the process's metrics recorder (Prometheus) and returns what renders it.
fn metrics_render() -> Result<kassa_http::MetricsRender> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Timings are histograms (buckets a scraper can aggregate across instances), from 5 ms to
    // the longest a provider call may take with its retries.
    let buckets = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(Arc::new(move || handle.render()))
}

/// A value kept in the sandbox keys file under `name`, generated (`prefix` + random) and kept
/// there the first time.
fn sandbox_value(name: &str, prefix: &str) -> Result<String> {
    let path = PathBuf::from(SANDBOX_DIR).join(SANDBOX_KEYS_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let stored = crate::config::parse_file(&text).unwrap_or_default();
    if let Some(value) = stored.get(name) {
        return Ok(value.clone());
    }
    let value = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    std::fs::create_dir_all(SANDBOX_DIR).with_context(|| format!("cannot create {SANDBOX_DIR}"))?;
    std::fs::write(&path, format!("{text}{name}={value}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(value)
}

/// A SQLite file's folder is created on first start; PostgreSQL URLs are left alone.
fn create_sqlite_parent(url: &str) -> Result<()> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
    }
    Ok(())
}

fn print_banner(config: &Config, address: SocketAddr, keys: &ApiKeys, emulator: Option<&Emulator>) {
    let base = format!("http://{address}");
    let mode = match &config.mode {
        Mode::Sandbox { .. } => "sandbox (SQLite, built-in Stripe emulator, test keys)",
        Mode::Stripe(_) => "live Stripe",
    };
    println!("Kassa is listening on {base} — mode: {mode}");
    println!(
        "database: {}",
        config.database_url.split('?').next().unwrap_or_default()
    );
    let Some(emulator) = emulator else { return };
    let pk = &keys.publishable;
    println!("secret key:      {}", keys.secret);
    println!("publishable key: {pk}");
    println!(
        "Stripe emulator: {} (details: GET {base}/v1/sandbox with the secret key)",
        emulator.base_url()
    );
    println!("Try it (demo catalog: TEE-S, TEE-M, TEE-L, MUG, STICKERS):");
    println!(
        "  CART=$(curl -s -X POST {base}/v1/carts -H 'Authorization: Bearer {pk}' -H 'Content-Type: application/json' -d '{{\"currency\":\"eur\"}}' | sed 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/')"
    );
    println!(
        "  curl -s -X POST {base}/v1/carts/$CART/lines -H 'Authorization: Bearer {pk}' -H 'Content-Type: application/json' -d '{{\"sku\":\"TEE-M\",\"quantity\":2}}'"
    );
    println!("  curl -s {base}/v1/carts/$CART -H 'Authorization: Bearer {pk}'");
    println!(
        "Checkout and paying through the emulator: see docs/guides/checkout.md, \"A sandbox checkout\"."
    );
    println!("Demo storefront (both ways to pay) in a browser: {base}/demo/");
}

pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
