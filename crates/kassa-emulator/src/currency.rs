//! Stripe's currency rules as the emulator enforces them: known codes, zero- and three-decimal
//! currencies, minimum charge amounts. Written independently of Kassa's money module.

const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];
const OTHERS: &[&str] = &[
    "usd", "eur", "gbp", "aud", "cad", "chf", "dkk", "nok", "sek", "pln", "czk", "huf", "ron",
    "bgn", "nzd", "sgd", "hkd", "mxn", "brl", "inr", "aed", "zar", "thb", "myr", "php", "idr",
    "ils", "try", "twd", "cny", "isk",
];

/// Why an amount cannot be charged in a currency, as Stripe's error `code` and message.
pub fn check_amount(currency: &str, amount: i64) -> Result<(), (&'static str, String)> {
    let known = ZERO_DECIMAL.contains(&currency)
        || THREE_DECIMAL.contains(&currency)
        || OTHERS.contains(&currency);
    if !known {
        return Err(("invalid_currency", format!("Invalid currency: {currency}.")));
    }
    if THREE_DECIMAL.contains(&currency) && amount % 10 != 0 {
        return Err((
            "invalid_amount",
            format!(
                "Amounts in {currency} must be a multiple of 10 (the smallest unit Stripe settles)."
            ),
        ));
    }
    let minimum = match currency {
        "gbp" => 30,
        "hkd" => 400,
        "jpy" => 50,
        "mxn" => 1000,
        c if THREE_DECIMAL.contains(&c) => 500,
        _ => 50,
    };
    if amount < minimum {
        return Err((
            "amount_too_small",
            format!("Amount must be at least {minimum} in the smallest unit of {currency}."),
        ));
    }
    Ok(())
}

/// An amount in minor units as the hosted page shows it: `12.50 EUR`, `1200 JPY`.
pub fn display(currency: &str, amount: i64) -> String {
    let exponent = if ZERO_DECIMAL.contains(&currency) {
        0
    } else if THREE_DECIMAL.contains(&currency) {
        3
    } else {
        2
    };
    let code = currency.to_ascii_uppercase();
    if exponent == 0 {
        return format!("{amount} {code}");
    }
    let unit = 10_i64.pow(exponent);
    let sign = if amount < 0 { "-" } else { "" };
    let (whole, fraction) = (
        amount.unsigned_abs() / unit.unsigned_abs(),
        amount.unsigned_abs() % unit.unsigned_abs(),
    );
    format!(
        "{sign}{whole}.{fraction:0width$} {code}",
        width = exponent as usize
    )
}
