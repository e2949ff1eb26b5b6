//! Plans, Kassa's customers and the credit ledger. Every entry is written under its customer's
//! row lock, in one transaction with the balance it was checked against; a business key is
//! written once, by the unique constraint (`ON CONFLICT DO NOTHING`), whoever asks at the same
//! time.

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, CreditEntry, CreditStore, CustomerRecord, LedgerWrite, NewCreditEntry, PlanRecord,
    StoreError, StoreResult,
};
use kassa_domain::credits::{self, EntryKind};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::{SqlStore, unavailable};

fn plan_from_row(row: &AnyRow) -> StoreResult<PlanRecord> {
    Ok(PlanRecord {
        id: row.try_get("id").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
        unit_amount_minor: row.try_get("unit_amount").map_err(unavailable)?,
        currency: row.try_get("currency").map_err(unavailable)?,
        interval: row.try_get("billing_interval").map_err(unavailable)?,
        credits: row.try_get("credits").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
    })
}

fn entry_from_row(row: &AnyRow) -> StoreResult<CreditEntry> {
    let kind: String = row.try_get("kind").map_err(unavailable)?;
    Ok(CreditEntry {
        id: row.try_get("id").map_err(unavailable)?,
        customer_id: row.try_get("customer_id").map_err(unavailable)?,
        amount: row.try_get("amount").map_err(unavailable)?,
        kind: EntryKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("credit entry kind {kind:?}")))?,
        business_key: row.try_get("business_key").map_err(unavailable)?,
        reason: row.try_get("reason").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
    })
}

/// The columns of a ledger entry, then `$rest` (a literal: the SQL stays static).
macro_rules! select_entries {
    ($rest:literal) => {
        concat!(
            "SELECT id, customer_id, amount, kind, business_key, reason, created_at FROM credit_entries ",
            $rest
        )
    };
}

async fn balance_of(conn: &mut AnyConnection, customer_id: &str) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_entries WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)
}

async fn customer_in(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<CustomerRecord>> {
    let row = sqlx::query(
        "SELECT id, email, provider_customer_id, created_at FROM customers WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(CustomerRecord {
        id: row.try_get("id").map_err(unavailable)?,
        email: row.try_get("email").map_err(unavailable)?,
        provider_customer_id: row.try_get("provider_customer_id").map_err(unavailable)?,
        balance: balance_of(conn, id).await?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
    }))
}

async fn entry_with_key(conn: &mut AnyConnection, key: &str) -> StoreResult<Option<CreditEntry>> {
    let row = sqlx::query(select_entries!("WHERE business_key = $1"))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    row.as_ref().map(entry_from_row).transpose()
}

#[async_trait]
impl CreditStore for SqlStore {
    async fn create_plan(&self, plan: &PlanRecord) -> StoreResult<()> {
        let mut unit = self.autocommit().await?;
        sqlx::query(
            "INSERT INTO plans (id, name, unit_amount, currency, billing_interval, credits, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&plan.id)
        .bind(&plan.name)
        .bind(plan.unit_amount_minor)
        .bind(&plan.currency)
        .bind(&plan.interval)
        .bind(plan.credits)
        .bind(plan.created_at)
        .execute(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await
    }

    async fn plan(&self, id: &str) -> StoreResult<Option<PlanRecord>> {
        let row = self
            .read_fetch_optional(
                sqlx::query(
                    "SELECT id, name, unit_amount, currency, billing_interval, credits, created_at
                     FROM plans WHERE id = $1",
                )
                .bind(id),
            )
            .await?;
        row.as_ref().map(plan_from_row).transpose()
    }

    async fn customer_for_email(
        &self,
        new_id: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<CustomerRecord> {
        let mut unit = self.begin().await?;
        let id = customer_id_for_email(&mut unit, new_id, email, now).await?;
        let customer = customer_in(&mut unit, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("customer {id} vanished")))?;
        unit.commit().await?;
        Ok(customer)
    }

    async fn customer(&self, id: &str) -> StoreResult<Option<CustomerRecord>> {
        let mut unit = self.read().await?;
        let customer = customer_in(&mut unit, id).await?;
        unit.commit().await?;
        Ok(customer)
    }

    async fn credit_entries(&self, customer_id: &str, limit: i64) -> StoreResult<Vec<CreditEntry>> {
        let sql = select_entries!(
            "WHERE customer_id = $1 ORDER BY sequence DESC, created_at DESC, id DESC LIMIT $2"
        );
        let rows = self
            .read_fetch_all(sqlx::query(sql).bind(customer_id).bind(limit))
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn write_entry(
        &self,
        kind: EntryKind,
        entry: &NewCreditEntry,
        now: i64,
    ) -> StoreResult<LedgerWrite> {
        let mut tx = self.begin().await?;
        let written = write_entry_in(&mut tx, kind, entry, now).await?;
        if matches!(written, LedgerWrite::Written(_)) {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(written)
    }
}

/// The id of the customer with `email`, made with `new_id` if there is none.
pub(crate) async fn customer_id_for_email(
    conn: &mut AnyConnection,
    new_id: &str,
    email: &str,
    now: i64,
) -> StoreResult<String> {
    sqlx::query(
        "INSERT INTO customers (id, email, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(new_id)
    .bind(email)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    sqlx::query_scalar("SELECT id FROM customers WHERE email = $1")
        .bind(email)
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)
}

/// Fault point: between a paid order's moves and its credit grant, for tests (risk W3).
pub const FAULT_BEFORE_CREDIT_GRANT: &str = "webhook.before_credit_grant";

/// The credits a paid order's packs grant its buyer (by the order's e-mail): credits × quantity
/// of each line, as sold, once per order (business key `order:{id}`), in the caller's
/// transaction — the one that moved the order to paid (risks W2, W3).
pub(crate) async fn grant_for_paid_order(
    store: &SqlStore,
    conn: &mut AnyConnection,
    order_id: &str,
    now: i64,
) -> StoreResult<()> {
    store.faults().check(FAULT_BEFORE_CREDIT_GRANT)?;
    let (credits, email): (i64, String) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(l.credits * l.quantity), 0) AS BIGINT), o.email
         FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id
         WHERE o.id = $1 GROUP BY o.email",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    if credits <= 0 {
        return Ok(());
    }
    // Opaque, from the generator the subscription path's customers come from: the id says
    // nothing of the order (it is answered to the storefront when the buyer subscribes).
    let new_customer_id = kassa_app::ports::IdSource::new_id(&kassa_app::ids::RandomIds, "cus");
    let customer_id = customer_id_for_email(conn, &new_customer_id, &email, now).await?;
    let entry = NewCreditEntry {
        id: format!("cre_{order_id}"),
        customer_id,
        amount: credits,
        business_key: format!("order:{order_id}"),
        reason: Some("credit pack".into()),
        subscription_id: None,
    };
    match write_entry_in(conn, EntryKind::Grant, &entry, now).await? {
        LedgerWrite::Written(_) | LedgerWrite::AlreadyThere(_) => Ok(()),
        other => Err(StoreError::Corrupt(format!(
            "granting the credits of {order_id}: {other:?}"
        ))),
    }
}

/// A credit-pack order's refunds take back the credits their money paid for:
/// [`credits::clawback_due`] — the share of the grant that everything refunded so far is, less
/// what earlier clawbacks took or recorded as spent — written as one entry per settlement
/// (business key `clawback:order:{id}:{n}`, `n` counting the order's clawbacks, under the order's
/// lock), never more than the balance holds. What the customer already spent cannot be taken
/// back: it is recorded on the order (`credits_unrecovered`), the order is flagged for a person,
/// and the balance stays at zero or above.
pub(crate) async fn claw_back_refunds(
    conn: &mut AnyConnection,
    order_id: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let grant_key = format!("order:{order_id}");
    let granted: Option<(String, i64)> =
        sqlx::query_as("SELECT customer_id, amount FROM credit_entries WHERE business_key = $1")
            .bind(&grant_key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
    let Some((customer_id, granted)) = granted else {
        return Ok(());
    };
    let (captured, refunded, spent, flagged): (i64, i64, i64, Option<String>) = sqlx::query_as(
        "SELECT captured_amount, refunded_amount, credits_unrecovered, needs_attention
         FROM orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let clawback_keys = format!("clawback:{grant_key}:%");
    let (taken, count): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(-SUM(amount), 0) AS BIGINT), COUNT(*) FROM credit_entries
         WHERE kind = 'clawback' AND business_key LIKE $1",
    )
    .bind(&clawback_keys)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let settled = credits::ClawedBack { taken, spent };
    let due = credits::clawback_due(granted, refunded, captured, settled);
    if due <= 0 {
        return Ok(());
    }
    let entry = NewCreditEntry {
        id: format!("crc_{order_id}_{}", count + 1),
        customer_id,
        amount: due,
        business_key: format!("clawback:{grant_key}:{}", count + 1),
        reason: Some("credit pack refunded".into()),
        subscription_id: None,
    };
    let unrecovered = match write_entry_in(conn, EntryKind::Clawback, &entry, now).await? {
        LedgerWrite::Written(entry) => due + entry.amount,
        // Nothing left to take back.
        LedgerWrite::Overdraft { .. } => due,
        LedgerWrite::AlreadyThere(_) => {
            return Err(StoreError::Corrupt(format!(
                "clawback {} of {order_id} is already written",
                entry.business_key
            )));
        }
        LedgerWrite::CustomerMissing => {
            return Err(StoreError::Corrupt(format!(
                "the buyer of {order_id} has no customer record"
            )));
        }
    };
    if unrecovered <= 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE orders SET credits_unrecovered = credits_unrecovered + $2, updated_at = $3
         WHERE id = $1",
    )
    .bind(order_id)
    .bind(unrecovered)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if flagged.is_none() {
        let reason = format!(
            "credits_already_spent: {unrecovered} refunded credits were spent and could not be taken back"
        );
        crate::effects::flag_order(conn, order_id, &reason, actor, now).await?;
    }
    Ok(())
}

/// Takes the customer's row lock for the rest of the caller's transaction; the customer's new
/// version (which only grows), or `None` when there is no such customer. The customer's row is
/// the ledger's lock: entries of one customer are written one at a time, each against the
/// balance the ones before it left, and a subscription's reports are applied one at a time.
pub(crate) async fn lock_customer(
    conn: &mut AnyConnection,
    customer_id: &str,
) -> StoreResult<Option<i64>> {
    sqlx::query_scalar("UPDATE customers SET version = version + 1 WHERE id = $1 RETURNING version")
        .bind(customer_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)
}

/// Writes one ledger entry in the caller's transaction: under the customer's row lock, against
/// the balance the entries before it left, once per business key.
pub(crate) async fn write_entry_in(
    conn: &mut AnyConnection,
    kind: EntryKind,
    entry: &NewCreditEntry,
    now: i64,
) -> StoreResult<LedgerWrite> {
    let Some(sequence) = lock_customer(conn, &entry.customer_id).await? else {
        return Ok(LedgerWrite::CustomerMissing);
    };
    if let Some(existing) = entry_with_key(conn, &entry.business_key).await? {
        return Ok(LedgerWrite::AlreadyThere(existing));
    }
    let balance = balance_of(conn, &entry.customer_id).await?;
    let signed = match kind {
        EntryKind::Grant => entry.amount,
        EntryKind::Debit => match credits::debit(balance, entry.amount) {
            Ok(_) => -entry.amount,
            Err(overdraft) => {
                return Ok(LedgerWrite::Overdraft {
                    balance: overdraft.balance,
                });
            }
        },
        EntryKind::Clawback => -credits::clawback(balance, entry.amount),
    };
    if signed == 0 || (kind == EntryKind::Grant && signed < 0) {
        return Ok(LedgerWrite::Overdraft { balance });
    }
    let written = sqlx::query(
        "INSERT INTO credit_entries (id, customer_id, amount, kind, business_key, reason, created_at,
             sequence, subscription_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (business_key) DO NOTHING",
    )
    .bind(&entry.id)
    .bind(&entry.customer_id)
    .bind(signed)
    .bind(kind.as_str())
    .bind(&entry.business_key)
    .bind(entry.reason.as_deref())
    .bind(now)
    .bind(sequence)
    .bind(entry.subscription_id.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let stored = entry_with_key(conn, &entry.business_key)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("entry {} vanished", entry.business_key)))?;
    Ok(if written.rows_affected() == 1 {
        LedgerWrite::Written(stored)
    } else {
        LedgerWrite::AlreadyThere(stored)
    })
}
