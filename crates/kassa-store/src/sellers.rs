//! Marketplace sellers: created once per client key, linked to their connected account, and
//! kept as ready or not by the newest observation of the account (`account.updated`).

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, NewSeller, ProviderAccount, SellerRecord, SellerStart, SellerStore, StoreError,
    StoreResult,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::db::{SqlStore, unavailable};

const SELECT_SELLER: &str = "SELECT id, name, email, country, account_id, charges_enabled,
        payouts_enabled, created_at FROM sellers ";

fn seller_from_row(row: &AnyRow) -> StoreResult<SellerRecord> {
    let flag = |name: &str| row.try_get::<i64, _>(name).map(|v| v != 0);
    Ok(SellerRecord {
        id: row.try_get("id").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
        email: row.try_get("email").map_err(unavailable)?,
        country: row.try_get("country").map_err(unavailable)?,
        account_id: row.try_get("account_id").map_err(unavailable)?,
        charges_enabled: flag("charges_enabled").map_err(unavailable)?,
        payouts_enabled: flag("payouts_enabled").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
    })
}

async fn seller_in(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<SellerRecord>> {
    let sql = format!("{SELECT_SELLER} WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    row.as_ref().map(seller_from_row).transpose()
}

/// The seller this client key created, if it was for the same name, e-mail and country.
async fn started_with_key(
    conn: &mut AnyConnection,
    new: &NewSeller,
) -> StoreResult<Option<SellerStart>> {
    let Some(key) = &new.client_key else {
        return Ok(None);
    };
    let sql = format!("{SELECT_SELLER} WHERE client_scope = $1 AND client_key = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&new.client_scope)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    let existing = seller_from_row(&row)?;
    let same = (&existing.name, &existing.email, &existing.country)
        == (&new.name, &new.email, &new.country);
    Ok(Some(if same {
        SellerStart::Started(existing)
    } else {
        SellerStart::KeyReused
    }))
}

#[async_trait]
impl SellerStore for SqlStore {
    async fn start_seller(
        &self,
        new: &NewSeller,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<SellerStart> {
        let mut tx = self.begin().await?;
        if let Some(start) = started_with_key(&mut tx, new).await? {
            tx.rollback().await?;
            return Ok(start);
        }
        let inserted = sqlx::query(
            "INSERT INTO sellers (id, name, email, country, client_scope, client_key, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (client_scope, client_key) DO NOTHING",
        )
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.email)
        .bind(&new.country)
        .bind(&new.client_scope)
        .bind(new.client_key.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if inserted.rows_affected() == 1 {
            let change = Change {
                entity_type: "seller",
                entity_id: &new.id,
                action: "created",
                before: None,
                after: Some("charges_disabled"),
                detail: None,
            };
            audit::record(&mut tx, change, actor, now).await?;
        }
        let start = match started_with_key(&mut tx, new).await? {
            Some(start) => start,
            None => SellerStart::Started(
                seller_in(&mut tx, &new.id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("seller {} vanished", new.id)))?,
            ),
        };
        tx.commit().await?;
        Ok(start)
    }

    async fn record_seller_account(
        &self,
        seller_id: &str,
        account: &ProviderAccount,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<SellerRecord> {
        let mut tx = self.begin().await?;
        let linked = sqlx::query(
            "UPDATE sellers SET account_id = $2, charges_enabled = $3, payouts_enabled = $4,
                 updated_at = $5, ready_since = CASE WHEN $3 = 1 THEN $5 END
             WHERE id = $1 AND account_id IS NULL",
        )
        .bind(seller_id)
        .bind(&account.id)
        .bind(i64::from(account.charges_enabled))
        .bind(i64::from(account.payouts_enabled))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if linked.rows_affected() == 1 {
            let change = Change {
                entity_type: "seller",
                entity_id: seller_id,
                action: "account_linked",
                before: None,
                after: Some(readiness(account.charges_enabled)),
                detail: Some(&account.id),
            };
            audit::record(&mut tx, change, actor, now).await?;
        }
        let seller = seller_in(&mut tx, seller_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("seller {seller_id} vanished")))?;
        tx.commit().await?;
        Ok(seller)
    }

    async fn seller(&self, id: &str) -> StoreResult<Option<SellerRecord>> {
        let mut unit = self.read().await?;
        let seller = seller_in(&mut unit, id).await?;
        unit.commit().await?;
        Ok(seller)
    }

    async fn seller_for_account(&self, account_id: &str) -> StoreResult<Option<String>> {
        let mut unit = self.read().await?;
        let seller = sqlx::query_scalar("SELECT id FROM sellers WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&mut *unit)
            .await
            .map_err(unavailable)?;
        unit.commit().await?;
        Ok(seller)
    }

    async fn seller_accounts(&self, limit: i64) -> StoreResult<Vec<String>> {
        let mut unit = self.read().await?;
        let accounts = sqlx::query_scalar(
            "SELECT account_id FROM sellers WHERE account_id IS NOT NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        Ok(accounts)
    }

    async fn observe_account(
        &self,
        account: &ProviderAccount,
        observed_at: i64,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let recorded = observe_account_in(&mut tx, account, observed_at, actor, now).await?;
        tx.commit().await?;
        Ok(recorded)
    }
}

/// The account's readiness as observed at `observed_at`, unless a later observation is
/// recorded (events arrive in any order); whether it was recorded.
pub(crate) async fn observe_account_in(
    conn: &mut AnyConnection,
    account: &ProviderAccount,
    observed_at: i64,
    actor: &Actor,
    now: i64,
) -> StoreResult<bool> {
    let before: Option<(String, i64)> =
        sqlx::query_as("SELECT id, charges_enabled FROM sellers WHERE account_id = $1")
            .bind(&account.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
    let Some((seller_id, was_enabled)) = before else {
        return Ok(false);
    };
    let written = sqlx::query(
        "UPDATE sellers SET charges_enabled = $2, payouts_enabled = $3,
             readiness_observed_at = $4, updated_at = $5,
             ready_since = CASE WHEN $2 = 1 AND charges_enabled = 0 THEN $5 ELSE ready_since END
         WHERE account_id = $1
           AND (readiness_observed_at IS NULL OR readiness_observed_at <= $4)",
    )
    .bind(&account.id)
    .bind(i64::from(account.charges_enabled))
    .bind(i64::from(account.payouts_enabled))
    .bind(observed_at)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if written.rows_affected() == 1 && (was_enabled != 0) != account.charges_enabled {
        let change = Change {
            entity_type: "seller",
            entity_id: &seller_id,
            action: "readiness",
            before: Some(readiness(was_enabled != 0)),
            after: Some(readiness(account.charges_enabled)),
            detail: None,
        };
        audit::record(conn, change, actor, now).await?;
    }
    Ok(written.rows_affected() == 1)
}

fn readiness(charges_enabled: bool) -> &'static str {
    if charges_enabled {
        "charges_enabled"
    } else {
        "charges_disabled"
    }
}
