//! Rate limits on the public endpoints (carts, checkout, order lookup): per client IP, and per
//! presented credential so one leaked publishable key or order token cannot be hammered from
//! many addresses (risk S7). Token buckets from `governor`; state is bounded by
//! `TRACKED_CLIENTS_MAX` and pruned in the background.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::HttpState;
use crate::error::ApiError;

/// A credential is shared by all of a shop's customers, so its bucket is this many IPs wide.
const CREDENTIAL_QUOTA_FACTOR: u32 = 50;
/// Webhook deliveries that fail verification, per address: a few a second at most. Stripe's
/// own deliveries verify and never touch this budget.
const FAILED_WEBHOOKS_PER_SEC: u32 = 1;
const FAILED_WEBHOOKS_BURST: u32 = 5;
/// `POST /v1/orders/{id}/refresh` asks Stripe on the caller's behalf: per order, once a second
/// with bursts of three (a return page polls; a loop would spend Stripe's rate limit).
const REFRESHES_PER_SEC: u32 = 1;
const REFRESHES_BURST: u32 = 3;
/// Above this many tracked keys, stale buckets are pruned on the next request.
const TRACKED_CLIENTS_MAX: usize = 100_000;

pub struct PublicRateLimit {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_credential: DefaultKeyedRateLimiter<String>,
    failed_webhooks: DefaultKeyedRateLimiter<IpAddr>,
    refreshes: DefaultKeyedRateLimiter<String>,
}

impl PublicRateLimit {
    /// `per_second` sustained requests per IP, bursts of twice that; `None` when 0 (off).
    pub fn new(per_second: u32) -> Option<Arc<PublicRateLimit>> {
        let rate = NonZeroU32::new(per_second)?;
        let two = NonZeroU32::new(2).expect("2 is not zero");
        let credential_rate =
            rate.saturating_mul(NonZeroU32::new(CREDENTIAL_QUOTA_FACTOR).expect("not zero"));
        Some(Arc::new(PublicRateLimit {
            per_ip: RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(rate.saturating_mul(two)),
            ),
            per_credential: RateLimiter::keyed(
                Quota::per_second(credential_rate).allow_burst(credential_rate.saturating_mul(two)),
            ),
            failed_webhooks: RateLimiter::keyed(
                Quota::per_second(NonZeroU32::MIN.saturating_add(FAILED_WEBHOOKS_PER_SEC - 1))
                    .allow_burst(NonZeroU32::MIN.saturating_add(FAILED_WEBHOOKS_BURST - 1)),
            ),
            refreshes: RateLimiter::keyed(
                Quota::per_second(NonZeroU32::MIN.saturating_add(REFRESHES_PER_SEC - 1))
                    .allow_burst(NonZeroU32::MIN.saturating_add(REFRESHES_BURST - 1)),
            ),
        }))
    }

    /// Counts a refresh of `order_id`: `Err(429)` past its budget.
    pub fn refresh(&self, order_id: &str) -> Result<(), ApiError> {
        if self.refreshes.len() > TRACKED_CLIENTS_MAX {
            self.refreshes.retain_recent();
        }
        let now = DefaultClock::default().now();
        self.refreshes
            .check_key(&order_id.to_owned())
            .map_err(|not_until| ApiError::RateLimited {
                retry_after_secs: not_until.wait_time_from(now).as_secs().max(1),
            })
    }

    /// Counts a webhook delivery from `ip` that failed verification: `Err(429)` once that
    /// address has failed more than its tight budget allows (risk D1).
    pub fn failed_webhook(&self, ip: IpAddr) -> Result<(), ApiError> {
        if self.failed_webhooks.len() > TRACKED_CLIENTS_MAX {
            self.failed_webhooks.retain_recent();
        }
        let now = DefaultClock::default().now();
        self.failed_webhooks
            .check_key(&bucket_of(ip))
            .map_err(|not_until| ApiError::RateLimited {
                retry_after_secs: not_until.wait_time_from(now).as_secs().max(1),
            })
    }

    fn check(&self, ip: IpAddr, credential: Option<String>) -> Result<(), ApiError> {
        if self.per_ip.len() > TRACKED_CLIENTS_MAX {
            self.per_ip.retain_recent();
        }
        if self.per_credential.len() > TRACKED_CLIENTS_MAX {
            self.per_credential.retain_recent();
        }
        let now = DefaultClock::default().now();
        let limited = |not_until: governor::NotUntil<_>| ApiError::RateLimited {
            retry_after_secs: not_until.wait_time_from(now).as_secs().max(1),
        };
        self.per_ip.check_key(&bucket_of(ip)).map_err(limited)?;
        if let Some(credential) = credential {
            self.per_credential
                .check_key(&credential)
                .map_err(limited)?;
        }
        Ok(())
    }
}

/// The bucket an address counts in: itself for IPv4; its /64 for IPv6, since one subscriber is
/// given a whole /64 and could otherwise take a fresh bucket per address.
fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
    }
}

/// Middleware for the public routes.
pub async fn limit_public(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(limit) = &state.rate_limit {
        let ip = crate::client_addr::client_of(request.extensions())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let credential = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        // The operator's secret key is not the public surface (it reads orders in bulk).
        let operator = credential
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|key| crate::auth::is_secret_key(key, &state));
        if operator {
            return next.run(request).await;
        }
        if let Err(error) = limit.check(ip, credential) {
            return error.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_s7_an_ipv6_subscriber_is_one_bucket_whatever_address_it_picks() {
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("address");
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("address");
        let neighbour: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(bucket_of(one), bucket_of(other));
        assert_ne!(bucket_of(one), bucket_of(neighbour));
        let v4: IpAddr = "203.0.113.9".parse().expect("address");
        assert_eq!(bucket_of(v4), v4);
        let limit = PublicRateLimit::new(1).expect("on");
        assert!(limit.check(one, None).is_ok() && limit.check(other, None).is_ok());
        assert!(
            limit.check(other, None).is_err(),
            "the /64's burst of 2 is spent"
        );
    }
}
