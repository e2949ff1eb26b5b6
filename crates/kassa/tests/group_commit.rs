//! Group commit under `kill -9` (issue 12): the real `kassa serve` with group commit on (SQLite's
//! default, switched on for PostgreSQL), clients creating carts as fast as it answers, and the
//! process killed by the client that receives the 50th answer, the moment it receives it, while
//! the other requests are in flight and batches are open and committing. After a restart on the
//! same database every cart whose creation was answered is there: no request is answered before
//! the batch holding its work is durable. (Answering before the commit makes this fail: the
//! kill lands inside the commit of the batch that held the answered cart.)

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::PUBLISHABLE;
use kassa_testkit::{TestDb, both_backends};
use serde_json::{Value, json};

const CLIENTS: usize = 16;
/// Carts answered before the kill: several batches have committed, the next ones are open.
const ANSWERED_BEFORE_KILL: usize = 50;

fn start(database_url: &str) -> common::Kassa {
    common::serve(
        database_url,
        &[
            ("KASSA_SANDBOX_SEED", "none"),
            ("KASSA_GROUP_COMMIT", "on"),
            // Each batch stays open this long before its commit, as on a slow disk: wide open
            // for the kill to land in.
            ("KASSA_GROUP_COMMIT_WAIT_MS", "100"),
        ],
        None,
    )
}

/// What the clients share: the server to kill, the carts whose creation was answered, and how
/// many requests were sent and not (yet) answered.
struct Seen {
    server: Mutex<common::Process>,
    answered: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    in_flight_at_kill: AtomicUsize,
    killed: AtomicBool,
}

async fn create_carts(http: reqwest::Client, base: String, seen: Arc<Seen>) {
    while !seen.killed.load(Ordering::SeqCst) {
        seen.in_flight.fetch_add(1, Ordering::SeqCst);
        let response = http
            .post(format!("{base}/v1/carts"))
            .bearer_auth(PUBLISHABLE)
            .json(&json!({"currency": "eur"}))
            .send()
            .await;
        let created: Option<Value> = match response {
            Ok(response) if response.status().is_success() => response.json().await.ok(),
            _ => None,
        };
        seen.in_flight.fetch_sub(1, Ordering::SeqCst);
        let Some(id) = created.as_ref().and_then(|cart| cart["id"].as_str()) else {
            // The server is gone: this client is done.
            return;
        };
        let answered = {
            let mut answered = seen.answered.lock().unwrap_or_else(PoisonError::into_inner);
            answered.push(id.to_owned());
            answered.len()
        };
        if answered >= ANSWERED_BEFORE_KILL && !seen.killed.swap(true, Ordering::SeqCst) {
            seen.in_flight_at_kill
                .store(seen.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
            seen.server
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .kill();
        }
    }
}

async fn group_commit_kill_9_mid_batch_loses_nothing_that_was_answered(db: TestDb) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let common::Kassa { process, base } = start(&db.url);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let seen = Arc::new(Seen {
        server: Mutex::new(process),
        answered: Mutex::default(),
        in_flight: AtomicUsize::new(0),
        in_flight_at_kill: AtomicUsize::new(0),
        killed: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(create_carts(http.clone(), base.clone(), seen.clone())))
        .collect();
    for client in clients {
        client.await.expect("no client panics");
    }
    assert!(
        seen.killed.load(Ordering::SeqCst),
        "the server stopped answering before {ANSWERED_BEFORE_KILL} carts"
    );
    let in_flight_at_kill = seen.in_flight_at_kill.load(Ordering::SeqCst);
    assert!(
        in_flight_at_kill > 0,
        "the kill came while requests were in flight"
    );
    let answered = seen
        .answered
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();

    let kassa = start(&db.url);
    let mut lost = Vec::new();
    for id in &answered {
        let status = http
            .get(format!("{}/v1/carts/{id}", kassa.base))
            .bearer_auth(PUBLISHABLE)
            .send()
            .await
            .expect("the restarted server answers")
            .status();
        if status != reqwest::StatusCode::OK {
            lost.push((id.clone(), status));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} answered carts were lost by the kill ({in_flight_at_kill} requests in flight): {lost:?}",
        lost.len(),
        answered.len()
    );
}
both_backends!(group_commit_kill_9_mid_batch_loses_nothing_that_was_answered);
