//! Pricing a cart: the server is the pricing authority (risk S1, G8).
//!
//! The caller passes the lines as stored (SKU, quantity) with each variant's *current* catalog
//! price; nothing a client sent is a price. The result is the total Kassa will freeze on the
//! order and compare with the `expected_total` the client says it showed.

use crate::limits::{CART_LINES_MAX, LINE_QUANTITY_MAX};
use crate::money::{Currency, Money, MoneyError};

/// One cart line with the catalog's current unit price for its SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLineInput<'a> {
    pub sku: &'a str,
    pub quantity: i64,
    pub unit_price: Money,
}

/// A priced line: unit price times quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub amount: Money,
}

/// The priced cart. Kassa has no taxes, shipping or discounts yet, so total equals subtotal;
/// both are kept because the API promises both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedCart {
    pub lines: Vec<PricedLine>,
    pub subtotal: Money,
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    Money(MoneyError),
    QuantityOutOfRange { sku: String },
    TooManyLines,
}

impl From<MoneyError> for PricingError {
    fn from(error: MoneyError) -> Self {
        PricingError::Money(error)
    }
}

/// Prices `lines` in `currency`. Every price must be in the cart's currency.
pub fn price_cart(
    currency: Currency,
    lines: &[PricedLineInput<'_>],
) -> Result<PricedCart, PricingError> {
    if lines.len() > CART_LINES_MAX {
        return Err(PricingError::TooManyLines);
    }
    let mut subtotal = Money::zero(currency);
    let mut priced = Vec::with_capacity(lines.len());
    for line in lines {
        if !(1..=LINE_QUANTITY_MAX).contains(&line.quantity) {
            return Err(PricingError::QuantityOutOfRange {
                sku: line.sku.to_owned(),
            });
        }
        let amount = line.unit_price.checked_mul(line.quantity)?;
        subtotal = subtotal.checked_add(amount)?;
        priced.push(PricedLine {
            sku: line.sku.to_owned(),
            quantity: line.quantity,
            unit_price: line.unit_price,
            amount,
        });
    }
    Ok(PricedCart {
        lines: priced,
        subtotal,
        total: subtotal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount_minor: i64) -> Money {
        Money::new(amount_minor, Currency::parse("eur").expect("known"))
    }

    #[test]
    fn total_is_sum_of_unit_price_times_quantity() {
        let lines = [
            PricedLineInput {
                sku: "a",
                quantity: 2,
                unit_price: eur(1999),
            },
            PricedLineInput {
                sku: "b",
                quantity: 1,
                unit_price: eur(500),
            },
        ];
        let cart = price_cart(eur(0).currency(), &lines).expect("prices");
        assert_eq!(cart.total, eur(4498));
        assert_eq!(cart.lines[0].amount, eur(3998));
    }

    #[test]
    fn risk_m1_price_in_another_currency_is_refused() {
        let usd = Money::new(100, Currency::parse("usd").expect("known"));
        let lines = [PricedLineInput {
            sku: "a",
            quantity: 1,
            unit_price: usd,
        }];
        assert!(matches!(
            price_cart(eur(0).currency(), &lines),
            Err(PricingError::Money(MoneyError::CurrencyMismatch { .. }))
        ));
    }

    #[test]
    fn risk_s6_quantity_bounds_are_enforced_when_pricing() {
        for quantity in [0, -1, LINE_QUANTITY_MAX + 1] {
            let lines = [PricedLineInput {
                sku: "a",
                quantity,
                unit_price: eur(1),
            }];
            assert!(matches!(
                price_cart(eur(0).currency(), &lines),
                Err(PricingError::QuantityOutOfRange { .. })
            ));
        }
        let too_many: Vec<_> = (0..=CART_LINES_MAX)
            .map(|_| PricedLineInput {
                sku: "a",
                quantity: 1,
                unit_price: eur(1),
            })
            .collect();
        assert_eq!(
            price_cart(eur(0).currency(), &too_many),
            Err(PricingError::TooManyLines)
        );
    }

    #[test]
    fn risk_m1_overflowing_total_is_refused() {
        let lines = [
            PricedLineInput {
                sku: "a",
                quantity: 1,
                unit_price: eur(i64::MAX),
            },
            PricedLineInput {
                sku: "b",
                quantity: 1,
                unit_price: eur(1),
            },
        ];
        assert_eq!(
            price_cart(eur(0).currency(), &lines),
            Err(PricingError::Money(MoneyError::Overflow))
        );
    }
}
