//! The effects of provider events, one module per aggregate. Each loads a snapshot with the
//! order locked, asks `kassa_domain::plan` what to do, and applies that plan with
//! compare-and-set writes inside the caller's transaction. Effects are keyed by Kassa's ids,
//! never by which event delivered them (risk W1).

pub(crate) mod billing;
pub(crate) mod dispute;
pub(crate) mod payment;
pub(crate) mod refund;
pub(crate) mod session;

use kassa_app::ports::{Actor, Applied, EventEffect, StoreResult};
use sqlx::AnyConnection;

use crate::audit::{self, Change};
use crate::db::{SqlStore, unavailable};
use crate::outbox;

/// Applies one event's effect; the caller commits it with the inbox mark.
pub(crate) async fn apply(
    store: &SqlStore,
    conn: &mut AnyConnection,
    effect: &EventEffect,
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    match effect {
        EventEffect::PaymentIntent(intent) => {
            payment::observe(store, conn, intent, None, actor, now).await
        }
        EventEffect::PaymentAttemptFailed { current, failed } => {
            payment::observe(store, conn, current, Some(failed), actor, now).await
        }
        EventEffect::Refunds {
            payment_intent_id,
            refunds,
        } => refund::record(conn, payment_intent_id, refunds, actor, now).await,
        EventEffect::CheckoutSession { session, reports } => {
            session::observe(store, conn, session, *reports, actor, now).await
        }
        EventEffect::Dispute { dispute, closed } => {
            dispute::record(conn, dispute, *closed, actor, now).await
        }
        EventEffect::Account {
            account,
            observed_at,
        } => Ok(
            if crate::sellers::observe_account_in(conn, account, *observed_at, actor, now).await? {
                Applied::Done
            } else {
                Applied::Ignored(format!(
                    "account {}: not a seller's, or a later observation is recorded",
                    account.id
                ))
            },
        ),
        EventEffect::Billing(billing) => billing::apply(store, conn, billing, actor, now).await,
        EventEffect::Ignore(reason) => Ok(Applied::Ignored(reason.clone())),
    }
}

/// Marks an order for a person, with an audit record and an `order.needs_attention`
/// notification (once per order until a person resolves it: a flag raised after that is
/// announced again). `reason` is `code: detail` (`kassa_domain::attention`); its code is kept
/// beside it for the metrics. The newest reason stands; each is in the audit trail.
pub(crate) async fn flag_order(
    conn: &mut AnyConnection,
    order_id: &str,
    reason: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let resolutions: Option<i64> = sqlx::query_scalar(
        "UPDATE orders SET needs_attention = $2, attention_reason = $3, updated_at = $4 WHERE id = $1
         RETURNING attention_resolutions",
    )
    .bind(order_id)
    .bind(reason)
    .bind(kassa_domain::attention::flag_code(reason))
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let change = Change {
        entity_type: "order",
        entity_id: order_id,
        action: "flagged",
        before: None,
        after: Some("needs_attention"),
        detail: Some(reason),
    };
    audit::record(conn, change, actor, now).await?;
    let code = kassa_domain::attention::flag_code(reason);
    outbox::notify_attention(conn, order_id, resolutions.unwrap_or(0), code, now).await
}
