//! Order tokens: what a customer presents (as a Bearer credential, never in a URL) to read or
//! change their own order without an account.
//!
//! A token names the order and its creation time and is signed with a key derived from the
//! server's secret key, so it cannot be forged or moved to another order (risk S2). Read access
//! lasts `read_ttl_secs` and modification rights `modify_window_secs`, both counted from the
//! order's creation, not from when the token was minted, so no token outlives the window (S3).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "otk_";

#[derive(Clone)]
pub struct OrderTokens {
    key: Vec<u8>,
    pub read_ttl_secs: i64,
    pub modify_window_secs: i64,
}

/// What a valid token allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRights {
    Read,
    ReadAndModify,
}

impl OrderTokens {
    /// Derives the signing key from the server secret, so rotating the secret key voids tokens.
    pub fn new(server_secret: &str, read_ttl_secs: i64, modify_window_secs: i64) -> OrderTokens {
        let key = sign(server_secret.as_bytes(), b"kassa order token key v1");
        OrderTokens {
            key,
            read_ttl_secs,
            modify_window_secs,
        }
    }

    pub fn mint(&self, order_id: &str, order_created_at: i64) -> String {
        let signature = hex::encode(sign(
            &self.key,
            message(order_id, order_created_at).as_bytes(),
        ));
        format!("{PREFIX}{order_id}.{order_created_at}.{signature}")
    }

    /// The rights `token` grants on `order_id` at `now`, or `None` (wrong order, forged, expired,
    /// or not in its one canonical spelling: no sign or leading zero in the time, lowercase hex).
    pub fn verify(&self, token: &str, order_id: &str, now: i64) -> Option<TokenRights> {
        let mut parts = token.strip_prefix(PREFIX)?.split('.');
        let (token_order, created, _signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || token_order != order_id {
            return None;
        }
        let created_at: i64 = created.parse().ok()?;
        // The token is compared whole with the one Kassa would mint, so every other spelling of
        // the same numbers (`+5`, `05`, uppercase hex) is refused: one token per order.
        let canonical = self.mint(order_id, created_at);
        if !bool::from(token.as_bytes().ct_eq(canonical.as_bytes())) {
            return None;
        }
        let age_secs = now.checked_sub(created_at)?;
        if age_secs < self.modify_window_secs {
            Some(TokenRights::ReadAndModify)
        } else if age_secs < self.read_ttl_secs {
            Some(TokenRights::Read)
        } else {
            None
        }
    }
}

fn message(order_id: &str, created_at: i64) -> String {
    format!("order-token:v1:{order_id}:{created_at}")
}

fn sign(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> OrderTokens {
        OrderTokens::new("sk_test_server", 30 * 86_400, 3_600)
    }

    #[test]
    fn risk_s3_modification_rights_end_with_the_window_whenever_minted() {
        let tokens = tokens();
        let created = 1_000_000;
        let token = tokens.mint("ord_1", created);
        assert_eq!(
            tokens.verify(&token, "ord_1", created + 10),
            Some(TokenRights::ReadAndModify)
        );
        assert_eq!(
            tokens.verify(&token, "ord_1", created + 3_600),
            Some(TokenRights::Read)
        );
        // Minted late (a replayed checkout response): still anchored to the order's creation.
        let late = tokens.mint("ord_1", created);
        assert_eq!(
            tokens.verify(&late, "ord_1", created + 7_200),
            Some(TokenRights::Read)
        );
        assert_eq!(tokens.verify(&token, "ord_1", created + 30 * 86_400), None);
    }

    #[test]
    fn risk_s2_token_is_bound_to_its_order_and_unforgeable() {
        let tokens = tokens();
        let token = tokens.mint("ord_1", 5);
        assert_eq!(tokens.verify(&token, "ord_2", 6), None);
        let moved = token.replacen("ord_1", "ord_2", 1);
        assert_eq!(tokens.verify(&moved, "ord_2", 6), None);
        let extended = token.replacen(".5.", ".100.", 1);
        assert_eq!(tokens.verify(&extended, "ord_1", 6), None);
        let other_server = OrderTokens::new("sk_test_other", 30 * 86_400, 3_600);
        assert_eq!(other_server.verify(&token, "ord_1", 6), None);
        assert_eq!(tokens.verify("ord_1", "ord_1", 6), None);
    }

    #[test]
    fn risk_s2_only_the_canonical_spelling_of_a_token_is_accepted() {
        let tokens = tokens();
        let token = tokens.mint("ord_1", 5);
        assert!(tokens.verify(&token, "ord_1", 6).is_some());
        let (head, signature) = token.rsplit_once('.').expect("three parts");
        let variants = [
            format!("{head}.{}", signature.to_uppercase()),
            token.replacen(".5.", ".05.", 1),
            token.replacen(".5.", ".+5.", 1),
            format!("{token} "),
            format!("{head}.{signature}0"),
        ];
        for variant in variants {
            assert_eq!(tokens.verify(&variant, "ord_1", 6), None, "{variant}");
        }
    }

    proptest::proptest! {
        /// Anything presented as a token, for any order at any time: never a panic, never rights.
        #[test]
        fn arbitrary_tokens_never_panic_and_grant_nothing(
            token in proptest::prelude::any::<String>(),
            order in "[a-z_0-9]{0,30}",
            now in proptest::prelude::any::<i64>(),
        ) {
            proptest::prop_assert_eq!(tokens().verify(&token, &order, now), None);
        }

        /// Near misses of a real token (the prefix, the order, the time, the signature spelled
        /// differently or cut short) grant nothing; extreme clocks never overflow.
        #[test]
        fn mangled_real_tokens_grant_nothing(
            created in proptest::prelude::any::<i64>(),
            now in proptest::prelude::any::<i64>(),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            suffix in "[0-9a-fA-F.+-]{1,4}",
        ) {
            let tokens = tokens();
            let real = tokens.mint("ord_1", created);
            let at = cut.index(real.len());
            proptest::prop_assert_eq!(tokens.verify(&real[..at], "ord_1", now), None);
            proptest::prop_assert_eq!(tokens.verify(&format!("{real}{suffix}"), "ord_1", now), None);
            proptest::prop_assert_eq!(tokens.verify(&real.to_uppercase(), "ord_1", now), None);
            proptest::prop_assert_eq!(tokens.verify(&real, "ord_2", now), None);
        }
    }
}
