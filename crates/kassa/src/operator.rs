//! Operator commands run from a terminal. `kassa reconcile`: in live mode one reconciliation run
//! against the database and Stripe, with a progress bar; in sandbox mode the emulator lives
//! inside `kassa serve`, so the running server is asked to reconcile. Both end with a summary.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kassa_app::reconcile::{ReconcileProgress, ReconcileReport};
use serde_json::Value;

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
        Mode::Sandbox { .. } => ask_the_sandbox(config).await?,
    };
    print!("{summary}");
    Ok(())
}

/// In sandbox mode: `POST /v1/admin/reconcile` on the running `kassa serve`.
async fn ask_the_sandbox(config: &Config) -> Result<String> {
    let secret = serve::sandbox_secret_key(config)?;
    let url = format!("http://{}/v1/admin/reconcile", config.listen);
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
    let body: Value = answer
        .json()
        .await
        .context("the sandbox's answer is not JSON")?;
    let count = |field: &str| body[field].as_u64().unwrap_or(0);
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
    let report = ReconcileReport {
        payments_checked: usize::try_from(count("payments_checked")).unwrap_or(0),
        refunds_checked: usize::try_from(count("refunds_checked")).unwrap_or(0),
        events_read: usize::try_from(count("events_read")).unwrap_or(0),
        events_recovered: usize::try_from(count("events_recovered")).unwrap_or(0),
        provider_errors: usize::try_from(count("provider_errors")).unwrap_or(0),
        differences,
    };
    Ok(summary_of(&report))
}

/// The report as a table a person reads.
fn summary_of(report: &ReconcileReport) -> String {
    let rows = [
        ("payments checked", report.payments_checked),
        ("refunds checked", report.refunds_checked),
        ("provider events read", report.events_read),
        ("missed events recovered", report.events_recovered),
        ("provider errors (retried next run)", report.provider_errors),
        ("differences (orders flagged)", report.differences.len()),
    ];
    let mut out = String::from("reconciliation\n");
    for (label, value) in rows {
        out.push_str(&format!("  {label:<36} {value:>8}\n"));
    }
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
}
