//! Operator commands run from a terminal, each printing a table a person reads.
//! `kassa reconcile`: in live mode one reconciliation run against the database and Stripe, with a
//! progress bar; in sandbox mode the emulator lives inside `kassa serve`, so the running server
//! is asked to reconcile. `kassa orders --status …` and `kassa jobs` read the database;
//! `kassa resolve` resolves a flagged order (live mode: the database and Stripe; sandbox mode:
//! the running server).

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kassa_app::reconcile::{ReconcileProgress, ReconcileReport};
use serde_json::Value;

use kassa_app::attention::ResolveRequest;
use kassa_app::ports::{Actor, Gauges, MetricsStore, OrderFilter, OrderStore, OrderSummary};
use kassa_domain::order::OrderStatus;
use kassa_http::wire::OrderBody;
use kassa_store::SqlStore;

use crate::config::{Config, Mode};
use crate::serve;

/// A progress bar that follows reconciliation's steps.
struct Bar(ProgressBar);

impl ReconcileProgress for Bar {
    fn step(&self, name: &'static str, total: Option<u64>) {
        self.0.set_position(0);
        match total {
            Some(total) => {
                self.0.set_length(total);
                self.0.set_style(
                    ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
            None => self.0.set_style(
                ProgressStyle::with_template("{msg:>16} {pos} read")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        }
        self.0.set_message(name);
    }

    fn advance(&self) {
        self.0.inc(1);
    }
}

pub async fn reconcile(config: &Config) -> Result<()> {
    let summary = match &config.mode {
        Mode::Stripe(_) => {
            let app = serve::live_app(config).await?;
            let bar = Bar(ProgressBar::new(0));
            let report = app.reconcile(&bar).await?;
            bar.0.finish_and_clear();
            summary_of(&report)
        }
        Mode::Sandbox { .. } => reconcile_in_the_sandbox(config).await?,
    };
    print!("{summary}");
    Ok(())
}

/// In sandbox mode: `POST /v1/admin/reconcile` on the running `kassa serve`.
async fn reconcile_in_the_sandbox(config: &Config) -> Result<String> {
    let body = ask_the_sandbox(config, "reconcile").await?;
    Ok(summary_of(&report_from(&body)))
}

/// In sandbox mode (the emulator lives inside `kassa serve`): `POST /v1/admin/{action}` on the
/// running server, with the sandbox's secret key.
async fn ask_the_sandbox(config: &Config, action: &str) -> Result<Value> {
    let secret = serve::sandbox_secret_key(config)?;
    let url = format!("http://{}/v1/admin/{action}", config.listen);
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("asking the sandbox at {url}"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let answer = reqwest::Client::new()
        .post(&url)
        .bearer_auth(secret)
        .send()
        .await
        .with_context(|| format!("is `kassa serve` running? cannot reach {url}"))?;
    spinner.finish_and_clear();
    if !answer.status().is_success() {
        bail!("{url} answered {}", answer.status());
    }
    answer
        .json()
        .await
        .context("the sandbox's answer is not JSON")
}

/// The reconciliation report the sandbox answered.
fn report_from(body: &Value) -> ReconcileReport {
    let count = |field: &str| usize::try_from(body[field].as_u64().unwrap_or(0)).unwrap_or(0);
    let differences = body["differences"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|d| {
                    let text = |f: &str| d[f].as_str().unwrap_or_default().to_owned();
                    (text("order_id"), text("what"))
                })
                .collect()
        })
        .unwrap_or_default();
    ReconcileReport {
        payments_checked: count("payments_checked"),
        refunds_checked: count("refunds_checked"),
        events_read: count("events_read"),
        events_recovered: count("events_recovered"),
        sellers_checked: count("sellers_checked"),
        provider_errors: count("provider_errors"),
        differences,
    }
}

/// `kassa check`: the invariants of docs/risks.md; `Ok(false)` when any is broken (exit status 1).
pub async fn check(config: &Config) -> Result<bool> {
    let body = match &config.mode {
        Mode::Stripe(_) => {
            let app = serve::live_app(config).await?;
            kassa_http::routes::admin::check_body(&app.check_invariants().await?)
        }
        Mode::Sandbox { .. } => ask_the_sandbox(config, "check").await?,
    };
    print!("{}", check_summary(&body));
    Ok(body["passed"].as_bool().unwrap_or(false))
}

fn check_summary(body: &Value) -> String {
    let violations = body["violations"].as_array().cloned().unwrap_or_default();
    let verdict = if violations.is_empty() {
        "PASS"
    } else {
        "FAIL"
    };
    let count = |field: &str| usize::try_from(body[field].as_u64().unwrap_or(0)).unwrap_or(0);
    let mut out = counts_table(
        &format!("invariant check: {verdict}"),
        &[
            (
                "payments compared with the provider",
                count("payments_checked"),
            ),
            ("provider errors (not compared)", count("provider_errors")),
            ("violations", violations.len()),
        ],
    );
    for violation in &violations {
        let ids: Vec<&str> = violation["ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "  - invariant {}: {} [{}]\n",
            violation["invariant"].as_u64().unwrap_or(0),
            violation["what"].as_str().unwrap_or_default(),
            ids.join(", ")
        ));
    }
    out
}

/// Most orders `kassa orders` lists.
const ORDERS_LIST_MAX: i64 = 200;

/// `kassa orders --status <status|needs_attention>`: newest first.
pub async fn orders(config: &Config, status: &str) -> Result<()> {
    let filter = match status {
        "needs_attention" => OrderFilter::NeedsAttention,
        other => OrderFilter::Status(OrderStatus::parse(other).with_context(|| {
            let names: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!(
                "--status must be needs_attention or one of {}",
                names.join(", ")
            )
        })?),
    };
    let store = SqlStore::open_with(&config.database_url, Some(config.commit_mode)).await?;
    let orders = store.orders_matching(filter, ORDERS_LIST_MAX).await?;
    store.close().await;
    print!("{}", orders_table(&orders));
    Ok(())
}

fn orders_table(orders: &[OrderSummary]) -> String {
    let mut out = format!(
        "{:<36}  {:<18}  {:>12}  {:<10}  {}\n",
        "order", "status", "total", "operation", "needs attention"
    );
    for order in orders {
        out.push_str(&format!(
            "{:<36}  {:<18}  {:>12}  {:<10}  {}\n",
            order.id,
            order.status.as_str(),
            order.total.to_string(),
            order.pending_operation.as_deref().unwrap_or("-"),
            order.needs_attention.as_deref().unwrap_or("-"),
        ));
    }
    out.push_str(&format!("{} orders\n", orders.len()));
    out
}

/// `kassa resolve ORDER --action … --note …`: a person's way out for a flagged order, through
/// the use case `POST /v1/orders/{id}/resolve` runs (see docs/guides/after-payment.md, "When an order needs
/// attention"). In live mode against the database and Stripe, with the operator's note in the
/// audit trail; in sandbox mode the emulator lives inside `kassa serve`, so the running server is
/// asked.
pub async fn resolve(config: &Config, order_id: &str, action: &str, note: &str) -> Result<()> {
    let body = match &config.mode {
        Mode::Stripe(_) => {
            let app = serve::live_app(config).await?;
            let actor = Actor {
                kind: "operator (kassa resolve)".into(),
                request_id: None,
                client_ip: None,
            };
            let request = ResolveRequest {
                action: action.to_owned(),
                note: note.to_owned(),
            };
            let order = app
                .resolve_attention(order_id, request, &actor)
                .await
                .map_err(|error| anyhow::anyhow!("{order_id} was not resolved: {error}"))?;
            serde_json::to_value(OrderBody::full(&order))?
        }
        Mode::Sandbox { .. } => resolve_in_the_sandbox(config, order_id, action, note).await?,
    };
    print!("{}", resolved_summary(&body));
    Ok(())
}

/// In sandbox mode: `POST /v1/orders/{id}/resolve` on the running `kassa serve`.
async fn resolve_in_the_sandbox(
    config: &Config,
    order_id: &str,
    action: &str,
    note: &str,
) -> Result<Value> {
    let secret = serve::sandbox_secret_key(config)?;
    let url = format!("http://{}/v1/orders/{order_id}/resolve", config.listen);
    let answer = reqwest::Client::new()
        .post(&url)
        .bearer_auth(secret)
        .json(&serde_json::json!({ "action": action, "note": note }))
        .send()
        .await
        .with_context(|| format!("is `kassa serve` running? cannot reach {url}"))?;
    let status = answer.status();
    let body: Value = answer
        .json()
        .await
        .context("the sandbox's answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{order_id} was not resolved ({status}): {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    Ok(body)
}

/// The resolved order, as a person reads it.
fn resolved_summary(order: &Value) -> String {
    let text = |field: &str| order[field].as_str().unwrap_or("-").to_owned();
    let mut out = format!(
        "order {}: {}, captured {}, refunded {}\n",
        text("id"),
        text("status"),
        order["captured_amount"].as_i64().unwrap_or(0),
        order["refunded_amount"].as_i64().unwrap_or(0),
    );
    match order["attention"]["reason"].as_str() {
        // An action whose moves flagged the order anew (a refund refused at once, say).
        Some(reason) => out.push_str(&format!(
            "  needs attention again: {reason}: {}\n",
            order["attention"]["detail"].as_str().unwrap_or_default()
        )),
        None => out.push_str("  resolved: no longer needs attention\n"),
    }
    for refund in order["refunds"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  refund {}: {} {}\n",
            refund["id"].as_str().unwrap_or_default(),
            refund["amount"].as_i64().unwrap_or(0),
            refund["status"].as_str().unwrap_or_default(),
        ));
    }
    out
}

/// `kassa jobs`: the work the background workers have, from the database.
pub async fn jobs(config: &Config) -> Result<()> {
    let store = SqlStore::open_with(&config.database_url, Some(config.commit_mode)).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let gauges = store.gauges(now).await?;
    store.close().await;
    print!("{}", jobs_table(&gauges));
    Ok(())
}

fn jobs_table(gauges: &Gauges) -> String {
    let mut out = format!("{:<44} {:>10}\n", "work", "count");
    let mut row = |label: String, count: i64| out.push_str(&format!("{label:<44} {count:>10}\n"));
    for (queue, due, lag) in &gauges.due_by_queue {
        row(format!("{queue}: due now (oldest waiting {lag} s)"), *due);
    }
    for (operation, count) in &gauges.pending_operations {
        row(format!("orders with a {operation} in progress"), *count);
    }
    for (age, count) in &gauges.payments_in_motion_by_age {
        row(format!("payments not final, {age} old"), *count);
    }
    row(
        "units held by unpaid checkouts".into(),
        gauges.reservations_held_units,
    );
    row(
        "orders needing attention".into(),
        gauges.orders_needing_attention,
    );
    for (reason, count) in &gauges.attention_by_reason {
        row(format!("  flagged {reason}"), *count);
    }
    row(
        "subscriptions needing attention".into(),
        gauges.subscriptions_needing_attention,
    );
    for (status, count) in &gauges.inbox_by_status {
        row(format!("webhook events {status}"), *count);
    }
    for (status, count) in &gauges.outbox_by_status {
        row(format!("notifications {status}"), *count);
    }
    out
}

/// A title, then one labelled count per line, aligned: how the operator commands summarize.
pub(crate) fn counts_table(title: &str, rows: &[(&str, usize)]) -> String {
    let mut out = format!("{title}\n");
    for (label, value) in rows {
        out.push_str(&format!("  {label:<36} {value:>8}\n"));
    }
    out
}

/// The report as a table a person reads.
fn summary_of(report: &ReconcileReport) -> String {
    let mut out = counts_table(
        "reconciliation",
        &[
            ("payments checked", report.payments_checked),
            ("refunds checked", report.refunds_checked),
            ("provider events read", report.events_read),
            ("missed events recovered", report.events_recovered),
            ("sellers' readiness read", report.sellers_checked),
            ("provider errors (retried next run)", report.provider_errors),
            ("differences (orders flagged)", report.differences.len()),
        ],
    );
    for (order_id, what) in &report.differences {
        out.push_str(&format!("  - {order_id}: {what}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_every_count_and_difference() {
        let report = ReconcileReport {
            payments_checked: 3,
            events_recovered: 2,
            differences: vec![("ord_1".into(), "payment pay_1 differs".into())],
            ..ReconcileReport::default()
        };
        let text = summary_of(&report);
        assert!(text.contains("payments checked"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("missed events recovered") && l.ends_with('2'))
        );
        assert!(text.contains("- ord_1: payment pay_1 differs"));
    }

    #[test]
    fn a_resolution_summary_says_whether_the_order_still_needs_attention() {
        let resolved = serde_json::json!({
            "id": "ord_1", "status": "canceled", "captured_amount": 2500, "refunded_amount": 0,
            "refunds": [{"id": "ref_resolve_ord_1_1", "amount": 2500, "status": "pending"}],
        });
        let text = resolved_summary(&resolved);
        assert!(
            text.starts_with("order ord_1: canceled, captured 2500"),
            "{text}"
        );
        assert!(
            text.contains("resolved: no longer needs attention"),
            "{text}"
        );
        assert!(
            text.contains("refund ref_resolve_ord_1_1: 2500 pending"),
            "{text}"
        );
        let again = serde_json::json!({
            "id": "ord_1", "status": "paid",
            "attention": {"reason": "kassa_refund_failed", "detail": "refused"},
        });
        assert!(
            resolved_summary(&again).contains("needs attention again: kassa_refund_failed"),
            "{}",
            resolved_summary(&again)
        );
    }

    #[test]
    fn the_jobs_table_names_each_queue_with_its_count() {
        let gauges = Gauges {
            due_by_queue: vec![("outbox", 3, 12)],
            orders_needing_attention: 2,
            ..Gauges::default()
        };
        let text = jobs_table(&gauges);
        assert!(text.lines().any(|l| l.starts_with("outbox: due now (oldest waiting 12 s)") && l.ends_with('3')), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("orders needing attention") && l.ends_with('2')),
            "{text}"
        );
    }
}
