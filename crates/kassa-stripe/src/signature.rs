//! `Stripe-Signature` verification, as Stripe's official libraries do it: HMAC-SHA256 of
//! `"{t}.{payload}"` under each secret, compared in constant time with every `v1` entry, and the
//! timestamp no older than the tolerance. Agrees with every vector of the conformance file.
//!
//! Two checks go further than the official libraries: a timestamp more than
//! [`CLOCK_SKEW_MAX_SECS`] in the future is refused (a signature made "for later" is not a
//! fresh one), and a header of more than [`HEADER_ENTRIES_MAX`] entries is refused whole.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a signature was refused. Logged, never told to the sender (risk S8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No `t=` or no `v1=` in the header.
    Malformed,
    /// No `v1` matches under any secret.
    NoMatch,
    /// The timestamp is older than the tolerance (a replay).
    TooOld,
    /// The timestamp is further in the future than clocks can disagree.
    FromTheFuture,
    /// More than [`HEADER_ENTRIES_MAX`] comma-separated entries.
    TooManyEntries,
}

/// Most comma-separated entries one header may have. Stripe sends a `t`, one `v1` per active
/// secret (two while rotating) and perhaps a `v0`; this leaves room for many more, and a header
/// beyond it is one bad request rather than a partial look.
pub const HEADER_ENTRIES_MAX: usize = 64;
/// How far a timestamp may be ahead of Kassa's clock (clock skew between Stripe and this host).
pub const CLOCK_SKEW_MAX_SECS: i64 = 60;

/// Verifies `header` for `payload`; returns the signed timestamp.
pub fn verify_signature(
    payload: &[u8],
    header: &str,
    secrets: &[String],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for (position, item) in header.split(',').enumerate() {
        if position == HEADER_ENTRIES_MAX {
            return Err(SignatureError::TooManyEntries);
        }
        match item.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matched = secrets.iter().any(|secret| {
        // Lowercase hex, compared as text as Stripe's libraries do: uppercase hex is refused.
        let expected = hex::encode(sign(secret, timestamp, payload));
        signatures
            .iter()
            .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())))
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    if now_secs.saturating_sub(timestamp) > tolerance_secs {
        return Err(SignatureError::TooOld);
    }
    if timestamp.saturating_sub(now_secs) > CLOCK_SKEW_MAX_SECS {
        return Err(SignatureError::FromTheFuture);
    }
    Ok(timestamp)
}

fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Vec<serde_json::Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/stripe/stripe_webhook_signatures.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (fixtures/stripe/ of the repository)"));
        let file: serde_json::Value = serde_json::from_str(&text).expect("vectors are JSON");
        file["vectors"].as_array().expect("a vectors array").clone()
    }

    #[test]
    fn risk_g6_signature_agrees_with_official_stripe_vectors() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 39);
        for vector in vectors {
            let name = vector["name"].as_str().expect("name");
            let verdict = verify_signature(
                vector["payload"].as_str().expect("payload").as_bytes(),
                vector["header"].as_str().expect("header"),
                &[vector["secret"].as_str().expect("secret").to_owned()],
                vector["now"].as_i64().expect("now"),
                vector["tolerance"].as_i64().expect("tolerance"),
            );
            assert_eq!(
                verdict.is_ok(),
                vector["valid"].as_bool().expect("valid"),
                "{name}: {verdict:?}"
            );
        }
    }

    fn header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
        format!(
            "t={timestamp},v1={}",
            hex::encode(sign(secret, timestamp, payload))
        )
    }

    #[test]
    fn risk_g6_replay_outside_tolerance_is_refused() {
        let body = b"{\"id\":\"evt_1\"}";
        let old = header("whsec_a", 1_000, body);
        let secrets = ["whsec_a".to_owned()];
        assert_eq!(
            verify_signature(body, &old, &secrets, 1_300, 300),
            Ok(1_000)
        );
        assert_eq!(
            verify_signature(body, &old, &secrets, 1_301, 300),
            Err(SignatureError::TooOld)
        );
    }

    #[test]
    fn risk_g6_forged_or_tampered_is_refused_and_rotation_accepts_both_secrets() {
        let body = b"{\"id\":\"evt_1\",\"amount\":100}";
        let signed = header("whsec_old", 5_000, body);
        let both = ["whsec_new".to_owned(), "whsec_old".to_owned()];
        assert!(verify_signature(body, &signed, &both, 5_000, 300).is_ok());
        assert_eq!(
            verify_signature(body, &signed, &["whsec_new".to_owned()], 5_000, 300),
            Err(SignatureError::NoMatch)
        );
        let tampered = b"{\"id\":\"evt_1\",\"amount\":999}";
        assert_eq!(
            verify_signature(tampered, &signed, &both, 5_000, 300),
            Err(SignatureError::NoMatch)
        );
        let forged = header("whsec_attacker", 5_000, body);
        assert_eq!(
            verify_signature(body, &forged, &both, 5_000, 300),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify_signature(body, "", &both, 5_000, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn risk_g6_timestamps_ahead_of_the_clock_are_refused_beyond_the_skew() {
        let body = b"{\"id\":\"evt_1\"}";
        let secrets = ["whsec_a".to_owned()];
        let now = 10_000;
        let slightly_ahead = header("whsec_a", now + CLOCK_SKEW_MAX_SECS, body);
        assert!(verify_signature(body, &slightly_ahead, &secrets, now, 300).is_ok());
        let too_far = header("whsec_a", now + CLOCK_SKEW_MAX_SECS + 1, body);
        assert_eq!(
            verify_signature(body, &too_far, &secrets, now, 300),
            Err(SignatureError::FromTheFuture)
        );
        let next_year = header("whsec_a", now + 365 * 86_400, body);
        assert_eq!(
            verify_signature(body, &next_year, &secrets, now, 300),
            Err(SignatureError::FromTheFuture)
        );
    }

    #[test]
    fn risk_g6_a_valid_v1_anywhere_within_the_entry_bound_is_found() {
        let body = b"{\"id\":\"evt_1\"}";
        let secrets = ["whsec_a".to_owned()];
        let valid = header("whsec_a", 5_000, body);
        let signature = valid.split_once(",v1=").expect("v1").1;
        let decoys = |n: usize| vec!["v1=00"; n].join(",");
        // The valid one as the last entry allowed: t + decoys + it = the bound.
        let last_allowed = format!("t=5000,{},v1={signature}", decoys(HEADER_ENTRIES_MAX - 2));
        assert!(verify_signature(body, &last_allowed, &secrets, 5_000, 300).is_ok());
        let over = format!("t=5000,{},v1={signature}", decoys(HEADER_ENTRIES_MAX - 1));
        assert_eq!(
            verify_signature(body, &over, &secrets, 5_000, 300),
            Err(SignatureError::TooManyEntries),
            "a header over the bound is refused whole, not searched in part"
        );
    }

    proptest::proptest! {
        /// Any header and payload, at any clock: an answer, never a panic, and never an accepted
        /// signature the secret did not make.
        #[test]
        fn arbitrary_headers_never_panic_and_never_verify(
            header in proptest::prelude::any::<String>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            now in proptest::prelude::any::<i64>(),
            tolerance in proptest::prelude::any::<i64>(),
        ) {
            let verdict = verify_signature(&payload, &header, &["whsec_test".to_owned()], now, tolerance);
            proptest::prop_assert!(verdict.is_err());
        }

        /// A genuine signature verifies for its payload and for no changed one.
        #[test]
        fn a_signature_verifies_its_payload_only(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..256),
            flip in proptest::prelude::any::<proptest::sample::Index>(),
            timestamp in -10_000_000_000i64..10_000_000_000,
        ) {
            let secrets = ["whsec_test".to_owned()];
            let signed = header("whsec_test", timestamp, &payload);
            proptest::prop_assert_eq!(verify_signature(&payload, &signed, &secrets, timestamp, 300), Ok(timestamp));
            let mut changed = payload.clone();
            let at = flip.index(changed.len());
            changed[at] ^= 0x01;
            proptest::prop_assert_eq!(
                verify_signature(&changed, &signed, &secrets, timestamp, 300),
                Err(SignatureError::NoMatch)
            );
        }
    }
}
