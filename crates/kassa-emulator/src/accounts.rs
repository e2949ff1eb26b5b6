//! Connected accounts (Stripe Connect, Express): made by the platform, not ready to take
//! charges until onboarding is done — here, until the control API says so, which emits
//! `account.updated` as Stripe does when an account's readiness changes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::objects;
use crate::world::{Outcome, World, invalid, missing};

type Form = BTreeMap<String, String>;

impl World {
    /// `POST /v1/accounts`: an Express account, neither charges nor payouts enabled yet.
    pub fn create_account(&mut self, form: &Form, metadata: Value) -> Outcome {
        let id = self.new_id("acct");
        let account = objects::account(
            &id,
            form.get("email").map(String::as_str),
            form.get("country").map_or("US", String::as_str),
            metadata,
            self.now(),
        );
        self.accounts.insert(id, account.clone());
        Ok(account)
    }

    pub fn account(&self, id: &str) -> Outcome {
        self.accounts
            .get(id)
            .cloned()
            .ok_or_else(|| missing("account", id))
    }

    /// The control API's readiness change: `account.updated` when anything changed.
    pub fn set_account_readiness(
        &mut self,
        id: &str,
        charges_enabled: Option<bool>,
        payouts_enabled: Option<bool>,
    ) -> Outcome {
        let account = self
            .accounts
            .get_mut(id)
            .ok_or_else(|| missing("account", id))?;
        let before = account.clone();
        if let Some(enabled) = charges_enabled {
            let capability = if enabled { "active" } else { "inactive" };
            account["charges_enabled"] = json!(enabled);
            account["details_submitted"] = json!(true);
            account["capabilities"] = json!({"card_payments": capability, "transfers": capability});
        }
        if let Some(enabled) = payouts_enabled {
            account["payouts_enabled"] = json!(enabled);
        }
        let account = account.clone();
        if account != before {
            self.emit("account.updated", &account, None);
        }
        Ok(account)
    }

    /// A destination charge's refund takes back the seller's share of it, in proportion to what
    /// was transferred (the charge less the platform's fee), rounded down: the reversal's id,
    /// or null when the charge sent nothing on.
    pub(crate) fn reverse_transfer(&mut self, charge: &Value, refunded: i64) -> Value {
        let intent = charge["payment_intent"]
            .as_str()
            .and_then(|id| self.intents.get(id));
        let Some(intent) =
            intent.filter(|intent| intent["transfer_data"]["destination"].is_string())
        else {
            return Value::Null;
        };
        let charged = charge["amount_captured"].as_i64().unwrap_or(0);
        let fee = intent["application_fee_amount"].as_i64().unwrap_or(0);
        let destination = intent["transfer_data"]["destination"].clone();
        let amount = if charged > 0 {
            i64::try_from(i128::from(refunded) * i128::from(charged - fee) / i128::from(charged))
                .unwrap_or(0)
        } else {
            0
        };
        let id = self.new_id("trr");
        self.transfer_reversals.insert(
            id.clone(),
            json!({"id": id, "object": "transfer_reversal", "amount": amount,
                   "currency": charge["currency"], "destination": destination}),
        );
        json!(id)
    }

    /// A charge that sends its money on to `destination` is refused unless that account can
    /// take charges, as Stripe refuses it.
    pub(crate) fn check_destination(
        &self,
        destination: &str,
        param: &str,
    ) -> Result<(), (u16, Value)> {
        let account = self.account(destination).map_err(|_| {
            invalid(
                "resource_missing",
                &format!("No such destination: '{destination}'"),
                Some(param),
            )
        })?;
        if account["charges_enabled"] == true {
            Ok(())
        } else {
            Err(invalid(
                "insufficient_capabilities_for_transfer",
                "Your destination account needs to have at least one of the following capabilities enabled: transfers, crypto_transfers, legacy_payments",
                Some(param),
            ))
        }
    }
}
