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
