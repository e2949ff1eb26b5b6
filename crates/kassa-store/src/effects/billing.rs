//! What the provider reports about subscriptions (seed 003): the provider's ids recorded, the
//! status moved by the domain's billing rules with a compare-and-set write, and each paid
//! invoice's credits granted once (business key `invoice:{id}`, what was paid beside it), all in
//! the caller's transaction with the inbox mark (risks W1, W2, W3). A paid period Kassa cannot
//! grant for (a price it does not know, money still owed) flags the subscription for a person,
//! with a notification, never skipped in silence (risk W6). A subscription's events are applied
//! under its customer's row lock, the lock the ledger takes, so two of them never interleave.

use kassa_app::ports::{
    Actor, Applied, BillingEffect, LedgerWrite, NewCreditEntry, ProviderInvoice, StoreError,
    StoreResult,
};
use kassa_domain::credits::{Billing, EntryKind, PeriodGrant, SubscriptionStatus};
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::credits::{lock_customer, write_entry_in};
use crate::db::{SqlStore, unavailable};
use crate::outbox;

/// Fault point: after a paid invoice moved its subscription, before its grant (risk W3).
pub const FAULT_BEFORE_INVOICE_GRANT: &str = "webhook.before_invoice_grant";

/// A subscription read under its customer's lock.
struct Locked {
    id: String,
    customer_id: String,
    plan_id: String,
    billing: Billing,
    version: i64,
}

pub(crate) async fn apply(
    store: &SqlStore,
    conn: &mut AnyConnection,
    effect: &BillingEffect,
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    let (kassa_id, provider_id) = match effect {
        BillingEffect::Linked {
            kassa_subscription_id,
            provider_subscription_id,
            ..
        }
        | BillingEffect::Ended {
            kassa_subscription_id,
            provider_subscription_id,
        } => (
            kassa_subscription_id.as_deref(),
            provider_subscription_id.as_deref(),
        ),
        BillingEffect::InvoicePaid(invoice) | BillingEffect::InvoiceFailed(invoice) => (
            invoice.kassa_subscription_id.as_deref(),
            invoice.provider_subscription_id.as_deref(),
        ),
        BillingEffect::PageExpired {
            kassa_subscription_id,
        } => (kassa_subscription_id.as_deref(), None),
        BillingEffect::CancelAtPeriodEnd {
            kassa_subscription_id,
        } => (Some(kassa_subscription_id.as_str()), None),
    };
    let Some(subscription) = lock(conn, kassa_id, provider_id).await? else {
        return Ok(Applied::Ignored(
            "a subscription Kassa did not start".to_owned(),
        ));
    };
    if let Some(provider_id) = provider_id {
        link(conn, &subscription, Some(provider_id), None).await?;
    }
    match effect {
        BillingEffect::Linked {
            provider_customer_id,
            ..
        } => link(conn, &subscription, None, provider_customer_id.as_deref()).await?,
        BillingEffect::InvoicePaid(invoice) => {
            let plan = plan_of(conn, &subscription).await?;
            let owed = invoice.period_grant(plan.unit_amount, &plan.currency);
            if owed == PeriodGrant::NotAPeriod {
                let reason = format!(
                    "invoice {} ({:?}) bills no period of its plan: no credits",
                    invoice.id, invoice.billing_reason
                );
                tracing::info!(subscription_id = %subscription.id, %reason, "invoice not granted");
                return Ok(Applied::Ignored(reason));
            }
            // The period was paid at Stripe, so the subscription is as Stripe says; only the
            // credits wait when the invoice is not one Kassa can grant for.
            let next = subscription.billing.invoice_paid(invoice.period_end);
            save(conn, &subscription, next, actor, now).await?;
            if owed.needs_attention() {
                flag(conn, &subscription, &plan, invoice, owed, actor, now).await?;
                return Ok(Applied::Done);
            }
            store.faults().check(FAULT_BEFORE_INVOICE_GRANT)?;
            grant(conn, &subscription, &plan, invoice, now).await?;
        }
        BillingEffect::InvoiceFailed(invoice) if !invoice.bills_a_period() => {
            return Ok(Applied::Ignored(format!(
                "invoice {} bills no period ({:?})",
                invoice.id, invoice.billing_reason
            )));
        }
        BillingEffect::InvoiceFailed(invoice) => {
            let next = subscription.billing.invoice_failed(invoice.period_end);
            save(conn, &subscription, next, actor, now).await?;
        }
        // A page that expired ends only a subscription it never started.
        BillingEffect::PageExpired { .. }
            if subscription.billing.status != SubscriptionStatus::Incomplete => {}
        BillingEffect::Ended { .. } | BillingEffect::PageExpired { .. } => {
            let ended = subscription.billing.ended();
            save(conn, &subscription, ended, actor, now).await?;
        }
        BillingEffect::CancelAtPeriodEnd { .. } => {
            sqlx::query(
                "UPDATE subscriptions SET cancel_at_period_end = 1, updated_at = $2 WHERE id = $1",
            )
            .bind(&subscription.id)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
            let change = Change {
                entity_type: "subscription",
                entity_id: &subscription.id,
                action: "cancel_at_period_end",
                before: None,
                after: None,
                detail: None,
            };
            audit::record(conn, change, actor, now).await?;
        }
    }
    Ok(Applied::Done)
}

/// Finds the subscription by Kassa's id, else by the provider's, and locks its customer.
async fn lock(
    conn: &mut AnyConnection,
    kassa_id: Option<&str>,
    provider_id: Option<&str>,
) -> StoreResult<Option<Locked>> {
    let mut found: Option<(String, String)> = None;
    if let Some(id) = kassa_id {
        found = sqlx::query_as("SELECT id, customer_id FROM subscriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
    }
    if found.is_none()
        && let Some(id) = provider_id
    {
        found = sqlx::query_as(
            "SELECT id, customer_id FROM subscriptions WHERE provider_subscription_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    }
    let Some((id, customer_id)) = found else {
        return Ok(None);
    };
    lock_customer(conn, &customer_id).await?;
    let row = sqlx::query(
        "SELECT plan_id, status, current_period_end, unpaid_period_end, version
         FROM subscriptions WHERE id = $1",
    )
    .bind(&id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let status: String = row.try_get("status").map_err(unavailable)?;
    Ok(Some(Locked {
        plan_id: row.try_get("plan_id").map_err(unavailable)?,
        billing: Billing {
            status: SubscriptionStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("subscription status {status:?}")))?,
            paid_through: row.try_get("current_period_end").map_err(unavailable)?,
            unpaid_through: row.try_get("unpaid_period_end").map_err(unavailable)?,
        },
        version: row.try_get("version").map_err(unavailable)?,
        id,
        customer_id,
    }))
}

/// Records the provider's ids where none is recorded yet.
async fn link(
    conn: &mut AnyConnection,
    subscription: &Locked,
    provider_subscription_id: Option<&str>,
    provider_customer_id: Option<&str>,
) -> StoreResult<()> {
    if let Some(provider_id) = provider_subscription_id {
        sqlx::query(
            "UPDATE subscriptions SET provider_subscription_id = $2
             WHERE id = $1 AND provider_subscription_id IS NULL",
        )
        .bind(&subscription.id)
        .bind(provider_id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    }
    if let Some(provider_id) = provider_customer_id {
        sqlx::query(
            "UPDATE customers SET provider_customer_id = $2
             WHERE id = $1 AND provider_customer_id IS NULL",
        )
        .bind(&subscription.customer_id)
        .bind(provider_id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Writes `next` if it differs, compare-and-set on the version read under the lock.
async fn save(
    conn: &mut AnyConnection,
    subscription: &Locked,
    next: Billing,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let before = subscription.billing;
    if next == before {
        return Ok(());
    }
    let written = sqlx::query(
        "UPDATE subscriptions SET status = $3, current_period_end = $4, unpaid_period_end = $5,
             version = version + 1, updated_at = $6
         WHERE id = $1 AND version = $2",
    )
    .bind(&subscription.id)
    .bind(subscription.version)
    .bind(next.status.as_str())
    .bind(next.paid_through)
    .bind(next.unpaid_through)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if written.rows_affected() != 1 {
        return Err(StoreError::Corrupt(format!(
            "subscription {} changed under its customer's lock",
            subscription.id
        )));
    }
    if next.status != before.status {
        let change = Change {
            entity_type: "subscription",
            entity_id: &subscription.id,
            action: "status",
            before: Some(before.status.as_str()),
            after: Some(next.status.as_str()),
            detail: None,
        };
        audit::record(conn, change, actor, now).await?;
    }
    Ok(())
}

/// What a period of the subscription's plan costs and grants.
struct PlanTerms {
    unit_amount: i64,
    currency: String,
    credits: i64,
}

async fn plan_of(conn: &mut AnyConnection, subscription: &Locked) -> StoreResult<PlanTerms> {
    let (unit_amount, currency, credits): (i64, String, i64) =
        sqlx::query_as("SELECT unit_amount, currency, credits FROM plans WHERE id = $1")
            .bind(&subscription.plan_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
    Ok(PlanTerms {
        unit_amount,
        currency,
        credits,
    })
}

/// The invoice's period of credits, once per invoice, with what the customer paid for it beside
/// the grant (less than the plan's price after a coupon or a balance, more with tax).
async fn grant(
    conn: &mut AnyConnection,
    subscription: &Locked,
    plan: &PlanTerms,
    invoice: &ProviderInvoice,
    now: i64,
) -> StoreResult<()> {
    if plan.credits <= 0 {
        return Ok(());
    }
    let business_key = format!("invoice:{}", invoice.id);
    let entry = NewCreditEntry {
        id: format!("cre_{}", invoice.id),
        customer_id: subscription.customer_id.clone(),
        amount: plan.credits,
        business_key: business_key.clone(),
        reason: Some(format!(
            "subscription {} (paid {} {})",
            subscription.id, invoice.amount_paid_minor, invoice.currency
        )),
        subscription_id: Some(subscription.id.clone()),
    };
    match write_entry_in(conn, EntryKind::Grant, &entry, now).await? {
        LedgerWrite::Written(_) => {
            sqlx::query(
                "UPDATE credit_entries SET paid_amount = $2, paid_currency = $3
                 WHERE business_key = $1 AND paid_amount IS NULL",
            )
            .bind(&business_key)
            .bind(invoice.amount_paid_minor)
            .bind(invoice.currency.to_ascii_lowercase())
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
            Ok(())
        }
        LedgerWrite::AlreadyThere(_) => Ok(()),
        other => Err(StoreError::Corrupt(format!(
            "granting the credits of invoice {}: {other:?}",
            invoice.id
        ))),
    }
}

/// A paid period Kassa grants nothing for, for a person to look at: the subscription keeps the
/// first such reason (code and invoice), and each invoice is audited and announced
/// (`subscription.needs_attention`) once.
async fn flag(
    conn: &mut AnyConnection,
    subscription: &Locked,
    plan: &PlanTerms,
    invoice: &ProviderInvoice,
    owed: PeriodGrant,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let code = owed.reason_code();
    let billed = match invoice.price {
        Some(price) => format!("{} × {}", price.quantity, price.unit_amount_minor),
        None => "no single readable subscription line".to_owned(),
    };
    let reason = format!(
        "{code}: invoice {} ({:?}) billed {billed} {}, paid {}, {} still owed; the plan is {} {}: \
         no credits granted",
        invoice.id,
        invoice.billing_reason,
        invoice.currency,
        invoice.amount_paid_minor,
        invoice.amount_remaining_minor,
        plan.unit_amount,
        plan.currency
    );
    // Once per invoice for good: the audit trail is never pruned, so an event redelivered after
    // its inbox row and notification aged out announces nothing twice.
    let flagged_before: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log
         WHERE entity_type = 'subscription' AND entity_id = $1 AND action = 'flagged'
           AND detail LIKE $2",
    )
    .bind(&subscription.id)
    .bind(format!("{code}: invoice {} (%", invoice.id))
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    if flagged_before > 0 {
        return Ok(());
    }
    tracing::warn!(subscription_id = %subscription.id, invoice_id = %invoice.id, %reason,
        "a paid period needs attention");
    sqlx::query(
        "UPDATE subscriptions SET needs_attention = $2, updated_at = $3
         WHERE id = $1 AND needs_attention IS NULL",
    )
    .bind(&subscription.id)
    .bind(&reason)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let change = Change {
        entity_type: "subscription",
        entity_id: &subscription.id,
        action: "flagged",
        before: None,
        after: Some("needs_attention"),
        detail: Some(&reason),
    };
    audit::record(conn, change, actor, now).await?;
    outbox::notify_subscription(
        conn,
        "subscription.needs_attention",
        &subscription.id,
        &invoice.id,
        code,
        now,
    )
    .await
}
