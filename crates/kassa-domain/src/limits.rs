//! Named maximums for everything a client can make Kassa hold or loop over.
//!
//! Each bound is checked where input enters (HTTP layer, application layer) and each has a test
//! that reaches it. Changing one is a product decision, not a tuning knob. The lengths and
//! characters of text fields live with their shapes in `text::fields`.

/// Largest request body the API accepts; larger bodies get 413 `payload_too_large`.
pub const REQUEST_BODY_MAX_BYTES: usize = 64 * 1024;
/// Most distinct lines one cart may hold.
pub const CART_LINES_MAX: usize = 100;
/// Largest quantity of one line (and of one SKU across the cart).
pub const LINE_QUANTITY_MAX: i64 = 1_000;
/// Most variants one product may be created with.
pub const PRODUCT_VARIANTS_MAX: usize = 100;
/// Most attributes on one variant (each key and value is shaped by `text::fields::ATTRIBUTE`).
pub const VARIANT_ATTRIBUTES_MAX: usize = 20;
/// Largest unit price in minor units: the most Stripe charges at once, since a unit priced
/// above it could never be paid (far below where a line total could overflow an `i64`). There is
/// no smallest price but 0: a cheap item is bought by the dozen and a gift is free, so Stripe's
/// minimum charge applies to an order's total, and to a plan's price (one charge each period).
pub const UNIT_AMOUNT_MAX_MINOR: i64 = crate::money::CHARGE_MAX_MINOR;
/// Largest on-hand quantity for one SKU at one location.
pub const ON_HAND_MAX: i64 = 1_000_000_000;
