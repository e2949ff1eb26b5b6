//! Appending to the audit trail, always inside the transaction that makes the change (risk A1):
//! a change and its audit record commit together or not at all.

use kassa_app::ports::{Actor, StoreResult};
use sqlx::AnyConnection;

use crate::db::unavailable;

/// One audit entry: what changed on which entity, from which state to which.
pub(crate) struct Change<'a> {
    pub entity_type: &'a str,
    pub entity_id: &'a str,
    pub action: &'a str,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub detail: Option<&'a str>,
}

pub(crate) async fn record(
    conn: &mut AnyConnection,
    change: Change<'_>,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (entity_type, entity_id, action, actor, request_id, before_state, after_state, detail,
             created_at, client_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(change.entity_type)
    .bind(change.entity_id)
    .bind(change.action)
    .bind(&actor.kind)
    .bind(actor.request_id.as_deref())
    .bind(change.before)
    .bind(change.after)
    .bind(change.detail)
    .bind(now)
    .bind(actor.client_ip.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}
