//! Units of work, and group commit.
//!
//! Every storage method runs as one [`Unit`]. On a pool (PostgreSQL's default) a unit is a
//! transaction of its own, or one statement for a lone read. With group commit (SQLite's
//! default) every unit runs on the one writer connection inside a *batch*: a database
//! transaction that many requests' units share, so that one `COMMIT` — one fsync — makes all of
//! them durable. Three rules keep that as safe as one transaction per unit:
//!
//! - **Isolation.** Each unit is a savepoint. A unit that fails, or ends without committing,
//!   is rolled back to its savepoint before anything else runs; the units before and after it
//!   in the batch keep their work.
//! - **Durability before the answer.** [`Unit::commit`] returns only once the batch that holds
//!   the unit has committed. A request is never answered with work that a crash could lose,
//!   and a read never answers with what it saw before that is durable.
//! - **No waiting for company.** The batch commits as soon as the units queued for the writer
//!   when it was asked to have run: an idle shop commits each unit at once; under load, the
//!   units that queued during one fsync share the next. A batch is therefore bounded by the
//!   number of requests in flight.
//!
//! Units run one at a time on the writer (SQLite has one writer anyway). A unit must never wait
//! for another unit while it holds the writer: storage methods do not nest.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use kassa_app::ports::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, oneshot};

use crate::db::{Backend, unavailable};

/// One storage method's work: a transaction, a lone statement, or a savepoint in a batch.
/// Derefs to the connection its statements run on. Dropped without [`Unit::commit`], its work
/// is rolled back.
pub(crate) struct Unit {
    kind: UnitKind,
}

enum UnitKind {
    Transaction(Transaction<'static, Any>),
    Lone(PoolConnection<Any>),
    Batched(BatchedUnit),
}

impl Unit {
    pub(crate) fn transaction(transaction: Transaction<'static, Any>) -> Unit {
        Unit {
            kind: UnitKind::Transaction(transaction),
        }
    }

    pub(crate) fn lone(connection: PoolConnection<Any>) -> Unit {
        Unit {
            kind: UnitKind::Lone(connection),
        }
    }

    /// Makes the unit's work durable; returns once it is.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self.kind {
            UnitKind::Transaction(transaction) => transaction.commit().await.map_err(unavailable),
            UnitKind::Lone(_) => Ok(()),
            UnitKind::Batched(unit) => unit.commit().await,
        }
    }

    /// Undoes the unit's work. Waits, like a commit, until what the unit read is durable: a
    /// refusal is an answer too.
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        match self.kind {
            UnitKind::Transaction(transaction) => transaction.rollback().await.map_err(unavailable),
            UnitKind::Lone(_) => Ok(()),
            UnitKind::Batched(unit) => unit.rollback().await,
        }
    }
}

impl Deref for Unit {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.kind {
            UnitKind::Transaction(transaction) => transaction,
            UnitKind::Lone(connection) => connection,
            UnitKind::Batched(unit) => unit.connection(),
        }
    }
}

impl DerefMut for Unit {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.kind {
            UnitKind::Transaction(transaction) => transaction,
            UnitKind::Lone(connection) => connection,
            UnitKind::Batched(unit) => unit.connection_mut(),
        }
    }
}

/// How many units and batches a group-committing store has committed; units per batch is
/// what group commit saves (one fsync per batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Units committed or rolled back on purpose (a unit that failed is not counted).
    pub units: u64,
    pub batches: u64,
    /// Units waiting for the writer now.
    pub queued: usize,
}

/// The one writer connection and the batch open on it.
pub(crate) struct GroupCommit {
    pool: AnyPool,
    writer: Arc<Mutex<Writer>>,
    committer: Arc<Notify>,
    /// What opens a batch and its first unit's savepoint.
    begin_batch: &'static str,
    units: AtomicU64,
    batches: AtomicU64,
    queued: AtomicUsize,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Writer {
    /// Taken from the pool at the first unit and kept; `None` again after a failure that may
    /// have broken it.
    connection: Option<PoolConnection<Any>>,
    /// The open batch: `BEGIN` has run and these units wait for its `COMMIT`.
    batch: Option<Vec<oneshot::Sender<Result<(), String>>>>,
    /// A unit's savepoint is open without a unit running: the unit returned early or its
    /// future was dropped. Whoever takes the writer next rolls it back first.
    unfinished_unit: bool,
    /// A statement that opens, rolls back or commits was interrupted (its future dropped):
    /// it may or may not have run, so nothing about the batch can be trusted. Whoever takes the
    /// writer next fails the batch.
    in_doubt: bool,
    /// The store was closed: no more units.
    closed: bool,
}

impl Writer {
    /// Runs a statement that changes the batch or a savepoint, marked in doubt while it runs.
    async fn control(&mut self, statement: &'static str) -> Result<(), StoreError> {
        self.in_doubt = true;
        connection_of(self)?
            .execute(statement)
            .await
            .map_err(unavailable)?;
        self.in_doubt = false;
        Ok(())
    }
}

// A unit's savepoint is rolled back when the unit fails and never released when it succeeds:
// the next unit's savepoint nests inside it, `ROLLBACK TO` finds the newest one of the name,
// and the batch's `COMMIT` releases them all. A unit's commit so costs no statement, and the
// statements a unit needs before its own run in one round trip to the database.
const SAVEPOINT: &str = "SAVEPOINT kassa_unit";
/// SQLite: take the write lock when the batch begins, so that a batch whose first unit only
/// reads cannot meet another process's write later (`SQLITE_BUSY_SNAPSHOT`).
const BEGIN_IMMEDIATE_AND_SAVEPOINT: &str = "BEGIN IMMEDIATE; SAVEPOINT kassa_unit";
const BEGIN_AND_SAVEPOINT: &str = "BEGIN; SAVEPOINT kassa_unit";
const ROLL_BACK_UNIT: &str = "ROLLBACK TO SAVEPOINT kassa_unit; RELEASE SAVEPOINT kassa_unit";
const ROLL_BACK_UNIT_AND_SAVEPOINT: &str =
    "ROLLBACK TO SAVEPOINT kassa_unit; RELEASE SAVEPOINT kassa_unit; SAVEPOINT kassa_unit";

impl GroupCommit {
    /// Must be called inside a Tokio runtime: it starts the committer task, which ends when
    /// the returned value is dropped.
    pub(crate) fn start(pool: AnyPool, wait: Duration, backend: Backend) -> Arc<GroupCommit> {
        let group = Arc::new(GroupCommit {
            pool,
            writer: Arc::default(),
            committer: Arc::default(),
            begin_batch: match backend {
                Backend::Sqlite => BEGIN_IMMEDIATE_AND_SAVEPOINT,
                Backend::Postgres => BEGIN_AND_SAVEPOINT,
            },
            units: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
        });
        tokio::spawn(committer(
            Arc::downgrade(&group),
            group.committer.clone(),
            wait,
        ));
        group
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            units: self.units.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
        }
    }

    /// Takes the writer (in arrival order), joins or opens the batch, and opens a savepoint.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<Unit, StoreError> {
        let queued = Queued::join(&self.queued);
        let mut writer = self.writer.clone().lock_owned().await;
        drop(queued);
        if writer.closed {
            return Err(StoreError::Unavailable("the store is closed".to_owned()));
        }
        if writer.in_doubt {
            fail_batch(&mut writer, &interrupted()).await;
        }
        let result = async {
            if writer.connection.is_none() {
                writer.connection = Some(self.pool.acquire().await.map_err(unavailable)?);
            }
            let prelude = match (writer.batch.is_some(), writer.unfinished_unit) {
                (false, _) => self.begin_batch,
                (true, false) => SAVEPOINT,
                (true, true) => ROLL_BACK_UNIT_AND_SAVEPOINT,
            };
            writer.control(prelude).await?;
            writer.batch.get_or_insert_with(Vec::new);
            writer.unfinished_unit = true;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(Unit {
                kind: UnitKind::Batched(BatchedUnit {
                    group: self.clone(),
                    writer: Some(writer),
                }),
            }),
            Err(error) => {
                fail_batch(&mut writer, &error).await;
                Err(error)
            }
        }
    }

    /// Commits what is open and refuses units from now on; the writer connection goes back to
    /// the pool, which the caller then closes.
    pub(crate) async fn close(&self) {
        self.commit_batch().await;
        let mut writer = self.writer.lock().await;
        writer.closed = true;
        writer.connection = None;
    }

    /// Ends the batch, if one is open, so that its units may answer; run by the committer task.
    async fn commit_batch(&self) {
        let mut writer = self.writer.lock().await;
        if writer.in_doubt {
            fail_batch(&mut writer, &interrupted()).await;
            return;
        }
        if writer.batch.is_none() {
            return;
        }
        let mut committed = Ok(());
        if writer.unfinished_unit {
            committed = writer.control(ROLL_BACK_UNIT).await;
            writer.unfinished_unit = false;
        }
        if committed.is_ok() {
            committed = writer.control("COMMIT").await;
        }
        match committed {
            Ok(()) => {
                let waiting = writer.batch.take().unwrap_or_default();
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.units
                    .fetch_add(waiting.len() as u64, Ordering::Relaxed);
                for unit in waiting {
                    let _ = unit.send(Ok(()));
                }
            }
            Err(error) => fail_batch(&mut writer, &error).await,
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Wakes the committer so that it sees the store is gone and ends.
        self.committer.notify_one();
    }
}

/// Commits the open batch each time a unit asks. Queued behind the units that were already
/// waiting for the writer (the writer's lock is fair), so they join the batch first.
async fn committer(group: Weak<GroupCommit>, wake: Arc<Notify>, wait: Duration) {
    loop {
        wake.notified().await;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Some(group) = group.upgrade() else {
            return;
        };
        group.commit_batch().await;
    }
}

fn interrupted() -> StoreError {
    StoreError::Unavailable("a statement of the batch was interrupted".to_owned())
}

/// Something failed that may have left the batch's transaction broken: every unit waiting in
/// the batch is told its work is lost, the transaction is rolled back and the connection
/// replaced. Nothing of the batch was answered as committed, so nothing answered is lost.
async fn fail_batch(writer: &mut Writer, error: &StoreError) {
    let waiting = writer.batch.take().unwrap_or_default();
    for unit in waiting {
        let _ = unit.send(Err(error.to_string()));
    }
    writer.unfinished_unit = false;
    writer.in_doubt = false;
    if let Some(mut connection) = writer.connection.take() {
        let _ = connection.execute("ROLLBACK").await;
        let _ = connection.close().await;
    }
}

/// Counts a unit waiting for the writer, until it has it or gives up.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn join(queued: &'a AtomicUsize) -> Queued<'a> {
        queued.fetch_add(1, Ordering::Relaxed);
        Queued(queued)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Wakes the committer when dropped, however the unit's end goes (even a dropped future), so
/// the batch is never left waiting for a unit that is gone.
struct WakeCommitter<'a>(&'a Notify);

impl Drop for WakeCommitter<'_> {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

fn connection_of(writer: &mut Writer) -> Result<&mut AnyConnection, StoreError> {
    writer
        .connection
        .as_deref_mut()
        .ok_or_else(|| StoreError::Unavailable("the writer connection was lost".to_owned()))
}

/// A savepoint in the open batch, holding the writer until it commits or rolls back.
struct BatchedUnit {
    group: Arc<GroupCommit>,
    /// `Some` while the unit runs.
    writer: Option<OwnedMutexGuard<Writer>>,
}

impl BatchedUnit {
    fn connection(&self) -> &AnyConnection {
        self.writer
            .as_ref()
            .and_then(|writer| writer.connection.as_deref())
            .unwrap_or_else(|| unreachable!("a running unit holds the writer and its connection"))
    }

    fn connection_mut(&mut self) -> &mut AnyConnection {
        self.writer
            .as_mut()
            .and_then(|writer| writer.connection.as_deref_mut())
            .unwrap_or_else(|| unreachable!("a running unit holds the writer and its connection"))
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        self.finish(None).await
    }

    async fn rollback(mut self) -> Result<(), StoreError> {
        self.finish(Some(ROLL_BACK_UNIT)).await
    }

    /// Closes the savepoint with `statement` (none: its work stays in the batch), lets the next
    /// unit have the writer, and waits for the batch's commit.
    async fn finish(&mut self, statement: Option<&'static str>) -> Result<(), StoreError> {
        let Some(mut writer) = self.writer.take() else {
            return Err(StoreError::Unavailable("the unit already ended".to_owned()));
        };
        let wake = WakeCommitter(&self.group.committer);
        let closed = match statement {
            None => Ok(()),
            // On failure the writer stays in doubt: the next holder fails the batch.
            Some(statement) => writer.control(statement).await,
        };
        let committed = closed.and_then(|()| {
            writer.unfinished_unit = false;
            let (durable, committed) = oneshot::channel();
            match writer.batch.as_mut() {
                Some(batch) => batch.push(durable),
                None => return Err(StoreError::Unavailable("the batch was lost".to_owned())),
            }
            Ok(committed)
        });
        drop(writer);
        drop(wake);
        match committed?.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!(
                "the batch holding this unit failed to commit: {error}"
            ))),
            Err(_) => Err(StoreError::Unavailable(
                "the batch holding this unit ended without committing".to_owned(),
            )),
        }
    }
}

impl Drop for BatchedUnit {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Ended early (an error, a refusal, a dropped future): `unfinished_unit` is still
            // set, so the next holder rolls the savepoint back, and the committer makes sure
            // the batch still ends for the units that wait on it.
            drop(writer);
            self.group.committer.notify_one();
        }
    }
}
