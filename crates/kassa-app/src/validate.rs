//! Checks on client input that more than one use case shares. Each returns
//! `AppError::InvalidRequest` naming the offending field.

use kassa_domain::limits::{LINE_QUANTITY_MAX, SKU_MAX_BYTES};
use kassa_domain::{Currency, MoneyError};

use crate::error::{AppError, AppResult};

/// A SKU: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`.
pub fn sku(param: &str, sku: &str) -> AppResult<()> {
    let well_formed = !sku.is_empty()
        && sku.len() <= SKU_MAX_BYTES
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if well_formed {
        Ok(())
    } else {
        Err(AppError::invalid(
            param,
            format!("must be 1 to {SKU_MAX_BYTES} characters of letters, digits, '-', '_' or '.'"),
        ))
    }
}

pub fn currency(param: &str, code: &str) -> AppResult<Currency> {
    Currency::parse(code).map_err(|error| match error {
        MoneyError::UnknownCurrency(_) => {
            AppError::invalid(param, "unknown or unsupported currency")
        }
        other => AppError::invalid(param, other.to_string()),
    })
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

/// Non-empty text of at most `max_bytes`.
pub fn text(param: &str, value: &str, max_bytes: usize) -> AppResult<()> {
    if value.trim().is_empty() || value.len() > max_bytes {
        Err(AppError::invalid(
            param,
            format!("must be 1 to {max_bytes} bytes"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_s6_sku_shape_and_length_are_bounded() {
        assert!(sku("sku", "TSHIRT-M.blue_1").is_ok());
        for bad in [
            "",
            "has space",
            "ünicode",
            "a/b",
            &"x".repeat(SKU_MAX_BYTES + 1),
        ] {
            assert!(sku("sku", bad).is_err(), "{bad:?}");
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
