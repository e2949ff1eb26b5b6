//! When the simulated process dies: at a seed-chosen point before a transaction begins or around
//! a provider call, while a use case runs. The dying future parks forever; the driver sees the
//! signal, drops it (with it everything uncommitted) and starts a new `App` on the same database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use kassa_store::CrashSwitch;
use rand::Rng;
use tokio::sync::Notify;

use crate::Dice;

pub struct Crashes {
    dice: Dice,
    /// Only while the driver runs a use case: the driver's own reads never crash.
    armed: AtomicBool,
    /// Out of 1,000 crash points; 0 once the run settles.
    per_mille: AtomicU32,
    crashed: Notify,
}

impl Crashes {
    pub fn new(dice: Dice, per_mille: u32) -> Arc<Crashes> {
        Arc::new(Crashes {
            dice,
            armed: AtomicBool::new(false),
            per_mille: AtomicU32::new(per_mille),
            crashed: Notify::new(),
        })
    }

    /// Runs `work` as the process would: `None` if the process died in it.
    pub async fn run<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        self.armed.store(true, Ordering::SeqCst);
        let finished = tokio::select! {
            biased;
            finished = work => Some(finished),
            () = self.crashed.notified() => None,
        };
        self.armed.store(false, Ordering::SeqCst);
        finished
    }

    /// No more crashes: the run is settling.
    pub fn stop(&self) {
        self.per_mille.store(0, Ordering::SeqCst);
    }

    /// Parks forever if the process dies here.
    pub async fn point(&self) {
        if self.crash_now() {
            std::future::pending::<()>().await;
        }
    }
}

impl CrashSwitch for Crashes {
    fn crash_now(&self) -> bool {
        let per_mille = self.per_mille.load(Ordering::SeqCst);
        if per_mille == 0 || !self.armed.load(Ordering::SeqCst) {
            return false;
        }
        let dies = self.dice.roll(|rng| rng.random_range(0..1_000) < per_mille);
        if dies {
            self.armed.store(false, Ordering::SeqCst);
            self.crashed.notify_one();
        }
        dies
    }
}
