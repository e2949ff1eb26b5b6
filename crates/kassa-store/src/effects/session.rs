//! A Checkout Session event: the session and its PaymentIntent are recorded on Kassa's payment,
//! and the payment state the event reports goes through the same plan as the PaymentIntent's own
//! events (risk W1: whichever arrives first moves the payment, the other finds it moved).

use kassa_app::ports::{
    Actor, Applied, CaptureMethod, ProviderCheckoutSession, ProviderPaymentIntent, StoreError,
    StoreResult,
};
use kassa_domain::payment::PaymentStatus;
use sqlx::{AnyConnection, Row};

use super::payment::{PaymentRow, observe_for};
use crate::db::{SqlStore, unavailable};
use crate::transitions;

pub(crate) async fn observe(
    store: &SqlStore,
    conn: &mut AnyConnection,
    session: &ProviderCheckoutSession,
    reports: Option<PaymentStatus>,
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    let Some((payment, capture_method)) = payment_for_session(conn, session).await? else {
        return Ok(Applied::Ignored(format!(
            "no Kassa payment for {}",
            session.id
        )));
    };
    // With manual capture a session reports an authorization at most, never money taken; the
    // PaymentIntent's own events say which (a capture is Kassa's to make, risk W1).
    let reports = reports.filter(|status| {
        *status != PaymentStatus::Succeeded || capture_method != CaptureMethod::Manual
    });
    let Some(status) = reports else {
        return Ok(Applied::Ignored(format!(
            "{} is complete but unpaid: its PaymentIntent's own events report the payment",
            session.id
        )));
    };
    // The session's amount stands for its PaymentIntent's: the plan checks it against the order
    // (risk W6), and only money a paid session reports counts as received.
    let observed = ProviderPaymentIntent {
        destination: None,
        id: session.payment_intent_id.clone().unwrap_or_default(),
        status,
        amount_minor: session.amount_total_minor,
        amount_capturable_minor: 0,
        amount_received_minor: if status == PaymentStatus::Succeeded {
            session.amount_total_minor
        } else {
            0
        },
        currency: session.currency.clone(),
        client_secret: None,
        latest_charge: None,
        last_error: (status == PaymentStatus::RequiresPaymentMethod)
            .then(|| "async_payment_failed".to_owned()),
        metadata: session.metadata.clone(),
    };
    observe_for(store, conn, &payment, &observed, actor, now).await
}

/// Kassa's hosted payment for a session and its capture method: by session id, or — for an
/// event that arrives before the checkout recorded the id (risk G1) — by the payment id Kassa
/// put in the session's metadata. Its order is locked first, as every plan locks it; then the
/// session id, and its PaymentIntent's once there is one, are recorded on the payment.
async fn payment_for_session(
    conn: &mut AnyConnection,
    session: &ProviderCheckoutSession,
) -> StoreResult<Option<(PaymentRow, CaptureMethod)>> {
    let by_metadata = session
        .metadata
        .iter()
        .find(|(key, _)| key == "kassa_payment_id")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let row = sqlx::query(
        "SELECT id, order_id, capture_method FROM payments
         WHERE flow = 'hosted'
           AND (provider_checkout_session_id = $1
                OR (id = $2 AND provider_checkout_session_id IS NULL))",
    )
    .bind(&session.id)
    .bind(by_metadata)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    let payment = PaymentRow {
        id: row.try_get("id").map_err(unavailable)?,
        order_id: row.try_get("order_id").map_err(unavailable)?,
    };
    let capture: String = row.try_get("capture_method").map_err(unavailable)?;
    let capture_method = CaptureMethod::parse(&capture)
        .ok_or_else(|| StoreError::Corrupt(format!("capture method {capture:?}")))?;
    transitions::lock_order(conn, &payment.order_id).await?;
    sqlx::query(
        "UPDATE payments SET provider_checkout_session_id = $2
         WHERE id = $1 AND provider_checkout_session_id IS NULL",
    )
    .bind(&payment.id)
    .bind(&session.id)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if let Some(intent_id) = &session.payment_intent_id {
        sqlx::query(
            "UPDATE payments SET provider_payment_intent_id = $2
             WHERE id = $1 AND provider_payment_intent_id IS NULL",
        )
        .bind(&payment.id)
        .bind(intent_id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    }
    Ok(Some((payment, capture_method)))
}
