//! OAuth 2.0 Protected Resource Metadata (RFC 9728), which MCP clients fetch after a `401` to
//! find the authorization server: the filter serves the document from its configuration at
//! `/.well-known/oauth-protected-resource` and at the path RFC 9728 derives from the resource
//! (`https://mcp.acme.com/mcp` -> `/.well-known/oauth-protected-resource/mcp`), and points its
//! `401` challenges there (`resource_metadata`).

use serde::Deserialize;
use serde_json::json;

use crate::config_error::ConfigError;

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The document and where it is served.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectedResource {
    /// The JSON document, rendered once.
    pub document: String,
    /// The request paths answered with it.
    pub paths: Vec<String>,
    /// Its URL, as 401 challenges name it.
    pub url: String,
}

impl ProtectedResource {
    /// Whether a request (method, `:path` with its query) asks for the document.
    pub fn serves(&self, method: &str, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        matches!(method, "GET" | "HEAD") && self.paths.iter().any(|p| p == path)
    }
}

/// `protectedResource` as written in the plugin configuration.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawProtectedResource {
    resource: String,
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Option<Vec<String>>,
    #[serde(default = "header_only")]
    bearer_methods_supported: Vec<String>,
    #[serde(default)]
    resource_name: Option<String>,
    #[serde(default)]
    resource_documentation: Option<String>,
}

fn header_only() -> Vec<String> {
    vec!["header".into()]
}

impl RawProtectedResource {
    /// Validates and renders the document; `tool_scopes` are the scopes of the tool policy,
    /// advertised when `scopesSupported` is not given.
    pub fn validate(self, tool_scopes: Vec<String>) -> Result<ProtectedResource, ConfigError> {
        let field =
            |name: &str, why: &str| ConfigError::invalid(format!("protectedResource.{name}"), why);
        let Some((origin, path)) = split_url(&self.resource) else {
            return Err(field(
                "resource",
                "must be an absolute http(s) URL without query or fragment",
            ));
        };
        if self.authorization_servers.is_empty()
            || self
                .authorization_servers
                .iter()
                .any(|s| split_url(s).is_none())
        {
            return Err(field(
                "authorizationServers",
                "list at least one http(s) issuer URL",
            ));
        }
        if let Some(bad) = self
            .bearer_methods_supported
            .iter()
            .find(|m| !matches!(m.as_str(), "header" | "body" | "query"))
        {
            return Err(field(
                "bearerMethodsSupported",
                &format!("`{bad}` is not one of header, body, query"),
            ));
        }
        let mut document = json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "scopes_supported": self.scopes_supported.unwrap_or(tool_scopes),
            "bearer_methods_supported": self.bearer_methods_supported,
        });
        if let Some(name) = self.resource_name {
            document["resource_name"] = name.into();
        }
        if let Some(docs) = self.resource_documentation {
            document["resource_documentation"] = docs.into();
        }
        let derived = format!("{WELL_KNOWN}{}", path.trim_end_matches('/'));
        let mut paths = vec![derived.clone()];
        if derived != WELL_KNOWN {
            paths.push(WELL_KNOWN.to_string());
        }
        Ok(ProtectedResource {
            document: document.to_string(),
            paths,
            url: format!("{origin}{derived}"),
        })
    }
}

/// `(scheme://authority, path)` of an http(s) URL without query or fragment.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    if url.contains(['?', '#']) {
        return None;
    }
    let authority_len = rest.find('/').unwrap_or(rest.len());
    if authority_len == 0 {
        return None;
    }
    let origin_len = url.len() - rest.len() + authority_len;
    Some((&url[..origin_len], &url[origin_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> Result<ProtectedResource, ConfigError> {
        serde_json::from_value::<RawProtectedResource>(v)
            .unwrap()
            .validate(vec!["files:read".into()])
    }

    #[test]
    fn renders_the_document_and_derives_its_paths_and_url() {
        let pr = parse(json!({"resource": "https://mcp.acme.com/mcp", "authorizationServers": ["https://idp.acme.com/"],
                              "resourceName": "Acme tools"}))
        .unwrap();
        let doc: Value = serde_json::from_str(&pr.document).unwrap();
        assert_eq!(
            doc,
            json!({"resource": "https://mcp.acme.com/mcp", "authorization_servers": ["https://idp.acme.com/"],
                                "scopes_supported": ["files:read"], "bearer_methods_supported": ["header"],
                                "resource_name": "Acme tools"})
        );
        assert_eq!(
            pr.url,
            "https://mcp.acme.com/.well-known/oauth-protected-resource/mcp"
        );
        assert!(pr.serves("GET", "/.well-known/oauth-protected-resource/mcp"));
        assert!(pr.serves("GET", "/.well-known/oauth-protected-resource?x=1"));
        assert!(!pr.serves("POST", "/.well-known/oauth-protected-resource/mcp"));
        assert!(!pr.serves("GET", "/.well-known/oauth-protected-resource/other"));

        let root = parse(
            json!({"resource": "http://127.0.0.1:8080", "authorizationServers": ["http://idp"],
                                "scopesSupported": ["a"]}),
        )
        .unwrap();
        assert_eq!(root.paths, ["/.well-known/oauth-protected-resource"]);
        assert_eq!(
            root.url,
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
        assert!(root.document.contains(r#""scopes_supported":["a"]"#));
    }

    #[test]
    fn refuses_bad_values_naming_the_field() {
        let bad = [
            (
                json!({"resource": "mcp.acme.com", "authorizationServers": ["https://idp"]}),
                "protectedResource.resource",
            ),
            (
                json!({"resource": "https://x/mcp?a=1", "authorizationServers": ["https://idp"]}),
                "protectedResource.resource",
            ),
            (
                json!({"resource": "https://x/mcp", "authorizationServers": []}),
                "protectedResource.authorizationServers",
            ),
            (
                json!({"resource": "https://x/mcp", "authorizationServers": ["https://idp"], "bearerMethodsSupported": ["cookie"]}),
                "protectedResource.bearerMethodsSupported",
            ),
        ];
        for (raw, field) in bad {
            assert!(
                parse(raw.clone())
                    .unwrap_err()
                    .to_string()
                    .starts_with(field),
                "{raw}"
            );
        }
    }
}
