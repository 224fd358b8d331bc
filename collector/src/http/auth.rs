//! Bearer tokens: the shared ingest token of the filter. (Export API keys are in
//! [`crate::apikeys`].)

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// The token of an `Authorization: Bearer <token>` header (scheme name case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The ingest token, kept as its SHA-256 so that checking a presented token takes the same
/// time whatever its length or content.
pub struct IngestToken([u8; 32]);

impl IngestToken {
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token).into())
    }

    pub fn verify(&self, presented: &str) -> bool {
        Sha256::digest(presented).ct_eq(&self.0).into()
    }
}

/// Proof that the request carries the ingest token.
pub struct IngestAuthorized;

impl FromRequestParts<AppState> for IngestAuthorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(token) if state.ingest_token.verify(token) => Ok(IngestAuthorized),
            _ => {
                tracing::warn!("ingest refused: missing or wrong ingest token");
                Err(ApiError::unauthorized())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_token_is_taken_from_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer ", None),
            ("Bearerabc", None),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&headers), token, "{value:?}");
        }
    }

    #[test]
    fn ingest_token_verifies_only_itself() {
        let token = IngestToken::new("s3cret");
        assert!(token.verify("s3cret"));
        assert!(!token.verify("s3cre"));
        assert!(!token.verify("s3cret "));
        assert!(!token.verify(""));
    }
}
