//! The checkout saga's local transactions and its idempotency keys (recovery points).

use async_trait::async_trait;
use kassa_app::ports::{
    Abandoned, Actor, CheckoutStore, Destination, HostedCheckout, KeyClaim, KeyRef, OrderPlan,
    PendingPayment, PlaceRefusal, PriceCheck, ProviderCheckoutSession, ProviderPaymentIntent,
    RecentCheckouts, RecoveryPoint, SessionLine, StalledCheckout, StoreError, StoreResult,
    StoredResponse, WindowCount,
};
use kassa_domain::Money;
use kassa_domain::cart::PricedCart;
use kassa_domain::marketplace::platform_fee;
use kassa_domain::order::{OrderEvent, OrderStatus};
use kassa_domain::payment::{PaymentEvent, PaymentStatus};
use kassa_domain::reservation::ReservationStatus;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::cart::{cart_in, lock_open_cart};
use crate::catalog::currency_of;
use crate::db::{SqlStore, unavailable};
use crate::transitions::{self, Outcome};

/// Fault point: the finish phase's transaction fails after the PaymentIntent was created.
pub const FAULT_BEFORE_FINISH: &str = "checkout.before_finish";

/// Stock is reserved at this location; multi-location allocation is a later concern.
const RESERVATION_LOCATION: &str = "default";

#[async_trait]
impl CheckoutStore for SqlStore {
    async fn claim_key(
        &self,
        key: &KeyRef,
        request_path: &str,
        request_hash: &str,
        lock_secs: i64,
        now: i64,
    ) -> StoreResult<KeyClaim> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, idempotency_key, request_method, request_path, request_hash,
                 recovery_point, locked_until, created_at, updated_at)
             VALUES ($1, $2, 'POST', $3, $4, 'started', $5, $6, $6)
             ON CONFLICT (scope, idempotency_key) DO NOTHING",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .bind(request_path)
        .bind(request_hash)
        .bind(now + lock_secs)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let claim = if inserted.rows_affected() == 1 {
            KeyClaim::Claimed {
                recovery_point: RecoveryPoint::Started,
                order_id: None,
            }
        } else {
            claim_existing(&mut tx, key, request_path, request_hash, lock_secs, now).await?
        };
        tx.commit().await?;
        Ok(claim)
    }

    async fn claim_stalled_key(&self, key: &KeyRef, lock_secs: i64, now: i64) -> StoreResult<bool> {
        let claimed = self
            .lone_execute(
                sqlx::query(
                    "UPDATE idempotency_keys SET locked_until = $3, updated_at = $4
             WHERE scope = $1 AND idempotency_key = $2 AND recovery_point = 'order_created'
               AND (locked_until IS NULL OR locked_until <= $4)",
                )
                .bind(&key.scope)
                .bind(&key.key)
                .bind(now + lock_secs)
                .bind(now),
            )
            .await?;
        Ok(claimed.rows_affected() == 1)
    }

    async fn release_key(&self, key: &KeyRef) -> StoreResult<()> {
        self.lone_execute(sqlx::query("UPDATE idempotency_keys SET locked_until = NULL WHERE scope = $1 AND idempotency_key = $2")
            .bind(&key.scope)
            .bind(&key.key))
            .await?;
        Ok(())
    }

    async fn finish_key(
        &self,
        key: &KeyRef,
        response: &StoredResponse,
        now: i64,
    ) -> StoreResult<()> {
        let mut unit = self.autocommit().await?;
        finish_key_in(&mut unit, key, response, now).await?;
        unit.commit().await
    }

    async fn place_order(
        &self,
        key: &KeyRef,
        cart_id: &str,
        plan: &OrderPlan,
        price: PriceCheck<'_>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Result<PendingPayment, PlaceRefusal>> {
        let mut tx = self.begin().await?;
        let placed = place_order_in(&mut tx, key, cart_id, plan, price, actor, now).await?;
        match placed {
            Ok(pending) => {
                tx.commit().await?;
                Ok(Ok(pending))
            }
            Err(refusal) => {
                tx.rollback().await?;
                Ok(Err(refusal))
            }
        }
    }

    async fn recent_checkouts(
        &self,
        email: &str,
        client_ip: Option<&str>,
        since: i64,
    ) -> StoreResult<RecentCheckouts> {
        let mut unit = self.read().await?;
        let by_email = window_count(
            &mut unit,
            "SELECT COUNT(*), MIN(created_at) FROM orders WHERE email = $1 AND created_at > $2",
            email,
            since,
        )
        .await?;
        let by_client_ip = match client_ip {
            Some(ip) => {
                window_count(
                    &mut unit,
                    "SELECT COUNT(*), MIN(created_at) FROM orders WHERE client_ip = $1 AND created_at > $2",
                    ip,
                    since,
                )
                .await?
            }
            None => WindowCount::default(),
        };
        unit.commit().await?;
        Ok(RecentCheckouts {
            by_email,
            by_client_ip,
        })
    }

    async fn pending_payment(&self, order_id: &str) -> StoreResult<Option<PendingPayment>> {
        let row = self.read_fetch_optional(sqlx::query(
            "SELECT p.id, p.amount, p.currency, p.capture_method, p.provider_idempotency_key, p.flow,
                    p.checkout_expires_at, o.created_at, p.destination_account, p.application_fee,
                    p.transfer_group
             FROM payments p JOIN orders o ON o.id = p.order_id
             WHERE p.order_id = $1 AND p.status = 'creating' ORDER BY p.attempt DESC LIMIT 1",
        )
        .bind(order_id))
        .await?;
        let Some(row) = row else { return Ok(None) };
        let currency: String = row.try_get("currency").map_err(unavailable)?;
        let capture: String = row.try_get("capture_method").map_err(unavailable)?;
        let flow: String = row.try_get("flow").map_err(unavailable)?;
        let hosted = match flow.as_str() {
            "embedded" => None,
            "hosted" => {
                let expires_at: Option<i64> =
                    row.try_get("checkout_expires_at").map_err(unavailable)?;
                let expires_at = expires_at.ok_or_else(|| {
                    StoreError::Corrupt(format!("hosted payment of {order_id} without expiry"))
                })?;
                let mut unit = self.read().await?;
                let hosted = hosted_checkout(&mut unit, order_id, expires_at).await?;
                unit.commit().await?;
                Some(hosted)
            }
            other => return Err(StoreError::Corrupt(format!("payment flow {other:?}"))),
        };
        Ok(Some(PendingPayment {
            order_id: order_id.to_owned(),
            payment_id: row.try_get("id").map_err(unavailable)?,
            amount: Money::new(
                row.try_get("amount").map_err(unavailable)?,
                currency_of(&currency)?,
            ),
            capture_method: kassa_app::ports::CaptureMethod::parse(&capture)
                .ok_or_else(|| StoreError::Corrupt(format!("capture method {capture:?}")))?,
            provider_idempotency_key: row
                .try_get("provider_idempotency_key")
                .map_err(unavailable)?,
            order_created_at: row.try_get("created_at").map_err(unavailable)?,
            destination: destination_of(&row)?,
            transfer_group: row.try_get("transfer_group").map_err(unavailable)?,
            hosted,
        }))
    }

    async fn record_payment_intent(
        &self,
        key: Option<&KeyRef>,
        payment_id: &str,
        intent: &ProviderPaymentIntent,
        response: Option<&StoredResponse>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        self.faults().check(FAULT_BEFORE_FINISH)?;
        // The intent id is written once; a different id for the same payment would mean two
        // intents for one attempt, which the deterministic provider key rules out.
        let order_id: Option<String> = sqlx::query_scalar(
            "UPDATE payments SET provider_payment_intent_id = $2, client_secret = $3, updated_at = $4
             WHERE id = $1 AND (provider_payment_intent_id IS NULL OR provider_payment_intent_id = $2)
             RETURNING order_id",
        )
        .bind(payment_id)
        .bind(&intent.id)
        .bind(intent.client_secret.as_deref())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(order_id) = order_id else {
            return Err(StoreError::Corrupt(format!(
                "payment {payment_id} already has another PaymentIntent"
            )));
        };
        payment_created(&mut tx, &order_id, payment_id, actor, now).await?;
        if intent.status != PaymentStatus::RequiresPaymentMethod {
            let observed = PaymentEvent::Observed(intent.status);
            match transitions::payment(&mut tx, &order_id, payment_id, observed, actor, now).await?
            {
                Outcome::Moved(_) => {}
                // A webhook already brought the payment this far or further.
                Outcome::Refused(_) => {}
            }
        }
        if let (Some(key), Some(response)) = (key, response) {
            finish_key_in(&mut tx, key, response, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_checkout_session(
        &self,
        key: Option<&KeyRef>,
        payment_id: &str,
        session: &ProviderCheckoutSession,
        response: Option<&StoredResponse>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        self.faults().check(FAULT_BEFORE_FINISH)?;
        // Written once, as the intent id is: the deterministic key names one session.
        let order_id: Option<String> = sqlx::query_scalar(
            "UPDATE payments SET provider_checkout_session_id = $2, checkout_url = $3, updated_at = $4
             WHERE id = $1 AND flow = 'hosted'
               AND (provider_checkout_session_id IS NULL OR provider_checkout_session_id = $2)
             RETURNING order_id",
        )
        .bind(payment_id)
        .bind(&session.id)
        .bind(session.url.as_deref())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(order_id) = order_id else {
            return Err(StoreError::Corrupt(format!(
                "payment {payment_id} is not hosted or already has another Checkout Session"
            )));
        };
        payment_created(&mut tx, &order_id, payment_id, actor, now).await?;
        if let (Some(key), Some(response)) = (key, response) {
            finish_key_in(&mut tx, key, response, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn abandon_checkout(
        &self,
        key: Option<&KeyRef>,
        abandoned: &Abandoned,
        response: Option<&StoredResponse>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let (order_id, payment_id) = (abandoned.order_id.as_str(), abandoned.payment_id.as_str());
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE payments SET last_error = $2 WHERE id = $1")
            .bind(payment_id)
            .bind(&abandoned.reason)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        // Only a definite refusal to create the intent gets here, so nothing at the provider can
        // have moved this order or payment: both moves must take (order first, as every plan
        // locks it first).
        let canceled =
            transitions::order(&mut tx, order_id, OrderEvent::Cancel, actor, now).await?;
        let failed = PaymentEvent::CreateFailed;
        let payment_failed =
            transitions::payment(&mut tx, order_id, payment_id, failed, actor, now).await?;
        match (canceled, payment_failed) {
            (Outcome::Moved(_), Outcome::Moved(_)) => {
                transitions::release_reservations(&mut tx, order_id, actor, now).await?;
            }
            // Abandoned before (the same refusal replayed): nothing is left to undo.
            (Outcome::Refused(OrderStatus::Canceled), Outcome::Refused(PaymentStatus::Failed)) => {}
            (order, payment) => {
                return Err(StoreError::ImpossibleMove {
                    order_id: order_id.to_owned(),
                    detail: format!(
                        "abandoning a checkout found order {order:?}, payment {payment:?}"
                    ),
                });
            }
        }
        if let (Some(key), Some(response)) = (key, response) {
            finish_key_in(&mut tx, key, response, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn stalled_checkouts(
        &self,
        idle_secs: i64,
        limit: i64,
        now: i64,
    ) -> StoreResult<Vec<StalledCheckout>> {
        let rows = self.read_fetch_all(sqlx::query(
            "SELECT k.scope, k.idempotency_key, k.order_id, k.created_at FROM idempotency_keys k
             WHERE k.recovery_point = 'order_created' AND (k.locked_until IS NULL OR k.locked_until <= $1)
               AND k.updated_at <= $2 AND k.order_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = k.order_id AND o.needs_attention IS NOT NULL)
             ORDER BY k.updated_at LIMIT $3",
        )
        .bind(now)
        .bind(now - idle_secs)
        .bind(limit))
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StalledCheckout {
                    key: KeyRef {
                        scope: row.try_get("scope").map_err(unavailable)?,
                        key: row.try_get("idempotency_key").map_err(unavailable)?,
                    },
                    order_id: row.try_get("order_id").map_err(unavailable)?,
                    started_at: row.try_get("created_at").map_err(unavailable)?,
                })
            })
            .collect()
    }
}

async fn claim_existing(
    conn: &mut AnyConnection,
    key: &KeyRef,
    request_path: &str,
    request_hash: &str,
    lock_secs: i64,
    now: i64,
) -> StoreResult<KeyClaim> {
    let row = sqlx::query(
        "SELECT request_path, request_hash, recovery_point, locked_until, order_id, response_status, response_body
         FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let path: String = row.try_get("request_path").map_err(unavailable)?;
    let hash: String = row.try_get("request_hash").map_err(unavailable)?;
    if path != request_path || hash != request_hash {
        return Ok(KeyClaim::Mismatch);
    }
    let status: Option<i64> = row.try_get("response_status").map_err(unavailable)?;
    let body: Option<String> = row.try_get("response_body").map_err(unavailable)?;
    if let (Some(status), Some(body)) = (status, body) {
        let status = u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("response status {status}")))?;
        return Ok(KeyClaim::Replay(StoredResponse { status, body }));
    }
    let locked_until: Option<i64> = row.try_get("locked_until").map_err(unavailable)?;
    if let Some(until) = locked_until.filter(|until| *until > now) {
        return Ok(KeyClaim::InProgress {
            retry_after_secs: (until - now).max(1),
        });
    }
    let taken = sqlx::query(
        "UPDATE idempotency_keys SET locked_until = $3, updated_at = $4
         WHERE scope = $1 AND idempotency_key = $2 AND response_status IS NULL
           AND (locked_until IS NULL OR locked_until <= $4)",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(now + lock_secs)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if taken.rows_affected() != 1 {
        return Ok(KeyClaim::InProgress {
            retry_after_secs: 1,
        });
    }
    let point: String = row.try_get("recovery_point").map_err(unavailable)?;
    Ok(KeyClaim::Claimed {
        recovery_point: RecoveryPoint::parse(&point)
            .ok_or_else(|| StoreError::Corrupt(format!("recovery point {point:?}")))?,
        order_id: row.try_get("order_id").map_err(unavailable)?,
    })
}

async fn finish_key_in(
    conn: &mut AnyConnection,
    key: &KeyRef,
    response: &StoredResponse,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET recovery_point = 'finished', response_status = $3, response_body = $4,
             locked_until = NULL, updated_at = $5
         WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(i64::from(response.status))
    .bind(&response.body)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn place_order_in(
    conn: &mut AnyConnection,
    key: &KeyRef,
    cart_id: &str,
    plan: &OrderPlan,
    price: PriceCheck<'_>,
    actor: &Actor,
    now: i64,
) -> StoreResult<Result<PendingPayment, PlaceRefusal>> {
    if let Err(refusal) = lock_open_cart(conn, cart_id, now).await? {
        return Ok(Err(match refusal {
            kassa_app::ports::CartRefusal::CheckedOut { order_id } => {
                PlaceRefusal::CheckedOut { order_id }
            }
            _ => PlaceRefusal::CartNotFound,
        }));
    }
    let cart = cart_in(conn, cart_id)
        .await?
        .ok_or(StoreError::Corrupt("locked cart vanished".into()))?;
    let priced = match price(&cart) {
        Ok(priced) => priced,
        Err(refusal) => return Ok(Err(refusal)),
    };
    // Readiness checked where it counts (risk P10): in the transaction that reserves, before
    // anything is reserved, against what the provider last reported.
    let payout = match check_sellers(conn, cart_id, plan.hosted_expires_at.is_some()).await? {
        Ok(payout) => payout,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let short = reserve_stock(conn, &priced, now).await?;
    if !short.is_empty() {
        return Ok(Err(PlaceRefusal::InsufficientStock { skus: short }));
    }
    insert_order(conn, cart_id, plan, &priced, now).await?;
    let (destination, transfer_group) = match payout {
        SellerPayout::None => (None, None),
        SellerPayout::Destination { account_id } => {
            let fee = platform_fee(priced.total.amount_minor(), plan.platform_fee_bps);
            let destination = Destination {
                account_id,
                application_fee_minor: fee,
            };
            (Some(destination), None)
        }
        SellerPayout::Transfers => (None, Some(plan.order_id.clone())),
    };
    insert_payment(
        conn,
        plan,
        &priced,
        destination.as_ref(),
        transfer_group.as_deref(),
        now,
    )
    .await?;
    let hosted = match plan.hosted_expires_at {
        Some(expires_at) => Some(hosted_checkout(conn, &plan.order_id, expires_at).await?),
        None => None,
    };
    let detail = format!("cart {cart_id}, total {}", priced.total);
    let created = Change {
        entity_type: "order",
        entity_id: &plan.order_id,
        action: "created",
        before: None,
        after: Some("pending_payment"),
        detail: Some(&detail),
    };
    audit::record(conn, created, actor, now).await?;
    let payment = Change {
        entity_type: "payment",
        entity_id: &plan.payment_id,
        action: "created",
        before: None,
        after: Some(PaymentStatus::Creating.as_str()),
        detail: Some(&plan.provider_idempotency_key),
    };
    audit::record(conn, payment, actor, now).await?;
    for (index, line) in priced.lines.iter().enumerate() {
        // The id insert_order gave this line's reservation.
        let id = reservation_id(&plan.order_id, index);
        let detail = format!("{} × {} at {RESERVATION_LOCATION}", line.quantity, line.sku);
        let held = Change {
            entity_type: "reservation",
            entity_id: &id,
            action: "created",
            before: None,
            after: Some(ReservationStatus::Held.as_str()),
            detail: Some(&detail),
        };
        audit::record(conn, held, actor, now).await?;
    }
    sqlx::query(
        "UPDATE idempotency_keys SET recovery_point = 'order_created', order_id = $3, updated_at = $4
         WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(&plan.order_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(Ok(PendingPayment {
        order_id: plan.order_id.clone(),
        payment_id: plan.payment_id.clone(),
        amount: priced.total,
        capture_method: plan.capture_method,
        provider_idempotency_key: plan.provider_idempotency_key.clone(),
        order_created_at: now,
        destination,
        transfer_group,
        hosted,
    }))
}

/// How the sellers of an order's products are paid.
enum SellerPayout {
    /// The shop's own products only.
    None,
    /// One seller's products, on the embedded checkout: a destination charge.
    Destination { account_id: String },
    /// Several sellers, a seller's and the shop's products, or a hosted page: one charge, and a
    /// transfer to each seller after capture.
    Transfers,
}

/// Refuses a cart with a product of a seller who cannot take charges; otherwise how its sellers
/// are paid.
async fn check_sellers(
    conn: &mut AnyConnection,
    cart_id: &str,
    hosted: bool,
) -> StoreResult<Result<SellerPayout, PlaceRefusal>> {
    let sellers: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT DISTINCT s.id, s.account_id, s.charges_enabled
         FROM cart_lines l JOIN variants v ON v.sku = l.sku JOIN products p ON p.id = v.product_id
         JOIN sellers s ON s.id = p.seller_id
         WHERE l.cart_id = $1 ORDER BY s.id",
    )
    .bind(cart_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    if let Some((seller_id, ..)) = sellers
        .iter()
        .find(|(_, account, enabled)| account.is_none() || *enabled == 0)
    {
        return Ok(Err(PlaceRefusal::SellerUnavailable {
            seller_id: seller_id.clone(),
        }));
    }
    if sellers.is_empty() {
        return Ok(Ok(SellerPayout::None));
    }
    let unsold: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM cart_lines l JOIN variants v ON v.sku = l.sku
         JOIN products p ON p.id = v.product_id WHERE l.cart_id = $1 AND p.seller_id IS NULL",
    )
    .bind(cart_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(Ok(match sellers.as_slice() {
        [(_, Some(account_id), _)] if unsold == 0 && !hosted => SellerPayout::Destination {
            account_id: account_id.clone(),
        },
        _ => SellerPayout::Transfers,
    }))
}

/// The finish phase found what the provider created: the payment moves on from `creating`,
/// unless an event about it arrived first (risk G1) and moved it further already.
async fn payment_created(
    conn: &mut AnyConnection,
    order_id: &str,
    payment_id: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let created = PaymentEvent::Created;
    match transitions::payment(conn, order_id, payment_id, created, actor, now).await? {
        Outcome::Moved(_) | Outcome::Refused(_) => Ok(()),
    }
}

/// How many orders `sql` counts for `value` since `since`, and the oldest one's time.
async fn window_count(
    conn: &mut AnyConnection,
    sql: &'static str,
    value: &str,
    since: i64,
) -> StoreResult<WindowCount> {
    let (count, oldest_at): (i64, Option<i64>) = sqlx::query_as(sql)
        .bind(value)
        .bind(since)
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(WindowCount { count, oldest_at })
}

/// What the hosted page of an order is created from: its frozen lines and e-mail.
async fn hosted_checkout(
    conn: &mut AnyConnection,
    order_id: &str,
    expires_at: i64,
) -> StoreResult<HostedCheckout> {
    let rows = sqlx::query(
        "SELECT l.sku, l.product_name, l.quantity, l.unit_amount, o.email
         FROM order_lines l JOIN orders o ON o.id = l.order_id
         WHERE l.order_id = $1 ORDER BY l.line_no",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    let mut email = String::new();
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let sku: String = row.try_get("sku").map_err(unavailable)?;
        let product: Option<String> = row.try_get("product_name").map_err(unavailable)?;
        email = row.try_get("email").map_err(unavailable)?;
        lines.push(SessionLine {
            name: match product {
                Some(product) => format!("{product} ({sku})"),
                None => sku,
            },
            unit_amount_minor: row.try_get("unit_amount").map_err(unavailable)?,
            quantity: row.try_get("quantity").map_err(unavailable)?,
        });
    }
    Ok(HostedCheckout {
        lines,
        email,
        expires_at,
    })
}

/// Reserves every line with a conditional update (never below zero available); returns the SKUs
/// that ran short. SKUs are taken in sorted order so concurrent checkouts lock rows in the same
/// order and cannot deadlock on PostgreSQL.
async fn reserve_stock(
    conn: &mut AnyConnection,
    priced: &PricedCart,
    now: i64,
) -> StoreResult<Vec<String>> {
    let mut lines: Vec<_> = priced.lines.iter().collect();
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    let mut short = Vec::new();
    for line in lines {
        let reserved = sqlx::query(
            "UPDATE inventory_levels SET reserved = reserved + $3, updated_at = $4
             WHERE sku = $1 AND location = $2 AND on_hand - reserved - committed >= $3",
        )
        .bind(&line.sku)
        .bind(RESERVATION_LOCATION)
        .bind(line.quantity)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        if reserved.rows_affected() != 1 {
            short.push(line.sku.clone());
        }
    }
    Ok(short)
}

async fn insert_order(
    conn: &mut AnyConnection,
    cart_id: &str,
    plan: &OrderPlan,
    priced: &PricedCart,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO orders (id, cart_id, status, currency, subtotal, total, capture_method, email,
             shipping_name, shipping_line1, shipping_city, shipping_postal_code, shipping_country, created_at, updated_at,
             capture_due_at, client_ip)
         VALUES ($1, $2, 'pending_payment', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15)",
    )
    .bind(&plan.order_id)
    .bind(cart_id)
    .bind(priced.total.currency().code())
    .bind(priced.subtotal.amount_minor())
    .bind(priced.total.amount_minor())
    .bind(plan.capture_method.as_str())
    .bind(&plan.email)
    .bind(&plan.shipping.name)
    .bind(&plan.shipping.line1)
    .bind(&plan.shipping.city)
    .bind(&plan.shipping.postal_code)
    .bind(&plan.shipping.country)
    .bind(now)
    .bind(plan.capture_due_at)
    .bind(plan.client_ip.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    for (index, line) in priced.lines.iter().enumerate() {
        let line_no = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, sku, product_name, quantity, unit_amount, amount, credits, seller_id)
             VALUES ($1, $2, $3, (SELECT p.name FROM products p JOIN variants v ON v.product_id = p.id WHERE v.sku = $3),
                     $4, $5, $6, (SELECT v.credits FROM variants v WHERE v.sku = $3),
                     (SELECT p.seller_id FROM products p JOIN variants v ON v.product_id = p.id WHERE v.sku = $3))",
        )
        .bind(&plan.order_id)
        .bind(line_no)
        .bind(&line.sku)
        .bind(line.quantity)
        .bind(line.unit_price.amount_minor())
        .bind(line.amount.amount_minor())
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO reservations (id, order_id, sku, location, quantity, status, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'held', $6, $7, $7)",
        )
        .bind(reservation_id(&plan.order_id, index))
        .bind(&plan.order_id)
        .bind(&line.sku)
        .bind(RESERVATION_LOCATION)
        .bind(line.quantity)
        .bind(plan.reservation_expires_at)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

/// The reservation of the order's line at `index` (0-based).
fn reservation_id(order_id: &str, index: usize) -> String {
    format!("res_{}_{}", order_id.trim_start_matches("ord_"), index + 1)
}

/// The destination charge a payment row holds, if it is one.
pub(crate) fn destination_of(row: &AnyRow) -> StoreResult<Option<Destination>> {
    let account: Option<String> = row.try_get("destination_account").map_err(unavailable)?;
    let fee: Option<i64> = row.try_get("application_fee").map_err(unavailable)?;
    Ok(account.map(|account_id| Destination {
        account_id,
        application_fee_minor: fee.unwrap_or(0),
    }))
}

async fn insert_payment(
    conn: &mut AnyConnection,
    plan: &OrderPlan,
    priced: &PricedCart,
    destination: Option<&Destination>,
    transfer_group: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    let with_sellers = destination.is_some() || transfer_group.is_some();
    sqlx::query(
        "INSERT INTO payments (id, order_id, attempt, status, amount, currency, capture_method,
             provider_idempotency_key, created_at, updated_at, flow, checkout_expires_at,
             destination_account, application_fee, platform_fee_bps, transfer_group)
         VALUES ($1, $2, 1, 'creating', $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&plan.payment_id)
    .bind(&plan.order_id)
    .bind(priced.total.amount_minor())
    .bind(priced.total.currency().code())
    .bind(plan.capture_method.as_str())
    .bind(&plan.provider_idempotency_key)
    .bind(now)
    .bind(if plan.hosted_expires_at.is_some() {
        "hosted"
    } else {
        "embedded"
    })
    .bind(plan.hosted_expires_at)
    .bind(destination.map(|d| d.account_id.as_str()))
    .bind(destination.map(|d| d.application_fee_minor))
    .bind(with_sellers.then_some(plan.platform_fee_bps))
    .bind(transfer_group)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}
