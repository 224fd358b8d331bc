//! Per-user token buckets. The bucket math is here; the buckets live in Envoy shared data
//! (one key per tenant + user [+ tool]), updated with compare-and-swap so that every worker
//! draws from one budget. The limits themselves come from the `rateLimits` section.

use std::collections::HashMap;

use serde::Deserialize;

use crate::config_error::{at_least, ConfigError};

/// A limit: `per_minute` calls sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
    pub per_tool: bool,
}

/// A bucket's state: tokens left (fractional) at `updated_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub updated_ms: u64,
}

impl Bucket {
    pub fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.tokens.to_le_bytes());
        out[8..].copy_from_slice(&self.updated_ms.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Bucket> {
        let tokens = f64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let updated_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        tokens.is_finite().then_some(Bucket { tokens, updated_ms })
    }
}

/// Takes one token at `now_ms` from `bucket` (a full bucket when `None`). Returns the new state
/// and, when no token was left, the whole seconds to wait for one. A `now_ms` before the
/// bucket's last update (a request that started earlier, another worker's clock) refills
/// nothing and leaves the update time where it was, so no interval is refilled twice.
pub fn take(bucket: Option<Bucket>, limit: Limit, now_ms: u64) -> (Bucket, Result<(), u64>) {
    let burst = f64::from(limit.burst.max(1));
    let per_ms = f64::from(limit.per_minute) / 60_000.0;
    let (tokens, since, now_ms) = match bucket {
        Some(b) => (
            b.tokens,
            now_ms.saturating_sub(b.updated_ms),
            now_ms.max(b.updated_ms),
        ),
        None => (burst, 0, now_ms),
    };
    let tokens = (tokens + since as f64 * per_ms).min(burst);
    if tokens >= 1.0 {
        return (
            Bucket {
                tokens: tokens - 1.0,
                updated_ms: now_ms,
            },
            Ok(()),
        );
    }
    let wait_ms = if per_ms > 0.0 {
        (1.0 - tokens) / per_ms
    } else {
        60_000.0
    };
    let wait_s = (wait_ms / 1000.0).ceil().max(1.0) as u64;
    (
        Bucket {
            tokens,
            updated_ms: now_ms,
        },
        Err(wait_s),
    )
}

/// The shared-data key of a caller's bucket.
pub fn key(tenant: &str, sub: &str, tool: Option<&str>) -> String {
    let mut key = format!("acp.rl\u{1f}{tenant}\u{1f}{sub}");
    if let Some(tool) = tool {
        key.push('\u{1f}');
        key.push_str(tool);
    }
    key
}

/// The rate limits of each tenant's users (`rateLimits`).
#[derive(Debug)]
pub struct RateLimits {
    pub default: Limit,
    pub tenants: HashMap<String, Limit>,
}

impl RateLimits {
    pub fn for_tenant(&self, tenant: &str) -> Limit {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

/// `rateLimits` as written in the plugin configuration.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLimit {
    requests_per_minute: u32,
    burst: u32,
    #[serde(default)]
    per_tool: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRateLimits {
    #[serde(flatten)]
    default: RawLimit,
    #[serde(default)]
    tenants: HashMap<String, RawLimit>,
}

impl RawLimit {
    fn validate(self, field: &str) -> Result<Limit, ConfigError> {
        at_least(
            &format!("{field}.requestsPerMinute"),
            u64::from(self.requests_per_minute),
            1,
        )?;
        at_least(&format!("{field}.burst"), u64::from(self.burst), 1)?;
        Ok(Limit {
            per_minute: self.requests_per_minute,
            burst: self.burst,
            per_tool: self.per_tool,
        })
    }
}

impl TryFrom<RawRateLimits> for RateLimits {
    type Error = ConfigError;

    fn try_from(raw: RawRateLimits) -> Result<RateLimits, ConfigError> {
        let mut tenants = HashMap::new();
        for (tenant, limit) in raw.tenants {
            let limit = limit.validate(&format!("rateLimits.tenants.{tenant}"))?;
            tenants.insert(tenant, limit);
        }
        Ok(RateLimits {
            default: raw.default.validate("rateLimits")?,
            tenants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        per_minute: 60,
        burst: 3,
        per_tool: false,
    };

    #[test]
    fn burst_then_refill_at_the_rate() {
        let (mut b, mut r) = take(None, LIMIT, 0);
        assert!(r.is_ok());
        for _ in 0..2 {
            (b, r) = take(Some(b), LIMIT, 0);
            assert!(r.is_ok());
        }
        let (b, r) = take(Some(b), LIMIT, 0);
        assert_eq!(r, Err(1));
        let (b, r) = take(Some(b), LIMIT, 999);
        assert_eq!(r, Err(1), "60/min: one token per second");
        let (b, r) = take(Some(b), LIMIT, 1000);
        assert!(r.is_ok());
        let (_, r) = take(Some(b), LIMIT, 100_000);
        assert!(r.is_ok(), "refill is capped at the burst, never lost");
    }

    #[test]
    fn an_earlier_time_refills_nothing_and_nothing_twice() {
        let one = Limit {
            per_minute: 60,
            burst: 1,
            per_tool: false,
        };
        let (b, _) = take(None, one, 5_000);
        let (b, r) = take(Some(b), one, 4_000);
        assert_eq!((r, b.updated_ms), (Err(1), 5_000));
        let (_, r) = take(Some(b), one, 5_999);
        assert_eq!(r, Err(1), "the second from 4,000 to 5,000 is not refilled");
    }

    #[test]
    fn slow_limits_wait_longer_and_state_round_trips() {
        let slow = Limit {
            per_minute: 2,
            burst: 1,
            per_tool: false,
        };
        let (b, _) = take(None, slow, 0);
        assert_eq!(take(Some(b), slow, 0).1, Err(30));
        assert_eq!(Bucket::decode(&b.encode()), Some(b));
        assert_eq!(Bucket::decode(b"short"), None);
        assert_ne!(key("t", "alice", None), key("t", "alice", Some("x")));
    }
}
