//! Money: an `i64` amount in minor units plus an ISO 4217 currency that knows its exponent.
//!
//! There is no floating point here and no constructor from major units: amounts enter and leave
//! Kassa in minor units exactly as Stripe's API carries them. Arithmetic is checked; an overflow
//! is an error value, never a wrap or a panic. Formatting for people places the decimal point by
//! the currency's exponent (1999 JPY is "1999 JPY", 1999 EUR is "19.99 EUR", 1999 KWD is
//! "1.999 KWD").

use std::fmt;

/// Why a money value or operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    /// The code is not an ISO 4217 currency Kassa (and Stripe) settles in.
    UnknownCurrency(String),
    /// Two amounts of different currencies were combined.
    CurrencyMismatch { left: Currency, right: Currency },
    /// The result does not fit in an `i64` of minor units.
    Overflow,
    /// A negative amount where only zero or more makes sense.
    Negative,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::UnknownCurrency(code) => write!(f, "unknown currency {code:?}"),
            MoneyError::CurrencyMismatch { left, right } => {
                write!(f, "cannot combine {left} with {right}")
            }
            MoneyError::Overflow => f.write_str("amount out of range"),
            MoneyError::Negative => f.write_str("amount must not be negative"),
        }
    }
}

impl std::error::Error for MoneyError {}

/// Currencies whose smallest unit is the major unit (Stripe's zero-decimal list).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Currencies with three decimals (Stripe's three-decimal list).
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// Two-decimal currencies Stripe settles in.
const TWO_DECIMAL: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf", "chf", "cny",
    "cop", "crc", "cve", "czk", "dkk", "dop", "dzd", "egp", "etb", "eur", "fjd", "fkp", "gbp",
    "gel", "gip", "gmd", "gtq", "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "isk",
    "jmd", "kes", "kgs", "khr", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl",
    "mkd", "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio",
    "nok", "npr", "nzd", "pab", "pen", "pgk", "php", "pkr", "pln", "qar", "ron", "rsd", "rub",
    "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb", "tjs",
    "top", "try", "ttd", "twd", "tzs", "uah", "usd", "uyu", "uzs", "wst", "xcd", "yer", "zar",
    "zmw",
];

/// An ISO 4217 currency, stored as its lowercase three-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a currency code, case-insensitively, refusing codes Kassa does not know.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let lower = code.to_ascii_lowercase();
        let known = ZERO_DECIMAL
            .iter()
            .chain(THREE_DECIMAL)
            .chain(TWO_DECIMAL)
            .any(|c| *c == lower);
        match lower.as_bytes() {
            [a, b, c] if known => Ok(Currency([*a, *b, *c])),
            _ => Err(MoneyError::UnknownCurrency(code.to_owned())),
        }
    }

    /// The lowercase code, as Stripe's API writes it.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).expect("built only from ASCII codes in the tables above")
    }

    /// How many decimal places the minor unit has (0 for JPY, 2 for EUR, 3 for KWD).
    pub fn exponent(&self) -> u32 {
        let code = self.code();
        if ZERO_DECIMAL.contains(&code) {
            0
        } else if THREE_DECIMAL.contains(&code) {
            3
        } else {
            2
        }
    }

    /// The smallest amount Stripe charges in this currency, in minor units (Stripe's table of
    /// minimum charge amounts; 50 of the minor unit where it names none, 500 for the
    /// three-decimal currencies).
    pub fn minimum_charge_minor(&self) -> i64 {
        match self.code() {
            "gbp" => 30,
            "bgn" => 100,
            "aed" | "myr" | "pln" | "ron" => 200,
            "dkk" => 250,
            "nok" | "sek" => 300,
            "hkd" => 400,
            "mxn" | "thb" => 1000,
            "czk" => 1500,
            "huf" => 17500,
            code if THREE_DECIMAL.contains(&code) => 500,
            _ => 50,
        }
    }
}

/// The largest amount Stripe charges at once, in minor units of any currency: eight digits
/// (999,999.99 of a two-decimal currency). A price above it could never be paid.
pub const CHARGE_MAX_MINOR: i64 = 99_999_999;

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code().to_ascii_uppercase())
    }
}

/// An amount of one currency, in that currency's minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Money {
        Money {
            amount_minor,
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Money {
        Money::new(0, currency)
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(sum, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let difference = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(difference, self.currency))
    }

    /// The amount times a count (a unit price times a quantity).
    pub fn checked_mul(self, count: i64) -> Result<Money, MoneyError> {
        let product = self
            .amount_minor
            .checked_mul(count)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(product, self.currency))
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl fmt::Display for Money {
    /// Major units with exactly the currency's number of decimals, then the code:
    /// `19.99 EUR`, `1999 JPY`, `-0.050 KWD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = self.currency.exponent();
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        // unsigned_abs: i64::MIN has no positive i64 counterpart.
        let magnitude = self.amount_minor.unsigned_abs();
        if exponent == 0 {
            return write!(f, "{sign}{magnitude} {}", self.currency);
        }
        let scale = 10u64.pow(exponent);
        let major = magnitude / scale;
        let minor = magnitude % scale;
        let width = exponent as usize;
        write!(f, "{sign}{major}.{minor:0width$} {}", self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_charges_follow_stripes_table_in_every_exponent() {
        let minimum = |code| Currency::parse(code).map(|c| c.minimum_charge_minor());
        assert_eq!(minimum("eur"), Ok(50));
        assert_eq!(minimum("gbp"), Ok(30));
        assert_eq!(minimum("jpy"), Ok(50), "zero decimals: ¥50");
        assert_eq!(minimum("kwd"), Ok(500), "three decimals: 0.500 KWD");
        assert_eq!(minimum("huf"), Ok(17500));
    }
    use proptest::prelude::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).expect("test uses known codes")
    }

    #[test]
    fn risk_m1_same_minor_amount_formats_by_currency_exponent() {
        assert_eq!(Money::new(1999, cur("jpy")).to_string(), "1999 JPY");
        assert_eq!(Money::new(1999, cur("eur")).to_string(), "19.99 EUR");
        assert_eq!(Money::new(1999, cur("kwd")).to_string(), "1.999 KWD");
        assert_eq!(Money::new(5, cur("usd")).to_string(), "0.05 USD");
        assert_eq!(Money::new(-50, cur("bhd")).to_string(), "-0.050 BHD");
    }

    #[test]
    fn risk_m1_every_stripe_special_currency_has_its_exponent() {
        for code in [
            "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
            "VUV", "XAF", "XOF", "XPF",
        ] {
            assert_eq!(cur(code).exponent(), 0, "{code}");
        }
        for code in ["BHD", "JOD", "KWD", "OMR", "TND"] {
            assert_eq!(cur(code).exponent(), 3, "{code}");
        }
        assert_eq!(cur("usd").exponent(), 2);
        assert_eq!(cur("EUR").code(), "eur");
    }

    #[test]
    fn risk_m1_unknown_currency_is_refused() {
        for code in ["", "eu", "euro", "xxx", "12$", "ÿen"] {
            assert_eq!(
                Currency::parse(code),
                Err(MoneyError::UnknownCurrency(code.to_owned()))
            );
        }
    }

    #[test]
    fn risk_m1_currencies_never_mix() {
        let sum = Money::new(1, cur("eur")).checked_add(Money::new(1, cur("usd")));
        assert!(matches!(sum, Err(MoneyError::CurrencyMismatch { .. })));
    }

    #[test]
    fn risk_m1_overflow_is_an_error_not_a_wrap() {
        let big = Money::new(i64::MAX, cur("usd"));
        assert_eq!(
            big.checked_add(Money::new(1, cur("usd"))),
            Err(MoneyError::Overflow)
        );
        assert_eq!(big.checked_mul(2), Err(MoneyError::Overflow));
        let small = Money::new(i64::MIN, cur("usd"));
        assert_eq!(
            small.checked_sub(Money::new(1, cur("usd"))),
            Err(MoneyError::Overflow)
        );
        assert_eq!(small.to_string(), "-92233720368547758.08 USD");
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        let all: Vec<&str> = ZERO_DECIMAL
            .iter()
            .chain(THREE_DECIMAL)
            .chain(TWO_DECIMAL)
            .copied()
            .collect();
        proptest::sample::select(all).prop_map(cur)
    }

    proptest! {
        #[test]
        fn risk_m1_addition_matches_wide_integer_arithmetic(a: i64, b: i64, c in any_currency()) {
            let wide = i128::from(a) + i128::from(b);
            let result = Money::new(a, c).checked_add(Money::new(b, c));
            match i64::try_from(wide) {
                Ok(expected) => prop_assert_eq!(result, Ok(Money::new(expected, c))),
                Err(_) => prop_assert_eq!(result, Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn risk_m1_multiplication_matches_wide_integer_arithmetic(a: i64, n in -1_000_000i64..1_000_000, c in any_currency()) {
            let wide = i128::from(a) * i128::from(n);
            let result = Money::new(a, c).checked_mul(n);
            match i64::try_from(wide) {
                Ok(expected) => prop_assert_eq!(result, Ok(Money::new(expected, c))),
                Err(_) => prop_assert_eq!(result, Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn risk_m1_subtraction_undoes_addition(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000, c in any_currency()) {
            let sum = Money::new(a, c).checked_add(Money::new(b, c)).expect("small operands");
            prop_assert_eq!(sum.checked_sub(Money::new(b, c)), Ok(Money::new(a, c)));
        }

        #[test]
        fn risk_m1_formatting_round_trips_through_the_exponent(a: i64, c in any_currency()) {
            let text = Money::new(a, c).to_string();
            let (number, code) = text.split_once(' ').expect("amount then code");
            prop_assert_eq!(code, c.to_string());
            let decimals = number.split_once('.').map_or(0, |(_, frac)| frac.len());
            prop_assert_eq!(decimals as u32, c.exponent());
            let digits: String = number.chars().filter(|ch| *ch != '.').collect();
            prop_assert_eq!(digits.parse::<i128>().ok(), Some(i128::from(a)));
        }

        #[test]
        fn risk_m1_parse_is_case_insensitive_and_normalises(c in any_currency()) {
            prop_assert_eq!(Currency::parse(&c.code().to_ascii_uppercase()), Ok(c));
        }
    }
}
