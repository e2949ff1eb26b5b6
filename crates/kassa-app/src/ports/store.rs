//! The storage port, split by capability. `kassa-store` implements every trait over SQLite and
//! PostgreSQL with one set of SQL.
//!
//! Each method is one transaction. Methods that change state do so with conditional writes
//! (compare-and-set) and report which precondition failed as a value, so use cases never need a
//! read-then-write of their own.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kassa_domain::{Currency, Money};

/// A storage failure that is not a business outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the statement failed; safe to report as 5xx/503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row read back from the database broke an invariant of the domain (a bug or a
    /// hand-edited database); never caused by client input.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A status write that its plan said must take did not (the row was not in the state the
    /// plan was decided on). A bug, never a race: plans are decided under the order's lock. The
    /// transaction is rolled back; the caller flags the order for a person.
    #[error("impossible move on order {order_id}: {detail}")]
    ImpossibleMove { order_id: String, detail: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub sku: String,
    pub product_id: String,
    pub unit_price: Money,
    pub attributes: BTreeMap<String, String>,
    pub active: bool,
    /// Credits a paid unit grants (a credit pack); 0 for ordinary goods.
    pub credits: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub variants: Vec<Variant>,
    /// The marketplace seller it belongs to, if any.
    pub seller_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateProductOutcome {
    Created(Product),
    /// A SKU in the request already exists; nothing was written.
    SkuTaken(String),
    /// The seller named does not exist; nothing was written.
    SellerMissing,
}

/// Stock of one SKU at one location. `available` is derived, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub on_hand: i64,
    pub reserved: i64,
    pub committed: i64,
}

impl StockLevel {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved - self.committed
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryLevel {
    pub location: String,
    pub stock: StockLevel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOnHandOutcome {
    Set(Vec<InventoryLevel>),
    UnknownSku,
    /// The new on-hand figure is below what is already reserved plus committed.
    BelowAllocated {
        allocated: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub id: String,
    pub sku: String,
    pub quantity: i64,
    /// The variant's current catalog price (carts always show current prices).
    pub unit_price: Money,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub id: String,
    pub currency: Currency,
    pub lines: Vec<CartLine>,
    /// The order this cart became, once checked out; the cart is then frozen.
    pub order_id: Option<String>,
}

/// Why a cart change was not made. Nothing was written in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartRefusal {
    CartNotFound,
    LineNotFound,
    CheckedOut {
        order_id: String,
    },
    /// The cart already has the maximum number of lines.
    TooManyLines,
    /// The line's quantity would exceed the per-line maximum.
    QuantityTooLarge,
}

#[async_trait]
pub trait CatalogStore: Send + Sync {
    async fn create_product(
        &self,
        product: &Product,
        now: i64,
    ) -> StoreResult<CreateProductOutcome>;
    async fn variant(&self, sku: &str) -> StoreResult<Option<Variant>>;
    /// Changes price and/or active flag; `None` if the SKU does not exist.
    async fn update_variant(
        &self,
        sku: &str,
        unit_amount_minor: Option<i64>,
        active: Option<bool>,
        now: i64,
    ) -> StoreResult<Option<Variant>>;
    async fn set_on_hand(
        &self,
        sku: &str,
        location: &str,
        on_hand: i64,
        now: i64,
    ) -> StoreResult<SetOnHandOutcome>;
    /// All locations of a SKU; `None` if the SKU does not exist.
    async fn inventory(&self, sku: &str) -> StoreResult<Option<Vec<InventoryLevel>>>;
}

#[async_trait]
pub trait CartStore: Send + Sync {
    async fn create_cart(&self, id: &str, currency: Currency, now: i64) -> StoreResult<()>;
    async fn cart(&self, id: &str) -> StoreResult<Option<Cart>>;
    /// Adds `quantity` of `sku`, raising the existing line of that SKU if there is one.
    async fn add_cart_line(
        &self,
        cart_id: &str,
        new_line_id: &str,
        sku: &str,
        quantity: i64,
        now: i64,
    ) -> StoreResult<Result<(), CartRefusal>>;
    async fn set_cart_line_quantity(
        &self,
        cart_id: &str,
        line_id: &str,
        quantity: i64,
        now: i64,
    ) -> StoreResult<Result<(), CartRefusal>>;
    async fn remove_cart_line(
        &self,
        cart_id: &str,
        line_id: &str,
        now: i64,
    ) -> StoreResult<Result<(), CartRefusal>>;
}

#[async_trait]
pub trait HealthStore: Send + Sync {
    /// True when the database answers and every migration this build knows is applied.
    async fn ready(&self) -> StoreResult<bool>;
}

/// Everything the use cases need from storage.
pub trait Store:
    CatalogStore
    + CartStore
    + HealthStore
    + super::AttentionStore
    + super::CheckoutStore
    + super::CreditStore
    + super::OrderStore
    + super::OrderCommandStore
    + super::JanitorStore
    + super::OutboxStore
    + super::MetricsStore
    + super::InvariantStore
    + super::RefundStore
    + super::SellerStore
    + super::SubscriptionStore
    + super::TransferStore
    + super::ReconcileStore
    + super::WebhookStore
{
}

impl<T> Store for T where
    T: CatalogStore
        + CartStore
        + HealthStore
        + super::AttentionStore
        + super::CheckoutStore
        + super::CreditStore
        + super::OrderStore
        + super::OrderCommandStore
        + super::JanitorStore
        + super::OutboxStore
        + super::MetricsStore
        + super::InvariantStore
        + super::RefundStore
        + super::SellerStore
        + super::SubscriptionStore
        + super::TransferStore
        + super::ReconcileStore
        + super::WebhookStore
{
}
