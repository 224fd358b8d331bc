//! Where a remote JWKS is fetched from, as configured: the JWKS URL itself, or the issuer whose
//! discovery document names it.

use std::time::Duration;

/// A JWKS fetched from an Envoy cluster (`identity.jwks.remote` or `identity.jwks.discovery`).
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    pub cluster: String,
    /// `Host`/`:authority` and path of the JWKS request, from `uri`; with discovery, of the
    /// discovery document.
    pub authority: String,
    pub path: String,
    /// The JWKS location comes from the issuer's discovery document.
    pub discovery: Option<Discovery>,
    pub refresh_interval: Duration,
    pub min_refetch_interval: Duration,
    pub timeout: Duration,
}

/// Discovery settings of a remote JWKS (`identity.jwks.discovery`).
#[derive(Debug, Clone)]
pub struct Discovery {
    pub issuer: String,
    /// Cluster for a `jwks_uri` on another host than the issuer's; without it such a document
    /// is refused.
    pub jwks_cluster: Option<String>,
    /// Accept `http://` issuers and `jwks_uri`s on loopback hosts (tests, local IdPs).
    pub allow_http_loopback: bool,
}

/// `http://host:port/path?q` → (`host:port`, `/path?q`).
pub fn split_http_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!authority.is_empty()).then(|| (authority.to_string(), path.to_string()))
}
