//! Disputes the provider reports (`charge.dispute.created|closed`): the order moves to
//! `disputed` and back to where it was (`plan::decide_dispute`), with a notification each way.

use kassa_app::ports::{Actor, Applied, ProviderDispute, StoreResult};
use kassa_domain::order::OrderStatus;
use kassa_domain::plan::decide_dispute;
use sqlx::AnyConnection;

use crate::db::unavailable;
use crate::{outbox, transitions};

pub(crate) async fn record(
    conn: &mut AnyConnection,
    dispute: &ProviderDispute,
    closed: bool,
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    let Some(intent_id) = dispute.payment_intent_id.as_deref() else {
        return Ok(Applied::Ignored(format!(
            "dispute {} names no payment intent",
            dispute.id
        )));
    };
    let order_id: Option<String> =
        sqlx::query_scalar("SELECT order_id FROM payments WHERE provider_payment_intent_id = $1")
            .bind(intent_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
    let Some(order_id) = order_id else {
        return Ok(Applied::Ignored(format!("no Kassa order for {intent_id}")));
    };
    let status = transitions::lock_order(conn, &order_id).await?;
    let before_dispute: Option<String> =
        sqlx::query_scalar("SELECT status_before_dispute FROM orders WHERE id = $1")
            .bind(&order_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
    let before_dispute = before_dispute.as_deref().and_then(OrderStatus::parse);
    let Some((event, step)) = decide_dispute(status, before_dispute, closed) else {
        return Ok(Applied::Ignored(format!(
            "order {order_id} is {status}; dispute event not applicable"
        )));
    };
    transitions::move_order(conn, &order_id, event, step, actor, now).await?;
    if !closed {
        // Remembered only once the dispute really opened, to return to when it closes.
        sqlx::query("UPDATE orders SET status_before_dispute = $2 WHERE id = $1")
            .bind(&order_id)
            .bind(status.as_str())
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
    }
    let topic = if closed {
        "order.dispute_closed"
    } else {
        "order.disputed"
    };
    outbox::notify(conn, topic, &order_id, now).await?;
    Ok(Applied::Done)
}
