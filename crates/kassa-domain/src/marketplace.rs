//! Marketplace money (seed 001): the platform's fee on what a seller sells.

use crate::order::OrderStatus;

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

/// What one seller is paid for an order of several sellers' products, charged once by the
/// platform and sent on by a transfer after capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerShare {
    pub seller_id: String,
    /// The seller's part of what was captured: their lines' part of the order's total.
    pub gross_minor: i64,
    /// The platform's fee on it.
    pub fee_minor: i64,
    /// What the seller's transfer carries: `gross_minor - fee_minor`.
    pub transfer_minor: i64,
}

/// Splits `captured_minor` of an order whose lines sum to `total_minor` among the sellers whose
/// lines are `seller_lines` (seller, a line's amount), in the order the sellers first appear.
/// Each seller's lines are summed, their part of the capture rounded down once (the odd minor
/// units, and lines without a seller, stay with the platform), and the fee on it too; so the
/// transfers and the platform's keep add up to exactly what was captured.
pub fn seller_shares(
    captured_minor: i64,
    total_minor: i64,
    seller_lines: &[(String, i64)],
    fee_bps: i64,
) -> Vec<SellerShare> {
    let mut sold: Vec<(&str, i64)> = Vec::new();
    for (seller_id, amount) in seller_lines {
        match sold.iter_mut().find(|(seller, _)| seller == seller_id) {
            Some((_, total)) => *total = total.saturating_add(*amount),
            None => sold.push((seller_id, *amount)),
        }
    }
    sold.into_iter()
        .map(|(seller_id, amount)| {
            let gross_minor = proportion(captured_minor, amount, total_minor);
            let fee_minor = platform_fee(gross_minor, fee_bps);
            SellerShare {
                seller_id: seller_id.to_owned(),
                gross_minor,
                fee_minor,
                transfer_minor: gross_minor - fee_minor,
            }
        })
        .collect()
}

/// What a seller's transfer of `transfer_minor` has to have given back once `refunded_minor`
/// of the `captured_minor` it was part of stands refunded: its proportion, rounded down, until
/// the whole is refunded, when all of it comes back — so a seller never keeps anything of a
/// wholly refunded order and never gives back more than they got. A refund's reversal is the
/// difference this makes to it.
pub fn taken_back(transfer_minor: i64, captured_minor: i64, refunded_minor: i64) -> i64 {
    if refunded_minor >= captured_minor {
        transfer_minor
    } else {
        proportion(transfer_minor, refunded_minor, captured_minor)
    }
}

/// Why a paid order's sellers' transfers wait while a dispute of it is open.
pub const DISPUTE_OPEN: &str = "dispute_open: the sellers' transfers wait for the dispute to close";

/// Why the transfers of an order in `status`, flagged for a person with `needs_attention`,
/// wait instead of being planned: a paid (or since refunded) order's while it is flagged — the
/// flag's reason — and a disputed one's until the dispute closes. `None` when they may be
/// planned, or when its sellers are owed nothing (not paid, or canceled).
pub fn transfers_held(status: OrderStatus, needs_attention: Option<&str>) -> Option<String> {
    match status {
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
            needs_attention.map(str::to_owned)
        }
        OrderStatus::Disputed => Some(needs_attention.unwrap_or(DISPUTE_OPEN).to_owned()),
        OrderStatus::PendingPayment
        | OrderStatus::RequiresAction
        | OrderStatus::Authorized
        | OrderStatus::Canceled => None,
    }
}

/// What `seller_id` is still owed of an order whose transfers are not planned yet: their
/// transfer as [`seller_shares`] would plan it from `captured_minor`, less what the refunds
/// standing (`refunded_minor`) would take back of it at once ([`taken_back`]); 0 for a seller
/// without a line in it.
pub fn unsent_share(
    captured_minor: i64,
    total_minor: i64,
    seller_lines: &[(String, i64)],
    fee_bps: i64,
    refunded_minor: i64,
    seller_id: &str,
) -> i64 {
    seller_shares(captured_minor, total_minor, seller_lines, fee_bps)
        .into_iter()
        .find(|share| share.seller_id == seller_id)
        .map_or(0, |share| {
            share.transfer_minor - taken_back(share.transfer_minor, captured_minor, refunded_minor)
        })
}

/// `amount × part / whole`, rounded down, in integers; 0 for an empty whole or part.
fn proportion(amount: i64, part: i64, whole: i64) -> i64 {
    if amount <= 0 || part <= 0 || whole <= 0 {
        return 0;
    }
    let value = i128::from(amount) * i128::from(part.min(whole)) / i128::from(whole);
    i64::try_from(value).unwrap_or(amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
        pairs.iter().map(|(s, a)| ((*s).to_string(), *a)).collect()
    }

    #[test]
    fn shares_of_a_whole_capture_are_each_sellers_lines_less_the_fee() {
        let shares = seller_shares(
            3_000,
            3_000,
            &lines(&[("a", 1_000), ("b", 1_500), ("a", 500)]),
            1_000,
        );
        assert_eq!(shares.len(), 2);
        assert_eq!(
            (
                shares[0].gross_minor,
                shares[0].fee_minor,
                shares[0].transfer_minor
            ),
            (1_500, 150, 1_350)
        );
        assert_eq!(
            (
                shares[1].gross_minor,
                shares[1].fee_minor,
                shares[1].transfer_minor
            ),
            (1_500, 150, 1_350)
        );
    }

    #[test]
    fn shares_round_down_and_never_add_up_to_more_than_the_capture() {
        // A smaller capture: 1000 of 3000, split 1:1:1 (333 each, the odd unit to the platform).
        let shares = seller_shares(
            1_000,
            3_000,
            &lines(&[("a", 1_000), ("b", 1_000), ("c", 1_000)]),
            250,
        );
        let grosses: Vec<i64> = shares.iter().map(|s| s.gross_minor).collect();
        assert_eq!(grosses, vec![333, 333, 333]);
        assert!(
            shares
                .iter()
                .all(|s| s.fee_minor == 8 && s.transfer_minor == 325)
        );
        for captured in [0, 1, 7, 999, 2_999, 3_000] {
            let shares = seller_shares(
                captured,
                3_000,
                &lines(&[("a", 1), ("b", 1_999), ("c", 1_000)]),
                333,
            );
            let sent: i64 = shares.iter().map(|s| s.transfer_minor + s.fee_minor).sum();
            assert!(sent <= captured, "{captured}: {sent}");
            assert!(
                shares
                    .iter()
                    .all(|s| s.transfer_minor >= 0 && s.fee_minor >= 0)
            );
        }
        assert!(
            seller_shares(500, 0, &lines(&[("a", 0)]), 0)
                .iter()
                .all(|s| s.gross_minor == 0)
        );
        // A seller's lines are summed before the one rounding: their part of 100 of 300 is 100,
        // not 3 × 33.
        let shares = seller_shares(100, 300, &lines(&[("a", 100), ("a", 100), ("a", 100)]), 0);
        assert_eq!(shares[0].gross_minor, 100);
    }

    /// A refund's reversal: what the refunds going from `before` to `after` add.
    fn transfer_reversal(transfer: i64, captured: i64, before: i64, after: i64) -> i64 {
        taken_back(transfer, captured, after) - taken_back(transfer, captured, before)
    }

    #[test]
    fn reversals_follow_the_refunds_and_give_back_everything_on_a_whole_refund() {
        // Transfer 1350 of a 3000 capture; refunds of 1000, 1, 1999.
        assert_eq!(transfer_reversal(1_350, 3_000, 0, 1_000), 450);
        assert_eq!(
            transfer_reversal(1_350, 3_000, 1_000, 1_001),
            0,
            "450.45 rounds to 450"
        );
        assert_eq!(transfer_reversal(1_350, 3_000, 1_001, 3_000), 900);
        assert_eq!(transfer_reversal(1_350, 3_000, 0, 3_000), 1_350);
        // However a whole refund is split, the reversals add up to the transfer.
        for cut in [1, 2, 999, 1_500, 2_999] {
            let first = transfer_reversal(1_351, 3_000, 0, cut);
            let rest = transfer_reversal(1_351, 3_000, cut, 3_000);
            assert_eq!(first + rest, 1_351, "cut at {cut}");
        }
        assert_eq!(transfer_reversal(0, 3_000, 0, 3_000), 0);
    }

    #[test]
    fn a_flagged_paid_orders_transfers_are_held_with_the_flags_reason() {
        let flag = Some("amount_mismatch: provider reports 5001 eur, order expects 5000 eur");
        for status in [
            OrderStatus::Paid,
            OrderStatus::PartiallyRefunded,
            OrderStatus::Refunded,
        ] {
            assert_eq!(transfers_held(status, None), None, "{status}");
            assert_eq!(
                transfers_held(status, flag).as_deref(),
                flag,
                "{status}: held with the flag's reason"
            );
        }
        assert_eq!(
            transfers_held(OrderStatus::Disputed, None).as_deref(),
            Some(DISPUTE_OPEN)
        );
        assert_eq!(transfers_held(OrderStatus::Disputed, flag).as_deref(), flag);
        // Nothing is owed to sellers of an order not paid, or canceled: nothing to hold.
        for status in [
            OrderStatus::PendingPayment,
            OrderStatus::RequiresAction,
            OrderStatus::Authorized,
            OrderStatus::Canceled,
        ] {
            assert_eq!(transfers_held(status, flag), None, "{status}");
            assert_eq!(transfers_held(status, None), None, "{status}");
        }
    }

    #[test]
    fn an_unsent_share_is_the_transfer_less_what_the_refunds_take_back() {
        let sold = lines(&[("books", 2_500), ("pens", 1_250), ("books", 0)]);
        // 5000 captured (a mug of the shop's own makes up the rest), a 10 % fee.
        assert_eq!(unsent_share(5_000, 5_000, &sold, 1_000, 0, "books"), 2_250);
        assert_eq!(unsent_share(5_000, 5_000, &sold, 1_000, 0, "pens"), 1_125);
        assert_eq!(unsent_share(5_000, 5_000, &sold, 1_000, 0, "nobody"), 0);
        // 1001 refunded: 2250 − 450 (450.45 rounded down), as the reversal would take.
        assert_eq!(
            unsent_share(5_000, 5_000, &sold, 1_000, 1_001, "books"),
            2_250 - 450
        );
        // Everything refunded: nothing left to send.
        assert_eq!(unsent_share(5_000, 5_000, &sold, 1_000, 5_000, "books"), 0);
        assert_eq!(unsent_share(5_000, 5_000, &sold, 1_000, 9_999, "pens"), 0);
        // It is what planning and the reversals would leave, for any refund.
        for refunded in [0, 1, 999, 2_500, 4_999, 5_000] {
            let shares = seller_shares(5_000, 5_000, &sold, 1_000);
            for share in shares {
                assert_eq!(
                    unsent_share(5_000, 5_000, &sold, 1_000, refunded, &share.seller_id),
                    share.transfer_minor - taken_back(share.transfer_minor, 5_000, refunded),
                    "{refunded}"
                );
            }
        }
    }

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
