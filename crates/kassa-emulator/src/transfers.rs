//! Separate charges and transfers (Stripe Connect): the platform charges once and sends each
//! connected account its part by a transfer, tied to the charge by `source_transaction` (never
//! more than the charge captured) and to the order by `transfer_group`; a reversal takes back
//! part of a transfer, never more than is left of it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::objects::{self, NewTransfer};
use crate::world::{Outcome, World, invalid, missing};

type Form = BTreeMap<String, String>;

fn positive_amount(form: &Form) -> Result<i64, (u16, Value)> {
    form.get("amount")
        .and_then(|amount| amount.parse::<i64>().ok())
        .filter(|amount| *amount > 0)
        .ok_or_else(|| {
            invalid(
                "parameter_invalid",
                "amount must be a positive integer.",
                Some("amount"),
            )
        })
}

impl World {
    /// `POST /v1/transfers`.
    pub fn create_transfer(&mut self, form: &Form, metadata: Value) -> Outcome {
        let amount = positive_amount(form)?;
        let currency = form
            .get("currency")
            .filter(|c| c.len() == 3 && c.chars().all(|ch| ch.is_ascii_lowercase()))
            .cloned()
            .ok_or_else(|| invalid("parameter_invalid", "Invalid currency.", Some("currency")))?;
        let destination = form.get("destination").cloned().ok_or_else(|| {
            invalid(
                "parameter_missing",
                "Missing destination.",
                Some("destination"),
            )
        })?;
        self.check_destination(&destination, "destination")?;
        let source = form.get("source_transaction").cloned();
        if let Some(charge_id) = &source {
            let charge = self.charges.get(charge_id).ok_or_else(|| {
                invalid(
                    "resource_missing",
                    &format!("No such charge: '{charge_id}'"),
                    Some("source_transaction"),
                )
            })?;
            let captured = charge["amount_captured"].as_i64().unwrap_or(0);
            let sent: i64 = self
                .transfers
                .values()
                .filter(|t| t["source_transaction"] == charge_id.as_str())
                .filter_map(|t| t["amount"].as_i64())
                .sum();
            if charge["currency"] != currency.as_str() {
                return Err(invalid(
                    "parameter_invalid",
                    "The currency must be the source_transaction's.",
                    Some("currency"),
                ));
            }
            if sent + amount > captured {
                return Err(invalid(
                    "insufficient_funds",
                    "The transfers of this source_transaction would exceed what it captured.",
                    Some("amount"),
                ));
            }
        }
        let id = self.new_id("tr");
        let transfer = objects::transfer(NewTransfer {
            id: &id,
            amount,
            currency: &currency,
            destination: &destination,
            transfer_group: form.get("transfer_group").map(String::as_str),
            source_transaction: source.as_deref(),
            metadata,
            created: self.now(),
        });
        self.transfers.insert(id, transfer.clone());
        self.emit("transfer.created", &transfer, None);
        Ok(transfer)
    }

    pub fn transfer(&self, id: &str) -> Outcome {
        self.transfers
            .get(id)
            .cloned()
            .ok_or_else(|| missing("transfer", id))
    }

    /// `POST /v1/transfers/{id}/reversals`: `amount`, or everything left of the transfer.
    pub fn create_transfer_reversal(&mut self, id: &str, form: &Form, metadata: Value) -> Outcome {
        let transfer = self.transfer(id)?;
        let left = transfer["amount"].as_i64().unwrap_or(0)
            - transfer["amount_reversed"].as_i64().unwrap_or(0);
        let amount = match form.get("amount") {
            None => left,
            Some(_) => positive_amount(form)?,
        };
        if amount > left || amount <= 0 {
            return Err(invalid(
                "amount_too_large",
                &format!(
                    "Reversal amount ({amount}) is greater than what is left of the transfer ({left})."
                ),
                Some("amount"),
            ));
        }
        let reversal_id = self.new_id("trr");
        let reversal =
            objects::transfer_reversal(&reversal_id, &transfer, amount, metadata, self.now());
        self.transfer_reversals
            .insert(reversal_id, reversal.clone());
        let Some(stored) = self.transfers.get_mut(id) else {
            return Err(missing("transfer", id));
        };
        let reversed = stored["amount_reversed"].as_i64().unwrap_or(0) + amount;
        stored["amount_reversed"] = json!(reversed);
        stored["reversed"] = json!(reversed >= stored["amount"].as_i64().unwrap_or(0));
        if let Some(list) = stored["reversals"]["data"].as_array_mut() {
            list.insert(0, reversal.clone());
        }
        let transfer = stored.clone();
        self.emit("transfer.reversed", &transfer, None);
        Ok(reversal)
    }
}
