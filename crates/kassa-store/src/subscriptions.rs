//! Subscriptions: started once per client key, linked to the provider's page and ids, and
//! moved by what the provider reports (`effects::billing`).

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, Applied, BillingEffect, NewSubscription, ProviderCheckoutSession, StoreError,
    StoreResult, SubscriptionRecord, SubscriptionStart, SubscriptionStore,
};
use kassa_domain::credits::SubscriptionStatus;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::credits::{customer_id_for_email, lock_customer};
use crate::db::{SqlStore, unavailable};
use crate::effects;

/// The columns of a subscription, then `$rest` (a literal: the SQL stays static).
macro_rules! select_subscriptions {
    ($rest:literal) => {
        concat!(
            "SELECT s.id, s.customer_id, s.plan_id, s.status, s.provider_subscription_id,
                    s.provider_checkout_session_id, s.checkout_url, s.checkout_expires_at,
                    s.current_period_end, s.cancel_at_period_end, s.created_at, c.email
             FROM subscriptions s JOIN customers c ON c.id = s.customer_id ",
            $rest
        )
    };
}

fn subscription_from_row(row: &AnyRow) -> StoreResult<SubscriptionRecord> {
    let status: String = row.try_get("status").map_err(unavailable)?;
    let cancel: i64 = row.try_get("cancel_at_period_end").map_err(unavailable)?;
    Ok(SubscriptionRecord {
        id: row.try_get("id").map_err(unavailable)?,
        customer_id: row.try_get("customer_id").map_err(unavailable)?,
        plan_id: row.try_get("plan_id").map_err(unavailable)?,
        status: SubscriptionStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("subscription status {status:?}")))?,
        provider_subscription_id: row
            .try_get("provider_subscription_id")
            .map_err(unavailable)?,
        provider_checkout_session_id: row
            .try_get("provider_checkout_session_id")
            .map_err(unavailable)?,
        checkout_url: row.try_get("checkout_url").map_err(unavailable)?,
        checkout_expires_at: row.try_get("checkout_expires_at").map_err(unavailable)?,
        current_period_end: row.try_get("current_period_end").map_err(unavailable)?,
        cancel_at_period_end: cancel != 0,
        created_at: row.try_get("created_at").map_err(unavailable)?,
    })
}

async fn subscription_in(
    conn: &mut AnyConnection,
    id: &str,
) -> StoreResult<Option<SubscriptionRecord>> {
    let row = sqlx::query(select_subscriptions!("WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    row.as_ref().map(subscription_from_row).transpose()
}

/// The subscription this client key started, if it was for the same plan and e-mail.
async fn started_with_key(
    conn: &mut AnyConnection,
    new: &NewSubscription,
) -> StoreResult<Option<SubscriptionStart>> {
    let row = sqlx::query(select_subscriptions!(
        "WHERE s.client_scope = $1 AND s.client_key = $2"
    ))
    .bind(&new.client_scope)
    .bind(&new.client_key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    let email: String = row.try_get("email").map_err(unavailable)?;
    let existing = subscription_from_row(&row)?;
    Ok(Some(
        if existing.plan_id == new.plan_id && email == new.email {
            SubscriptionStart::Started(existing)
        } else {
            SubscriptionStart::KeyReused
        },
    ))
}

/// The customer's live subscription to the plan (incomplete, active or past due), if any: an
/// active or past-due one first, then the newest.
async fn held_subscription(
    conn: &mut AnyConnection,
    customer_id: &str,
    plan_id: &str,
) -> StoreResult<Option<SubscriptionRecord>> {
    let row = sqlx::query(select_subscriptions!(
        "WHERE s.customer_id = $1 AND s.plan_id = $2
           AND s.status IN ('incomplete', 'active', 'past_due')
         ORDER BY CASE WHEN s.status = 'incomplete' THEN 1 ELSE 0 END,
                  s.created_at DESC, s.id DESC
         LIMIT 1"
    ))
    .bind(customer_id)
    .bind(plan_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    row.as_ref().map(subscription_from_row).transpose()
}

#[async_trait]
impl SubscriptionStore for SqlStore {
    async fn start_subscription(
        &self,
        new: &NewSubscription,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<SubscriptionStart> {
        let mut tx = self.begin().await?;
        if let Some(start) = started_with_key(&mut tx, new).await? {
            tx.rollback().await?;
            return Ok(start);
        }
        let customer_id =
            customer_id_for_email(&mut tx, &new.new_customer_id, &new.email, now).await?;
        // Under the customer's lock, so two keys at once see each other's subscription.
        if lock_customer(&mut tx, &customer_id).await?.is_none() {
            return Err(StoreError::Corrupt(format!(
                "customer {customer_id} vanished"
            )));
        }
        if let Some(held) = held_subscription(&mut tx, &customer_id, &new.plan_id).await? {
            tx.rollback().await?;
            return Ok(SubscriptionStart::Held(held));
        }
        let inserted = sqlx::query(
            "INSERT INTO subscriptions (id, customer_id, plan_id, status, client_scope, client_key,
                 created_at, updated_at)
             VALUES ($1, $2, $3, 'incomplete', $4, $5, $6, $6)
             ON CONFLICT (client_scope, client_key) DO NOTHING",
        )
        .bind(&new.id)
        .bind(&customer_id)
        .bind(&new.plan_id)
        .bind(&new.client_scope)
        .bind(&new.client_key)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if inserted.rows_affected() == 1 {
            let change = Change {
                entity_type: "subscription",
                entity_id: &new.id,
                action: "created",
                before: None,
                after: Some(SubscriptionStatus::Incomplete.as_str()),
                detail: Some(&new.plan_id),
            };
            audit::record(&mut tx, change, actor, now).await?;
        }
        let start = started_with_key(&mut tx, new)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("subscription {} vanished", new.id)))?;
        tx.commit().await?;
        Ok(start)
    }

    async fn record_provider_customer(
        &self,
        customer_id: &str,
        provider_customer_id: &str,
    ) -> StoreResult<String> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE customers SET provider_customer_id = $2
             WHERE id = $1 AND provider_customer_id IS NULL",
        )
        .bind(customer_id)
        .bind(provider_customer_id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT provider_customer_id FROM customers WHERE id = $1")
                .bind(customer_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
        tx.commit().await?;
        recorded.ok_or_else(|| StoreError::Corrupt(format!("customer {customer_id} unlinked")))
    }

    async fn record_subscription_page(
        &self,
        subscription_id: &str,
        session: &ProviderCheckoutSession,
        now: i64,
    ) -> StoreResult<SubscriptionRecord> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE subscriptions SET provider_checkout_session_id = $2, checkout_url = $3,
                 checkout_expires_at = $4, updated_at = $5
             WHERE id = $1 AND provider_checkout_session_id IS NULL AND status = 'incomplete'",
        )
        .bind(subscription_id)
        .bind(&session.id)
        .bind(session.url.as_deref())
        .bind(session.expires_at_secs)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let subscription = subscription_in(&mut tx, subscription_id)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("subscription {subscription_id} vanished"))
            })?;
        tx.commit().await?;
        Ok(subscription)
    }

    async fn subscription(&self, id: &str) -> StoreResult<Option<SubscriptionRecord>> {
        let row = self
            .read_fetch_optional(sqlx::query(select_subscriptions!("WHERE s.id = $1")).bind(id))
            .await?;
        row.as_ref().map(subscription_from_row).transpose()
    }

    async fn subscription_for_session(
        &self,
        session_id: &str,
    ) -> StoreResult<Option<SubscriptionRecord>> {
        let sql = select_subscriptions!("WHERE s.provider_checkout_session_id = $1");
        let row = self
            .read_fetch_optional(sqlx::query(sql).bind(session_id))
            .await?;
        row.as_ref().map(subscription_from_row).transpose()
    }

    async fn customer_subscriptions(
        &self,
        customer_id: &str,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        let rows = self
            .read_fetch_all(
                sqlx::query(select_subscriptions!(
                    "WHERE s.customer_id = $1 ORDER BY s.created_at DESC, s.id DESC"
                ))
                .bind(customer_id),
            )
            .await?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn observe_billing(
        &self,
        effect: &BillingEffect,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied> {
        let mut tx = self.begin().await?;
        let applied = effects::billing::apply(self, &mut tx, effect, actor, now).await?;
        tx.commit().await?;
        Ok(applied)
    }
}
