//! A person's resolution of an order flagged `needs_attention` (risk N1): the order locked, a
//! snapshot loaded, `kassa_domain::attention` asked, and its plan applied with the same
//! compare-and-set moves every other path makes — the order's machine, the reservations'
//! all-or-nothing commit, a refund recorded pending with a key derived from Kassa's ids — with
//! the flag cleared and the resolution audited (who, which action, their note) in the same
//! transaction. Clearing the flag is what gives the order back to its background work: scheduled
//! capture, the janitor, the completer, seller transfers and the invariant check all pass over
//! flagged orders only.

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, AskAbout, AttentionStore, KeyRef, NewRefund, ProviderAnswer, Resolution, ResolutionEnd,
    ResolutionStart, StoreError, StoreResult,
};
use kassa_domain::attention::{
    Answer, AnswerPlan, AttentionReason, AttentionSnapshot, FailedRefund, Flag, HeldPayment,
    ResolutionPlan, decide_answer, decide_resolution,
};
use kassa_domain::commands::{Operation, Refusal};
use kassa_domain::order::{OrderEvent, OrderStatus};
use kassa_domain::payment::PaymentStatus;
use kassa_domain::plan::{Move, ObservedPayment};
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::commands::{end_operation_in, order_money};
use crate::db::{SqlStore, unavailable};
use crate::effects::payment::{PaymentRow, observe_for};
use crate::effects::refund::flag_refund_failures;
use crate::refunds::{insert_requested, refund_in};
use crate::{outbox, transitions};

/// A flagged order as a resolution finds it, with the order locked.
struct Held {
    snapshot: AttentionSnapshot,
    /// How many resolutions the order had before this one.
    resolutions: i64,
    payment_id: Option<String>,
    payment_intent_id: Option<String>,
    checkout_session_id: Option<String>,
}

/// What locking the order found.
enum Found {
    Missing,
    NotFlagged,
    Flagged(Box<Held>),
}

#[async_trait]
impl AttentionStore for SqlStore {
    async fn begin_resolution(
        &self,
        resolution: &Resolution,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<ResolutionStart> {
        let order_id = resolution.order_id.as_str();
        let mut tx = self.begin().await?;
        let held = match locked(&mut tx, order_id).await? {
            Found::Flagged(held) => held,
            Found::Missing => {
                tx.rollback().await?;
                return Ok(ResolutionStart::OrderMissing);
            }
            Found::NotFlagged => {
                tx.rollback().await?;
                return Ok(ResolutionStart::Refused(not_flagged()));
            }
        };
        let plan = match decide_resolution(&held.snapshot, resolution.action) {
            Ok(plan) => plan,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(ResolutionStart::Refused(refusal));
            }
        };
        let refund_id: Option<String> = match plan {
            ResolutionPlan::Ask(question) => {
                let checkout_key = checkout_key(&mut tx, order_id).await?;
                tx.rollback().await?;
                let payment_id = held.payment_id.clone().ok_or_else(|| {
                    StoreError::Corrupt(format!("flagged order {order_id} has no payment"))
                })?;
                return Ok(ResolutionStart::Ask(AskAbout {
                    question,
                    flag: held.snapshot.flag.clone(),
                    payment_id,
                    payment_intent_id: held.payment_intent_id.clone(),
                    checkout_session_id: held.checkout_session_id.clone(),
                    checkout_key,
                }));
            }
            ResolutionPlan::Clear => None,
            ResolutionPlan::CommitAndPay {
                order,
                captured_minor,
            } => {
                if !commit_and_pay(self, &mut tx, order_id, order, captured_minor, actor, now)
                    .await?
                {
                    tx.rollback().await?;
                    return Ok(ResolutionStart::Refused(Refusal::InvalidState(
                        "the order's stock is still not available: put it on hand \
                         (PUT /v1/inventory/{sku}) and commit again, or refund"
                            .into(),
                    )));
                }
                None
            }
            ResolutionPlan::CancelAndRefund {
                order,
                captured_minor,
                refund_minor,
            } => {
                cancel_unpaid(&mut tx, order_id, order, actor, now).await?;
                sqlx::query("UPDATE orders SET captured_amount = $2 WHERE id = $1")
                    .bind(order_id)
                    .bind(captured_minor)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if refund_minor > 0 {
                    let refund = NewResolutionRefund {
                        amount_minor: refund_minor,
                        restock: false,
                    };
                    Some(record_refund(&mut tx, &held, order_id, refund, actor, now).await?)
                } else {
                    None
                }
            }
            ResolutionPlan::Refund {
                amount_minor,
                restock,
            } => {
                let refund = NewResolutionRefund {
                    amount_minor,
                    restock,
                };
                Some(record_refund(&mut tx, &held, order_id, refund, actor, now).await?)
            }
        };
        resolved(&mut tx, resolution, &held.snapshot.flag, actor, now).await?;
        let refund = match refund_id {
            Some(id) => Some(refund_in(&mut tx, &id).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(ResolutionStart::Resolved { refund })
    }

    async fn finish_resolution(
        &self,
        resolution: &Resolution,
        flag: &str,
        answer: &ProviderAnswer,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<ResolutionEnd> {
        let order_id = resolution.order_id.as_str();
        let mut tx = self.begin().await?;
        let held = match locked(&mut tx, order_id).await? {
            Found::Flagged(held) if held.snapshot.flag == flag => held,
            Found::Flagged(held) => {
                tx.rollback().await?;
                return Ok(ResolutionEnd::Refused(Refusal::InvalidState(format!(
                    "the order's flag changed meanwhile; it is now: {}",
                    held.snapshot.flag
                ))));
            }
            Found::NotFlagged => {
                tx.rollback().await?;
                return Ok(ResolutionEnd::Refused(not_flagged()));
            }
            Found::Missing => {
                tx.rollback().await?;
                return Ok(ResolutionEnd::OrderMissing);
            }
        };
        let seen = match answer {
            ProviderAnswer::Intent(intent) => Answer::Intent(ObservedPayment {
                status: intent.status,
                amount_minor: intent.amount_minor,
                currency: &intent.currency,
                amount_received_minor: intent.amount_received_minor,
            }),
            ProviderAnswer::Applied => Answer::Applied,
            ProviderAnswer::PageWithoutPayment => Answer::PageWithoutPayment,
        };
        let plan = match decide_answer(&held.snapshot, resolution.action, &seen) {
            Ok(plan) => plan,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(ResolutionEnd::Refused(refusal));
            }
        };
        // Cleared first, so that a plan flagging the order again shows as a new flag.
        resolved(&mut tx, resolution, flag, actor, now).await?;
        match (plan, answer) {
            (AnswerPlan::Observe { capture_minor }, ProviderAnswer::Intent(intent)) => {
                if let Some(amount) = capture_minor {
                    accept_capture(&mut tx, order_id, amount, actor, now).await?;
                }
                let payment = PaymentRow {
                    id: held.payment_id.clone().ok_or_else(|| {
                        StoreError::Corrupt(format!("flagged order {order_id} has no payment"))
                    })?,
                    order_id: order_id.to_owned(),
                };
                let refusal = match observe_for(self, &mut tx, &payment, intent, actor, now).await {
                    Ok(kassa_app::ports::Applied::Flagged(reason)) => Some(format!(
                        "the provider's answer still needs a person: {reason}"
                    )),
                    Ok(_) => None,
                    // The same bug or hand-edited row stands: nothing of this is kept.
                    Err(StoreError::ImpossibleMove { detail, .. }) => Some(format!(
                        "applying the provider's answer failed again: {detail}"
                    )),
                    Err(error) => return Err(error),
                };
                if let Some(message) = refusal {
                    tx.rollback().await?;
                    return Ok(ResolutionEnd::Refused(Refusal::InvalidState(message)));
                }
            }
            (AnswerPlan::Observe { .. }, _) => {
                return Err(StoreError::Corrupt(
                    "a plan to apply an intent without one".into(),
                ));
            }
            (AnswerPlan::Clear, _) => {}
            (AnswerPlan::CancelUnpaid { order, payment }, _) => {
                if let (Some(step), Some(payment_id)) = (payment, &held.payment_id) {
                    transitions::move_payment(&mut tx, order_id, payment_id, step, actor, now)
                        .await?;
                }
                cancel_unpaid(&mut tx, order_id, order, actor, now).await?;
            }
        }
        tx.commit().await?;
        Ok(ResolutionEnd::Resolved)
    }
}

fn not_flagged() -> Refusal {
    Refusal::InvalidState("the order does not need attention".into())
}

/// Locks the order and loads its flag, money, latest payment and latest failed refund.
async fn locked(conn: &mut AnyConnection, order_id: &str) -> StoreResult<Found> {
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    if exists.is_none() {
        return Ok(Found::Missing);
    }
    let status = transitions::lock_order(conn, order_id).await?;
    let (flag, resolutions): (Option<String>, i64) =
        sqlx::query_as("SELECT needs_attention, attention_resolutions FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
    let Some(flag) = flag else {
        return Ok(Found::NotFlagged);
    };
    let money = order_money(conn, order_id, status).await?;
    let payment = sqlx::query(
        "SELECT id, status, amount, amount_received, provider_payment_intent_id,
                provider_checkout_session_id
         FROM payments WHERE order_id = $1 ORDER BY attempt DESC LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let mut held = Held {
        snapshot: AttentionSnapshot {
            flag,
            money,
            payment: None,
            failed_refund: None,
        },
        resolutions,
        payment_id: None,
        payment_intent_id: None,
        checkout_session_id: None,
    };
    if let Some(row) = payment {
        let text: String = row.try_get("status").map_err(unavailable)?;
        let status = PaymentStatus::parse(&text)
            .ok_or_else(|| StoreError::Corrupt(format!("payment status {text:?}")))?;
        let intent: Option<String> = row
            .try_get("provider_payment_intent_id")
            .map_err(unavailable)?;
        let session: Option<String> = row
            .try_get("provider_checkout_session_id")
            .map_err(unavailable)?;
        held.snapshot.payment = Some(HeldPayment {
            // Nothing at the provider yet: to a resolution, a payment still being created.
            status: if intent.is_none() && session.is_none() {
                PaymentStatus::Creating
            } else {
                status
            },
            amount_minor: row.try_get("amount").map_err(unavailable)?,
            received_minor: row.try_get("amount_received").map_err(unavailable)?,
            has_intent: intent.is_some(),
            has_hosted_page: session.is_some(),
        });
        held.payment_id = Some(row.try_get("id").map_err(unavailable)?);
        held.payment_intent_id = intent;
        held.checkout_session_id = session;
    }
    let failed: Option<(i64, i64)> = sqlx::query_as(
        "SELECT amount, restock FROM refunds WHERE order_id = $1 AND status = 'failed'
         ORDER BY updated_at DESC, id DESC LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    held.snapshot.failed_refund = failed.map(|(amount_minor, restock)| FailedRefund {
        amount_minor,
        restock: restock != 0,
    });
    Ok(Found::Flagged(Box::new(held)))
}

/// The checkout's idempotency key while it waits at its recovery point, if it is still kept.
async fn checkout_key(conn: &mut AnyConnection, order_id: &str) -> StoreResult<Option<KeyRef>> {
    let key: Option<(String, String)> = sqlx::query_as(
        "SELECT scope, idempotency_key FROM idempotency_keys
         WHERE order_id = $1 AND recovery_point = 'order_created'",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(key.map(|(scope, key)| KeyRef { scope, key }))
}

/// Clears the flag (compare-and-set on the flag as read), records who resolved it how and why,
/// and lets go of what the flag held: the sellers' transfers it held wait no more. Then raises
/// what waited behind it: a refund Kassa started that failed while the order was flagged for
/// something else.
async fn resolved(
    conn: &mut AnyConnection,
    resolution: &Resolution,
    flag: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let order_id = resolution.order_id.as_str();
    let cleared = sqlx::query(
        "UPDATE orders SET needs_attention = NULL, attention_reason = NULL,
             attention_resolutions = attention_resolutions + 1, updated_at = $3
         WHERE id = $1 AND needs_attention = $2",
    )
    .bind(order_id)
    .bind(flag)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if cleared.rows_affected() != 1 {
        return Err(StoreError::ImpossibleMove {
            order_id: order_id.to_owned(),
            detail: format!("order {order_id} was not flagged {flag:?} when resolving it"),
        });
    }
    sqlx::query(
        "UPDATE payments SET transfers_held = NULL, updated_at = $3
         WHERE order_id = $1 AND transfers_held = $2",
    )
    .bind(order_id)
    .bind(flag)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let code = Flag::parse(flag).code;
    let change = Change {
        entity_type: "order",
        entity_id: order_id,
        action: "attention_resolved",
        before: Some(code),
        after: Some(resolution.action.as_str()),
        detail: Some(&resolution.note),
    };
    audit::record(conn, change, actor, now).await?;
    // A failed refund this resolution was about has been before a person now.
    if matches!(
        AttentionReason::parse(code),
        Some(AttentionReason::RefundReversed | AttentionReason::KassaRefundFailed)
    ) {
        sqlx::query(
            "UPDATE refunds SET failure_flagged = 1 WHERE order_id = $1 AND status = 'failed'",
        )
        .bind(order_id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    }
    flag_refund_failures(conn, order_id, actor, now).await
}

/// The stock is back: the reservations are committed (held ones sold, released ones taken
/// again, all or nothing) and the order paid with what the provider received, as a succeeded
/// payment's plan would have done; `false` (nothing moved) while the stock is still gone.
async fn commit_and_pay(
    store: &SqlStore,
    conn: &mut AnyConnection,
    order_id: &str,
    order: Move<OrderStatus>,
    captured_minor: i64,
    actor: &Actor,
    now: i64,
) -> StoreResult<bool> {
    if !transitions::commit_reservations(conn, order_id, actor, now).await? {
        return Ok(false);
    }
    sqlx::query("UPDATE orders SET captured_amount = $2 WHERE id = $1")
        .bind(order_id)
        .bind(captured_minor)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    transitions::move_order(
        conn,
        order_id,
        OrderEvent::PaymentSucceeded,
        order,
        actor,
        now,
    )
    .await?;
    end_operation_in(conn, order_id, Operation::Capture, actor, now).await?;
    end_operation_in(conn, order_id, Operation::Expire, actor, now).await?;
    crate::credits::grant_for_paid_order(store, conn, order_id, now).await?;
    outbox::notify(conn, "order.paid", order_id, now).await?;
    Ok(true)
}

/// Cancels an order through its machine, releasing its held stock and ending any operation
/// left on it, as a canceled payment's plan does.
async fn cancel_unpaid(
    conn: &mut AnyConnection,
    order_id: &str,
    order: Move<OrderStatus>,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    transitions::move_order(conn, order_id, OrderEvent::Cancel, order, actor, now).await?;
    transitions::release_reservations(conn, order_id, actor, now).await?;
    for operation in Operation::ALL {
        end_operation_in(conn, order_id, *operation, actor, now).await?;
    }
    outbox::notify(conn, "order.canceled", order_id, now).await
}

/// What capture Kassa decided becomes what the provider captured: a person accepted it.
async fn accept_capture(
    conn: &mut AnyConnection,
    order_id: &str,
    amount_minor: i64,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    sqlx::query("UPDATE orders SET capture_amount = $2, updated_at = $3 WHERE id = $1")
        .bind(order_id)
        .bind(amount_minor)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    let detail = format!("amount {amount_minor}, as the provider captured it");
    let change = Change {
        entity_type: "order",
        entity_id: order_id,
        action: "capture_accepted",
        before: None,
        after: None,
        detail: Some(&detail),
    };
    audit::record(conn, change, actor, now).await
}

struct NewResolutionRefund {
    amount_minor: i64,
    restock: bool,
}

/// Records the resolution's refund as pending, as Kassa's own (`kassa` scope: the refund sender
/// sends it at once, and a refusal flags the order again), with an id and provider key derived
/// from the order and its resolution count, so a resumed send asks for the same refund.
async fn record_refund(
    conn: &mut AnyConnection,
    held: &Held,
    order_id: &str,
    refund: NewResolutionRefund,
    actor: &Actor,
    now: i64,
) -> StoreResult<String> {
    let number = held.resolutions + 1;
    let refund_id = format!("ref_resolve_{order_id}_{number}");
    let new = NewRefund {
        provider_idempotency_key: kassa_domain::provider_keys::refund(&refund_id),
        refund_id: refund_id.clone(),
        order_id: order_id.to_owned(),
        client_scope: "kassa".into(),
        client_key: format!("resolve:{order_id}:{number}"),
        request_hash: String::new(),
        requested_minor: Some(refund.amount_minor),
        reason: None,
        restock: refund.restock,
    };
    insert_requested(conn, &new, None, refund.amount_minor, actor, now).await?;
    Ok(refund_id)
}
