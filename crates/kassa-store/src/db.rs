//! Opening the database: URL parsing, per-backend connection settings, migrations.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kassa_app::ports::StoreError;

use crate::unit::{CommitStats, GroupCommit, Unit};
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

/// A statement with its bound arguments, before it runs.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, AnyArguments>;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a caller waits for a pooled connection before getting a 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL connections per Kassa instance.
const POSTGRES_CONNECTIONS_MAX: u32 = 10;
/// SQLite connections that only read, beside the one writer (group commit on a file).
const SQLITE_READERS: u32 = 4;
const SQLITE_SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    #[error("KASSA_DATABASE_URL must start with sqlite:// or postgres:// (got {0:?})")]
    UnsupportedUrl(String),
    #[error("cannot open the database: {0}")]
    Connect(String),
    #[error("cannot apply migrations: {0}")]
    Migrate(String),
}

/// How units of work reach the disk (see `unit.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Many requests' units share one transaction and one fsync, a savepoint each. The
    /// committer waits `wait` after it is asked before it commits, so that more units join on
    /// a disk whose fsync is slow (like PostgreSQL's `commit_delay`); zero by default.
    Grouped { wait: Duration },
    /// Each unit is a transaction of its own on a pooled connection.
    PerUnit,
}

impl CommitMode {
    /// Grouped on SQLite, whose one writer would otherwise wait for one fsync per unit; per
    /// unit on PostgreSQL, whose pool of connections lets the server batch concurrent commits
    /// into one WAL flush itself (docs/benchmarks.md measures both).
    pub fn default_for(backend: Backend) -> CommitMode {
        match backend {
            Backend::Sqlite => CommitMode::Grouped {
                wait: Duration::ZERO,
            },
            Backend::Postgres => CommitMode::PerUnit,
        }
    }
}

/// The SQL implementation of every storage port.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    /// `Some` when units are group-committed; the pool then serves the writer (and, on
    /// PostgreSQL, the readers).
    group: Option<Arc<GroupCommit>>,
    /// Where reads that need no transaction run, beside the group-committed writer. They see
    /// only what is committed, and so durable. `None`: reads are units like any other (per-unit
    /// commits, or an in-memory SQLite database, whose connections would lock each other's
    /// tables).
    readers: Option<AnyPool>,
    backend: Backend,
    faults: Arc<FaultPoints>,
}

/// Named places inside multi-step transactions where a test can make the next pass fail, to
/// show that nothing partial commits (risks W3, R2). Production code never arms one.
///
/// The deterministic simulation uses two more: a [`CrashSwitch`] asked before every transaction
/// and lone statement, and [`Protection`]s it switches off to show that it would catch their
/// absence.
#[derive(Default)]
pub struct FaultPoints {
    armed: Mutex<BTreeSet<&'static str>>,
    crash_switch: std::sync::OnceLock<Arc<dyn CrashSwitch>>,
    switched_off: Mutex<BTreeSet<Protection>>,
}

/// Decides, before each transaction and each statement run on its own, whether the simulated
/// process dies there. A crash inside a transaction is the same as one just before it (nothing
/// uncommitted survives), and one just after a commit is the same as one before the next, so
/// these points cover every state a real crash can leave behind in the database.
pub trait CrashSwitch: Send + Sync {
    fn crash_now(&self) -> bool;
}

/// A protection the simulation may switch off, to prove it notices (issue 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protection {
    /// A refund is bounded by what is captured minus what is refunded *and held by refunds in
    /// flight*; switched off, the held amount is ignored.
    RefundBound,
}

impl std::fmt::Debug for FaultPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultPoints").finish_non_exhaustive()
    }
}

impl FaultPoints {
    /// Fails the next pass through `point`, once.
    pub fn arm(&self, point: &'static str) {
        self.armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(point);
    }

    /// Asks `switch` before every transaction and lone statement from now on; set once (a
    /// second switch is ignored), so production pays one atomic load per transaction.
    pub fn crash_with(&self, switch: Arc<dyn CrashSwitch>) {
        let _ = self.crash_switch.set(switch);
    }

    /// Switches `protection` off. Only the simulation's proof that it catches a missing
    /// protection does this.
    pub fn switch_off(&self, protection: Protection) {
        self.switched_off
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(protection);
    }

    pub(crate) fn is_on(&self, protection: Protection) -> bool {
        !self
            .switched_off
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&protection)
    }

    /// Never returns if the crash switch says the process dies here: the caller's future is
    /// dropped by the simulation, as the process would be.
    pub(crate) async fn crash_point(&self) {
        if self
            .crash_switch
            .get()
            .is_some_and(|switch| switch.crash_now())
        {
            std::future::pending::<()>().await;
        }
    }

    pub(crate) fn check(&self, point: &'static str) -> Result<(), StoreError> {
        let fired = self
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(point);
        if fired {
            Err(StoreError::Unavailable(format!(
                "injected fault at {point}"
            )))
        } else {
            Ok(())
        }
    }
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend, StoreOpenError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreOpenError::UnsupportedUrl(url.to_owned()))
        }
    }
}

impl SqlStore {
    /// Connects (creating a SQLite file if needed) without migrating, committing the
    /// backend's default way.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreOpenError> {
        SqlStore::connect_with(url, None).await
    }

    /// Connects with `mode`, or the backend's default. Must run inside a Tokio runtime, which
    /// then runs the group committer.
    pub async fn connect_with(
        url: &str,
        mode: Option<CommitMode>,
    ) -> Result<SqlStore, StoreOpenError> {
        install_default_drivers();
        let backend = Backend::of_url(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let pool = match backend {
            // One connection: SQLite has one writer anyway, and a single connection means a
            // read-then-write transaction can never fail to upgrade its lock (SQLITE_BUSY).
            // Full durability: WAL with synchronous=FULL fsyncs every commit. Savepoints keep
            // their undo pages in memory (temp_store): they never outlive the process anyway.
            Backend::Sqlite => {
                options
                    .max_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(SQLITE_SETTINGS).await?;
                            Ok(())
                        })
                    })
                    .connect(&sqlite_url_creating_file(url))
                    .await
            }
            Backend::Postgres => {
                options
                    .max_connections(POSTGRES_CONNECTIONS_MAX)
                    .connect(url)
                    .await
            }
        }
        .map_err(|error| StoreOpenError::Connect(error.to_string()))?;
        let (group, readers) = match mode.unwrap_or(CommitMode::default_for(backend)) {
            CommitMode::Grouped { wait } => {
                let readers = match backend {
                    Backend::Sqlite if url.contains("mode=memory") => None,
                    Backend::Sqlite => Some(sqlite_readers(url).await?),
                    Backend::Postgres => Some(pool.clone()),
                };
                (
                    Some(GroupCommit::start(pool.clone(), wait, backend)),
                    readers,
                )
            }
            CommitMode::PerUnit => (None, None),
        };
        Ok(SqlStore {
            pool,
            group,
            readers,
            backend,
            faults: Arc::default(),
        })
    }

    /// Connects and applies every pending migration.
    pub async fn open(url: &str) -> Result<SqlStore, StoreOpenError> {
        SqlStore::open_with(url, None).await
    }

    /// [`SqlStore::open`] with a commit mode other than the backend's default.
    pub async fn open_with(
        url: &str,
        mode: Option<CommitMode>,
    ) -> Result<SqlStore, StoreOpenError> {
        let store = SqlStore::connect_with(url, mode).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreOpenError> {
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(|error| StoreOpenError::Migrate(error.to_string()))
    }

    /// Begins a unit for statements that need no transaction of their own (one statement, or
    /// reads): a crash point like `begin`. Grouped, it is a unit like any other.
    pub(crate) async fn autocommit(&self) -> Result<Unit, StoreError> {
        self.unit(false).await
    }

    /// Begins a unit of work: every storage method's first step, and the simulation's crash
    /// point.
    pub(crate) async fn begin(&self) -> Result<Unit, StoreError> {
        self.unit(true).await
    }

    /// A savepoint in the batch when grouped; otherwise a transaction of its own, or (no
    /// `transaction` needed) a pooled connection.
    async fn unit(&self, transaction: bool) -> Result<Unit, StoreError> {
        self.faults.crash_point().await;
        match &self.group {
            Some(group) => group.begin().await,
            None if transaction => self
                .pool
                .begin()
                .await
                .map(Unit::transaction)
                .map_err(unavailable),
            None => self
                .pool
                .acquire()
                .await
                .map(Unit::lone)
                .map_err(unavailable),
        }
    }

    /// Begins a unit for reads that need no transaction of their own: on a reader beside the
    /// group-committed writer when there is one, else like [`SqlStore::autocommit`].
    pub(crate) async fn read(&self) -> Result<Unit, StoreError> {
        match &self.readers {
            Some(readers) => {
                self.faults.crash_point().await;
                readers.acquire().await.map(Unit::lone).map_err(unavailable)
            }
            None => self.autocommit().await,
        }
    }

    /// Runs the read-only `query` on a reader.
    pub(crate) async fn read_fetch_all(
        &self,
        query: AnyQuery<'_>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut unit = self.read().await?;
        let rows = query.fetch_all(&mut *unit).await.map_err(unavailable)?;
        unit.commit().await?;
        Ok(rows)
    }

    /// Runs the read-only `query` on a reader.
    pub(crate) async fn read_fetch_optional(
        &self,
        query: AnyQuery<'_>,
    ) -> Result<Option<AnyRow>, StoreError> {
        let mut unit = self.read().await?;
        let row = query
            .fetch_optional(&mut *unit)
            .await
            .map_err(unavailable)?;
        unit.commit().await?;
        Ok(row)
    }

    /// Runs `query` as a unit of its own.
    pub(crate) async fn lone_execute(
        &self,
        query: AnyQuery<'_>,
    ) -> Result<AnyQueryResult, StoreError> {
        let mut unit = self.autocommit().await?;
        let done = query.execute(&mut *unit).await.map_err(unavailable)?;
        unit.commit().await?;
        Ok(done)
    }

    /// Takes the writer with an empty unit and keeps it until [`HeldWriter::release`], so that a
    /// test can queue units behind it and know they share the next batch. `None` when units
    /// are not group-committed. Tests only.
    #[doc(hidden)]
    pub async fn hold_writer(&self) -> Option<Result<HeldWriter, StoreError>> {
        let group = self.group.as_ref()?;
        Some(group.begin().await.map(HeldWriter))
    }

    /// Units and batches committed so far; `None` when units are not group-committed.
    pub fn commit_stats(&self) -> Option<CommitStats> {
        self.group.as_ref().map(|group| group.stats())
    }

    /// The fault points of this store (shared by its clones), for tests.
    pub fn faults(&self) -> &FaultPoints {
        &self.faults
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        if let Some(group) = &self.group {
            group.close().await;
        }
        if let Some(readers) = &self.readers {
            readers.close().await;
        }
        self.pool.close().await;
    }

    pub(crate) fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

/// The writer, held by a test (see [`SqlStore::hold_writer`]).
pub struct HeldWriter(Unit);

impl HeldWriter {
    /// Lets the queued units run; returns once the batch they share with this one commits.
    pub async fn release(self) -> Result<(), StoreError> {
        self.0.commit().await
    }
}

/// How many small durable transactions one connection commits per second on `url` (for SQLite,
/// a scratch file: same settings and file system as Kassa's, not Kassa's file), measured for
/// `duration`. The ceiling a design with one commit per step runs into; `kassa bench` reports
/// Kassa's rate against it.
pub async fn commits_per_second(url: &str, duration: Duration) -> Result<u64, StoreOpenError> {
    let store = SqlStore::connect_with(url, Some(CommitMode::PerUnit)).await?;
    let failed = |error: sqlx::Error| StoreOpenError::Connect(error.to_string());
    store
        .pool
        .execute("CREATE TABLE IF NOT EXISTS kassa_commit_probe (n BIGINT NOT NULL)")
        .await
        .map_err(failed)?;
    let started = std::time::Instant::now();
    let mut commits: u64 = 0;
    while started.elapsed() < duration {
        let mut tx = store.pool.begin().await.map_err(failed)?;
        sqlx::query("INSERT INTO kassa_commit_probe (n) VALUES ($1)")
            .bind(i64::try_from(commits).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        commits += 1;
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    store
        .pool
        .execute("DROP TABLE kassa_commit_probe")
        .await
        .map_err(failed)?;
    store.close().await;
    Ok(commits * 1_000 / elapsed_ms.max(1))
}

/// Connections to the SQLite file at `url` that refuse to write (`query_only`).
async fn sqlite_readers(url: &str) -> Result<AnyPool, StoreOpenError> {
    AnyPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .max_connections(SQLITE_READERS)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(SQLITE_SETTINGS).await?;
                conn.execute("PRAGMA query_only = ON").await?;
                Ok(())
            })
        })
        .connect(&sqlite_url_creating_file(url))
        .await
        .map_err(|error| StoreOpenError::Connect(error.to_string()))
}

/// `sqlite://path` → `sqlite://path?mode=rwc`, so a first start creates the file.
fn sqlite_url_creating_file(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Any database failure, reduced to the port's error. The text goes to logs, never to clients.
pub(crate) fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

pub(crate) fn flag(value: i64) -> bool {
    value != 0
}

pub(crate) fn flag_value(value: bool) -> i64 {
    i64::from(value)
}
