//! Plans, Kassa's customers and the credit ledger. Every entry is written under its customer's
//! row lock, in one transaction with the balance it was checked against; a business key is
//! written once, by the unique constraint (`ON CONFLICT DO NOTHING`), whoever asks at the same
//! time.

use async_trait::async_trait;
use kassa_app::ports::{
    CreditEntry, CreditStore, CustomerRecord, LedgerWrite, NewCreditEntry, PlanRecord, StoreError,
    StoreResult,
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
        sqlx::query(
            "INSERT INTO customers (id, email, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(new_id)
        .bind(email)
        .bind(now)
        .execute(&mut *unit)
        .await
        .map_err(unavailable)?;
        let id: String = sqlx::query_scalar("SELECT id FROM customers WHERE email = $1")
            .bind(email)
            .fetch_one(&mut *unit)
            .await
            .map_err(unavailable)?;
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
        let sql =
            select_entries!("WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2");
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
        // The customer's row is the ledger's lock: entries of one customer are written one at a
        // time, each against the balance the ones before it left.
        let locked: Option<String> = sqlx::query_scalar(
            "UPDATE customers SET version = version + 1 WHERE id = $1 RETURNING id",
        )
        .bind(&entry.customer_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        if locked.is_none() {
            tx.rollback().await?;
            return Ok(LedgerWrite::CustomerMissing);
        }
        if let Some(existing) = entry_with_key(&mut tx, &entry.business_key).await? {
            tx.rollback().await?;
            return Ok(LedgerWrite::AlreadyThere(existing));
        }
        let balance = balance_of(&mut tx, &entry.customer_id).await?;
        let signed = match kind {
            EntryKind::Grant => entry.amount,
            EntryKind::Debit => match credits::debit(balance, entry.amount) {
                Ok(_) => -entry.amount,
                Err(overdraft) => {
                    tx.rollback().await?;
                    return Ok(LedgerWrite::Overdraft {
                        balance: overdraft.balance,
                    });
                }
            },
            EntryKind::Clawback => -credits::clawback(balance, entry.amount),
        };
        if signed == 0 || (kind == EntryKind::Grant && signed < 0) {
            tx.rollback().await?;
            return Ok(LedgerWrite::Overdraft { balance });
        }
        let written = sqlx::query(
            "INSERT INTO credit_entries (id, customer_id, amount, kind, business_key, reason, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (business_key) DO NOTHING",
        )
        .bind(&entry.id)
        .bind(&entry.customer_id)
        .bind(signed)
        .bind(kind.as_str())
        .bind(&entry.business_key)
        .bind(entry.reason.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let stored = entry_with_key(&mut tx, &entry.business_key)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("entry {} vanished", entry.business_key)))?;
        tx.commit().await?;
        Ok(if written.rows_affected() == 1 {
            LedgerWrite::Written(stored)
        } else {
            LedgerWrite::AlreadyThere(stored)
        })
    }
}
