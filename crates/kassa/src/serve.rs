//! `kassa serve` and `kassa migrate`: open the store, build the app, bind, serve until a
//! shutdown signal, then drain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use kassa_app::order_token::OrderTokens;
use kassa_app::ports::SystemClock;
use kassa_app::{App, AppParts, Settings};
use kassa_http::{ApiKeys, HttpState, JsonCheckoutRenderer, PublicRateLimit};
use kassa_store::SqlStore;

use crate::config::{Config, Mode};
use crate::demo;

/// Where sandbox mode keeps what it generates, beside the default SQLite file.
const SANDBOX_DIR: &str = "./kassa-data";
const SANDBOX_KEYS_FILE: &str = "sandbox-keys.env";
/// A customer's order token reads the order for 30 days…
const ORDER_TOKEN_READ_TTL_SECS: i64 = 30 * 86_400;
/// …and may change or cancel it for the first hour.
const ORDER_MODIFY_WINDOW_SECS: i64 = 3_600;

pub async fn migrate(config: &Config) -> Result<()> {
    create_sqlite_parent(&config.database_url)?;
    let store = SqlStore::open(&config.database_url).await?;
    store.close().await;
    println!("migrations applied");
    Ok(())
}

pub async fn run(config: Config) -> Result<()> {
    create_sqlite_parent(&config.database_url)?;
    let store = SqlStore::open(&config.database_url).await?;
    let keys = api_keys(&config)?;
    let app = App::new(AppParts {
        store: Arc::new(store.clone()),
        provider: Arc::new(crate::unwired::UnwiredProvider),
        clock: Arc::new(SystemClock),
        renderer: Arc::new(JsonCheckoutRenderer),
        verifier: Arc::new(crate::unwired::UnwiredVerifier),
        order_tokens: OrderTokens::new(
            &keys.secret,
            ORDER_TOKEN_READ_TTL_SECS,
            ORDER_MODIFY_WINDOW_SECS,
        ),
        settings: Settings::default(),
    });
    if let Mode::Sandbox {
        seed_demo: true, ..
    } = config.mode
    {
        demo::load(&app).await.context("loading the demo catalog")?;
    }
    let workers = crate::workers::Workers::start(app.clone());
    let state = HttpState {
        app,
        keys: keys.clone(),
        rate_limit: PublicRateLimit::new(config.rate_limit_per_sec),
        sandbox: None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (KASSA_LISTEN)", config.listen))?;
    let address = listener.local_addr()?;
    print_banner(&config, address, &keys);
    axum::serve(
        listener,
        kassa_http::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    workers.shutdown().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Keys from the configuration; in sandbox mode, missing ones are generated once and kept in
/// ./kassa-data so a restart keeps working with the same storefront settings.
fn api_keys(config: &Config) -> Result<ApiKeys> {
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
    std::fs::create_dir_all(SANDBOX_DIR).with_context(|| format!("cannot create {SANDBOX_DIR}"))?;
    std::fs::write(
        &path,
        format!("KASSA_SECRET_KEY={secret}\nKASSA_PUBLISHABLE_KEY={publishable}\n"),
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(ApiKeys {
        secret,
        publishable,
    })
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

fn print_banner(config: &Config, address: SocketAddr, keys: &ApiKeys) {
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
    if let Mode::Sandbox { .. } = config.mode {
        let pk = &keys.publishable;
        println!("secret key:      {}", keys.secret);
        println!("publishable key: {pk}");
        println!("Try it (demo catalog: TEE-S, TEE-M, TEE-L, MUG, STICKERS):");
        println!(
            "  CART=$(curl -s -X POST {base}/v1/carts -H 'Authorization: Bearer {pk}' -H 'Content-Type: application/json' -d '{{\"currency\":\"eur\"}}' | sed 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/')"
        );
        println!(
            "  curl -s -X POST {base}/v1/carts/$CART/lines -H 'Authorization: Bearer {pk}' -H 'Content-Type: application/json' -d '{{\"sku\":\"TEE-M\",\"quantity\":2}}'"
        );
        println!("  curl -s {base}/v1/carts/$CART -H 'Authorization: Bearer {pk}'");
    }
}

async fn shutdown_signal() {
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
