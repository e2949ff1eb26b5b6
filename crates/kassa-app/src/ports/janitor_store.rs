//! What the janitor reads and changes: checkouts whose stock hold expired, holds to extend while
//! a payment is in progress, carts left idle, and the rows past their retention (risk D2).

use async_trait::async_trait;

use super::checkout_store::Actor;
use super::store::StoreResult;

#[async_trait]
pub trait JanitorStore: Send + Sync {
    /// Orders still awaiting payment, with no operation in progress and not flagged, holding a
    /// reservation that expired at or before `now`.
    async fn expired_checkouts(&self, now: i64, limit: i64) -> StoreResult<Vec<String>>;

    /// Marks the order with the `expire` operation if it still awaits payment and nothing else
    /// is in progress (or the expiry already is); false if it may not be expired now.
    async fn begin_expire(&self, order_id: &str, actor: &Actor, now: i64) -> StoreResult<bool>;

    /// Holds the order's reservations until `until` (a payment in progress, risk P9).
    async fn extend_reservations(
        &self,
        order_id: &str,
        until: i64,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<u64>;

    /// Deletes carts idle since `before` that never became an order (an order keeps everything
    /// it needs, so its cart is kept); returns how many.
    async fn expire_carts(&self, before: i64, limit: i64) -> StoreResult<u64>;

    /// Deletes at most `limit` checkout idempotency keys last used at or before `before` that
    /// hold no checkout in progress — finished, or never placed an order (`order_created` is
    /// the completer's work) — and are not locked at `now`; returns how many.
    async fn prune_idempotency_keys(&self, before: i64, now: i64, limit: i64) -> StoreResult<u64>;

    /// Deletes at most `limit` webhook events the inbox processed or ignored, received at or
    /// before `before` (a received, failed or dead one is never deleted); returns how many.
    async fn prune_webhook_events(&self, before: i64, limit: i64) -> StoreResult<u64>;

    /// Deletes at most `limit` merchant notifications delivered or dead, written at or before
    /// `before` (a pending or failed one is never deleted); returns how many.
    async fn prune_notifications(&self, before: i64, limit: i64) -> StoreResult<u64>;
}
