//! The ports: what use cases need from the world, as traits the edge crates implement.

pub mod clock;
pub mod provider;
pub mod store;

pub use clock::{Clock, SystemClock};
pub use provider::*;
pub use store::*;
