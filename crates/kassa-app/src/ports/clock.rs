//! Time as a port, so tests can move it and the domain never reads a clock of its own.

/// Seconds since the Unix epoch, as Stripe counts `created`.
pub trait Clock: Send + Sync {
    fn now_secs(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
    }
}

/// Where new ids come from. A port for the same reason as the clock: the deterministic
/// simulation replays a seed exactly only if ids, which order rows, come from the seed too.
pub trait IdSource: Send + Sync {
    fn new_id(&self, prefix: &str) -> String;
}
