//! Kassa's own ids: a type prefix and 128 random bits, so ids are unguessable (cart ids and order
//! ids are capabilities a customer holds) and say what they name in logs.

use crate::ports::IdSource;

/// The production source: a new id like `cart_3f2a…` (32 lowercase hex digits after the prefix).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
    }
}
