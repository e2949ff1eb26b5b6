//! Checks on client input that more than one use case shares. Each returns
//! `AppError::InvalidRequest` naming the offending field.

use kassa_domain::limits::{LINE_QUANTITY_MAX, UNIT_AMOUNT_MAX_MINOR};
use kassa_domain::text::TextShape;
use kassa_domain::{Currency, MoneyError};

use crate::error::{AppError, AppResult};

/// `value` in its one stored spelling, or `invalid_request` naming `param` and saying what the
/// field accepts and what was wrong (risk S6).
pub fn shaped(param: &str, shape: TextShape, value: &str) -> AppResult<String> {
    shape
        .normalize(value)
        .map_err(|error| AppError::invalid(param, format!("{} ({error})", shape.describe())))
}

/// Longest `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// The request's `Idempotency-Key`: required, 1 to 255 printable ASCII characters.
pub fn idempotency_key(key: Option<&str>) -> AppResult<String> {
    let key = key
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(AppError::IdempotencyKeyRequired)?;
    if key.len() > IDEMPOTENCY_KEY_MAX_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid(
            "Idempotency-Key",
            format!("must be 1 to {IDEMPOTENCY_KEY_MAX_BYTES} printable ASCII characters"),
        ));
    }
    Ok(key.to_owned())
}

pub fn currency(param: &str, code: &str) -> AppResult<Currency> {
    Currency::parse(code).map_err(|error| match error {
        MoneyError::UnknownCurrency(_) => {
            AppError::invalid(param, "unknown or unsupported currency")
        }
        other => AppError::invalid(param, other.to_string()),
    })
}

pub fn unit_amount(param: &str, amount: i64) -> AppResult<()> {
    if (0..=UNIT_AMOUNT_MAX_MINOR).contains(&amount) {
        Ok(())
    } else {
        Err(AppError::invalid(
            param,
            format!(
                "must be an integer number of minor units between 0 and {UNIT_AMOUNT_MAX_MINOR}"
            ),
        ))
    }
}

/// Most credits a pack, a plan's period or a debit may carry.
pub const CREDITS_MAX: i64 = 1_000_000_000;

pub fn credits(param: &str, credits: i64) -> AppResult<()> {
    if (0..=CREDITS_MAX).contains(&credits) {
        Ok(())
    } else {
        Err(AppError::invalid(
            param,
            format!("must be between 0 and {CREDITS_MAX}"),
        ))
    }
}

pub fn quantity(param: &str, quantity: i64) -> AppResult<()> {
    if (1..=LINE_QUANTITY_MAX).contains(&quantity) {
        Ok(())
    } else {
        Err(AppError::invalid(
            param,
            format!("must be between 1 and {LINE_QUANTITY_MAX}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_s6_refusals_name_the_field_and_say_what_it_accepts() {
        use kassa_domain::text::fields::SKU;
        assert_eq!(
            shaped("sku", SKU, "TSHIRT-M.blue_1").as_deref(),
            Ok("TSHIRT-M.blue_1")
        );
        match shaped("lines[0].sku", SKU, "a/b") {
            Err(AppError::InvalidRequest { param, message }) => {
                assert_eq!(param.as_deref(), Some("lines[0].sku"));
                assert!(message.contains("U+002F"), "{message}");
                assert!(message.contains("1 to 64"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn risk_s6_quantity_is_bounded() {
        assert!(quantity("quantity", 1).is_ok());
        assert!(quantity("quantity", LINE_QUANTITY_MAX).is_ok());
        for bad in [0, -1, LINE_QUANTITY_MAX + 1, i64::MAX] {
            assert!(quantity("quantity", bad).is_err(), "{bad}");
        }
    }
}
