//! The ports: what use cases need from the world, as traits the edge crates implement.

pub mod attention_store;
pub mod checkout_store;
pub mod clock;
pub mod command_store;
pub mod credit_store;
pub mod invariant_store;
pub mod janitor_store;
pub mod metrics_store;
pub mod order_store;
pub mod outbox_store;
pub mod provider;
pub mod reconcile_store;
pub mod refund_store;
pub mod seller_store;
pub mod store;
pub mod subscription_store;
pub mod transfer_store;
pub mod webhook_store;

pub use attention_store::*;
pub use checkout_store::*;
pub use clock::{Clock, IdSource, SystemClock};
pub use command_store::*;
pub use credit_store::*;
pub use invariant_store::*;
pub use janitor_store::*;
pub use metrics_store::*;
pub use order_store::*;
pub use outbox_store::*;
pub use provider::*;
pub use reconcile_store::*;
pub use refund_store::*;
pub use seller_store::*;
pub use store::*;
pub use subscription_store::*;
pub use transfer_store::*;
pub use webhook_store::*;
