//! What sellers are paid for an order of several sellers' products (seed 001): a transfer to
//! each after capture, a reversal of it for each refund. Each is a row planned once under the
//! order's lock (its primary key), sent with a provider key derived from it, and done when the
//! provider's id is recorded — so a duplicated event, a second worker or a crash between two
//! transfers can neither skip one nor make one twice.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, CapturedForSellers, PayoutOutcome, ReversalJob, SellerBalance, SellerHold, StoreError,
    StoreResult, TransferGroupToCheck, TransferJob, TransferStore,
};
use kassa_domain::marketplace::{seller_shares, taken_back, transfers_held, unsent_share};
use kassa_domain::order::OrderStatus;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::db::{SqlStore, unavailable};
use crate::transitions;

/// Where a crash between the provider's transfer and Kassa's record of it is injected.
pub const FAULT_BEFORE_TRANSFER_RECORD: &str = "transfers.before_record";

const SELECT_TRANSFERS: &str = "SELECT order_id, seller_id, account_id, currency, amount,
        source_charge, provider_key, provider_transfer_id, refusal, updated_at FROM seller_transfers ";

fn transfer_from_row(row: &AnyRow) -> StoreResult<TransferJob> {
    Ok(TransferJob {
        order_id: row.try_get("order_id").map_err(unavailable)?,
        seller_id: row.try_get("seller_id").map_err(unavailable)?,
        account_id: row.try_get("account_id").map_err(unavailable)?,
        currency: row.try_get("currency").map_err(unavailable)?,
        amount_minor: row.try_get("amount").map_err(unavailable)?,
        source_charge: row.try_get("source_charge").map_err(unavailable)?,
        provider_key: row.try_get("provider_key").map_err(unavailable)?,
        provider_transfer_id: row.try_get("provider_transfer_id").map_err(unavailable)?,
        refusal: row.try_get("refusal").map_err(unavailable)?,
        key_created_at: row.try_get("updated_at").map_err(unavailable)?,
    })
}

async fn transfers_of(conn: &mut AnyConnection, order_id: &str) -> StoreResult<Vec<TransferJob>> {
    let sql = format!("{SELECT_TRANSFERS} WHERE order_id = $1 ORDER BY seller_id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable)?;
    rows.iter().map(transfer_from_row).collect()
}

/// The order's transfer-group payment once captured: (payment id, fee rate, when its transfers
/// were planned, currency).
async fn captured_payment(
    conn: &mut AnyConnection,
    order_id: &str,
) -> StoreResult<Option<(String, i64, Option<i64>, String)>> {
    sqlx::query_as(
        "SELECT id, COALESCE(platform_fee_bps, 0), transfers_planned_at, currency FROM payments
         WHERE order_id = $1 AND transfer_group IS NOT NULL AND status = 'succeeded'",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)
}

/// What the order's sellers share — its captured amount less what lost disputes took — its
/// total and the amounts of its sellers' lines.
async fn order_split(
    conn: &mut AnyConnection,
    order_id: &str,
) -> StoreResult<(i64, i64, Vec<(String, i64)>)> {
    let (captured, total): (i64, i64) = sqlx::query_as(
        "SELECT captured_amount - dispute_lost_amount, total FROM orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let seller_lines: Vec<(String, i64)> = sqlx::query_as(
        "SELECT seller_id, amount FROM order_lines
         WHERE order_id = $1 AND seller_id IS NOT NULL ORDER BY line_no",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok((captured, total, seller_lines))
}

/// What stands refunded of an order: its succeeded refunds, whenever they were made.
async fn refunded_of(conn: &mut AnyConnection, order_id: &str) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds
         WHERE order_id = $1 AND status = 'succeeded'",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)
}

/// Plans each seller's transfer of a captured order: their lines' part of what was captured,
/// less the fee (`kassa_domain::marketplace::seller_shares`). Only once the order is settled
/// as paid (or later refunded) and needs no one's attention: a paid order flagged for a person,
/// or a disputed one, waits with the reason recorded on its payment
/// (`kassa_domain::marketplace::transfers_held`), so its sellers' money shows as held and the
/// check knows it was not forgotten; a canceled one whose payment arrived when it could no
/// longer take it waits for a person too; a canceled one is marked planned with nothing to
/// send.
async fn plan_transfers_in(
    conn: &mut AnyConnection,
    order_id: &str,
    source_charge: Option<&str>,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let status = transitions::lock_order(conn, order_id).await?;
    let Some((payment_id, fee_bps, planned_at, currency)) =
        captured_payment(conn, order_id).await?
    else {
        return Ok(());
    };
    let attention: Option<String> =
        sqlx::query_scalar("SELECT needs_attention FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
    let settled = matches!(
        status,
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
    );
    if planned_at.is_some() {
        return Ok(());
    }
    if let Some(reason) = transfers_held(status, attention.as_deref()) {
        let held = sqlx::query(
            "UPDATE payments SET transfers_held = $2, updated_at = $3
             WHERE id = $1 AND transfers_held IS NULL",
        )
        .bind(&payment_id)
        .bind(&reason)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        if held.rows_affected() == 1 {
            let change = Change {
                entity_type: "order",
                entity_id: order_id,
                action: "seller_transfers_held",
                before: None,
                after: None,
                detail: Some(&reason),
            };
            audit::record(conn, change, actor, now).await?;
        }
        return Ok(());
    }
    if attention.is_some() {
        return Ok(());
    }
    if !settled && status != OrderStatus::Canceled {
        return Ok(());
    }
    let (captured, total, seller_lines) = order_split(conn, order_id).await?;
    let shares = if settled {
        seller_shares(captured, total, &seller_lines, fee_bps)
    } else {
        Vec::new()
    };
    let mut transferred = 0;
    for share in shares {
        if share.transfer_minor == 0 {
            continue;
        }
        let account: Option<String> =
            sqlx::query_scalar("SELECT account_id FROM sellers WHERE id = $1")
                .bind(&share.seller_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(unavailable)?
                .flatten();
        let account = account.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "seller {} of {order_id} has no account",
                share.seller_id
            ))
        })?;
        sqlx::query(
            "INSERT INTO seller_transfers (order_id, seller_id, account_id, currency, gross_amount,
                 fee_amount, amount, source_charge, provider_key, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(order_id)
        .bind(&share.seller_id)
        .bind(&account)
        .bind(&currency)
        .bind(share.gross_minor)
        .bind(share.fee_minor)
        .bind(share.transfer_minor)
        .bind(source_charge)
        .bind(kassa_domain::provider_keys::transfer(
            order_id,
            &share.seller_id,
            None,
        ))
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        transferred += share.transfer_minor;
    }
    let keep = captured - transferred;
    sqlx::query(
        "UPDATE payments SET application_fee = $2, transfers_planned_at = $3, updated_at = $3,
             transfers_base = $4, transfers_held = NULL
         WHERE id = $1",
    )
    .bind(&payment_id)
    .bind(keep)
    .bind(now)
    .bind(captured)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let detail = format!("transfers {transferred}, platform keeps {keep} of {captured}");
    let planned = Change {
        entity_type: "order",
        entity_id: order_id,
        action: "seller_transfers_planned",
        before: None,
        after: None,
        detail: Some(&detail),
    };
    audit::record(conn, planned, actor, now).await
}

/// Plans what one succeeded refund takes back from each of its order's transfers, unless that
/// was planned already: each seller's proportion of what stands refunded, less what their
/// reversals took already (`kassa_domain::marketplace::taken_back`).
async fn plan_reversals_in(
    conn: &mut AnyConnection,
    refund_id: &str,
    order_id: &str,
    now: i64,
) -> StoreResult<()> {
    transitions::lock_order(conn, order_id).await?;
    let planned: Option<i64> = sqlx::query_scalar(
        "SELECT reversals_planned FROM refunds WHERE id = $1 AND status = 'succeeded'",
    )
    .bind(refund_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    if planned != Some(0) {
        return Ok(());
    }
    let base: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT transfers_base FROM payments WHERE order_id = $1 AND transfers_planned_at IS NOT NULL",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some(Some(base)) = base else {
        return Ok(());
    };
    // Every refund that stands, whatever the order they came and went in: each seller gives
    // back their proportion of it, less what their reversals (not dropped) take already — so
    // a refund that failed, before or after its reversal was made, is never taken twice.
    let refunded = refunded_of(conn, order_id).await?;
    for transfer in transfers_of(conn, order_id).await? {
        let taken: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transfer_reversals
             WHERE order_id = $1 AND seller_id = $2 AND refusal IS NULL",
        )
        .bind(order_id)
        .bind(&transfer.seller_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)?;
        let reversal = (taken_back(transfer.amount_minor, base, refunded) - taken).max(0);
        if reversal == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO transfer_reversals (refund_id, seller_id, order_id, amount, provider_key,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(refund_id)
        .bind(&transfer.seller_id)
        .bind(order_id)
        .bind(reversal)
        .bind(kassa_domain::provider_keys::reversal(
            refund_id,
            &transfer.seller_id,
        ))
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    }
    sqlx::query("UPDATE refunds SET reversals_planned = 1, updated_at = $2 WHERE id = $1")
        .bind(refund_id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

fn balance_in(
    balances: &mut BTreeMap<String, SellerBalance>,
    currency: String,
) -> &mut SellerBalance {
    balances
        .entry(currency.clone())
        .or_insert_with(|| SellerBalance {
            currency,
            paid_minor: 0,
            reversed_minor: 0,
            owed_minor: 0,
            held_minor: 0,
            holds: Vec::new(),
        })
}

/// A payout job's row: its table, its key's two columns and values, where the provider's id
/// goes.
struct Job<'a> {
    table: &'static str,
    entity_type: &'static str,
    provider_column: &'static str,
    key: [(&'static str, &'a str); 2],
    /// The provider key the answer is for: an answer to an earlier attempt's key changes
    /// nothing.
    provider_key: &'a str,
    /// Only a job in this state (SQL) may take the answer.
    only_if: &'static str,
}

fn reversal_job<'a>(reversal: &'a ReversalJob, only_if: &'static str) -> Job<'a> {
    Job {
        table: "transfer_reversals",
        entity_type: "transfer_reversal",
        provider_column: "provider_reversal_id",
        key: [
            ("refund_id", &reversal.refund_id),
            ("seller_id", &reversal.seller_id),
        ],
        provider_key: &reversal.provider_key,
        only_if,
    }
}

/// Records how a job ended — the provider's id, or its refusal — unless it was recorded
/// already (a second worker, a retry), with an audit record of the first answer; whether it
/// was recorded.
async fn finish_job(
    conn: &mut AnyConnection,
    job: &Job<'_>,
    outcome: &PayoutOutcome,
    actor: &Actor,
    now: i64,
) -> StoreResult<bool> {
    let (provider_id, refusal, action) = match outcome {
        PayoutOutcome::Made { provider_id } => (Some(provider_id.as_str()), None, "made"),
        PayoutOutcome::Refused(reason) => (None, Some(reason.as_str()), "refused"),
    };
    let [(first, first_value), (second, second_value)] = job.key;
    let provider = job.provider_column;
    let sql = format!(
        "UPDATE {table} SET {provider} = $3, refusal = $4, updated_at = $5
         WHERE {first} = $1 AND {second} = $2 AND provider_key = $6
             AND {provider} IS NULL AND refusal IS NULL {only_if}",
        table = job.table,
        only_if = job.only_if
    );
    let recorded = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(first_value)
        .bind(second_value)
        .bind(provider_id)
        .bind(refusal)
        .bind(now)
        .bind(job.provider_key)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    let recorded = recorded.rows_affected() == 1;
    if recorded {
        let entity = format!("{first_value}/{second_value}");
        let change = Change {
            entity_type: job.entity_type,
            entity_id: &entity,
            action,
            before: None,
            after: None,
            detail: provider_id.or(refusal),
        };
        audit::record(conn, change, actor, now).await?;
    }
    Ok(recorded)
}

#[async_trait]
impl TransferStore for SqlStore {
    async fn captured_for_sellers(&self, limit: i64) -> StoreResult<Vec<CapturedForSellers>> {
        let mut unit = self.read().await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT p.order_id, p.provider_payment_intent_id
             FROM payments p JOIN orders o ON o.id = p.order_id
             WHERE p.transfer_group IS NOT NULL AND p.status = 'succeeded'
                 AND p.transfers_planned_at IS NULL AND p.provider_payment_intent_id IS NOT NULL
                 AND o.status IN ('paid', 'partially_refunded', 'refunded', 'canceled')
                 AND (o.needs_attention IS NULL
                      OR (p.transfers_held IS NULL AND o.status <> 'canceled'))
             ORDER BY p.updated_at, p.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(order_id, payment_intent_id)| CapturedForSellers {
                order_id,
                payment_intent_id,
            })
            .collect())
    }

    async fn plan_transfers(
        &self,
        order_id: &str,
        source_charge: Option<&str>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Vec<TransferJob>> {
        let mut tx = self.begin().await?;
        plan_transfers_in(&mut tx, order_id, source_charge, actor, now).await?;
        let transfers = transfers_of(&mut tx, order_id).await?;
        tx.commit().await?;
        Ok(transfers)
    }

    async fn plan_reversals(&self, limit: i64, now: i64) -> StoreResult<usize> {
        let mut unit = self.read().await?;
        let refunds: Vec<(String, String)> = sqlx::query_as(
            "SELECT r.id, r.order_id FROM refunds r JOIN payments p ON p.id = r.payment_id
             WHERE r.status = 'succeeded' AND r.reversals_planned = 0
                 AND p.transfer_group IS NOT NULL AND p.transfers_planned_at IS NOT NULL
             ORDER BY r.created_at, r.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        for (refund_id, order_id) in &refunds {
            let mut tx = self.begin().await?;
            plan_reversals_in(&mut tx, refund_id, order_id, now).await?;
            tx.commit().await?;
        }
        Ok(refunds.len())
    }

    async fn unsent_transfers(&self, limit: i64) -> StoreResult<Vec<TransferJob>> {
        let sql = format!(
            "{SELECT_TRANSFERS} WHERE provider_transfer_id IS NULL AND refusal IS NULL
             ORDER BY created_at, order_id, seller_id LIMIT $1"
        );
        let rows = self
            .read_fetch_all(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit))
            .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    async fn retry_refused_transfers(&self, actor: &Actor, now: i64) -> StoreResult<usize> {
        let mut tx = self.begin().await?;
        // Ready again since the refusal was recorded (both by Kassa's clock): if Kassa thought
        // the seller ready when Stripe refused, that is no reason to ask again.
        let due: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT t.order_id, t.seller_id, t.attempt FROM seller_transfers t
             JOIN sellers s ON s.id = t.seller_id
             WHERE t.refusal IS NOT NULL AND s.charges_enabled = 1
                 AND s.ready_since > t.updated_at",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut retried = 0;
        for (order_id, seller_id, attempt) in &due {
            let next = attempt + 1;
            let key = kassa_domain::provider_keys::transfer(order_id, seller_id, Some(next));
            let moved = sqlx::query(
                "UPDATE seller_transfers SET refusal = NULL, attempt = $3, provider_key = $4,
                     updated_at = $5
                 WHERE order_id = $1 AND seller_id = $2 AND refusal IS NOT NULL AND attempt = $6",
            )
            .bind(order_id)
            .bind(seller_id)
            .bind(next)
            .bind(&key)
            .bind(now)
            .bind(attempt)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            if moved.rows_affected() != 1 {
                continue;
            }
            retried += 1;
            let entity = format!("{order_id}/{seller_id}");
            let change = Change {
                entity_type: "seller_transfer",
                entity_id: &entity,
                action: "retried",
                before: None,
                after: None,
                detail: Some(&key),
            };
            audit::record(&mut tx, change, actor, now).await?;
        }
        tx.commit().await?;
        Ok(retried)
    }

    async fn finish_transfer(
        &self,
        transfer: &TransferJob,
        outcome: &PayoutOutcome,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        self.faults().check(FAULT_BEFORE_TRANSFER_RECORD)?;
        let job = Job {
            table: "seller_transfers",
            entity_type: "seller_transfer",
            provider_column: "provider_transfer_id",
            key: [
                ("order_id", &transfer.order_id),
                ("seller_id", &transfer.seller_id),
            ],
            provider_key: &transfer.provider_key,
            only_if: "",
        };
        let mut tx = self.begin().await?;
        finish_job(&mut tx, &job, outcome, actor, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn unsent_reversals(&self, limit: i64) -> StoreResult<Vec<ReversalJob>> {
        let query = sqlx::query(
            "SELECT v.refund_id, v.order_id, v.seller_id, v.amount, v.provider_key,
                    t.provider_transfer_id, r.status AS refund_status, v.sent_at
             FROM transfer_reversals v
             JOIN seller_transfers t ON t.order_id = v.order_id AND t.seller_id = v.seller_id
             JOIN refunds r ON r.id = v.refund_id
             WHERE v.provider_reversal_id IS NULL AND v.refusal IS NULL
                 AND (t.provider_transfer_id IS NOT NULL OR r.status <> 'succeeded')
             ORDER BY v.created_at, v.refund_id, v.seller_id LIMIT $1",
        )
        .bind(limit);
        let rows = self.read_fetch_all(query).await?;
        rows.iter()
            .map(|row| {
                let refund_status: String = row.try_get("refund_status").map_err(unavailable)?;
                Ok(ReversalJob {
                    refund_id: row.try_get("refund_id").map_err(unavailable)?,
                    order_id: row.try_get("order_id").map_err(unavailable)?,
                    seller_id: row.try_get("seller_id").map_err(unavailable)?,
                    amount_minor: row.try_get("amount").map_err(unavailable)?,
                    provider_key: row.try_get("provider_key").map_err(unavailable)?,
                    provider_transfer_id: row
                        .try_get("provider_transfer_id")
                        .map_err(unavailable)?,
                    refund_failed: refund_status != "succeeded",
                    sent_at: row.try_get("sent_at").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn finish_reversal(
        &self,
        reversal: &ReversalJob,
        outcome: &PayoutOutcome,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        finish_job(&mut tx, &reversal_job(reversal, ""), outcome, actor, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_reversal_sent(&self, reversal: &ReversalJob, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let marked = sqlx::query(
            "UPDATE transfer_reversals SET sent_at = COALESCE(sent_at, $3)
             WHERE refund_id = $1 AND seller_id = $2 AND refusal IS NULL",
        )
        .bind(&reversal.refund_id)
        .bind(&reversal.seller_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await?;
        Ok(marked.rows_affected() == 1)
    }

    async fn drop_unsent_reversal(
        &self,
        reversal: &ReversalJob,
        reason: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<bool> {
        let job = reversal_job(reversal, "AND sent_at IS NULL");
        let outcome = PayoutOutcome::Refused(reason.to_owned());
        let mut tx = self.begin().await?;
        let dropped = finish_job(&mut tx, &job, &outcome, actor, now).await?;
        tx.commit().await?;
        Ok(dropped)
    }

    async fn seller_balance(&self, seller_id: &str) -> StoreResult<Vec<SellerBalance>> {
        let mut balances: BTreeMap<String, SellerBalance> = BTreeMap::new();
        let mut unit = self.read().await?;
        // Transfers of several sellers' orders: made, or still to make.
        let transfers: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT currency,
                    CAST(COALESCE(SUM(CASE WHEN provider_transfer_id IS NOT NULL THEN amount ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN provider_transfer_id IS NULL THEN amount ELSE 0 END), 0) AS BIGINT)
             FROM seller_transfers WHERE seller_id = $1 GROUP BY currency",
        )
        .bind(seller_id)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        for (currency, made, unmade) in transfers {
            let balance = balance_in(&mut balances, currency);
            balance.paid_minor += made;
            balance.owed_minor += unmade;
        }
        let reversals: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT t.currency,
                    CAST(COALESCE(SUM(CASE WHEN v.provider_reversal_id IS NOT NULL THEN v.amount ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN v.provider_reversal_id IS NULL AND v.refusal IS NULL THEN v.amount ELSE 0 END), 0) AS BIGINT)
             FROM transfer_reversals v
             JOIN seller_transfers t ON t.order_id = v.order_id AND t.seller_id = v.seller_id
             WHERE v.seller_id = $1 GROUP BY t.currency",
        )
        .bind(seller_id)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        for (currency, made, unmade) in reversals {
            let balance = balance_in(&mut balances, currency);
            balance.reversed_minor += made;
            balance.owed_minor -= unmade;
        }
        // Destination charges: the seller got what was captured less the fee at once, and each
        // refund took back its proportion of that, as the provider reverses it.
        // One row per charge and succeeded refund (a charge without one once, refund NULL).
        let charges: Vec<(String, String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT p.id, p.currency, p.amount_received, COALESCE(p.application_fee, 0), r.amount
             FROM payments p JOIN sellers s ON s.account_id = p.destination_account
             LEFT JOIN refunds r ON r.payment_id = p.id AND r.status = 'succeeded'
             WHERE s.id = $1 AND p.status = 'succeeded' ORDER BY p.id",
        )
        .bind(seller_id)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        let mut counted: Option<String> = None;
        for (payment_id, currency, captured, fee, refund) in charges {
            let balance = balance_in(&mut balances, currency);
            if counted.as_ref() != Some(&payment_id) {
                balance.paid_minor += captured - fee;
                counted = Some(payment_id);
            }
            if let Some(refund) = refund {
                balance.reversed_minor += taken_back(captured - fee, captured, refund);
            }
        }
        // Paid orders of several sellers whose transfers are not planned yet: owed what
        // planning would send, less what the refunds standing would take back of it — or held,
        // with why, while the order waits for a person or a dispute.
        let unplanned: Vec<(String, String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT o.id, p.currency, COALESCE(p.platform_fee_bps, 0), o.status, o.needs_attention
             FROM payments p JOIN orders o ON o.id = p.order_id
             WHERE p.transfer_group IS NOT NULL AND p.status = 'succeeded'
                 AND p.transfers_planned_at IS NULL
                 AND o.status IN ('paid', 'partially_refunded', 'refunded', 'disputed')
                 AND EXISTS (SELECT 1 FROM order_lines l
                             WHERE l.order_id = o.id AND l.seller_id = $1)
             ORDER BY o.id",
        )
        .bind(seller_id)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        for (order_id, currency, fee_bps, status, attention) in unplanned {
            let status = OrderStatus::parse(&status).ok_or_else(|| {
                StoreError::Corrupt(format!("order {order_id} has status {status}"))
            })?;
            let (captured, total, seller_lines) = order_split(&mut unit, &order_id).await?;
            let refunded = refunded_of(&mut unit, &order_id).await?;
            let amount = unsent_share(captured, total, &seller_lines, fee_bps, refunded, seller_id);
            let balance = balance_in(&mut balances, currency);
            match transfers_held(status, attention.as_deref()) {
                // Nothing left to send (refunded in full): nothing held either.
                Some(_) if amount == 0 => {}
                Some(reason) => {
                    balance.held_minor += amount;
                    balance.holds.push(SellerHold {
                        order_id,
                        amount_minor: amount,
                        reason,
                    });
                }
                None => balance.owed_minor += amount,
            }
        }
        unit.commit().await?;
        Ok(balances.into_values().collect())
    }

    async fn transfer_groups_to_check(&self, limit: i64) -> StoreResult<Vec<TransferGroupToCheck>> {
        let mut unit = self.read().await?;
        let groups: Vec<(String, String, i64, i64, String, i64)> = sqlx::query_as(
            "SELECT p.order_id, p.currency, COALESCE(p.application_fee, 0),
                    COALESCE(p.platform_fee_bps, 0), o.status, COALESCE(p.transfers_base, 0)
             FROM payments p JOIN orders o ON o.id = p.order_id
             WHERE p.transfer_group IS NOT NULL AND p.transfers_planned_at IS NOT NULL
             ORDER BY p.created_at DESC, p.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        let mut checks = Vec::with_capacity(groups.len());
        for (order_id, currency, keep, fee_bps, status, base) in groups {
            // The base the split was planned from, not today's: a dispute lost since changes
            // what the order kept, not what its sellers were sent.
            let (_, total, seller_lines) = order_split(&mut unit, &order_id).await?;
            let captured = base;
            let transfers = transfers_of(&mut unit, &order_id).await?;
            let reversed: Vec<(String, i64)> = sqlx::query_as(
                "SELECT t.provider_transfer_id, CAST(SUM(v.amount) AS BIGINT)
                 FROM transfer_reversals v
                 JOIN seller_transfers t ON t.order_id = v.order_id AND t.seller_id = v.seller_id
                 WHERE v.order_id = $1 AND v.provider_reversal_id IS NOT NULL
                     AND t.provider_transfer_id IS NOT NULL
                 GROUP BY t.provider_transfer_id",
            )
            .bind(&order_id)
            .fetch_all(&mut *unit)
            .await
            .map_err(unavailable)?;
            checks.push(TransferGroupToCheck {
                order_id,
                currency,
                captured_minor: captured,
                total_minor: total,
                seller_lines,
                fee_bps,
                canceled: status == OrderStatus::Canceled.as_str(),
                platform_fee_minor: keep,
                transfers,
                reversed,
            });
        }
        unit.commit().await?;
        Ok(checks)
    }
}
