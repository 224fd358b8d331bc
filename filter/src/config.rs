//! Plugin configuration: the JSON in the Envoy Wasm filter's `configuration`, parsed once in
//! `on_configure` into validated, read-only types. Each domain owns its section (its raw serde
//! type and `TryFrom` into the validated one: `auth::settings`, `scan::settings`,
//! `policy::rate_limit`, `mcp::resource_metadata`, `config::audit`); this module assembles them and
//! enforces the platform's immutable rules. Unknown fields are rejected and every error names
//! the offending field (`identity.jwks.remote.cluster: missing field ...`).

pub mod audit;

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use self::audit::{Audit, AuditFailureMode, RawAudit};
use crate::auth::settings::{IdentityConfig, RawIdentity};
use crate::config_error::{at_least, non_empty, ConfigError};
use crate::mcp::resource_metadata::{ProtectedResource, RawProtectedResource};
use crate::policy::rate_limit::{RateLimits, RawRateLimits};
use crate::policy::scopes::ToolPolicy;
use crate::scan::content::Action;
use crate::scan::settings::{RawScanning, Scanning};
use crate::scan::Detector;

/// Validated configuration, shared read-only by every stream of a worker.
#[derive(Debug)]
pub struct Config {
    pub tenant: String,
    pub tenants_by_host: HashMap<String, String>,
    pub identity: IdentityConfig,
    pub tools: ToolPolicy,
    pub audit: Audit,
    /// Largest upstream response body kept to decide a call's outcome; bigger bodies are
    /// forwarded untouched and the outcome is taken from the HTTP status alone.
    pub max_response_capture_bytes: usize,
    pub scanning: Scanning,
    /// Rate limit of each tenant's users; `None`: no limit.
    pub rate_limits: Option<RateLimits>,
    /// Remove from `tools/list` answers the tools the caller may not call.
    pub filter_tools_list: bool,
    /// Send the verified identity upstream as `x-acp-tenant` / `x-acp-sub` headers (e.g. for
    /// Envoy's global rate limit descriptors); clients' own `x-acp-*` headers are always removed.
    pub forward_identity_headers: bool,
    /// The OAuth protected resource metadata the filter serves (RFC 9728); `None`: not served.
    pub protected_resource: Option<ProtectedResource>,
    pub audit_failure_mode: AuditFailureMode,
    /// Most messages in one JSON-RPC batch; a bigger batch is refused whole.
    pub max_batch_size: usize,
}

/// Platform rules no configuration can weaken: these detectors always block tool inputs.
pub const IMMUTABLE_INPUT_BLOCKS: [(Detector, &str); 3] = [
    (Detector::Ssn, "US Social Security numbers"),
    (Detector::PaymentCard, "payment card numbers"),
    (
        Detector::Ssrf,
        "URLs and hosts that reach internal addresses (SSRF)",
    ),
];

// ---- Raw, as written in Envoy YAML -------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    tenant: String,
    #[serde(default)]
    tenants_by_host: HashMap<String, String>,
    identity: RawIdentity,
    tools: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    default_scopes: Option<Vec<String>>,
    audit: RawAudit,
    #[serde(default = "default_capture")]
    max_response_capture_bytes: usize,
    #[serde(default)]
    scanning: RawScanning,
    #[serde(default)]
    rate_limits: Option<RawRateLimits>,
    #[serde(default = "yes")]
    filter_tools_list: bool,
    #[serde(default)]
    forward_identity_headers: bool,
    #[serde(default)]
    protected_resource: Option<RawProtectedResource>,
    #[serde(default)]
    audit_failure_mode: AuditFailureMode,
    #[serde(default = "default_max_batch")]
    max_batch_size: usize,
}

fn default_capture() -> usize {
    1 << 20
}
fn yes() -> bool {
    true
}
fn default_max_batch() -> usize {
    100
}

/// Parses and validates the plugin configuration. The error names the field and the reason.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            ConfigError::Document(message)
        } else {
            ConfigError::Shape { path, message }
        }
    })?;
    Config::try_from(raw)
}

/// Refuses an input action that would weaken one of the [`IMMUTABLE_INPUT_BLOCKS`].
fn check_immutable_rules(input: &BTreeMap<Detector, Action>) -> Result<(), ConfigError> {
    for (detector, what) in IMMUTABLE_INPUT_BLOCKS {
        match input.get(&detector) {
            None | Some(Action::Block) => {}
            Some(other) => {
                return Err(ConfigError::WeakensPlatformRule {
                    detector: detector.as_str(),
                    action: other.as_str(),
                    what,
                });
            }
        }
    }
    Ok(())
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    /// Assembles what each section validated for itself.
    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        non_empty("tenant", &raw.tenant)?;
        for (host, tenant) in &raw.tenants_by_host {
            non_empty(&format!("tenantsByHost.{host}"), tenant)?;
        }
        let mut tool_scopes: Vec<String> = raw
            .tools
            .values()
            .chain(&raw.default_scopes)
            .flatten()
            .cloned()
            .collect();
        tool_scopes.sort();
        tool_scopes.dedup();
        let tools = ToolPolicy::new(raw.tools, raw.default_scopes)
            .map_err(|e| ConfigError::invalid("tools", e))?;
        let protected_resource = raw
            .protected_resource
            .map(|p| p.validate(tool_scopes))
            .transpose()?;
        let mut identity = IdentityConfig::try_from(raw.identity)?;
        if let Some(resource) = &protected_resource {
            identity
                .resource_metadata_url
                .get_or_insert_with(|| resource.url.clone());
        }
        at_least("maxBatchSize", raw.max_batch_size as u64, 1)?;
        Ok(Config {
            tenant: raw.tenant,
            tenants_by_host: raw
                .tenants_by_host
                .into_iter()
                .map(|(host, tenant)| (host.to_ascii_lowercase(), tenant))
                .collect(),
            identity,
            tools,
            audit: Audit::try_from(raw.audit)?,
            max_response_capture_bytes: raw.max_response_capture_bytes,
            scanning: {
                check_immutable_rules(&raw.scanning.input)?;
                Scanning::try_from(raw.scanning)?
            },
            rate_limits: raw.rate_limits.map(RateLimits::try_from).transpose()?,
            filter_tools_list: raw.filter_tools_list,
            forward_identity_headers: raw.forward_identity_headers,
            protected_resource,
            audit_failure_mode: raw.audit_failure_mode,
            max_batch_size: raw.max_batch_size,
        })
    }
}

impl Config {
    /// The tenant a request belongs to: by its host when mapped, else the configured tenant.
    pub fn tenant_for_host(&self, authority: Option<&str>) -> &str {
        if self.tenants_by_host.is_empty() {
            return &self.tenant;
        }
        let host = authority
            .map(|a| {
                a.rsplit_once(':')
                    .map_or(a, |(h, _)| h)
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        self.tenants_by_host
            .get(&host)
            .map_or(self.tenant.as_str(), String::as_str)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::claims::{ClaimLayout, Preset};
    use crate::auth::keys::source::KeySource;
    use crate::policy::rate_limit::Limit;
    use crate::scan::settings::Oversized;
    use serde_json::json;
    use std::time::Duration;

    pub fn minimal() -> serde_json::Value {
        json!({
            "tenant": "org_acme_corp",
            "identity": {
                "issuer": "https://idp.example",
                "audiences": ["acp"],
                "jwks": {"remote": {"cluster": "idp", "uri": "http://idp.example:9000/jwks.json"}}
            },
            "tools": {"salesforce.query": ["salesforce:read"]},
            "audit": {"cluster": "collector", "ingestToken": "t"}
        })
    }

    fn err(v: serde_json::Value) -> String {
        parse(v.to_string().as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(minimal().to_string().as_bytes()).unwrap();
        assert_eq!(c.identity.clock_skew, Duration::from_secs(60));
        assert_eq!(c.identity.claims, ClaimLayout::generic());
        assert_eq!(c.audit.batch_size, 100);
        assert_eq!(c.audit.max_input_bytes, 16_384);
        assert_eq!(c.audit.authority, "collector");
        assert_eq!(c.audit_failure_mode, AuditFailureMode::Open);
        let KeySource::Remote(r) = &c.identity.keys else {
            panic!("remote expected")
        };
        assert_eq!(
            (r.authority.as_str(), r.path.as_str()),
            ("idp.example:9000", "/jwks.json")
        );
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let mut v = minimal();
        v["identity"]["jwks"]["remote"]["clustr"] = json!("x");
        let e = err(v);
        assert!(e.starts_with("identity.jwks.remote"), "{e}");
        assert!(e.contains("clustr"), "{e}");
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let mut v = minimal();
        v["audit"].as_object_mut().unwrap().remove("ingestToken");
        assert!(err(v).contains("ingestToken"));

        let mut v = minimal();
        v["audit"]["batchSize"] = json!(0);
        assert_eq!(err(v), "audit.batchSize: must be at least 1, got 0");

        let mut v = minimal();
        v["audit"]["batchSize"] = json!(5);
        assert_eq!(
            err(v),
            "audit.earlyBatchSize: must not exceed audit.batchSize (5), got 10"
        );

        let mut v = minimal();
        v["audit"]["earlyBatchSize"] = json!(0);
        assert_eq!(err(v), "audit.earlyBatchSize: must be at least 1, got 0");

        let mut v = minimal();
        v["audit"]["maxInputBytes"] = json!(100);
        assert_eq!(err(v), "audit.maxInputBytes: must be at least 256, got 100");

        let mut v = minimal();
        v["audit"]["maxBufferedBytes"] = json!(4096);
        v["audit"]["maxInputBytes"] = json!(8192);
        assert_eq!(
            err(v),
            "audit.maxInputBytes: must not exceed audit.maxBufferedBytes (4096), got 8192"
        );

        let mut v = minimal();
        v["identity"]["audiences"] = json!([]);
        assert!(err(v).starts_with("identity.audiences:"));

        let mut v = minimal();
        v["identity"]["jwks"] = json!({"remote": {"cluster": "idp", "uri": "ftp://x"}});
        assert!(err(v).starts_with("identity.jwks.remote.uri:"));

        let mut v = minimal();
        v["tools"] = json!({"a**": ["x"]});
        assert!(err(v).starts_with("tools:"));
    }

    #[test]
    fn immutable_rules_cannot_be_weakened() {
        for detector in ["ssn", "payment_card", "ssrf"] {
            let mut v = minimal();
            v["scanning"] = json!({"input": {detector: "log"}});
            let e = err(v);
            assert!(
                e.starts_with(&format!("scanning.input.{detector}: `log` refused")),
                "{e}"
            );
            assert!(e.contains("platform-enforced"), "{e}");
        }
        let mut v = minimal();
        v["scanning"] =
            json!({"input": {"ssn": "block", "email": "redact"}, "output": {"ssn": "block"}});
        let c = parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(c.scanning.input.actions[&Detector::Email], Action::Redact);
        assert_eq!(
            c.scanning.input.actions[&Detector::PaymentCard],
            Action::Block,
            "defaults kept"
        );
        assert_eq!(c.scanning.output.actions[&Detector::Ssn], Action::Block);
        assert_eq!(c.scanning.oversized, Oversized::Reject);
    }

    #[test]
    fn rate_limits_per_tenant_with_a_default() {
        let mut v = minimal();
        v["rateLimits"] = json!({"requestsPerMinute": 60, "burst": 10,
                                 "tenants": {"org_big": {"requestsPerMinute": 600, "burst": 50, "perTool": true}}});
        let c = parse(v.to_string().as_bytes()).unwrap();
        let r = c.rate_limits.as_ref().unwrap();
        assert_eq!(
            r.for_tenant("org_acme_corp"),
            Limit {
                per_minute: 60,
                burst: 10,
                per_tool: false
            }
        );
        assert_eq!(
            r.for_tenant("org_big"),
            Limit {
                per_minute: 600,
                burst: 50,
                per_tool: true
            }
        );
        assert!(parse(minimal().to_string().as_bytes())
            .unwrap()
            .rate_limits
            .is_none());

        let mut v = minimal();
        v["rateLimits"] = json!({"requestsPerMinute": 60, "burst": 0});
        assert_eq!(err(v), "rateLimits.burst: must be at least 1, got 0");
    }

    #[test]
    fn audit_failure_mode_is_open_or_closed() {
        let mut v = minimal();
        v["auditFailureMode"] = json!("closed");
        assert_eq!(
            parse(v.to_string().as_bytes()).unwrap().audit_failure_mode,
            AuditFailureMode::Closed
        );
        v["auditFailureMode"] = json!("shut");
        let e = err(v);
        assert!(
            e.starts_with("auditFailureMode: unknown variant `shut`"),
            "{e}"
        );
    }

    #[test]
    fn presets_are_overridden_field_by_field() {
        let mut v = minimal();
        v["identity"]["preset"] = json!("entra");
        v["identity"]["emailClaim"] = json!("upn");
        v["identity"]["roleClaim"] = json!(["groups", "wids"]);
        let c = parse(v.to_string().as_bytes()).unwrap().identity.claims;
        let entra = ClaimLayout::preset(Preset::Entra, &["acp".into()]);
        assert_eq!(
            c,
            ClaimLayout {
                email: vec!["upn".into()],
                roles: vec!["groups".into(), "wids".into()],
                ..entra
            }
        );

        let mut v = minimal();
        v["identity"]["preset"] = json!("auth0");
        v["identity"]["tenantClaim"] = json!([]);
        assert!(
            parse(v.to_string().as_bytes())
                .unwrap()
                .identity
                .claims
                .tenant
                .is_empty(),
            "tenant check off"
        );

        let mut v = minimal();
        v["identity"]["preset"] = json!("ping");
        assert!(err(v).starts_with("identity.preset: unknown variant `ping`"));
        let mut v = minimal();
        v["identity"]["scopeClaims"] = json!([]);
        assert_eq!(err(v), "identity.scopeClaims: list at least one claim");
        let mut v = minimal();
        v["identity"]["emailClaim"] = json!(5);
        assert!(err(v).starts_with("identity.emailClaim: a claim path or a list of claim paths"));
        let mut v = minimal();
        v["identity"]["tenantClaim"] = json!("org.");
        assert!(err(v).starts_with("identity.tenantClaim: claim paths"));
    }

    #[test]
    fn discovery_needs_only_the_issuer_and_a_cluster() {
        let mut v = minimal();
        v["identity"]["jwks"] = json!({"discovery": {"cluster": "idp", "jwksCluster": "keys"}});
        let c = parse(v.to_string().as_bytes()).unwrap();
        let KeySource::Remote(r) = &c.identity.keys else {
            panic!("remote expected")
        };
        assert_eq!(
            (r.authority.as_str(), r.path.as_str()),
            ("idp.example", "/.well-known/openid-configuration")
        );
        let d = r.discovery.as_ref().unwrap();
        assert_eq!(
            (d.issuer.as_str(), d.jwks_cluster.as_deref()),
            ("https://idp.example", Some("keys"))
        );

        v["identity"]["issuer"] = json!("http://idp.example");
        assert!(
            err(v.clone()).starts_with("identity.issuer: \"http://idp.example\" must use https")
        );
        v["identity"]["issuer"] = json!("http://127.0.0.1:9000");
        v["identity"]["jwks"]["discovery"]["allowHttpLoopback"] = json!(true);
        assert!(parse(v.to_string().as_bytes()).is_ok());
        v["identity"]["jwks"]["discovery"]["uri"] = json!("http://127.0.0.1:9000/jwks");
        assert!(err(v).starts_with("identity.jwks.discovery.uri: not with discovery"));

        let mut v = minimal();
        v["identity"]["jwks"]["remote"]["jwksCluster"] = json!("keys");
        assert!(err(v).starts_with("identity.jwks.remote.jwksCluster:"));
        let mut v = minimal();
        v["identity"]["jwks"] = json!({"remote": {"cluster": "idp"}});
        assert_eq!(err(v), "identity.jwks.remote.uri: missing field `uri`");
    }

    #[test]
    fn trust_mode_names_the_metadata_key() {
        let mut v = minimal();
        v["identity"]["jwks"] = json!({"trustJwtAuthn": {"payloadInMetadata": "jwt_payload"}});
        let c = parse(v.to_string().as_bytes()).unwrap();
        assert!(
            matches!(&c.identity.keys, KeySource::TrustJwtAuthn { payload_in_metadata } if payload_in_metadata == "jwt_payload")
        );
        v["identity"]["jwks"] = json!({"trustJwtAuthn": {"payloadInMetadata": ""}});
        assert!(err(v).starts_with("identity.jwks.trustJwtAuthn.payloadInMetadata:"));
    }

    #[test]
    fn tenant_by_host_falls_back_to_the_configured_tenant() {
        let mut v = minimal();
        v["tenantsByHost"] = json!({"Globex.example": "org_globex"});
        let c = parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(
            c.tenant_for_host(Some("globex.example:10000")),
            "org_globex"
        );
        assert_eq!(c.tenant_for_host(Some("other")), "org_acme_corp");
        assert_eq!(c.tenant_for_host(None), "org_acme_corp");
    }

    #[test]
    fn the_configuration_points_401_challenges_at_the_document_unless_told_otherwise() {
        let mut cfg = minimal();
        cfg["tools"] = json!({"b": ["s:2", "s:1"], "a": ["s:1"]});
        cfg["protectedResource"] = json!({"resource": "https://mcp.acme.com/mcp", "authorizationServers": ["https://idp"]});
        let parsed = parse(cfg.to_string().as_bytes()).unwrap();
        assert_eq!(
            parsed.identity.resource_metadata_url.as_deref(),
            Some("https://mcp.acme.com/.well-known/oauth-protected-resource/mcp")
        );
        assert!(parsed
            .protected_resource
            .unwrap()
            .document
            .contains(r#""scopes_supported":["s:1","s:2"]"#));
        cfg["identity"]["resourceMetadataUrl"] = json!("https://elsewhere/prm");
        let parsed = parse(cfg.to_string().as_bytes()).unwrap();
        assert_eq!(
            parsed.identity.resource_metadata_url.as_deref(),
            Some("https://elsewhere/prm")
        );
        cfg["protectedResource"]["extra"] = json!(1);
        assert!(parse(cfg.to_string().as_bytes())
            .unwrap_err()
            .to_string()
            .starts_with("protectedResource"));
    }
}
