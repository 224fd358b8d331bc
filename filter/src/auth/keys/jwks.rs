//! JSON Web Key Sets: parsing a JWKS document into verification keys, and the refresh schedule
//! of a remote JWKS (periodic refresh, bounded refetch on an unknown `kid`, backoff on failure).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use super::remote::RemoteJwks;
use crate::auth::signature::{EcKey, RsaKey};

/// A verification key, bound to the one algorithm it may verify. Parsed once per JWKS fetch.
pub enum Key {
    Rs256(Box<RsaKey>),
    Es256(Box<EcKey>),
}

/// RSA keys a JWKS may carry: 2048 to 4096 bits, public exponent 65537.
const RSA_MODULUS_BITS: std::ops::RangeInclusive<u32> = 2048..=4096;
const RSA_EXPONENT: u64 = 65537;

impl Key {
    pub fn alg(&self) -> &'static str {
        match self {
            Key::Rs256(_) => "RS256",
            Key::Es256(_) => "ES256",
        }
    }

    /// Verifies the JWS `signature` of `signing_input` (`header.payload`).
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::Rs256(k) => k.verify(signing_input, signature),
            Key::Es256(k) => k.verify(signing_input, signature),
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.alg())
    }
}

/// Keys by `kid`. Keys without a `kid` are stored under the empty string and only match tokens
/// without a `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<(String, Key)>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(rename = "use", default)]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl KeySet {
    pub fn from_jwks_bytes(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        Self::from_jwks_value(&value)
    }

    /// Reads the RS256 and ES256 signing keys of a JWKS. Keys of other types or uses (e.g.
    /// encryption keys) are skipped; a set without any usable key is an error.
    pub fn from_jwks_value(value: &serde_json::Value) -> Result<Self, String> {
        let jwks = Jwks::deserialize(value).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for (i, raw) in jwks.keys.iter().enumerate() {
            let jwk = Jwk::deserialize(raw).map_err(|e| format!("keys[{i}]: {e}"))?;
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            if let Some(key) = jwk.to_key().map_err(|e| format!("keys[{i}]: {e}"))? {
                keys.push((jwk.kid.unwrap_or_default(), key));
            }
        }
        if keys.is_empty() {
            return Err("no RS256 or ES256 signing key".into());
        }
        Ok(KeySet { keys })
    }

    pub fn get(&self, kid: Option<&str>) -> Option<&Key> {
        let kid = kid.unwrap_or_default();
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

fn b64(field: &str, value: Option<&String>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing `{field}`"))?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|e| format!("`{field}` is not base64url: {e}"))
}

impl Jwk {
    fn to_key(&self) -> Result<Option<Key>, String> {
        match (self.kty.as_str(), self.alg.as_deref()) {
            ("RSA", None | Some("RS256")) => {
                let (n, e) = (b64("n", self.n.as_ref())?, b64("e", self.e.as_ref())?);
                let key = RsaKey::from_components(&n, &e)?;
                if !RSA_MODULUS_BITS.contains(&key.modulus_bits()) {
                    return Err(format!(
                        "RSA key of {} bits: 2048 to 4096 supported",
                        key.modulus_bits()
                    ));
                }
                if !key.has_exponent(RSA_EXPONENT) {
                    return Err("RSA public exponent must be 65537".into());
                }
                Ok(Some(Key::Rs256(Box::new(key))))
            }
            ("EC", None | Some("ES256")) if self.crv.as_deref() == Some("P-256") => {
                let (x, y) = (b64("x", self.x.as_ref())?, b64("y", self.y.as_ref())?);
                EcKey::from_coordinates(&x, &y).map(|k| Some(Key::Es256(Box::new(k))))
            }
            _ => Ok(None),
        }
    }
}

/// When a remote JWKS is fetched. Times are milliseconds on the host clock.
#[derive(Debug)]
pub struct RefreshSchedule {
    remote: RemoteJwks,
    next_fetch_at: u64,
    last_fetch_at: Option<u64>,
    in_flight: bool,
    failures: u32,
}

impl RefreshSchedule {
    pub fn new(remote: RemoteJwks) -> Self {
        RefreshSchedule {
            remote,
            next_fetch_at: 0,
            last_fetch_at: None,
            in_flight: false,
            failures: 0,
        }
    }

    pub fn remote(&self) -> &RemoteJwks {
        &self.remote
    }

    /// True when a fetch should start now; marks it in flight.
    pub fn start_fetch(&mut self, now: u64) -> bool {
        if self.in_flight || now < self.next_fetch_at {
            return false;
        }
        self.in_flight = true;
        self.last_fetch_at = Some(now);
        true
    }

    pub fn fetched(&mut self, now: u64) {
        self.in_flight = false;
        self.failures = 0;
        self.next_fetch_at = now + millis(self.remote.refresh_interval);
    }

    /// A failed fetch is retried after 1 s, 2 s, 4 s ... up to the refresh interval.
    pub fn failed(&mut self, now: u64) {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        let backoff = 1000u64.saturating_mul(1 << self.failures.min(16).saturating_sub(1));
        self.next_fetch_at = now + backoff.min(millis(self.remote.refresh_interval));
    }

    /// A token named a `kid` we do not know: refetch soon, but at most once per
    /// `minRefetchSeconds`, so that forged `kid`s cannot make us hammer the identity provider.
    pub fn unknown_kid(&mut self, now: u64) {
        let earliest = self
            .last_fetch_at
            .map_or(0, |t| t + millis(self.remote.min_refetch_interval));
        self.next_fetch_at = self.next_fetch_at.min(earliest.max(now));
    }
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A P-256 public key (the RFC 7515 appendix A.3 example key).
    pub fn ec_jwk() -> serde_json::Value {
        json!({"kty": "EC", "crv": "P-256", "kid": "ec1",
               "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
               "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
    }

    #[test]
    fn skips_encryption_and_unknown_keys_but_needs_one_signing_key() {
        let set = KeySet::from_jwks_value(&json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            ec_jwk()
        ]}))
        .unwrap();
        assert_eq!(set.key_count(), 1);
        assert_eq!(set.get(Some("ec1")).unwrap().alg(), "ES256");
        assert!(set.get(Some("other")).is_none());
        assert!(set.get(None).is_none());

        let err = KeySet::from_jwks_value(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}));
        assert_eq!(err.unwrap_err(), "no RS256 or ES256 signing key");
        assert!(KeySet::from_jwks_bytes(b"nope")
            .unwrap_err()
            .starts_with("not JSON"));
    }

    #[test]
    fn bad_key_material_names_the_key() {
        let mut k = ec_jwk();
        k["x"] = json!("AAAA");
        let err = KeySet::from_jwks_value(&json!({"keys": [k]})).unwrap_err();
        assert!(err.starts_with("keys[0]:"), "{err}");
    }

    #[test]
    fn rsa_keys_need_2048_to_4096_bits_and_exponent_65537() {
        let rsa = |n: &[u8], e: &[u8]| {
            KeySet::from_jwks_value(&json!({"keys": [{"kty": "RSA", "kid": "r",
                "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)}]}))
        };
        assert_eq!(
            rsa(&[0xff; 256], &[1, 0, 1])
                .unwrap()
                .get(Some("r"))
                .unwrap()
                .alg(),
            "RS256"
        );
        assert!(rsa(&[0xff; 512], &[1, 0, 1]).is_ok());
        assert!(rsa(&[0xff; 128], &[1, 0, 1])
            .unwrap_err()
            .contains("1024 bits"));
        assert!(rsa(&[0xff; 513], &[1, 0, 1])
            .unwrap_err()
            .contains("4104 bits"));
        assert!(rsa(&[0xff; 256], &[3]).unwrap_err().contains("65537"));
    }

    fn schedule() -> RefreshSchedule {
        RefreshSchedule::new(RemoteJwks {
            cluster: "idp".into(),
            authority: "idp".into(),
            path: "/jwks".into(),
            discovery: None,
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        })
    }

    #[test]
    fn fetches_at_start_then_on_schedule() {
        let mut s = schedule();
        assert!(s.start_fetch(5));
        assert!(!s.start_fetch(6), "one fetch at a time");
        s.fetched(10);
        assert!(!s.start_fetch(299_000));
        assert!(s.start_fetch(300_010));
    }

    #[test]
    fn failures_back_off_and_unknown_kid_refetch_is_rate_limited() {
        let mut s = schedule();
        assert!(s.start_fetch(0));
        s.failed(0);
        assert!(!s.start_fetch(999));
        assert!(s.start_fetch(1000));
        s.failed(1000);
        assert!(!s.start_fetch(2999));
        assert!(s.start_fetch(3000));
        s.fetched(3000);
        s.unknown_kid(4000);
        assert!(
            !s.start_fetch(4000),
            "within minRefetchSeconds of the last fetch"
        );
        assert!(s.start_fetch(33_000));
    }
}
