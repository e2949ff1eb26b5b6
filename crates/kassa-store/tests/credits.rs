//! The credit ledger on both backends (seed 003): one grant per business key however often and
//! however concurrently it is asked for (risk W1), debits that never overdraw even when they
//! race, replays that return the entry already written, one customer per e-mail.

use std::sync::Arc;

use kassa_app::ports::{CreditStore, LedgerWrite, NewCreditEntry, PlanRecord};
use kassa_domain::credits::EntryKind;
use kassa_testkit::{TestDb, both_backends};

fn entry(customer_id: &str, n: usize, amount: i64, key: &str) -> NewCreditEntry {
    NewCreditEntry {
        id: format!("cre_{n}_{}", uuid::Uuid::new_v4().simple()),
        customer_id: customer_id.to_owned(),
        amount,
        business_key: key.to_owned(),
        reason: None,
        subscription_id: None,
    }
}

/// Writes `entries` all at once, each in a task of its own; their outcomes.
async fn concurrently(
    store: &Arc<kassa_store::SqlStore>,
    kind: EntryKind,
    entries: Vec<NewCreditEntry>,
) -> Vec<LedgerWrite> {
    let mut tasks = tokio::task::JoinSet::new();
    for entry in entries {
        let store = store.clone();
        tasks.spawn(async move { store.write_entry(kind, &entry, 1_000).await });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome.expect("task").expect("written or refused"));
    }
    outcomes
}

async fn risk_w1_one_grant_per_business_key_however_often_it_is_asked(db: TestDb) {
    let store = Arc::new(db.store.clone());
    let customer = store
        .customer_for_email("cus_1", "ada@example.com", 1)
        .await
        .expect("customer");
    // The invoice's grant asked for by many deliveries and handlers at once.
    let asks = (0..16)
        .map(|n| entry(&customer.id, n, 100, "invoice:in_1"))
        .collect();
    let outcomes = concurrently(&store, EntryKind::Grant, asks).await;
    let written = outcomes
        .iter()
        .filter(|o| matches!(o, LedgerWrite::Written(_)))
        .count();
    let already = outcomes
        .iter()
        .filter(|o| matches!(o, LedgerWrite::AlreadyThere(entry) if entry.amount == 100))
        .count();
    assert_eq!((written, already), (1, 15), "{outcomes:?}");
    let customer = store
        .customer(&customer.id)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(customer.balance, 100);
    assert_eq!(
        store
            .credit_entries(&customer.id, 100)
            .await
            .expect("entries")
            .len(),
        1
    );
}
both_backends!(risk_w1_one_grant_per_business_key_however_often_it_is_asked);

/// Twenty debits of 10 race for a balance of 100: ten are written, ten refused with the
/// balance, and it never goes below zero. A debit's replay returns the entry it wrote.
async fn debits_never_overdraw_even_when_they_race(db: TestDb) {
    let store = Arc::new(db.store.clone());
    let customer = store
        .customer_for_email("cus_1", "ada@example.com", 1)
        .await
        .expect("customer");
    let grant = entry(&customer.id, 0, 100, "invoice:in_1");
    store
        .write_entry(EntryKind::Grant, &grant, 1)
        .await
        .expect("grant");
    let debits = (0..20)
        .map(|n| entry(&customer.id, n, 10, &format!("debit:k{n}")))
        .collect();
    let outcomes = concurrently(&store, EntryKind::Debit, debits).await;
    let written = outcomes
        .iter()
        .filter(|o| matches!(o, LedgerWrite::Written(entry) if entry.amount == -10))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, LedgerWrite::Overdraft { balance: 0 }))
        .count();
    assert_eq!((written, refused), (10, 10), "{outcomes:?}");
    let balance = store
        .customer(&customer.id)
        .await
        .expect("read")
        .expect("there")
        .balance;
    assert_eq!(balance, 0);
    let Some(LedgerWrite::Written(spent)) = outcomes
        .iter()
        .find(|o| matches!(o, LedgerWrite::Written(_)))
    else {
        panic!("a debit was written: {outcomes:?}");
    };
    let again = entry(&customer.id, 99, 10, &spent.business_key);
    let replay = store
        .write_entry(EntryKind::Debit, &again, 2)
        .await
        .expect("replay");
    assert_eq!(replay, LedgerWrite::AlreadyThere(spent.clone()));
    let missing = store
        .write_entry(EntryKind::Debit, &entry("cus_nobody", 1, 10, "debit:x"), 2)
        .await
        .expect("refused");
    assert_eq!(missing, LedgerWrite::CustomerMissing);
}
both_backends!(debits_never_overdraw_even_when_they_race);

async fn one_customer_per_email_and_plans_round_trip(db: TestDb) {
    let store = Arc::new(db.store.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .customer_for_email(&format!("cus_{n}"), "ada@example.com", 1)
                .await
                .expect("customer")
                .id
        });
    }
    let mut ids = Vec::new();
    while let Some(id) = tasks.join_next().await {
        ids.push(id.expect("task"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let plan = PlanRecord {
        id: "plan_pro".into(),
        name: "Pro".into(),
        unit_amount_minor: 900,
        currency: "eur".into(),
        interval: "month".into(),
        credits: 500,
        created_at: 1,
    };
    store.create_plan(&plan).await.expect("created");
    assert_eq!(store.plan("plan_pro").await.expect("read"), Some(plan));
    assert_eq!(store.plan("plan_none").await.expect("read"), None);
}
both_backends!(one_customer_per_email_and_plans_round_trip);
