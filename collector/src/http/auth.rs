//! Bearer tokens: the extractors checking the filter's ingest token ([`IngestAuthorized`]) and
//! a tenant's export API key ([`TenantKey`]); the tokens themselves are in [`crate::apikeys`].

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::apikeys;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::metrics::{AuthFailure, Credential};
use crate::store::Access;

/// The token of an `Authorization: Bearer <token>` header (scheme name case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Proof that the request carries the ingest token.
pub struct IngestAuthorized;

impl FromRequestParts<AppState> for IngestAuthorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let failure = match bearer(&parts.headers) {
            Some(token) if state.ingest_token.verify(token) => return Ok(IngestAuthorized),
            Some(_) => AuthFailure::Invalid,
            None => AuthFailure::Missing,
        };
        tracing::warn!("ingest refused: missing or wrong ingest token");
        state.metrics.auth_failed(Credential::IngestToken, failure);
        Err(ApiError::unauthorized())
    }
}

/// Proof that the request's bearer API key belongs to the `{tenant}` of its path (401 when
/// the key is missing, unknown or revoked; 403 when it is another tenant's). Put it after the
/// handler's `Path` extractor; a handler that answers some parameter errors before the key
/// check calls [`TenantKey::check`] after them instead.
pub struct TenantKey;

impl TenantKey {
    /// Checks the bearer API key of `headers` against `tenant`.
    pub async fn check(
        state: &AppState,
        tenant: String,
        headers: &HeaderMap,
    ) -> Result<TenantKey, ApiError> {
        let metrics = state.metrics.clone();
        let Some(key) = bearer(headers).map(str::to_owned) else {
            metrics.auth_failed(Credential::ApiKey, AuthFailure::Missing);
            return Err(ApiError::unauthorized());
        };
        state
            .db
            .blocking(Access::Read, move |conn| {
                match apikeys::tenant_of(conn, &key)? {
                    None => {
                        metrics.auth_failed(Credential::ApiKey, AuthFailure::Invalid);
                        Err(ApiError::unauthorized())
                    }
                    Some(owner) if owner != tenant => {
                        tracing::warn!(tenant, owner, "export refused: key of another tenant");
                        metrics.auth_failed(Credential::ApiKey, AuthFailure::WrongTenant);
                        Err(ApiError::forbidden(
                            "this API key is not valid for this tenant",
                        ))
                    }
                    Some(_) => Ok(TenantKey),
                }
            })
            .await
    }
}

impl FromRequestParts<AppState> for TenantKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.body_text()))?;
        let tenant = params
            .iter()
            .find(|(name, _)| *name == "tenant")
            .map(|(_, value)| value.to_owned())
            .ok_or_else(|| anyhow::anyhow!("no {{tenant}} in the route"))?;
        TenantKey::check(state, tenant, &parts.headers).await
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
}
