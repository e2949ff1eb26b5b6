//! Marketplace money (seed 001): the platform's fee on what a seller sells.

/// Most a fee may be, in basis points: all of it.
pub const FEE_BPS_MAX: i64 = 10_000;

/// The platform's fee on `amount_minor` at `bps` basis points, rounded down (the odd minor
/// unit stays with the seller); integer arithmetic only.
pub fn platform_fee(amount_minor: i64, bps: i64) -> i64 {
    if amount_minor <= 0 || bps <= 0 {
        return 0;
    }
    let fee = i128::from(amount_minor) * i128::from(bps.min(FEE_BPS_MAX)) / i128::from(FEE_BPS_MAX);
    i64::try_from(fee).unwrap_or(amount_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_is_rounded_down_and_never_more_than_the_amount() {
        assert_eq!(platform_fee(10_000, 250), 250);
        assert_eq!(platform_fee(999, 250), 24, "24.975 rounds down");
        assert_eq!(platform_fee(1, 9_999), 0);
        assert_eq!(platform_fee(5_000, 0), 0);
        assert_eq!(platform_fee(5_000, FEE_BPS_MAX), 5_000);
        assert_eq!(platform_fee(5_000, 20_000), 5_000, "capped at the amount");
        assert_eq!(platform_fee(i64::MAX, FEE_BPS_MAX), i64::MAX);
        assert_eq!(platform_fee(-5, 250), 0);
    }
}
