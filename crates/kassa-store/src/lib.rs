//! Kassa's storage: every storage port of `kassa-app`, implemented once in SQL that runs
//! unchanged on SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Rules this crate keeps: every method is one unit of work (a transaction, or a savepoint in a
//! group-committed batch: `unit.rs`) and ends it with `commit` or `rollback`; every status write is a
//! compare-and-set whose affected-row count is checked; stock moves only through conditional
//! updates backed by CHECK constraints; nothing here calls the network or knows about HTTP.
//! Placeholders are `$1, $2, …`, which both SQLite and PostgreSQL accept.

mod attention;
mod audit;
mod cart;
mod catalog;
mod checkout;
mod commands;
mod credits;
mod db;
mod effects;
mod health;
mod inbox;
mod invariants;
mod janitor;
mod metrics;
mod orders;
mod outbox;
mod reconcile;
mod refunds;
mod sellers;
mod subscriptions;
mod transfers;
mod transitions;
mod unit;

pub use db::{
    Backend, CommitMode, CrashSwitch, FaultPoints, HeldWriter, Protection, SqlStore,
    StoreOpenError, commits_per_second,
};
pub use transfers::FAULT_BEFORE_TRANSFER_RECORD;
pub use unit::CommitStats;
