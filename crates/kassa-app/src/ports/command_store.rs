//! Storage for commands on a placed order — capture, cancel, edit. Each `begin_…` locks the
//! order, asks `kassa_domain::commands` what to do, and for a provider call marks the order with
//! its pending operation (a compare-and-set) before the call, so a capture and an edit never both
//! proceed and an interrupted call is visible and resumable.

use async_trait::async_trait;
use kassa_domain::commands::{LineChange, Operation, Refusal};

use super::checkout_store::{Actor, ShippingAddress};
use super::store::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureStart {
    /// The order is marked `capture`; call the provider for this amount.
    Capture {
        payment_id: String,
        payment_intent_id: String,
        amount_minor: i64,
        /// A destination charge's fee on `amount_minor` (recorded on the payment).
        application_fee_minor: Option<i64>,
    },
    Refused(Refusal),
    OrderMissing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelStart {
    /// The order is marked `cancel`; cancel the PaymentIntent at the provider first.
    AtProvider {
        payment_id: String,
        payment_intent_id: String,
    },
    /// The order is marked `cancel`; it is paid on the provider's hosted page, whose session is
    /// ended there first (its PaymentIntent, if any, with it).
    HostedPage {
        payment_id: String,
        session_id: String,
    },
    /// Captured already: refund what is still refundable, with restock.
    RefundAll {
        amount_minor: i64,
    },
    AlreadyCanceled,
    Refused(Refusal),
    OrderMissing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEdit {
    pub shipping: Option<ShippingAddress>,
    pub lines: Vec<LineChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOutcome {
    Edited,
    Refused(Refusal),
    OrderMissing,
}

#[async_trait]
pub trait OrderCommandStore: Send + Sync {
    /// With `may_resume`, a capture already in progress is resumed with its amount; without,
    /// it is refused (a scheduler must not take over another instance's running capture).
    async fn begin_capture(
        &self,
        order_id: &str,
        requested_minor: Option<i64>,
        may_resume: bool,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<CaptureStart>;

    async fn begin_cancel(
        &self,
        order_id: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<CancelStart>;

    /// Clears the order's pending `operation` if it is still that one (audited).
    async fn end_operation(
        &self,
        order_id: &str,
        operation: Operation,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()>;

    /// Applies an edit (`commands::decide_edit`) in one transaction: lines, total, reservations,
    /// address, audit.
    async fn edit_order(
        &self,
        order_id: &str,
        edit: &OrderEdit,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<EditOutcome>;

    /// Authorized orders whose capture fell due, with no operation in progress.
    async fn orders_due_for_capture(&self, now: i64, limit: i64) -> StoreResult<Vec<String>>;

    /// Orders whose `operation` has been pending since `idle_before` or earlier.
    async fn orders_with_operation(
        &self,
        operation: Operation,
        idle_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
}
