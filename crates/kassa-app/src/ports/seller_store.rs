//! Storage of marketplace sellers and their accounts' readiness (seed 001).

use async_trait::async_trait;

use super::checkout_store::Actor;
use super::provider::ProviderAccount;
use super::store::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerRecord {
    pub id: String,
    pub name: String,
    pub email: String,
    pub country: String,
    /// The connected account at the provider, once created.
    pub account_id: Option<String>,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub created_at: i64,
}

/// A seller to create, once per client key when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSeller {
    pub id: String,
    pub name: String,
    pub email: String,
    pub country: String,
    pub client_scope: String,
    pub client_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SellerStart {
    /// New, or the one this key created with the same name, e-mail and country.
    Started(SellerRecord),
    KeyReused,
}

#[async_trait]
pub trait SellerStore: Send + Sync {
    async fn start_seller(
        &self,
        new: &NewSeller,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<SellerStart>;
    /// Records the connected account unless one is recorded; returns the seller.
    async fn record_seller_account(
        &self,
        seller_id: &str,
        account: &ProviderAccount,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<SellerRecord>;
    async fn seller(&self, id: &str) -> StoreResult<Option<SellerRecord>>;
    /// The seller whose connected account this is.
    async fn seller_for_account(&self, account_id: &str) -> StoreResult<Option<String>>;
    /// The connected accounts of sellers, at most `limit`.
    async fn seller_accounts(&self, limit: i64) -> StoreResult<Vec<String>>;
    /// The account's readiness as observed at `observed_at`, unless a later observation was
    /// recorded already; whether it was recorded.
    async fn observe_account(
        &self,
        account: &ProviderAccount,
        observed_at: i64,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<bool>;
}
