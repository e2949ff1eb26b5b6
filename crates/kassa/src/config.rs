//! Configuration: the names of API.md, read from the environment and an optional `KEY=VALUE`
//! file, validated all at once before anything starts (risk C1). A bad or missing setting is an
//! error naming it; a misspelt `KASSA_` name is an error too, never silently ignored.
//!
//! Pure: takes the variables as a map, so tests need no process environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use kassa_app::checkout::{HostedCheckoutUrls, VelocityLimits};
use kassa_domain::retention::Retention;
use kassa_http::ServerLimits;
use kassa_store::CommitMode;

/// Every name Kassa reads. Anything else starting with `KASSA_` is refused.
const KNOWN: &[&str] = &[
    "KASSA_LISTEN",
    "KASSA_DATABASE_URL",
    "KASSA_SECRET_KEY",
    "KASSA_PUBLISHABLE_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_SECRETS",
    "KASSA_SIM_LISTEN",
    "KASSA_SANDBOX_SEED",
    "KASSA_RATE_LIMIT",
    "KASSA_TRUSTED_PROXIES",
    "KASSA_CAPTURE_METHOD",
    "KASSA_MODIFICATION_WINDOW_SECS",
    "KASSA_RECONCILE_INTERVAL_SECS",
    "KASSA_RESERVATION_TTL_SECS",
    "KASSA_CART_TTL_SECS",
    "KASSA_OPERATION_RESUME_SECS",
    "KASSA_STRIPE_TIMEOUT_SECS",
    "KASSA_BREAKER_FAILURES",
    "KASSA_BREAKER_COOLDOWN_SECS",
    "KASSA_GROUP_COMMIT",
    "KASSA_GROUP_COMMIT_WAIT_MS",
    "KASSA_NOTIFY_URLS",
    "KASSA_NOTIFY_SECRET",
    "KASSA_CHECKOUT_SUCCESS_URL",
    "KASSA_CHECKOUT_CANCEL_URL",
    "KASSA_CHECKOUT_LIMIT_PER_EMAIL",
    "KASSA_CHECKOUT_LIMIT_PER_IP",
    "KASSA_CHECKOUT_LIMIT_WINDOW_SECS",
    "KASSA_PLATFORM_FEE_BPS",
    "KASSA_RETENTION_IDEMPOTENCY_DAYS",
    "KASSA_RETENTION_WEBHOOK_EVENTS_DAYS",
    "KASSA_RETENTION_NOTIFICATIONS_DAYS",
    "KASSA_HEADER_READ_TIMEOUT_SECS",
    "KASSA_BODY_READ_TIMEOUT_SECS",
    "KASSA_KEEP_ALIVE_IDLE_SECS",
    "KASSA_CONNECTIONS_MAX",
    "KASSA_CONFIG",
];
/// Prefix of variables used by the test suite, not by the server.
const TEST_PREFIX: &str = "KASSA_TEST_";
/// Requests per second per client IP when `KASSA_RATE_LIMIT` is unset: a person clicking through
/// a checkout makes a few; a script making hundreds is stopped.
pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 20;
const RATE_LIMIT_MAX_PER_SEC: u32 = 100_000;
pub const DEFAULT_MODIFICATION_WINDOW_SECS: u64 = 3_600;
pub const DEFAULT_RECONCILE_INTERVAL_SECS: u64 = 60;
/// Half an hour: long enough to type a card number and pass 3-D Secure, short enough that an
/// abandoned checkout does not keep the last units from other customers for long.
pub const DEFAULT_RESERVATION_TTL_SECS: u64 = 1_800;
/// A day of inactivity.
pub const DEFAULT_CART_TTL_SECS: u64 = 86_400;
/// Checkouts per customer e-mail per window outside the sandbox: more than a person buying
/// again, fewer than a script testing stolen cards.
pub const DEFAULT_CHECKOUT_LIMIT_PER_EMAIL: u64 = 10;
/// Per client address: off unless set. Behind a reverse proxy or load balancer every customer
/// arrives from the proxy's address, and the connection's peer is all Kassa trusts.
pub const DEFAULT_CHECKOUT_LIMIT_PER_IP: u64 = 0;
pub const DEFAULT_CHECKOUT_LIMIT_WINDOW_SECS: u64 = 3_600;
/// Longer than a provider call with its retries can take, so a live request is never resumed.
pub const DEFAULT_OPERATION_RESUME_SECS: u64 = 60;
/// How long one attempt of a Stripe call may take, sending to the whole answer read.
pub const DEFAULT_STRIPE_TIMEOUT_SECS: u64 = 15;
/// The longest per-attempt timeout: three attempts of 18 s and their backoff (at most 2 s each)
/// end before the 60 s checkout lock does, so a checkout still talking to Stripe is never
/// resumed by the completer.
const STRIPE_TIMEOUT_MAX_SECS: u64 = 18;
/// Unknown outcomes of checkouts' Stripe calls in a row that open the breaker (risk G7): more
/// than a passing blip's few timeouts, few enough that little of a rush waits out a dead Stripe.
pub const DEFAULT_BREAKER_FAILURES: u64 = 5;
/// How long the open breaker refuses new checkouts before probing Stripe again.
pub const DEFAULT_BREAKER_COOLDOWN_SECS: u64 = 30;
/// Checkouts let through at once as probes when the cool-down is over: a few, so that one
/// customer's slow request does not decide alone, and few enough to hold little if Stripe is
/// still down.
const BREAKER_PROBES: u32 = 3;
/// The longest a commit may wait for more units: every answer waits this long at most.
const GROUP_COMMIT_WAIT_MAX_MS: u64 = 1_000;
/// A card authorization lapses after 7 days at Stripe; the window (and so the scheduled
/// capture) must end a full day before that, or the capture may find nothing to take.
const MODIFICATION_WINDOW_MAX_SECS: u64 = 6 * 86_400;
/// Longest protocol time limit that may be configured: past an hour a limit protects nothing.
const TIMEOUT_MAX_SECS: u64 = 3_600;
/// Most connections that may be configured (each holds a file descriptor and a task).
const CONNECTIONS_MAX: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// No `STRIPE_SECRET_KEY`: the built-in emulator plays Stripe.
    Sandbox {
        sim_listen: SocketAddr,
        seed_demo: bool,
    },
    Stripe(StripeSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSettings {
    pub secret_key: String,
    pub api_base: String,
    pub webhook_secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// `None` in sandbox mode when unset: generated (and kept under ./kassa-data/).
    pub secret_key: Option<String>,
    pub publishable_key: Option<String>,
    pub rate_limit_per_sec: u32,
    /// Proxies whose forwarding headers name the client (none: the socket peer is the client).
    pub trusted_proxies: kassa_http::TrustedProxies,
    /// `true`: authorize at checkout, capture later (manual capture).
    pub capture_manually: bool,
    /// How long after checkout the customer may edit or cancel; manual capture runs then.
    pub modification_window_secs: i64,
    /// How often reconciliation runs: a missed webhook is recovered within this.
    pub reconcile_interval_secs: u64,
    /// How long an unpaid checkout holds its stock before the janitor cancels it (extended
    /// while a payment is in progress).
    pub reservation_ttl_secs: i64,
    /// Inactivity after which an open cart expires.
    pub cart_ttl_secs: i64,
    /// How long a capture, cancel or expiry may stay pending before another worker takes it.
    pub operation_resume_secs: i64,
    /// How long one attempt of a Stripe call may take before its outcome counts as unknown.
    pub stripe_timeout_secs: u64,
    /// When new checkouts stop calling a Stripe that does not answer, and for how long.
    pub stripe_breaker: kassa_domain::breaker::BreakerRule,
    /// Whether requests' transactions share commits (by default on for SQLite, off for
    /// PostgreSQL), and how long a commit waits for company.
    pub commit_mode: CommitMode,
    /// Where merchant notifications are POSTed; empty: none are sent.
    pub notify_urls: Vec<String>,
    /// What signs them; `None` in sandbox mode when unset (generated and kept).
    pub notify_secret: Option<String>,
    /// How long clients may take to send headers and bodies, idle between requests, and how
    /// many connections may be open.
    pub server_limits: ServerLimits,
    /// Where the hosted payment page sends the customer back; `None` when unset: the demo
    /// storefront's pages in sandbox mode, no hosted checkout outside it.
    pub hosted_checkout: Option<HostedCheckoutUrls>,
    /// Checkouts per customer e-mail and per client address per window (risk S7).
    pub checkout_velocity: VelocityLimits,
    /// The platform's fee on a marketplace seller's sale, in basis points.
    pub platform_fee_bps: i64,
    /// How long the janitor keeps idempotency keys, webhook events and notifications (risk D2).
    pub retention: Retention,
    pub mode: Mode,
}

/// A setting that is missing or malformed: the name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {name}: {problem}")]
pub struct ConfigError {
    pub name: String,
    pub problem: String,
}

fn bad(name: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.to_owned(),
        problem: problem.into(),
    }
}

/// Parses a `KEY=VALUE` file: blank lines and `#` comments allowed, values may be quoted.
pub fn parse_file(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut values = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| {
            bad(
                &format!("config file line {}", number + 1),
                "expected KEY=VALUE",
            )
        })?;
        let value = value.trim().trim_matches('"');
        values.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(values)
}

impl Config {
    /// Validates `file` values overlaid by `env` values (the environment wins).
    pub fn from_sources(
        env: &BTreeMap<String, String>,
        file: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        for name in file.keys() {
            if !KNOWN.contains(&name.as_str()) {
                return Err(bad(name, "unknown setting in the config file"));
            }
        }
        for name in env.keys() {
            if name.starts_with("KASSA_")
                && !name.starts_with(TEST_PREFIX)
                && !KNOWN.contains(&name.as_str())
            {
                return Err(bad(name, "unknown KASSA_ setting (misspelt?)"));
            }
        }
        let get = |name: &str| {
            env.get(name)
                .or_else(|| file.get(name))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let listen = address(
            "KASSA_LISTEN",
            get("KASSA_LISTEN").as_deref().unwrap_or("127.0.0.1:8080"),
        )?;
        let database_url = get("KASSA_DATABASE_URL")
            .unwrap_or_else(|| "sqlite://./kassa-data/kassa.db".to_owned());
        let Ok(backend) = kassa_store::Backend::of_url(&database_url) else {
            return Err(bad(
                "KASSA_DATABASE_URL",
                "must start with sqlite:// or postgres://",
            ));
        };
        let secret_key = get("KASSA_SECRET_KEY")
            .map(|k| key("KASSA_SECRET_KEY", k, "sk_"))
            .transpose()?;
        let publishable_key = get("KASSA_PUBLISHABLE_KEY")
            .map(|k| key("KASSA_PUBLISHABLE_KEY", k, "pk_"))
            .transpose()?;
        let rate_limit_per_sec = match get("KASSA_RATE_LIMIT") {
            None => DEFAULT_RATE_LIMIT_PER_SEC,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= RATE_LIMIT_MAX_PER_SEC)
                .ok_or_else(|| {
                    bad(
                        "KASSA_RATE_LIMIT",
                        format!("must be a whole number from 0 to {RATE_LIMIT_MAX_PER_SEC}"),
                    )
                })?,
        };
        let trusted_proxies = kassa_http::TrustedProxies::parse(
            get("KASSA_TRUSTED_PROXIES").as_deref().unwrap_or_default(),
        )
        .map_err(|reason| bad("KASSA_TRUSTED_PROXIES", reason))?;
        let capture_manually = match get("KASSA_CAPTURE_METHOD").as_deref() {
            None | Some("automatic") => false,
            Some("manual") => true,
            Some(_) => {
                return Err(bad(
                    "KASSA_CAPTURE_METHOD",
                    "must be `automatic` or `manual`",
                ));
            }
        };
        let modification_window_secs = i64::try_from(whole_number(
            &get,
            "KASSA_MODIFICATION_WINDOW_SECS",
            DEFAULT_MODIFICATION_WINDOW_SECS,
            1..=MODIFICATION_WINDOW_MAX_SECS,
        )?)
        .unwrap_or(i64::MAX);
        let reconcile_interval_secs = whole_number(
            &get,
            "KASSA_RECONCILE_INTERVAL_SECS",
            DEFAULT_RECONCILE_INTERVAL_SECS,
            5..=3_600,
        )?;
        let seconds_setting = |name: &str, default: u64, max: u64| {
            whole_number(&get, name, default, 60..=max)
                .map(|secs| i64::try_from(secs).unwrap_or(i64::MAX))
        };
        let reservation_ttl_secs = seconds_setting(
            "KASSA_RESERVATION_TTL_SECS",
            DEFAULT_RESERVATION_TTL_SECS,
            86_400,
        )?;
        let cart_ttl_secs =
            seconds_setting("KASSA_CART_TTL_SECS", DEFAULT_CART_TTL_SECS, 90 * 86_400)?;
        let operation_resume_secs = i64::try_from(whole_number(
            &get,
            "KASSA_OPERATION_RESUME_SECS",
            DEFAULT_OPERATION_RESUME_SECS,
            1..=3_600,
        )?)
        .unwrap_or(i64::MAX);
        let stripe_timeout_secs = whole_number(
            &get,
            "KASSA_STRIPE_TIMEOUT_SECS",
            DEFAULT_STRIPE_TIMEOUT_SECS,
            1..=STRIPE_TIMEOUT_MAX_SECS,
        )?;
        let stripe_breaker = kassa_domain::breaker::BreakerRule {
            failures: u32::try_from(whole_number(
                &get,
                "KASSA_BREAKER_FAILURES",
                DEFAULT_BREAKER_FAILURES,
                0..=1_000,
            )?)
            .map_err(|_| bad("KASSA_BREAKER_FAILURES", "too large"))?,
            cooldown_secs: i64::try_from(whole_number(
                &get,
                "KASSA_BREAKER_COOLDOWN_SECS",
                DEFAULT_BREAKER_COOLDOWN_SECS,
                1..=3_600,
            )?)
            .map_err(|_| bad("KASSA_BREAKER_COOLDOWN_SECS", "too large"))?,
            probes: BREAKER_PROBES,
        };
        let wait = Duration::from_millis(whole_number(
            &get,
            "KASSA_GROUP_COMMIT_WAIT_MS",
            0,
            0..=GROUP_COMMIT_WAIT_MAX_MS,
        )?);
        let commit_mode = match get("KASSA_GROUP_COMMIT").as_deref() {
            None => match CommitMode::default_for(backend) {
                CommitMode::Grouped { .. } => CommitMode::Grouped { wait },
                CommitMode::PerUnit => CommitMode::PerUnit,
            },
            Some("on") => CommitMode::Grouped { wait },
            Some("off") => CommitMode::PerUnit,
            Some(_) => return Err(bad("KASSA_GROUP_COMMIT", "must be `on` or `off`")),
        };
        let notify_urls = notify_urls(get("KASSA_NOTIFY_URLS"))?;
        let notify_secret = get("KASSA_NOTIFY_SECRET");
        if notify_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 16)
        {
            return Err(bad("KASSA_NOTIFY_SECRET", "must be at least 16 characters"));
        }
        let server_limits = server_limits(&get)?;
        let mode = match get("STRIPE_SECRET_KEY") {
            None => sandbox_mode(&get)?,
            Some(stripe_key) => Mode::Stripe(stripe_settings(&get, stripe_key)?),
        };
        let checkout_velocity = velocity_limits(&get, matches!(mode, Mode::Sandbox { .. }))?;
        let platform_fee_bps =
            i64::try_from(whole_number(&get, "KASSA_PLATFORM_FEE_BPS", 0, 0..=10_000)?)
                .map_err(|_| bad("KASSA_PLATFORM_FEE_BPS", "too large"))?;
        let retention = retention(&get)?;
        let hosted_checkout = hosted_checkout_urls(&get)?;
        if matches!(mode, Mode::Stripe(_)) && !notify_urls.is_empty() && notify_secret.is_none() {
            return Err(bad(
                "KASSA_NOTIFY_SECRET",
                "required when KASSA_NOTIFY_URLS is set outside sandbox mode",
            ));
        }
        if matches!(mode, Mode::Stripe(_)) {
            if secret_key.is_none() {
                return Err(bad(
                    "KASSA_SECRET_KEY",
                    "required when STRIPE_SECRET_KEY is set",
                ));
            }
            if publishable_key.is_none() {
                return Err(bad(
                    "KASSA_PUBLISHABLE_KEY",
                    "required when STRIPE_SECRET_KEY is set",
                ));
            }
        }
        Ok(Config {
            listen,
            database_url,
            secret_key,
            publishable_key,
            rate_limit_per_sec,
            trusted_proxies,
            capture_manually,
            modification_window_secs,
            reconcile_interval_secs,
            reservation_ttl_secs,
            cart_ttl_secs,
            operation_resume_secs,
            stripe_timeout_secs,
            stripe_breaker,
            commit_mode,
            notify_urls,
            notify_secret,
            server_limits,
            hosted_checkout,
            checkout_velocity,
            platform_fee_bps,
            retention,
            mode,
        })
    }
}

/// The checkout velocity limits; off by default in sandbox mode, where every checkout comes
/// from the developer's own machine.
fn velocity_limits(
    get: &dyn Fn(&str) -> Option<String>,
    sandbox: bool,
) -> Result<VelocityLimits, ConfigError> {
    let (per_email, per_ip) = if sandbox {
        (0, 0)
    } else {
        (
            DEFAULT_CHECKOUT_LIMIT_PER_EMAIL,
            DEFAULT_CHECKOUT_LIMIT_PER_IP,
        )
    };
    let count = |name: &str, default: u64| -> Result<u32, ConfigError> {
        let value = whole_number(get, name, default, 0..=1_000_000)?;
        u32::try_from(value).map_err(|_| bad(name, "too large"))
    };
    let window = whole_number(
        get,
        "KASSA_CHECKOUT_LIMIT_WINDOW_SECS",
        DEFAULT_CHECKOUT_LIMIT_WINDOW_SECS,
        60..=604_800,
    )?;
    Ok(VelocityLimits {
        per_email: count("KASSA_CHECKOUT_LIMIT_PER_EMAIL", per_email)?,
        per_client_ip: count("KASSA_CHECKOUT_LIMIT_PER_IP", per_ip)?,
        window_secs: i64::try_from(window)
            .map_err(|_| bad("KASSA_CHECKOUT_LIMIT_WINDOW_SECS", "too large"))?,
    })
}

/// The retentions, in days, each within its bounds (`Retention`'s: a key is kept longer than
/// Stripe keeps its own, an event longer than Stripe redelivers it).
fn retention(get: &dyn Fn(&str) -> Option<String>) -> Result<Retention, ConfigError> {
    let days = |name: &str, default: u32, bounds: std::ops::RangeInclusive<u32>| {
        let range = u64::from(*bounds.start())..=u64::from(*bounds.end());
        whole_number(get, name, u64::from(default), range)
            .and_then(|days| u32::try_from(days).map_err(|_| bad(name, "too large")))
    };
    let d = Retention::DEFAULT;
    Ok(Retention {
        idempotency_key_days: days(
            "KASSA_RETENTION_IDEMPOTENCY_DAYS",
            d.idempotency_key_days,
            Retention::IDEMPOTENCY_KEY_DAYS,
        )?,
        webhook_event_days: days(
            "KASSA_RETENTION_WEBHOOK_EVENTS_DAYS",
            d.webhook_event_days,
            Retention::WEBHOOK_EVENT_DAYS,
        )?,
        notification_days: days(
            "KASSA_RETENTION_NOTIFICATIONS_DAYS",
            d.notification_days,
            Retention::NOTIFICATION_DAYS,
        )?,
    })
}

/// `KASSA_CHECKOUT_SUCCESS_URL` and `KASSA_CHECKOUT_CANCEL_URL`, both or neither. Unset in
/// sandbox mode, `kassa serve` uses the demo storefront's pages on the address it listens on.
fn hosted_checkout_urls(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<HostedCheckoutUrls>, ConfigError> {
    let url = |name: &str| -> Result<Option<String>, ConfigError> {
        match get(name) {
            None => Ok(None),
            Some(url)
                if (url.starts_with("http://") || url.starts_with("https://"))
                    && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                Ok(Some(url))
            }
            Some(url) => Err(bad(name, format!("{url:?} is not an http(s) URL"))),
        }
    };
    match (
        url("KASSA_CHECKOUT_SUCCESS_URL")?,
        url("KASSA_CHECKOUT_CANCEL_URL")?,
    ) {
        (Some(success_url), Some(cancel_url)) => Ok(Some(HostedCheckoutUrls {
            success_url,
            cancel_url,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad(
            "KASSA_CHECKOUT_CANCEL_URL",
            "required when KASSA_CHECKOUT_SUCCESS_URL is set",
        )),
        (None, Some(_)) => Err(bad(
            "KASSA_CHECKOUT_SUCCESS_URL",
            "required when KASSA_CHECKOUT_CANCEL_URL is set",
        )),
    }
}

fn sandbox_mode(get: &dyn Fn(&str) -> Option<String>) -> Result<Mode, ConfigError> {
    let sim_listen = address(
        "KASSA_SIM_LISTEN",
        get("KASSA_SIM_LISTEN")
            .as_deref()
            .unwrap_or("127.0.0.1:12111"),
    )?;
    let seed_demo = match get("KASSA_SANDBOX_SEED").as_deref() {
        None | Some("demo") => true,
        Some("none") => false,
        Some(_) => return Err(bad("KASSA_SANDBOX_SEED", "must be `demo` or `none`")),
    };
    Ok(Mode::Sandbox {
        sim_listen,
        seed_demo,
    })
}

fn stripe_settings(
    get: &dyn Fn(&str) -> Option<String>,
    secret_key: String,
) -> Result<StripeSettings, ConfigError> {
    let secret_key = if secret_key.starts_with("sk_") || secret_key.starts_with("rk_") {
        secret_key
    } else {
        return Err(bad(
            "STRIPE_SECRET_KEY",
            "must be a Stripe secret key (sk_… or rk_…)",
        ));
    };
    let api_base = get("STRIPE_API_BASE").unwrap_or_else(|| "https://api.stripe.com".to_owned());
    if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
        return Err(bad("STRIPE_API_BASE", "must be an http:// or https:// URL"));
    }
    let secrets = get("STRIPE_WEBHOOK_SECRETS").ok_or_else(|| {
        bad(
            "STRIPE_WEBHOOK_SECRETS",
            "required when STRIPE_SECRET_KEY is set",
        )
    })?;
    let webhook_secrets: Vec<String> = secrets.split(',').map(|s| s.trim().to_owned()).collect();
    if webhook_secrets
        .iter()
        .any(|s| !s.starts_with("whsec_") || s.len() <= "whsec_".len())
    {
        return Err(bad(
            "STRIPE_WEBHOOK_SECRETS",
            "must be comma-separated whsec_… secrets",
        ));
    }
    Ok(StripeSettings {
        secret_key,
        api_base: api_base.trim_end_matches('/').to_owned(),
        webhook_secrets,
    })
}

/// Comma-separated http(s) URLs.
fn notify_urls(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(url.to_owned())
            } else {
                Err(bad(
                    "KASSA_NOTIFY_URLS",
                    format!("{url:?} is not an http(s) URL"),
                ))
            }
        })
        .collect()
}

/// A whole number setting within `range`, or `default` when unset.
fn whole_number(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(text) = get(name) else {
        return Ok(default);
    };
    text.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            bad(
                name,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

fn server_limits(get: &dyn Fn(&str) -> Option<String>) -> Result<ServerLimits, ConfigError> {
    let defaults = ServerLimits::default();
    let seconds = |name: &str, default: Duration| {
        whole_number(get, name, default.as_secs(), 1..=TIMEOUT_MAX_SECS).map(Duration::from_secs)
    };
    let connections_max = whole_number(
        get,
        "KASSA_CONNECTIONS_MAX",
        u64::try_from(defaults.connections_max).unwrap_or(u64::MAX),
        1..=CONNECTIONS_MAX,
    )?;
    Ok(ServerLimits {
        header_read_timeout: seconds(
            "KASSA_HEADER_READ_TIMEOUT_SECS",
            defaults.header_read_timeout,
        )?,
        body_read_timeout: seconds("KASSA_BODY_READ_TIMEOUT_SECS", defaults.body_read_timeout)?,
        keep_alive_idle_timeout: seconds(
            "KASSA_KEEP_ALIVE_IDLE_SECS",
            defaults.keep_alive_idle_timeout,
        )?,
        connections_max: usize::try_from(connections_max).unwrap_or(usize::MAX),
    })
}

fn address(name: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        bad(
            name,
            format!("{text:?} is not an address like 127.0.0.1:8080"),
        )
    })
}

fn key(name: &str, value: String, prefix: &str) -> Result<String, ConfigError> {
    // 16 characters after the prefix at the least: a short key is guessable.
    if value.starts_with(prefix)
        && value.len() >= prefix.len() + 16
        && value.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(value)
    } else {
        Err(bad(
            name,
            format!("must start with {prefix} followed by at least 16 characters"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn error_name(pairs: &[(&str, &str)]) -> String {
        Config::from_sources(&env(pairs), &BTreeMap::new())
            .expect_err("configuration must be refused")
            .name
    }

    #[test]
    fn no_configuration_is_sandbox_mode_with_defaults() {
        let config =
            Config::from_sources(&BTreeMap::new(), &BTreeMap::new()).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://./kassa-data/kassa.db");
        assert!(matches!(
            config.mode,
            Mode::Sandbox {
                seed_demo: true,
                ..
            }
        ));
        assert_eq!(config.rate_limit_per_sec, DEFAULT_RATE_LIMIT_PER_SEC);
        assert_eq!(config.retention, Retention::DEFAULT);
    }

    /// Risk D2: each retention is a setting, in days, within its bounds: no shorter than
    /// Stripe keeps its own keys (a day) or redelivers an event (3 days).
    #[test]
    fn risk_d2_each_retention_is_a_bounded_setting() {
        let set = [
            ("KASSA_RETENTION_IDEMPOTENCY_DAYS", "2"),
            ("KASSA_RETENTION_WEBHOOK_EVENTS_DAYS", "3"),
            ("KASSA_RETENTION_NOTIFICATIONS_DAYS", "90"),
        ];
        let config = Config::from_sources(&env(&set), &BTreeMap::new()).expect("valid");
        assert_eq!(
            config.retention,
            Retention {
                idempotency_key_days: 2,
                webhook_event_days: 3,
                notification_days: 90,
            }
        );
        for (name, value) in [
            ("KASSA_RETENTION_IDEMPOTENCY_DAYS", "0"),
            ("KASSA_RETENTION_WEBHOOK_EVENTS_DAYS", "2"),
            ("KASSA_RETENTION_NOTIFICATIONS_DAYS", "0"),
            ("KASSA_RETENTION_NOTIFICATIONS_DAYS", "3651"),
            ("KASSA_RETENTION_IDEMPOTENCY_DAYS", "a week"),
        ] {
            assert_eq!(error_name(&[(name, value)]), name, "{name}={value}");
        }
    }

    /// The hosted page's return URLs: the demo storefront in the sandbox, none outside it
    /// unless both are set, never a half-configured pair or something that is not http(s).
    #[test]
    fn risk_s5_hosted_checkout_urls_come_from_configuration() {
        let sandbox = Config::from_sources(&BTreeMap::new(), &BTreeMap::new()).expect("valid");
        assert_eq!(
            sandbox.hosted_checkout, None,
            "the server fills in the demo's"
        );
        let live = [
            ("STRIPE_SECRET_KEY", "sk_test_0123456789abcdef"),
            ("KASSA_SECRET_KEY", "sk_live_0123456789abcdef"),
            ("KASSA_PUBLISHABLE_KEY", "pk_live_0123456789abcdef"),
            ("STRIPE_WEBHOOK_SECRETS", "whsec_one"),
        ];
        let config = Config::from_sources(&env(&live), &BTreeMap::new()).expect("valid");
        assert_eq!(config.hosted_checkout, None);
        // Velocity limits (risk S7): on outside the sandbox, off in it unless set.
        assert_eq!(
            config.checkout_velocity,
            VelocityLimits {
                per_email: 10,
                per_client_ip: 0,
                window_secs: 3_600
            }
        );
        assert_eq!(sandbox.checkout_velocity.per_email, 0);
        assert_eq!(
            error_name(&[("KASSA_CHECKOUT_LIMIT_WINDOW_SECS", "5")]),
            "KASSA_CHECKOUT_LIMIT_WINDOW_SECS"
        );
        let mut both = live.to_vec();
        both.extend([
            (
                "KASSA_CHECKOUT_SUCCESS_URL",
                "https://shop.example/thanks?s={CHECKOUT_SESSION_ID}",
            ),
            ("KASSA_CHECKOUT_CANCEL_URL", "https://shop.example/cart"),
        ]);
        let config = Config::from_sources(&env(&both), &BTreeMap::new()).expect("valid");
        assert_eq!(
            config.hosted_checkout.map(|urls| urls.cancel_url),
            Some("https://shop.example/cart".to_owned())
        );
        assert_eq!(
            error_name(&[("KASSA_CHECKOUT_SUCCESS_URL", "https://shop.example/thanks")]),
            "KASSA_CHECKOUT_CANCEL_URL"
        );
        assert_eq!(
            error_name(&[
                ("KASSA_CHECKOUT_SUCCESS_URL", "javascript:alert(1)"),
                ("KASSA_CHECKOUT_CANCEL_URL", "https://shop.example/cart"),
            ]),
            "KASSA_CHECKOUT_SUCCESS_URL"
        );
    }

    #[test]
    fn risk_c1_each_malformed_setting_is_named() {
        assert_eq!(error_name(&[("KASSA_LISTEN", "localhost")]), "KASSA_LISTEN");
        assert_eq!(
            error_name(&[("KASSA_DATABASE_URL", "mysql://x")]),
            "KASSA_DATABASE_URL"
        );
        assert_eq!(
            error_name(&[("KASSA_SECRET_KEY", "secret")]),
            "KASSA_SECRET_KEY"
        );
        assert_eq!(
            error_name(&[("KASSA_PUBLISHABLE_KEY", "sk_0123456789abcdef")]),
            "KASSA_PUBLISHABLE_KEY"
        );
        assert_eq!(
            error_name(&[("KASSA_RATE_LIMIT", "fast")]),
            "KASSA_RATE_LIMIT"
        );
        assert_eq!(
            error_name(&[("KASSA_RATE_LIMIT", "-1")]),
            "KASSA_RATE_LIMIT"
        );
        assert_eq!(
            error_name(&[("KASSA_SIM_LISTEN", "12111")]),
            "KASSA_SIM_LISTEN"
        );
        assert_eq!(
            error_name(&[("KASSA_SANDBOX_SEED", "full")]),
            "KASSA_SANDBOX_SEED"
        );
        assert_eq!(
            error_name(&[("KASSA_DATABSE_URL", "sqlite://x.db")]),
            "KASSA_DATABSE_URL"
        );
        assert_eq!(
            error_name(&[("KASSA_MODIFICATION_WINDOW_SECS", "604800")]),
            "KASSA_MODIFICATION_WINDOW_SECS",
            "a window as long as an authorization lives is refused"
        );
        assert_eq!(
            error_name(&[("KASSA_NOTIFY_URLS", "ftp://shop.example/hook")]),
            "KASSA_NOTIFY_URLS"
        );
        assert_eq!(
            error_name(&[("KASSA_NOTIFY_SECRET", "short")]),
            "KASSA_NOTIFY_SECRET"
        );
        for name in [
            "KASSA_OPERATION_RESUME_SECS",
            "KASSA_RESERVATION_TTL_SECS",
            "KASSA_CART_TTL_SECS",
            "KASSA_RECONCILE_INTERVAL_SECS",
            "KASSA_MODIFICATION_WINDOW_SECS",
            "KASSA_HEADER_READ_TIMEOUT_SECS",
            "KASSA_BODY_READ_TIMEOUT_SECS",
            "KASSA_KEEP_ALIVE_IDLE_SECS",
            "KASSA_CONNECTIONS_MAX",
        ] {
            assert_eq!(error_name(&[(name, "0")]), name);
            assert_eq!(error_name(&[(name, "soon")]), name);
        }
    }

    #[test]
    fn protocol_limits_are_read_by_their_names() {
        let config = Config::from_sources(
            &env(&[
                ("KASSA_HEADER_READ_TIMEOUT_SECS", "3"),
                ("KASSA_BODY_READ_TIMEOUT_SECS", "4"),
                ("KASSA_KEEP_ALIVE_IDLE_SECS", "5"),
                ("KASSA_CONNECTIONS_MAX", "6"),
            ]),
            &BTreeMap::new(),
        )
        .expect("valid");
        assert_eq!(
            config.server_limits,
            ServerLimits {
                header_read_timeout: Duration::from_secs(3),
                body_read_timeout: Duration::from_secs(4),
                keep_alive_idle_timeout: Duration::from_secs(5),
                connections_max: 6,
            }
        );
    }

    #[test]
    fn risk_c1_live_mode_requires_every_secret_up_front() {
        let keys = [
            ("KASSA_SECRET_KEY", "sk_0123456789abcdef"),
            ("KASSA_PUBLISHABLE_KEY", "pk_0123456789abcdef"),
        ];
        let stripe = ("STRIPE_SECRET_KEY", "sk_test_abc");
        let hooks = ("STRIPE_WEBHOOK_SECRETS", "whsec_one,whsec_two");
        assert_eq!(
            error_name(&[stripe, keys[0], keys[1]]),
            "STRIPE_WEBHOOK_SECRETS"
        );
        assert_eq!(error_name(&[stripe, hooks, keys[1]]), "KASSA_SECRET_KEY");
        assert_eq!(
            error_name(&[stripe, hooks, keys[0]]),
            "KASSA_PUBLISHABLE_KEY"
        );
        assert_eq!(
            error_name(&[("STRIPE_SECRET_KEY", "pk_live_x"), hooks, keys[0], keys[1]]),
            "STRIPE_SECRET_KEY"
        );
        assert_eq!(
            error_name(&[
                stripe,
                ("STRIPE_WEBHOOK_SECRETS", "whsec_ok,oops"),
                keys[0],
                keys[1]
            ]),
            "STRIPE_WEBHOOK_SECRETS"
        );
        assert_eq!(
            error_name(&[
                stripe,
                hooks,
                keys[0],
                keys[1],
                ("STRIPE_API_BASE", "api.stripe.com")
            ]),
            "STRIPE_API_BASE"
        );
        let config =
            Config::from_sources(&env(&[stripe, hooks, keys[0], keys[1]]), &BTreeMap::new())
                .expect("valid");
        match config.mode {
            Mode::Stripe(settings) => {
                assert_eq!(settings.webhook_secrets, vec!["whsec_one", "whsec_two"])
            }
            other => panic!("expected live mode, got {other:?}"),
        }
    }

    #[test]
    fn risk_c1_config_file_is_validated_and_env_wins() {
        let file = parse_file("# comment\nKASSA_LISTEN=127.0.0.1:9000\nKASSA_RATE_LIMIT=\"5\"\n")
            .expect("parses");
        let config =
            Config::from_sources(&env(&[("KASSA_RATE_LIMIT", "7")]), &file).expect("valid");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.rate_limit_per_sec, 7);
        let typo = parse_file("KASSA_LISTN=127.0.0.1:9000").expect("parses");
        assert_eq!(
            Config::from_sources(&BTreeMap::new(), &typo)
                .expect_err("refused")
                .name,
            "KASSA_LISTN"
        );
        assert!(parse_file("just words").is_err());
    }

    /// Risk G7: the breaker in front of Stripe is on by default, each of its settings bounded;
    /// `KASSA_BREAKER_FAILURES=0` turns it off.
    #[test]
    fn risk_g7_breaker_settings_are_validated() {
        let config = Config::from_sources(&BTreeMap::new(), &BTreeMap::new()).expect("valid");
        assert_eq!(
            config.stripe_breaker,
            kassa_domain::breaker::BreakerRule {
                failures: 5,
                cooldown_secs: 30,
                probes: BREAKER_PROBES,
            }
        );
        let set = [
            ("KASSA_BREAKER_FAILURES", "0"),
            ("KASSA_BREAKER_COOLDOWN_SECS", "600"),
        ];
        let config = Config::from_sources(&env(&set), &BTreeMap::new()).expect("valid");
        assert_eq!(
            (
                config.stripe_breaker.failures,
                config.stripe_breaker.cooldown_secs
            ),
            (0, 600)
        );
        for (name, value) in [
            ("KASSA_BREAKER_FAILURES", "-1"),
            ("KASSA_BREAKER_FAILURES", "1001"),
            ("KASSA_BREAKER_COOLDOWN_SECS", "0"),
            ("KASSA_BREAKER_COOLDOWN_SECS", "3601"),
            ("KASSA_BREAKER_COOLDOWN_SECS", "half a minute"),
        ] {
            assert_eq!(error_name(&[(name, value)]), name, "{name}={value}");
        }
    }
}
