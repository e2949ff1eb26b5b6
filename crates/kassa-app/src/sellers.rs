//! Marketplace sellers (seed 001): each with a connected account at the provider, created once
//! with a key derived from the seller's id. Whether a seller can take charges is what the
//! provider last reported (`account.updated`), checked in the transaction that reserves a
//! checkout's stock (risk P10).

use kassa_domain::text::fields;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::ports::{
    Actor, CreateConnectedAccount, NewSeller, ProviderError, SellerRecord, SellerStart,
};
use crate::validate;

const PROVIDER_RETRY_AFTER_SECS: i64 = 2;

pub struct SellerInput {
    pub name: String,
    pub email: String,
    pub country: String,
    pub key_scope: String,
    /// Optional: with it, a retry makes no second seller (nor account).
    pub idempotency_key: Option<String>,
    pub actor: Actor,
}

impl App {
    pub async fn create_seller(&self, input: SellerInput) -> AppResult<SellerRecord> {
        let name = validate::shaped("name", fields::PERSON_NAME, &input.name)?;
        let email = validate::shaped("email", fields::EMAIL, &input.email)?;
        let country = validate::shaped("country", fields::COUNTRY, &input.country)?;
        let client_key = input
            .idempotency_key
            .as_deref()
            .map(|key| validate::idempotency_key(Some(key)))
            .transpose()?;
        let new = NewSeller {
            id: self.ids.new_id("sel"),
            name,
            email,
            country,
            client_scope: input.key_scope,
            client_key,
        };
        let seller = match self
            .store
            .start_seller(&new, &input.actor, self.clock.now_secs())
            .await?
        {
            SellerStart::Started(seller) => seller,
            SellerStart::KeyReused => return Err(AppError::IdempotencyKeyReused),
        };
        if seller.account_id.is_some() {
            return Ok(seller);
        }
        let request = CreateConnectedAccount {
            email: seller.email.clone(),
            country: seller.country.clone(),
            metadata: vec![("kassa_seller_id".into(), seller.id.clone())],
            idempotency_key: kassa_domain::provider_keys::create_account(&seller.id),
        };
        let account = self
            .provider
            .create_connected_account(request)
            .await
            .map_err(|error| match error {
                ProviderError::Definite { code, message } => AppError::ProviderRefused {
                    message: format!("{code}: {message}"),
                },
                ProviderError::Unknown { .. } => AppError::ProviderUnavailable {
                    retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
                },
            })?;
        Ok(self
            .store
            .record_seller_account(&seller.id, &account, &input.actor, self.clock.now_secs())
            .await?)
    }

    pub async fn seller(&self, id: &str) -> AppResult<SellerRecord> {
        self.store
            .seller(id)
            .await?
            .ok_or(AppError::NotFound { what: "seller" })
    }
}
