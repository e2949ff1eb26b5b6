//! Storage of plans, Kassa's customers and the credit ledger (seed 003).

use async_trait::async_trait;
use kassa_domain::credits::EntryKind;

use super::store::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    pub id: String,
    pub name: String,
    pub unit_amount_minor: i64,
    pub currency: String,
    /// `month` or `year`.
    pub interval: String,
    /// Credits granted for each paid period.
    pub credits: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    pub id: String,
    pub email: String,
    pub provider_customer_id: Option<String>,
    /// The sum of the customer's ledger entries.
    pub balance: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditEntry {
    pub id: String,
    pub customer_id: String,
    /// Positive for a grant, negative for a debit or a clawback.
    pub amount: i64,
    pub kind: EntryKind,
    /// What the entry is for, once: `invoice:{id}`, `order:{id}`, `debit:{scope}:{key}`.
    pub business_key: String,
    pub reason: Option<String>,
    pub created_at: i64,
}

/// An entry to write; `amount` is its magnitude (the kind gives the sign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCreditEntry {
    pub id: String,
    pub customer_id: String,
    pub amount: i64,
    pub business_key: String,
    pub reason: Option<String>,
    /// The subscription a paid invoice's grant is for.
    pub subscription_id: Option<String>,
}

/// How writing an entry ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerWrite {
    /// Written now.
    Written(CreditEntry),
    /// An entry with this business key exists already: it, unchanged (nothing written).
    AlreadyThere(CreditEntry),
    /// A debit larger than the balance: nothing written.
    Overdraft {
        balance: i64,
    },
    CustomerMissing,
}

#[async_trait]
pub trait CreditStore: Send + Sync {
    async fn create_plan(&self, plan: &PlanRecord) -> StoreResult<()>;
    async fn plan(&self, id: &str) -> StoreResult<Option<PlanRecord>>;
    /// The customer with this e-mail, created with `new_id` if there is none.
    async fn customer_for_email(
        &self,
        new_id: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<CustomerRecord>;
    async fn customer(&self, id: &str) -> StoreResult<Option<CustomerRecord>>;
    /// The customer's entries, newest first, at most `limit`.
    async fn credit_entries(&self, customer_id: &str, limit: i64) -> StoreResult<Vec<CreditEntry>>;
    /// Writes a grant (or a debit, or a clawback of at most the balance) under the customer's
    /// lock, in one transaction; a business key already used is never written twice.
    async fn write_entry(
        &self,
        kind: EntryKind,
        entry: &NewCreditEntry,
        now: i64,
    ) -> StoreResult<LedgerWrite>;
}
