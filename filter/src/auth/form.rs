//! The shape a token must have before any key or signature is looked at: a compact JWS of at
//! most [`MAX_TOKEN_BYTES`], three base64url segments (no padding, no standard-base64
//! characters, canonical), a header and a payload that are JSON objects without a duplicate
//! member, no critical extension, and no key carried or pointed to by the token itself.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::auth::failure::AuthFailure;
use crate::mcp::strict_json::{self, StrictError};

/// Largest token accepted. Real access tokens are well under 4 KiB; the bound keeps hostile
/// headers and payloads from costing decoding and parsing work.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Header parameters that carry a key or say where to fetch one. Keys come only from the
/// configured JWKS, so a token naming its own is refused rather than silently ignored.
const KEY_SOURCE_PARAMS: [&str; 4] = ["jku", "jwk", "x5u", "x5c"];

/// Checks the form of `token`; the signature and claims are verified afterwards.
pub fn check(token: &str) -> Result<(), AuthFailure> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthFailure::TokenTooLarge);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(AuthFailure::Malformed);
    };
    URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthFailure::Malformed)?;
    let header = object(header)?;
    if header.contains_key("crit") {
        // RFC 7515 4.1.11: a recipient must refuse critical extensions it does not understand;
        // ACP understands none (and an empty list is not allowed either).
        return Err(AuthFailure::CriticalHeader);
    }
    if KEY_SOURCE_PARAMS.iter().any(|p| header.contains_key(*p)) {
        return Err(AuthFailure::UntrustedKeySource);
    }
    object(payload)?;
    Ok(())
}

fn object(segment: &str) -> Result<Map<String, Value>, AuthFailure> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthFailure::Malformed)?;
    match strict_json::parse(&bytes) {
        Ok(Value::Object(members)) => Ok(members),
        Err(StrictError::DuplicateKey(_)) => Err(AuthFailure::DuplicateClaim),
        Ok(_) | Err(StrictError::NotJson) => Err(AuthFailure::Malformed),
    }
}
