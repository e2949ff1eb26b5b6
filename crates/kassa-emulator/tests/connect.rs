//! Connected accounts in the emulator over real HTTP (Stripe Connect, destination charges): an
//! Express account is made unable to take charges; a PaymentIntent sending money on to it is
//! refused as Stripe refuses it until the control API enables it (`account.updated`); then the
//! intent carries its destination and the platform's fee.

use kassa_emulator::{Emulator, EmulatorConfig};
use serde_json::json;

mod common;

use common::Client;

#[tokio::test]
async fn a_destination_charge_waits_for_its_account_to_take_charges() {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    let (status, account, _) = client
        .post(
            "/v1/accounts",
            &[
                ("type", "express"),
                ("email", "seller@example.com"),
                ("country", "DE"),
            ],
            Some("acct-1"),
        )
        .await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["charges_enabled"], false);
    let theirs = common::stripe_example("account");
    let missing: Vec<&String> = theirs
        .as_object()
        .expect("fixture")
        .keys()
        .filter(|key| account.get(key.as_str()).is_none())
        .collect();
    assert!(missing.is_empty(), "account lacks {missing:?}");
    let id = account["id"].as_str().expect("id");
    let charge = [
        ("amount", "2000"),
        ("currency", "eur"),
        ("transfer_data[destination]", id),
        ("application_fee_amount", "200"),
    ];
    let (status, refused, _) = client.post("/v1/payment_intents", &charge, None).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["code"],
        "insufficient_capabilities_for_transfer"
    );

    let ready = client
        .control(
            &format!("/_emulator/accounts/{id}"),
            json!({"charges_enabled": true, "payouts_enabled": true}),
        )
        .await;
    assert_eq!(ready["charges_enabled"], true);
    let events = client.get("/v1/events?limit=10").await;
    assert_eq!(events["data"][0]["type"], "account.updated");
    assert_eq!(events["data"][0]["data"]["object"]["charges_enabled"], true);

    let (status, intent, _) = client.post("/v1/payment_intents", &charge, None).await;
    assert_eq!(status, 200, "{intent}");
    assert_eq!(intent["transfer_data"]["destination"], id);
    assert_eq!(intent["application_fee_amount"], 200);
    let fetched = client.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(fetched["payouts_enabled"], true);
    emulator.shutdown().await;
}

/// The keys of Stripe's own example `resource` that `object` lacks.
fn lacking(object: &serde_json::Value, resource: &str) -> Vec<String> {
    let theirs = common::stripe_example(resource);
    theirs
        .as_object()
        .expect("fixture")
        .keys()
        .filter(|key| object.get(key.as_str()).is_none())
        .cloned()
        .collect()
}

/// Separate charges and transfers: a transfer to an enabled account, tied to a charge, never
/// more than the charge captured; the same key answers with the same transfer; reversals never
/// take back more than is left; both objects carry every key of Stripe's examples.
#[tokio::test]
async fn transfers_are_bounded_by_their_charge_and_reversals_by_their_transfer() {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    let (_, account, _) = client
        .post(
            "/v1/accounts",
            &[("type", "express"), ("country", "DE")],
            None,
        )
        .await;
    let account_id = account["id"].as_str().expect("id").to_owned();
    let intent = client.paid_intent().await;
    let charge = intent["latest_charge"].as_str().expect("charge").to_owned();
    let transfer = |amount: &'static str| {
        [
            ("amount", amount),
            ("currency", "eur"),
            ("destination", account_id.as_str()),
            ("transfer_group", "ord_1"),
            ("source_transaction", charge.as_str()),
        ]
    };
    let (status, refused, _) = client.post("/v1/transfers", &transfer("1500"), None).await;
    assert_eq!(
        status, 400,
        "not while the account cannot take charges: {refused}"
    );
    client
        .control(
            &format!("/_emulator/accounts/{account_id}"),
            json!({"charges_enabled": true}),
        )
        .await;
    let (status, made, _) = client
        .post("/v1/transfers", &transfer("1500"), Some("tr-1"))
        .await;
    assert_eq!(status, 200, "{made}");
    assert!(
        lacking(&made, "transfer").is_empty(),
        "{:?}",
        lacking(&made, "transfer")
    );
    let (_, again, replayed) = client
        .post("/v1/transfers", &transfer("1500"), Some("tr-1"))
        .await;
    assert!(replayed);
    assert_eq!(again["id"], made["id"]);
    let (status, too_much, _) = client.post("/v1/transfers", &transfer("501"), None).await;
    assert_eq!(status, 400, "2000 captured, 1500 sent: {too_much}");
    let id = made["id"].as_str().expect("id");
    let path = format!("/v1/transfers/{id}/reversals");
    let (status, reversal, _) = client.post(&path, &[("amount", "600")], None).await;
    assert_eq!(status, 200, "{reversal}");
    assert!(lacking(&reversal, "transfer_reversal").is_empty());
    let (status, _, _) = client.post(&path, &[("amount", "901")], None).await;
    assert_eq!(status, 400, "only 900 left");
    let reversals = client.get(&path).await;
    assert_eq!(reversals["data"][0]["id"], reversal["id"], "{reversals}");
    let listed = client.get("/v1/transfers?transfer_group=ord_1").await;
    let listed = listed["data"].as_array().expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["amount_reversed"], 600);
    assert!(
        client.get("/v1/transfers?transfer_group=ord_2").await["data"]
            .as_array()
            .expect("list")
            .is_empty()
    );
}
