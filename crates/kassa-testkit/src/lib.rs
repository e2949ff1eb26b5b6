//! Test fixtures shared by the storage, application and HTTP tests.
//!
//! [`TestDb`] gives each test its own empty, migrated database: a fresh SQLite file, or a fresh
//! PostgreSQL database that is dropped again when the fixture is dropped. PostgreSQL being
//! unreachable is a test failure with the command that starts it, never a silent skip.
//! Not for production code: nothing outside `[dev-dependencies]` may depend on this crate.

use kassa_store::{Backend, SqlStore};
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

/// Server the PostgreSQL tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("KASSA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub const POSTGRES_START_HINT: &str =
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

/// A migrated, empty database that disappears with the fixture.
pub struct TestDb {
    pub store: SqlStore,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteFile(std::path::PathBuf),
    PostgresDatabase(String),
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb::sqlite().await,
            Backend::Postgres => TestDb::postgres().await,
        }
    }

    pub async fn sqlite() -> TestDb {
        let path =
            std::env::temp_dir().join(format!("kassa-test-{}.db", uuid::Uuid::new_v4().simple()));
        let url = format!("sqlite://{}", path.display());
        let store = SqlStore::open(&url)
            .await
            .expect("a fresh SQLite file opens and migrates");
        TestDb {
            store,
            url,
            cleanup: Cleanup::SqliteFile(path),
        }
    }

    pub async fn postgres() -> TestDb {
        sqlx::any::install_default_drivers();
        let admin_url = postgres_admin_url();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&admin_url)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "PostgreSQL is not reachable at {admin_url} ({error}); {POSTGRES_START_HINT}"
                )
            });
        let name = format!("kassa_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))) // name is ours: hex only
            .await
            .expect("the test role may create databases");
        admin.close().await;
        let url = replace_database(&admin_url, &name);
        let store = SqlStore::open(&url)
            .await
            .expect("a fresh PostgreSQL database migrates");
        TestDb {
            store,
            url,
            cleanup: Cleanup::PostgresDatabase(name),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::PostgresDatabase(name) => drop_postgres_database(name.clone()),
        }
    }
}

/// Drops the database from a thread of its own: `Drop` cannot await, and the test's runtime may
/// be shutting down. `WITH (FORCE)` ends the pool's connections that may still be open.
fn drop_postgres_database(name: String) {
    let dropper = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            if let Ok(admin) = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&postgres_admin_url())
                .await
            {
                let _ = admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await;
                admin.close().await;
            }
        });
    });
    let _ = dropper.join();
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Runs an async test function once per backend, as two tests named `…::sqlite` and
/// `…::postgres` (a module may share its function's name: they live in different namespaces).
///
/// ```ignore
/// async fn risk_u1_line_change_is_isolated(db: TestDb) { … }
/// both_backends!(risk_u1_line_change_is_isolated);
/// ```
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::TestDb::new(::kassa_store::Backend::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::TestDb::new(::kassa_store::Backend::Postgres).await).await;
            }
        }
    };
}

pub mod provider;
pub mod shop;
pub mod verifier;

/// A clock tests move by hand.
#[derive(Debug)]
pub struct TestClock(std::sync::atomic::AtomicI64);

impl TestClock {
    pub fn new() -> std::sync::Arc<TestClock> {
        std::sync::Arc::new(TestClock(std::sync::atomic::AtomicI64::new(1_800_000_000)))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl kassa_app::ports::Clock for TestClock {
    fn now_secs(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An `App` over `db` and `provider` with the system clock and test settings.
pub fn app_with(
    db: &TestDb,
    provider: std::sync::Arc<dyn kassa_app::ports::PaymentProvider>,
) -> kassa_app::App {
    app_with_clock(
        db,
        provider,
        std::sync::Arc::new(kassa_app::ports::SystemClock),
    )
}

/// An `App` over `db`, `provider` and `clock` with test settings.
pub fn app_with_clock(
    db: &TestDb,
    provider: std::sync::Arc<dyn kassa_app::ports::PaymentProvider>,
    clock: std::sync::Arc<dyn kassa_app::ports::Clock>,
) -> kassa_app::App {
    app_with_parts(
        db,
        provider,
        clock,
        std::sync::Arc::new(verifier::RejectingVerifier),
    )
}

/// The settings of test apps: the defaults, with the test shop's hosted checkout URLs.
pub fn test_settings() -> kassa_app::Settings {
    kassa_app::Settings {
        hosted_checkout: Some(kassa_app::checkout::HostedCheckoutUrls {
            success_url: shop::SUCCESS_URL.into(),
            cancel_url: shop::CANCEL_URL.into(),
        }),
        ..kassa_app::Settings::default()
    }
}

/// An `App` with every port chosen by the test.
pub fn app_with_parts(
    db: &TestDb,
    provider: std::sync::Arc<dyn kassa_app::ports::PaymentProvider>,
    clock: std::sync::Arc<dyn kassa_app::ports::Clock>,
    verifier: std::sync::Arc<dyn kassa_app::ports::WebhookVerifier>,
) -> kassa_app::App {
    app_with_settings(db, provider, clock, verifier, test_settings())
}

/// An `App` with every port and its settings chosen by the test.
pub fn app_with_settings(
    db: &TestDb,
    provider: std::sync::Arc<dyn kassa_app::ports::PaymentProvider>,
    clock: std::sync::Arc<dyn kassa_app::ports::Clock>,
    verifier: std::sync::Arc<dyn kassa_app::ports::WebhookVerifier>,
    settings: kassa_app::Settings,
) -> kassa_app::App {
    kassa_app::App::new(kassa_app::AppParts {
        store: std::sync::Arc::new(db.store.clone()),
        provider,
        clock,
        ids: std::sync::Arc::new(kassa_app::ids::RandomIds),
        renderer: std::sync::Arc::new(kassa_http::JsonCheckoutRenderer),
        verifier,
        order_tokens: kassa_app::order_token::OrderTokens::new(TEST_SECRET_KEY, 30 * 86_400, 3_600),
        settings,
    })
}

/// An `App` with a [`provider::FakeProvider`] that creates every intent it is asked for.
pub fn app(db: &TestDb) -> kassa_app::App {
    app_with(db, std::sync::Arc::new(provider::FakeProvider::new()))
}

/// Serves `app` with the test keys on an ephemeral local port, through the same accept loop as
/// `kassa serve`; the address it listens on.
pub async fn serve_http(
    app: kassa_app::App,
    rate_limit: Option<std::sync::Arc<kassa_http::PublicRateLimit>>,
    limits: kassa_http::ServerLimits,
) -> std::net::SocketAddr {
    serve_state(test_state(app, rate_limit, limits)).await
}

/// The router's state with the test keys, outside sandbox mode.
pub fn test_state(
    app: kassa_app::App,
    rate_limit: Option<std::sync::Arc<kassa_http::PublicRateLimit>>,
    limits: kassa_http::ServerLimits,
) -> kassa_http::HttpState {
    kassa_http::HttpState {
        app,
        keys: kassa_http::ApiKeys {
            secret: TEST_SECRET_KEY.into(),
            publishable: TEST_PUBLISHABLE_KEY.into(),
        },
        rate_limit,
        trusted_proxies: kassa_http::TrustedProxies::default(),
        sandbox: None,
        limits,
        metrics: None,
        demo: None,
    }
}

/// Serves `state` on an ephemeral local port, through the same accept loop as `kassa serve`.
pub async fn serve_state(state: kassa_http::HttpState) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("ephemeral port");
    let address = listener.local_addr().expect("bound");
    tokio::spawn(kassa_http::serve(listener, state, std::future::pending()));
    address
}

pub const TEST_SECRET_KEY: &str = "sk_test_0123456789abcdef";
pub const TEST_PUBLISHABLE_KEY: &str = "pk_test_0123456789abcdef";

/// Creates a one-variant product `name` with `sku` at `unit_amount_minor` and puts `stock` units
/// on hand at the default location.
pub async fn seed_product(
    app: &kassa_app::App,
    name: &str,
    sku: &str,
    unit_amount_minor: i64,
    currency: &str,
    stock: i64,
) {
    app.create_product(kassa_app::catalog::NewProduct {
        seller_id: None,
        name: name.to_owned(),
        variants: vec![kassa_app::catalog::NewVariant {
            sku: sku.to_owned(),
            unit_amount_minor,
            currency: currency.to_owned(),
            attributes: std::collections::BTreeMap::new(),
            credits: 0,
        }],
    })
    .await
    .expect("test product is created");
    app.set_on_hand(sku, None, stock)
        .await
        .expect("test stock is set");
}
