//! The shape of every piece of text a client hands Kassa: which characters, how long, and the one
//! normalised spelling that is stored (risk S6).
//!
//! Each field names its [`TextShape`] once, in [`fields`]; use cases normalise through it and
//! store only what it returns. Lengths count Unicode scalar values after normalisation (NFC,
//! trimmed, runs of spaces folded to one), so "é" is one character however it was typed.

use unicode_normalization::UnicodeNormalization;

/// What a text field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextShape {
    /// One line of human text (names, address lines, product names): any letters, marks,
    /// digits, punctuation and symbols; no control, invisible formatting, bidirectional
    /// override, line-separator, private-use or non-characters.
    Line { max_chars: usize },
    /// A machine name (SKU, stock location): ASCII letters, digits, `-`, `_`, `.`; kept as sent.
    Identifier { max_chars: usize },
    /// An e-mail address `local@domain`: ASCII, the domain lowercased.
    Email,
    /// A postal code: ASCII letters, digits, spaces and `-`; stored uppercase.
    PostalCode { max_chars: usize },
    /// An ISO 3166-1 alpha-2 country code that is assigned; stored uppercase.
    Country,
}

/// The shapes of the fields clients send. Changing one is a product decision.
pub mod fields {
    use super::TextShape;

    pub const PERSON_NAME: TextShape = TextShape::Line { max_chars: 100 };
    pub const ADDRESS_LINE: TextShape = TextShape::Line { max_chars: 200 };
    pub const CITY: TextShape = TextShape::Line { max_chars: 100 };
    pub const POSTAL_CODE: TextShape = TextShape::PostalCode { max_chars: 16 };
    pub const COUNTRY: TextShape = TextShape::Country;
    pub const EMAIL: TextShape = TextShape::Email;
    pub const PRODUCT_NAME: TextShape = TextShape::Line { max_chars: 200 };
    /// Keys and values of a variant's attributes (`{"size": "M"}`).
    pub const ATTRIBUTE: TextShape = TextShape::Line { max_chars: 100 };
    pub const SKU: TextShape = TextShape::Identifier { max_chars: 64 };
    pub const LOCATION: TextShape = TextShape::Identifier { max_chars: 64 };
    /// Why a person resolved a flagged order the way they did (kept in the audit trail).
    pub const RESOLUTION_NOTE: TextShape = TextShape::Line { max_chars: 500 };
}

/// Longest e-mail address (RFC 5321's path limit less the brackets) and its parts.
const EMAIL_MAX_CHARS: usize = 254;
const EMAIL_LOCAL_MAX_CHARS: usize = 64;
const DOMAIN_LABEL_MAX_CHARS: usize = 63;

/// Why a text was refused; shown to the client beside the field's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// Empty (after trimming) or longer than allowed.
    Length,
    /// A character this shape does not allow.
    Character(char),
    /// Every character is allowed but the whole is not of the shape (an e-mail without a
    /// domain, an unassigned country code).
    Malformed,
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextError::Length => f.write_str("has the wrong length"),
            TextError::Character(c) => write!(f, "contains the character U+{:04X}", u32::from(*c)),
            TextError::Malformed => f.write_str("is not well formed"),
        }
    }
}

impl TextShape {
    /// The stored spelling of `value`, or why it does not fit.
    pub fn normalize(self, value: &str) -> Result<String, TextError> {
        match self {
            TextShape::Line { max_chars } => line(value, max_chars),
            TextShape::Identifier { max_chars } => identifier(value, max_chars),
            TextShape::Email => email(value),
            TextShape::PostalCode { max_chars } => postal_code(value, max_chars),
            TextShape::Country => country(value),
        }
    }

    /// What the field accepts, in words, for error messages and docs/api.md.
    pub fn describe(self) -> String {
        match self {
            TextShape::Line { max_chars } => format!(
                "must be 1 to {max_chars} characters on one line, without control, invisible \
                 formatting or bidirectional-override characters"
            ),
            TextShape::Identifier { max_chars } => format!(
                "must be 1 to {max_chars} characters of ASCII letters, digits, '-', '_' or '.'"
            ),
            TextShape::Email => format!(
                "must be an e-mail address local@domain of at most {EMAIL_MAX_CHARS} ASCII \
                 characters (an internationalised domain in its xn-- form)"
            ),
            TextShape::PostalCode { max_chars } => format!(
                "must be 1 to {max_chars} characters of ASCII letters, digits, spaces or '-'"
            ),
            TextShape::Country => {
                "must be an assigned ISO 3166-1 alpha-2 country code such as DE or GB".to_owned()
            }
        }
    }
}

/// Characters no line of human text needs and that can hide or reorder what a person sees:
/// C0/C1 controls (NUL, CR, LF, tab…), line and paragraph separators, zero-width and other
/// invisible format characters, bidirectional embeddings, overrides and isolates, private use
/// and non-characters.
fn is_refused_in_line(c: char) -> bool {
    let code = u32::from(c);
    c.is_control()
        || matches!(
            code,
            0x00AD          // soft hyphen
            | 0x034F        // combining grapheme joiner
            | 0x061C        // Arabic letter mark
            | 0x115F | 0x1160 | 0x3164 | 0xFFA0 // Hangul fillers
            | 0x17B4 | 0x17B5
            | 0x180B..=0x180F // Mongolian variation selectors and vowel separator
            | 0x0600..=0x0605 | 0x06DD | 0x070F | 0x0890 | 0x0891 | 0x08E2 // prepended marks
            | 0x200B | 0x200E | 0x200F // zero-width space, LRM, RLM (ZWNJ and ZWJ are letters' glue in Persian, Indic scripts and emoji)
            | 0x2028..=0x202E // line/paragraph separators, bidi embeddings and overrides
            | 0x2060..=0x206F // word joiner, invisible operators, bidi isolates
            | 0xFE00..=0xFE0F // variation selectors
            | 0xFEFF        // byte-order mark
            | 0xFFF0..=0xFFFB // interlinear annotation, specials
            | 0xE000..=0xF8FF // private use
            | 0xFDD0..=0xFDEF // non-characters
            | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
            | 0xE0000..=0xE007F // tags
            | 0xF0000..=0x10FFFF // supplementary private use
        )
        || (code & 0xFFFE) == 0xFFFE // U+xxFFFE and U+xxFFFF are non-characters in every plane
}

fn within(chars: usize, max_chars: usize) -> Result<(), TextError> {
    if (1..=max_chars).contains(&chars) {
        Ok(())
    } else {
        Err(TextError::Length)
    }
}

fn line(value: &str, max_chars: usize) -> Result<String, TextError> {
    if let Some(c) = value.chars().find(|c| is_refused_in_line(*c)) {
        return Err(TextError::Character(c));
    }
    let composed: String = value.nfc().collect();
    let folded = composed.split_whitespace().collect::<Vec<_>>().join(" ");
    within(folded.chars().count(), max_chars)?;
    Ok(folded)
}

fn identifier(value: &str, max_chars: usize) -> Result<String, TextError> {
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(TextError::Character(c));
    }
    within(value.len(), max_chars)?;
    Ok(value.to_owned())
}

/// RFC 5322 `atext`, the characters of an unquoted local part besides dots.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)
}

fn email(value: &str) -> Result<String, TextError> {
    let value = value.trim();
    if let Some(c) = value
        .chars()
        .find(|c| !(is_atext(*c) || matches!(c, '.' | '@')))
    {
        return Err(TextError::Character(c));
    }
    within(value.len(), EMAIL_MAX_CHARS)?;
    let (local, domain) = value.split_once('@').ok_or(TextError::Malformed)?;
    let local_ok = (1..=EMAIL_LOCAL_MAX_CHARS).contains(&local.len())
        && local.split('.').all(|atom| !atom.is_empty());
    let domain = domain.to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=DOMAIN_LABEL_MAX_CHARS).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if local_ok && domain_ok {
        Ok(format!("{local}@{domain}"))
    } else {
        Err(TextError::Malformed)
    }
}

fn postal_code(value: &str, max_chars: usize) -> Result<String, TextError> {
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '-')))
    {
        return Err(TextError::Character(c));
    }
    let folded = value.split_whitespace().collect::<Vec<_>>().join(" ");
    within(folded.len(), max_chars)?;
    Ok(folded.to_ascii_uppercase())
}

fn country(value: &str) -> Result<String, TextError> {
    let code = value.trim().to_ascii_uppercase();
    if ISO_3166_ALPHA_2.contains(&code.as_str()) {
        Ok(code)
    } else {
        Err(TextError::Malformed)
    }
}

/// The officially assigned ISO 3166-1 alpha-2 codes (249), sorted.
const ISO_3166_ALPHA_2: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

#[cfg(test)]
mod tests {
    use super::fields::*;
    use super::*;

    #[test]
    fn risk_s6_lines_refuse_hidden_characters_and_store_one_spelling() {
        let hostile = [
            "Lon\r\ndon",
            "Ada\u{0}",
            "\u{202E}N1",
            "a\u{200B}b",
            "tab\there",
            "\u{FEFF}bom",
            "priv\u{E000}",
            "iso\u{2066}late",
            "nonchar\u{FFFF}",
        ];
        for value in hostile {
            assert!(
                matches!(CITY.normalize(value), Err(TextError::Character(_))),
                "{value:?}"
            );
        }
        // NFC, trimmed, inner runs of spaces folded.
        let decomposed = "  Zu\u{0308}rich   Hbf ";
        assert_eq!(CITY.normalize(decomposed).as_deref(), Ok("Zürich Hbf"));
        assert_eq!(CITY.normalize("東京").as_deref(), Ok("東京"));
        // ZWNJ is part of correctly spelled Persian.
        assert_eq!(
            CITY.normalize("می\u{200C}خواهم")
                .map(|s| s.contains('\u{200C}')),
            Ok(true)
        );
        assert_eq!(CITY.normalize("   "), Err(TextError::Length));
        assert_eq!(
            CITY.normalize(&"é".repeat(100)).map(|s| s.chars().count()),
            Ok(100)
        );
        assert_eq!(CITY.normalize(&"é".repeat(101)), Err(TextError::Length));
    }

    #[test]
    fn risk_s6_email_shape() {
        assert_eq!(
            EMAIL
                .normalize(" Ada.Lovelace+shop@Example.CO.uk ")
                .as_deref(),
            Ok("Ada.Lovelace+shop@example.co.uk")
        );
        assert!(EMAIL.normalize("ada@xn--bcher-kva.example").is_ok());
        for bad in [
            "ada@@example.com",
            "ada\u{0}@example.com",
            "ada@example",
            "@example.com",
            "ada@",
            "ada@-example.com",
            "ada@example..com",
            ".ada@example.com",
            "a..da@example.com",
            "ada@example.123",
            "ada lovelace@example.com",
            "ädä@example.com",
            "",
        ] {
            assert!(EMAIL.normalize(bad).is_err(), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EMAIL.normalize(&long_local).is_err());
    }

    #[test]
    fn risk_s6_country_is_an_assigned_iso_code() {
        assert_eq!(ISO_3166_ALPHA_2.len(), 249);
        assert!(ISO_3166_ALPHA_2.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(COUNTRY.normalize("gb").as_deref(), Ok("GB"));
        for bad in ["XX", "ZZ", "UK", "G", "GBR", "", "D\u{0}"] {
            assert!(COUNTRY.normalize(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn risk_s6_identifiers_and_postal_codes() {
        assert_eq!(LOCATION.normalize("eu-west.1").as_deref(), Ok("eu-west.1"));
        for bad in ["a\u{0}b", " ", "", "has space", "ünï", &"x".repeat(65)] {
            assert!(LOCATION.normalize(bad).is_err(), "{bad:?}");
        }
        assert_eq!(POSTAL_CODE.normalize(" n1  1aa ").as_deref(), Ok("N1 1AA"));
        for bad in ["N1\u{0}", "", "   ", "N1\n1AA", &"1".repeat(17)] {
            assert!(POSTAL_CODE.normalize(bad).is_err(), "{bad:?}");
        }
    }
}
