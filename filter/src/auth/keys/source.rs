//! Where the signing keys come from (`identity.jwks`): inline, fetched from a URL or through
//! the issuer's discovery document, or none in trust mode.

use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;

use super::discovery;
use super::jwks::KeySet;
use super::remote::{split_http_uri, Discovery, RemoteJwks};
use crate::config_error::{at_least, non_empty, ConfigError};

/// Where the signing keys come from (validated `identity.jwks`).
#[derive(Debug)]
pub enum KeySource {
    Inline(Rc<KeySet>),
    Remote(RemoteJwks),
    /// No keys: Envoy's `jwt_authn` verified the token and left its payload in the dynamic
    /// metadata under this key (its `payload_in_metadata`).
    TrustJwtAuthn {
        payload_in_metadata: String,
    },
}

impl KeySource {
    /// Validates `identity.jwks` of `issuer`.
    pub fn from_raw(raw: RawJwks, issuer: &str) -> Result<KeySource, ConfigError> {
        Ok(match raw {
            RawJwks::Inline(jwks) => KeySource::Inline(Rc::new(
                KeySet::from_jwks_value(&jwks)
                    .map_err(|e| ConfigError::invalid("identity.jwks.inline", e))?,
            )),
            RawJwks::Remote(remote) => KeySource::Remote(remote.validate("remote", None)?),
            RawJwks::Discovery(remote) => {
                KeySource::Remote(remote.validate("discovery", Some(issuer))?)
            }
            RawJwks::TrustJwtAuthn(trust) => {
                non_empty(
                    "identity.jwks.trustJwtAuthn.payloadInMetadata",
                    &trust.payload_in_metadata,
                )?;
                KeySource::TrustJwtAuthn {
                    payload_in_metadata: trust.payload_in_metadata,
                }
            }
        })
    }
}

/// `identity.jwks` as written in the plugin configuration.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum RawJwks {
    Inline(serde_json::Value),
    Remote(RawRemoteJwks),
    /// The same fields as `remote`, without `uri`: the JWKS is found through the issuer.
    Discovery(RawRemoteJwks),
    TrustJwtAuthn(RawTrustJwtAuthn),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTrustJwtAuthn {
    payload_in_metadata: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRemoteJwks {
    cluster: String,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    jwks_cluster: Option<String>,
    #[serde(default)]
    allow_http_loopback: bool,
    #[serde(default = "default_refresh")]
    refresh_seconds: u64,
    #[serde(default = "default_min_refetch")]
    min_refetch_seconds: u64,
    #[serde(default = "default_fetch_timeout")]
    timeout_ms: u64,
}

fn default_refresh() -> u64 {
    300
}
fn default_min_refetch() -> u64 {
    30
}
fn default_fetch_timeout() -> u64 {
    2_000
}

impl RawRemoteJwks {
    /// `kind` is `remote` (the JWKS at `uri`) or `discovery` (of `issuer`).
    fn validate(self, kind: &str, issuer: Option<&str>) -> Result<RemoteJwks, ConfigError> {
        let field = |name: &str| format!("identity.jwks.{kind}.{name}");
        non_empty(&field("cluster"), &self.cluster)?;
        let ((authority, path), discovery) = match (issuer, self.uri) {
            (None, Some(uri)) => {
                if self.jwks_cluster.is_some() || self.allow_http_loopback {
                    return Err(ConfigError::invalid(
                        field("jwksCluster"),
                        "jwksCluster and allowHttpLoopback belong to `discovery`",
                    ));
                }
                (
                    split_http_uri(&uri).ok_or_else(|| {
                        ConfigError::invalid(field("uri"), "must be an http(s) URL")
                    })?,
                    None,
                )
            }
            (None, None) => return Err(ConfigError::invalid(field("uri"), "missing field `uri`")),
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    field("uri"),
                    "not with discovery: the JWKS URL comes from the issuer's discovery document",
                ))
            }
            (Some(issuer), None) => {
                if let Some(cluster) = &self.jwks_cluster {
                    non_empty(&field("jwksCluster"), cluster)?;
                }
                let discovery = Discovery {
                    issuer: issuer.to_string(),
                    jwks_cluster: self.jwks_cluster,
                    allow_http_loopback: self.allow_http_loopback,
                };
                let url = discovery::document_url(issuer, self.allow_http_loopback)
                    .map_err(|e| ConfigError::invalid("identity.issuer", e))?;
                (
                    split_http_uri(&url).ok_or_else(|| {
                        ConfigError::invalid("identity.issuer", "must be an http(s) URL")
                    })?,
                    Some(discovery),
                )
            }
        };
        at_least(&field("refreshSeconds"), self.refresh_seconds, 1)?;
        at_least(&field("timeoutMs"), self.timeout_ms, 1)?;
        Ok(RemoteJwks {
            cluster: self.cluster,
            authority,
            path,
            discovery,
            refresh_interval: Duration::from_secs(self.refresh_seconds),
            min_refetch_interval: Duration::from_secs(self.min_refetch_seconds),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}
