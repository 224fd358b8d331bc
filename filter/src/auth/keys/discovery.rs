//! OpenID Connect discovery: the issuer's `/.well-known/openid-configuration` names the JWKS
//! (`jwks_uri`). Checking the document and choosing where each key request goes are plain
//! functions here; the root context only sends the requests.

use serde::Deserialize;

use super::remote::{split_http_uri, Discovery, RemoteJwks};

/// Where an HTTP request goes: Envoy cluster, `:authority` and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub cluster: String,
    pub authority: String,
    pub path: String,
}

/// The document a key request fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDocument {
    Discovery,
    Jwks,
}

/// The discovery document URL of `issuer` (OpenID Connect Discovery 1.0, section 4).
pub fn document_url(issuer: &str, allow_http_loopback: bool) -> Result<String, String> {
    secure_url(issuer, allow_http_loopback)?;
    Ok(format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
}

/// An `https://` URL, or `http://` to a loopback host when allowed; no user info, no fragment.
fn secure_url(url: &str, allow_http_loopback: bool) -> Result<(), String> {
    let (authority, _) =
        split_http_uri(url).ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    if authority.contains('@') || url.contains('#') {
        return Err(format!("{url:?} must not carry user info or a fragment"));
    }
    if url.starts_with("https://") || (allow_http_loopback && is_loopback(&authority)) {
        return Ok(());
    }
    Err(format!(
        "{url:?} must use https (http only to a loopback host, with allowHttpLoopback)"
    ))
}

fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host:port` lower-cased, without the scheme's default port.
fn origin(authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    lower
        .strip_suffix(":443")
        .or_else(|| lower.strip_suffix(":80"))
        .map_or(lower.clone(), str::to_string)
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
}

/// The JWKS request a discovery document leads to. The document's `issuer` must equal the
/// configured one exactly; its `jwks_uri` must be a secure URL, fetched through the discovery
/// cluster when on the issuer's host, else through `jwksCluster`.
pub fn jwks_target(
    body: &[u8],
    discovery: &Discovery,
    document: &Target,
) -> Result<Target, String> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a discovery document: {e}"))?;
    if doc.issuer != discovery.issuer {
        return Err(format!(
            "the document's issuer {:?} is not the configured issuer {:?}",
            doc.issuer, discovery.issuer
        ));
    }
    secure_url(&doc.jwks_uri, discovery.allow_http_loopback)
        .map_err(|e| format!("jwks_uri: {e}"))?;
    let (authority, path) = split_http_uri(&doc.jwks_uri)
        .ok_or_else(|| "jwks_uri is not an http(s) URL".to_string())?;
    let cluster = if origin(&authority) == origin(&document.authority) {
        document.cluster.clone()
    } else {
        discovery.jwks_cluster.clone().ok_or_else(|| {
            format!("jwks_uri {:?} is on another host than the issuer; name the cluster that reaches it in jwksCluster", doc.jwks_uri)
        })?
    };
    Ok(Target {
        cluster,
        authority,
        path,
    })
}

/// Which document the next key request fetches: the JWKS once its location is known, the
/// discovery document before. A failed JWKS fetch forgets a discovered location, so the next
/// attempt discovers it again (the IdP may have moved its keys).
#[derive(Debug)]
pub struct KeyLocation {
    discovery: Option<Discovery>,
    document: Target,
    jwks: Option<Target>,
}

impl KeyLocation {
    pub fn new(remote: &RemoteJwks) -> Self {
        let document = Target {
            cluster: remote.cluster.clone(),
            authority: remote.authority.clone(),
            path: remote.path.clone(),
        };
        let jwks = remote.discovery.is_none().then(|| document.clone());
        KeyLocation {
            discovery: remote.discovery.clone(),
            document,
            jwks,
        }
    }

    pub fn next(&self) -> (KeyDocument, &Target) {
        match &self.jwks {
            Some(jwks) => (KeyDocument::Jwks, jwks),
            None => (KeyDocument::Discovery, &self.document),
        }
    }

    /// Takes the JWKS location from a discovery answer (`status`, `body`).
    pub fn discovered(&mut self, status: Option<u32>, body: &[u8]) -> Result<&Target, String> {
        let Some(discovery) = &self.discovery else {
            return Err("discovery is not configured".into());
        };
        if status != Some(200) {
            return Err(format!("HTTP status {status:?}"));
        }
        let target = jwks_target(body, discovery, &self.document)?;
        Ok(self.jwks.insert(target))
    }

    pub fn jwks_failed(&mut self) {
        if self.discovery.is_some() {
            self.jwks = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const ISSUER: &str = "https://idp.acme.com/realms/acme";

    fn discovery(allow_http_loopback: bool) -> Discovery {
        Discovery {
            issuer: ISSUER.into(),
            jwks_cluster: None,
            allow_http_loopback,
        }
    }

    fn doc_target() -> Target {
        Target {
            cluster: "idp".into(),
            authority: "idp.acme.com".into(),
            path: "/realms/acme/.well-known/openid-configuration".into(),
        }
    }

    fn target(issuer: &str, jwks_uri: &str, d: &Discovery) -> Result<Target, String> {
        jwks_target(
            json!({"issuer": issuer, "jwks_uri": jwks_uri, "other": 1})
                .to_string()
                .as_bytes(),
            d,
            &doc_target(),
        )
    }

    #[test]
    fn document_url_follows_the_issuer() {
        assert_eq!(
            document_url(ISSUER, false).unwrap(),
            format!("{ISSUER}/.well-known/openid-configuration")
        );
        assert_eq!(
            document_url("https://a.example/", false).unwrap(),
            "https://a.example/.well-known/openid-configuration"
        );
        assert!(
            document_url("http://idp.example", true).is_err(),
            "http only to loopback"
        );
        assert!(
            document_url("http://127.0.0.1:9000", false).is_err(),
            "http only when allowed"
        );
        assert!(document_url("http://127.0.0.1:9000", true).is_ok());
        assert!(document_url("http://[::1]:9000", true).is_ok());
        assert!(document_url("http://localhost", true).is_ok());
        assert!(document_url("idp.example", true).is_err());
    }

    #[test]
    fn jwks_on_the_issuers_host_goes_through_the_discovery_cluster() {
        let t = target(
            ISSUER,
            "https://IDP.acme.com:443/realms/acme/certs",
            &discovery(false),
        )
        .unwrap();
        assert_eq!(
            t,
            Target {
                cluster: "idp".into(),
                authority: "IDP.acme.com:443".into(),
                path: "/realms/acme/certs".into()
            }
        );
    }

    #[test]
    fn jwks_on_another_host_needs_its_cluster() {
        let err = target(ISSUER, "https://keys.acme.com/jwks", &discovery(false)).unwrap_err();
        assert!(err.contains("jwksCluster"), "{err}");
        let d = Discovery {
            jwks_cluster: Some("keys".into()),
            ..discovery(false)
        };
        assert_eq!(
            target(ISSUER, "https://keys.acme.com/jwks", &d)
                .unwrap()
                .cluster,
            "keys"
        );
    }

    #[test]
    fn bad_documents_are_refused() {
        let d = discovery(false);
        let err = target(
            "https://idp.acme.com/realms/other",
            "https://idp.acme.com/certs",
            &d,
        )
        .unwrap_err();
        assert!(err.contains("not the configured issuer"), "{err}");
        assert!(
            target(&format!("{ISSUER}/"), "https://idp.acme.com/certs", &d).is_err(),
            "exact match"
        );
        assert!(target(ISSUER, "http://idp.acme.com/certs", &d)
            .unwrap_err()
            .starts_with("jwks_uri:"));
        assert!(target(ISSUER, "http://127.0.0.1/certs", &d).is_err());
        assert!(target(ISSUER, "https://user@idp.acme.com/certs", &d).is_err());
        assert!(target(ISSUER, "https://idp.acme.com/certs#x", &d).is_err());
        assert!(target(ISSUER, "/certs", &d).is_err());
        for body in [
            &b"nope"[..],
            br#"{"issuer": "x"}"#,
            br#"{"issuer": 1, "jwks_uri": "https://a/b"}"#,
        ] {
            assert!(jwks_target(body, &d, &doc_target())
                .unwrap_err()
                .starts_with("not a discovery document"));
        }
    }

    #[test]
    fn location_discovers_then_fetches_the_jwks_and_rediscovers_after_a_failure() {
        let remote = RemoteJwks {
            cluster: "idp".into(),
            authority: "idp.acme.com".into(),
            path: "/realms/acme/.well-known/openid-configuration".into(),
            discovery: Some(discovery(false)),
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        };
        let mut loc = KeyLocation::new(&remote);
        assert_eq!(loc.next(), (KeyDocument::Discovery, &doc_target()));
        let doc = json!({"issuer": ISSUER, "jwks_uri": "https://idp.acme.com/certs"}).to_string();
        assert!(loc.discovered(Some(503), doc.as_bytes()).is_err());
        assert_eq!(loc.next().0, KeyDocument::Discovery);
        assert_eq!(
            loc.discovered(Some(200), doc.as_bytes()).unwrap().path,
            "/certs"
        );
        assert_eq!(loc.next().1.path, "/certs");
        loc.jwks_failed();
        assert_eq!(loc.next().0, KeyDocument::Discovery);

        let plain = KeyLocation::new(&RemoteJwks {
            discovery: None,
            path: "/jwks".into(),
            ..remote
        });
        assert_eq!(plain.next().0, KeyDocument::Jwks);
    }
}
