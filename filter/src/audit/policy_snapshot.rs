//! The reviewable policy document of a configuration (SOC 2 CC8.1): what an auditor needs to see
//! change, with secrets removed. The filter sends it to the collector on every load or change of
//! its configuration; the collector keeps each distinct version per tenant.
//!
//! Sections as written in the configuration (`tools`, `defaultScopes`, `rateLimits`,
//! `tenantsByHost`, `protectedResource`, `audit` without its `ingestToken`) sit beside the
//! effective values the filter enforces once defaults apply (scanning actions, the claim layout,
//! the platform's immutable rules). Its hash is the SHA-256 of its compact JSON, whose object
//! keys are sorted, so equal policies hash equally whatever the YAML's key order.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::keys::source::KeySource;
use crate::config::{Config, IMMUTABLE_INPUT_BLOCKS};
use crate::scan::content::Rules;
use crate::scan::settings::Oversized;

/// JWK members that hold private or symmetric key material; never part of the document.
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The policy document of `config`, which was parsed from `raw` (the same bytes as JSON).
pub fn snapshot(raw: &Value, config: &Config) -> Value {
    let field = |path: &[&str]| {
        path.iter()
            .try_fold(raw, |v, key| v.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut tenants: Vec<&str> = std::iter::once(config.tenant.as_str())
        .chain(config.tenants_by_host.values().map(String::as_str))
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    let mut audit = field(&["audit"]);
    if let Some(audit) = audit.as_object_mut() {
        audit.remove("ingestToken");
    }
    json!({
        "tenants": tenants,
        "tenantsByHost": field(&["tenantsByHost"]),
        "tools": field(&["tools"]),
        "defaultScopes": field(&["defaultScopes"]),
        "rateLimits": field(&["rateLimits"]),
        "scanning": {
            "input": actions(&config.scanning.input),
            "output": actions(&config.scanning.output),
            "ssrfAllowHosts": field(&["scanning", "ssrfAllowHosts"]),
            "maxScanBytes": config.scanning.max_scan_bytes,
            "oversized": match config.scanning.oversized { Oversized::Reject => "reject", Oversized::Pass => "pass" },
        },
        "identity": identity(raw, config),
        "immutableRules": IMMUTABLE_INPUT_BLOCKS.iter().map(|(detector, what)| json!({
            "detector": detector.as_str(), "input": "block", "description": what,
        })).collect::<Vec<_>>(),
        "auditFailureMode": field(&["auditFailureMode"]).as_str().unwrap_or("open"),
        "filterToolsList": config.filter_tools_list,
        "forwardIdentityHeaders": config.forward_identity_headers,
        "maxResponseCaptureBytes": config.max_response_capture_bytes,
        "protectedResource": field(&["protectedResource"]),
        "audit": audit,
    })
}

fn actions(rules: &Rules) -> Map<String, Value> {
    rules
        .actions
        .iter()
        .map(|(d, a)| (d.as_str().to_owned(), Value::from(a.as_str())))
        .collect()
}

fn identity(raw: &Value, config: &Config) -> Value {
    let id = &config.identity;
    let raw_id = raw.get("identity");
    let raw_field = |name: &str| {
        raw_id
            .and_then(|i| i.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let jwks = raw_field("jwks");
    let (kind, settings) = jwks
        .as_object()
        .and_then(|o| o.iter().next())
        .map_or(("", Value::Null), |(k, v)| (k.as_str(), v.clone()));
    let key_source = match &id.keys {
        KeySource::Inline(_) => json!({"kind": "inline", "jwks": public_jwks(settings)}),
        KeySource::Remote(_) | KeySource::TrustJwtAuthn { .. } => {
            let mut source = settings.as_object().cloned().unwrap_or_default();
            source.insert("kind".into(), kind.into());
            Value::Object(source)
        }
    };
    let c = &id.claims;
    json!({
        "issuer": id.issuer,
        "audiences": id.audiences,
        "keySource": key_source,
        "preset": raw_field("preset"),
        "claims": {
            "subject": c.subject, "email": c.email, "tenant": c.tenant,
            "scopes": c.scopes, "roles": c.roles, "clientId": c.client_id,
        },
        "roleScopes": raw_field("roleScopes"),
        "clientTypes": raw_field("clientTypes"),
        "clockSkewSeconds": id.clock_skew.as_secs(),
        "resourceMetadataUrl": id.resource_metadata_url,
    })
}

/// An inline JWKS without private or symmetric key members.
fn public_jwks(mut jwks: Value) -> Value {
    if let Some(keys) = jwks.get_mut("keys").and_then(Value::as_array_mut) {
        for key in keys.iter_mut().filter_map(Value::as_object_mut) {
            for member in PRIVATE_JWK_MEMBERS {
                key.remove(member);
            }
        }
    }
    jwks
}

/// `sha256:<hex>` of the document's compact JSON.
pub fn hash(document: &Value) -> String {
    let digest = Sha256::digest(document.to_string().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What the filter posts to the collector's policy endpoint for one configuration.
pub fn message(raw_config: &[u8], config: &Config) -> Option<String> {
    let raw: Value = serde_json::from_slice(raw_config).ok()?;
    let document = snapshot(&raw, config);
    Some(json!({"hash": hash(&document), "policy": document}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, tests::minimal};

    fn doc(v: &Value) -> Value {
        snapshot(v, &parse(v.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn reviewable_parts_without_the_ingest_token() {
        let mut v = minimal();
        v["audit"]["ingestToken"] = json!("very-secret-token");
        v["tenantsByHost"] = json!({"globex.example": "org_globex"});
        v["rateLimits"] = json!({"requestsPerMinute": 60, "burst": 10});
        v["identity"]["preset"] = json!("okta");
        v["scanning"] = json!({"input": {"email": "redact"}, "ssrfAllowHosts": ["10.0.0.5"]});
        v["auditFailureMode"] = json!("closed");
        let d = doc(&v);
        assert!(!d.to_string().contains("very-secret-token"));
        assert_eq!(d["audit"], json!({"cluster": "collector"}));
        assert_eq!(d["tenants"], json!(["org_acme_corp", "org_globex"]));
        assert_eq!(d["tools"], json!({"salesforce.query": ["salesforce:read"]}));
        assert_eq!(
            d["rateLimits"],
            json!({"requestsPerMinute": 60, "burst": 10})
        );
        assert_eq!(d["scanning"]["input"]["email"], "redact");
        assert_eq!(d["scanning"]["input"]["ssn"], "block", "effective defaults");
        assert_eq!(d["scanning"]["output"]["ssn"], "redact");
        assert_eq!(d["scanning"]["ssrfAllowHosts"], json!(["10.0.0.5"]));
        assert_eq!(d["identity"]["issuer"], "https://idp.example");
        assert_eq!(d["identity"]["preset"], "okta");
        assert_eq!(
            d["identity"]["keySource"],
            json!({"kind": "remote", "cluster": "idp", "uri": "http://idp.example:9000/jwks.json"})
        );
        assert_eq!(d["identity"]["claims"]["subject"], json!(["sub"]));
        let rules: Vec<&str> = d["immutableRules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["detector"].as_str().unwrap())
            .collect();
        assert_eq!(rules, ["ssn", "payment_card", "ssrf"]);
        assert_eq!(
            (
                d["auditFailureMode"].as_str(),
                d["filterToolsList"].as_bool()
            ),
            (Some("closed"), Some(true))
        );
    }

    #[test]
    fn inline_keys_lose_private_members() {
        let mut v = minimal();
        let mut key = crate::auth::keys::jwks::tests::ec_jwk();
        key["d"] = json!("private-part");
        v["identity"]["jwks"] = json!({"inline": {"keys": [key, {"kty": "oct", "k": "c2VjcmV0"}]}});
        let d = doc(&v);
        assert_eq!(d["identity"]["keySource"]["kind"], "inline");
        assert_eq!(
            d["identity"]["keySource"]["jwks"]["keys"][0],
            crate::auth::keys::jwks::tests::ec_jwk()
        );
        assert_eq!(
            d["identity"]["keySource"]["jwks"]["keys"][1],
            json!({"kty": "oct"})
        );
    }

    #[test]
    fn trust_mode_and_discovery_name_their_kind() {
        let mut v = minimal();
        v["identity"]["jwks"] = json!({"trustJwtAuthn": {"payloadInMetadata": "jwt_payload"}});
        assert_eq!(
            doc(&v)["identity"]["keySource"],
            json!({"kind": "trustJwtAuthn", "payloadInMetadata": "jwt_payload"})
        );
        v["identity"]["jwks"] = json!({"discovery": {"cluster": "idp"}});
        assert_eq!(
            doc(&v)["identity"]["keySource"],
            json!({"kind": "discovery", "cluster": "idp"})
        );
    }

    #[test]
    fn hash_ignores_key_order_and_the_token_but_not_the_policy() {
        let a = minimal();
        let mut reordered: Value = serde_json::from_str(&a.to_string()).unwrap();
        reordered["audit"]["ingestToken"] = json!("rotated");
        assert_eq!(hash(&doc(&a)), hash(&doc(&reordered)));
        let mut changed = a.clone();
        changed["tools"]["salesforce.query"] = json!(["salesforce:admin"]);
        assert_ne!(hash(&doc(&a)), hash(&doc(&changed)));
        assert!(hash(&doc(&a)).starts_with("sha256:") && hash(&doc(&a)).len() == 7 + 64);
    }

    #[test]
    fn message_carries_hash_and_document() {
        let v = minimal();
        let bytes = v.to_string();
        let m: Value = serde_json::from_str(
            &message(bytes.as_bytes(), &parse(bytes.as_bytes()).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(m["hash"], hash(&m["policy"]));
        assert_eq!(m["policy"]["tools"], v["tools"]);
    }
}
