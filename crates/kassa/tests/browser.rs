//! The demo storefront in a real browser (issue 13): a sandbox `kassa serve`, and
//! `browser/demo_scenarios.py` driving Debian's headless Chromium through selenium and Debian's
//! chromedriver — buy on the hosted page; declined then paid; 3-D Secure; cancel and return; an
//! expired session releasing its stock; the embedded flow, with the order token nowhere in a
//! URL, a `Referer` or browser storage (risk S4). Screenshots of each scenario's last page are
//! kept in `target/browser-artifacts/`.

mod common;

use std::process::Command;

use kassa_store::Backend;
use kassa_testkit::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_s4_the_demo_storefront_works_in_a_real_browser_and_leaks_no_token() {
    let python = common::venv_tool("python");
    for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(program).exists(),
            "{program} is missing: scripts/test installs Debian's chromium and chromium-driver"
        );
    }
    let db = TestDb::new(Backend::Sqlite).await;
    let kassa = common::serve(&db.url, &[], None);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/demo_scenarios.py"
    );
    let artifacts = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/browser-artifacts"
    );
    let base = kassa.base.clone();
    let database = db.url.trim_start_matches("sqlite://").to_owned();
    let output = tokio::task::spawn_blocking(move || {
        // Bounded: a browser that hangs fails the test instead of the whole suite.
        Command::new("timeout")
            .arg("600")
            .arg(python)
            .arg(script)
            .args([base.as_str(), common::SECRET, artifacts, database.as_str()])
            // Selenium must use the given browser and driver, never fetch its own.
            .env("SE_OFFLINE", "true")
            .output()
    })
    .await
    .expect("joined")
    .expect("the scenarios run");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "browser scenarios failed:\n{report}"
    );
    assert_eq!(report.matches("ok     ").count(), 6, "{report}");
    drop(kassa);
}
