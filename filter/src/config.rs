//! Plugin configuration: the JSON in the Envoy Wasm filter's `configuration`, parsed once in
//! `on_configure` into validated, read-only types. Unknown fields are rejected and every error
//! names the offending field (`identity.jwks.remote.cluster: missing field ...`).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::claims::{ClaimLayout, Preset};
use crate::auth::keys::discovery::{self, Discovery};
use crate::auth::keys::jwks::KeySet;
use crate::mcp::resource_metadata::{ProtectedResource, RawProtectedResource};
use crate::policy::rate_limit::Limit;
use crate::policy::scopes::ToolPolicy;
use crate::scan::content::{Action, Rules};
use crate::scan::ssrf::AllowList;
use crate::scan::Detector;

/// Validated configuration, shared read-only by every stream of a worker.
#[derive(Debug)]
pub struct Config {
    pub tenant: String,
    pub tenants_by_host: HashMap<String, String>,
    pub identity: Identity,
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

/// What happens to a call whose audit record cannot be buffered (the collector is down or slow
/// and the worker's buffer is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditFailureMode {
    /// Calls go on; records beyond the buffer are dropped and counted.
    #[default]
    Open,
    /// No audit, no action: calls whose records would not fit are refused with 503.
    Closed,
}

#[derive(Debug)]
pub struct Scanning {
    pub input: Rules,
    pub output: Rules,
    /// Largest body (request or response) that is scanned.
    pub max_scan_bytes: usize,
    pub oversized: Oversized,
}

/// What happens to a body above `maxScanBytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversized {
    /// Refuse it (413 for a request, a JSON-RPC error for an answer).
    Reject,
    /// Let it through unscanned; the record says it was not scanned.
    Pass,
}

#[derive(Debug)]
pub struct RateLimits {
    pub default: Limit,
    pub tenants: HashMap<String, Limit>,
}

impl RateLimits {
    pub fn for_tenant(&self, tenant: &str) -> Limit {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
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

#[derive(Debug)]
pub struct Identity {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub clock_skew: Duration,
    /// Where each identity field is in the token: the preset's layout, fields overridden.
    pub claims: ClaimLayout,
    pub role_scopes: HashMap<String, Vec<String>>,
    pub client_types: HashMap<String, String>,
    pub resource_metadata_url: Option<String>,
    pub token_cache_size: usize,
}

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

#[derive(Debug, Clone)]
pub struct Audit {
    pub cluster: String,
    pub authority: String,
    pub ingest_token: String,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub max_buffered_records: usize,
    pub max_buffered_bytes: usize,
    pub timeout: Duration,
    pub max_retry_delay: Duration,
}

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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawScanning {
    #[serde(default)]
    input: BTreeMap<Detector, Action>,
    #[serde(default)]
    output: BTreeMap<Detector, Action>,
    #[serde(default)]
    ssrf_allow_hosts: Vec<String>,
    #[serde(default)]
    max_scan_bytes: Option<usize>,
    #[serde(default)]
    oversized: Option<Oversized>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLimit {
    requests_per_minute: u32,
    burst: u32,
    #[serde(default)]
    per_tool: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRateLimits {
    #[serde(flatten)]
    default: RawLimit,
    #[serde(default)]
    tenants: HashMap<String, RawLimit>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIdentity {
    issuer: String,
    audiences: Vec<String>,
    jwks: RawJwks,
    #[serde(default = "default_skew")]
    clock_skew_seconds: u64,
    #[serde(default)]
    preset: Option<Preset>,
    #[serde(default)]
    subject_claim: Option<OneOrMany>,
    #[serde(default)]
    tenant_claim: Option<OneOrMany>,
    #[serde(default)]
    email_claim: Option<OneOrMany>,
    #[serde(default)]
    scope_claims: Option<Vec<String>>,
    #[serde(default)]
    role_claim: Option<OneOrMany>,
    #[serde(default)]
    role_scopes: HashMap<String, Vec<String>>,
    #[serde(default)]
    client_id_claims: Option<Vec<String>>,
    #[serde(default)]
    client_types: HashMap<String, String>,
    #[serde(default)]
    resource_metadata_url: Option<String>,
    #[serde(default = "default_token_cache")]
    token_cache_size: usize,
}

/// A claim path, or a list of them tried in order.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a claim path or a list of claim paths")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum RawJwks {
    Inline(serde_json::Value),
    Remote(RawRemoteJwks),
    /// The same fields as `remote`, without `uri`: the JWKS is found through the issuer.
    Discovery(RawRemoteJwks),
    TrustJwtAuthn(RawTrustJwtAuthn),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTrustJwtAuthn {
    payload_in_metadata: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRemoteJwks {
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAudit {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    ingest_token: String,
    #[serde(default = "default_batch")]
    batch_size: usize,
    #[serde(default = "default_flush")]
    flush_interval_ms: u64,
    #[serde(default = "default_buffer_records")]
    max_buffered_records: usize,
    #[serde(default = "default_buffer_bytes")]
    max_buffered_bytes: usize,
    #[serde(default = "default_audit_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_retry_max")]
    max_retry_delay_ms: u64,
}

fn default_capture() -> usize {
    1 << 20
}
fn yes() -> bool {
    true
}
fn default_input_actions() -> BTreeMap<Detector, Action> {
    use Action::*;
    use Detector::*;
    BTreeMap::from([
        (Ssn, Block),
        (PaymentCard, Block),
        (Ssrf, Block),
        (Secret, Block),
        (Iban, Log),
        (Email, Log),
        (Phone, Log),
    ])
}
fn default_output_actions() -> BTreeMap<Detector, Action> {
    use Action::*;
    use Detector::*;
    BTreeMap::from([
        (Ssn, Redact),
        (PaymentCard, Redact),
        (Secret, Redact),
        (Iban, Redact),
        (Email, Log),
        (Phone, Log),
    ])
}
fn default_skew() -> u64 {
    60
}
fn default_token_cache() -> usize {
    10_000
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
fn default_batch() -> usize {
    100
}
fn default_flush() -> u64 {
    200
}
fn default_buffer_records() -> usize {
    10_000
}
fn default_buffer_bytes() -> usize {
    16 << 20
}
fn default_audit_timeout() -> u64 {
    5_000
}
fn default_retry_max() -> u64 {
    30_000
}
fn default_max_batch() -> usize {
    100
}

/// Parses and validates the plugin configuration. The error names the field and the reason.
pub fn parse(bytes: &[u8]) -> Result<Config, String> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    raw.validate()
}

fn field_error(field: &str, reason: impl std::fmt::Display) -> String {
    format!("{field}: {reason}")
}

fn non_empty(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(field_error(field, "must not be empty"));
    }
    Ok(())
}

fn at_least(field: &str, value: u64, min: u64) -> Result<(), String> {
    if value < min {
        return Err(field_error(
            field,
            format!("must be at least {min}, got {value}"),
        ));
    }
    Ok(())
}

impl RawConfig {
    fn validate(self) -> Result<Config, String> {
        non_empty("tenant", &self.tenant)?;
        for (host, tenant) in &self.tenants_by_host {
            non_empty(&format!("tenantsByHost.{host}"), tenant)?;
        }
        let mut tool_scopes: Vec<String> = self
            .tools
            .values()
            .chain(&self.default_scopes)
            .flatten()
            .cloned()
            .collect();
        tool_scopes.sort();
        tool_scopes.dedup();
        let tools = ToolPolicy::new(self.tools, self.default_scopes)
            .map_err(|e| field_error("tools", e))?;
        let protected_resource = self
            .protected_resource
            .map(|p| p.validate(tool_scopes))
            .transpose()?;
        let mut identity = self.identity.validate()?;
        if let Some(resource) = &protected_resource {
            identity
                .resource_metadata_url
                .get_or_insert_with(|| resource.url.clone());
        }
        at_least("maxBatchSize", self.max_batch_size as u64, 1)?;
        Ok(Config {
            tenant: self.tenant,
            tenants_by_host: self
                .tenants_by_host
                .into_iter()
                .map(|(host, tenant)| (host.to_ascii_lowercase(), tenant))
                .collect(),
            identity,
            tools,
            audit: self.audit.validate()?,
            max_response_capture_bytes: self.max_response_capture_bytes,
            scanning: self.scanning.validate()?,
            rate_limits: self.rate_limits.map(RawRateLimits::validate).transpose()?,
            filter_tools_list: self.filter_tools_list,
            forward_identity_headers: self.forward_identity_headers,
            protected_resource,
            audit_failure_mode: self.audit_failure_mode,
            max_batch_size: self.max_batch_size,
        })
    }
}

impl RawScanning {
    fn validate(self) -> Result<Scanning, String> {
        for (detector, what) in IMMUTABLE_INPUT_BLOCKS {
            match self.input.get(&detector) {
                None | Some(Action::Block) => {}
                Some(other) => {
                    return Err(field_error(
                        &format!("scanning.input.{}", detector.as_str()),
                        format!(
                            "`{}` refused: blocking {what} in tool inputs is a platform-enforced rule \
                             that no configuration can weaken (see IMMUTABLE_RULES.md)",
                            other.as_str()
                        ),
                    ));
                }
            }
        }
        let ssrf_allow = AllowList::new(self.ssrf_allow_hosts)
            .map_err(|e| field_error("scanning.ssrfAllowHosts", e))?;
        let merge = |mut base: BTreeMap<Detector, Action>, over: BTreeMap<Detector, Action>| {
            base.extend(over);
            base
        };
        let max_scan_bytes = self.max_scan_bytes.unwrap_or(1 << 20);
        at_least("scanning.maxScanBytes", max_scan_bytes as u64, 1)?;
        Ok(Scanning {
            input: Rules {
                actions: merge(default_input_actions(), self.input),
                ssrf_allow: ssrf_allow.clone(),
            },
            output: Rules {
                actions: merge(default_output_actions(), self.output),
                ssrf_allow,
            },
            max_scan_bytes,
            oversized: self.oversized.unwrap_or(Oversized::Reject),
        })
    }
}

impl RawLimit {
    fn validate(self, field: &str) -> Result<Limit, String> {
        at_least(
            &format!("{field}.requestsPerMinute"),
            u64::from(self.requests_per_minute),
            1,
        )?;
        at_least(&format!("{field}.burst"), u64::from(self.burst), 1)?;
        Ok(Limit {
            per_minute: self.requests_per_minute,
            burst: self.burst,
            per_tool: self.per_tool,
        })
    }
}

impl RawRateLimits {
    fn validate(self) -> Result<RateLimits, String> {
        let mut tenants = HashMap::new();
        for (tenant, limit) in self.tenants {
            let limit = limit.validate(&format!("rateLimits.tenants.{tenant}"))?;
            tenants.insert(tenant, limit);
        }
        Ok(RateLimits {
            default: self.default.validate("rateLimits")?,
            tenants,
        })
    }
}

impl RawIdentity {
    fn validate(self) -> Result<Identity, String> {
        non_empty("identity.issuer", &self.issuer)?;
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.is_empty()) {
            return Err(field_error(
                "identity.audiences",
                "list at least one non-empty audience",
            ));
        }
        at_least("identity.tokenCacheSize", self.token_cache_size as u64, 1)?;
        let claims = self.claim_layout()?;
        let keys = match self.jwks {
            RawJwks::Inline(jwks) => KeySource::Inline(Rc::new(
                KeySet::from_jwks_value(&jwks)
                    .map_err(|e| field_error("identity.jwks.inline", e))?,
            )),
            RawJwks::Remote(remote) => KeySource::Remote(remote.validate("remote", None)?),
            RawJwks::Discovery(remote) => {
                KeySource::Remote(remote.validate("discovery", Some(&self.issuer))?)
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
        };
        Ok(Identity {
            issuer: self.issuer,
            audiences: self.audiences,
            keys,
            clock_skew: Duration::from_secs(self.clock_skew_seconds),
            claims,
            role_scopes: self.role_scopes,
            client_types: self.client_types,
            resource_metadata_url: self.resource_metadata_url,
            token_cache_size: self.token_cache_size,
        })
    }

    /// The preset's claim layout (or the generic one) with the explicitly configured fields.
    fn claim_layout(&self) -> Result<ClaimLayout, String> {
        let mut layout = match self.preset {
            Some(preset) => ClaimLayout::preset(preset, &self.audiences),
            None => ClaimLayout::generic(),
        };
        let overrides = [
            ("subjectClaim", &self.subject_claim, &mut layout.subject),
            ("tenantClaim", &self.tenant_claim, &mut layout.tenant),
            ("emailClaim", &self.email_claim, &mut layout.email),
            ("roleClaim", &self.role_claim, &mut layout.roles),
        ];
        for (field, value, target) in overrides {
            if let Some(value) = value {
                *target = claim_paths(&format!("identity.{field}"), value.to_vec())?;
            }
        }
        if let Some(scopes) = &self.scope_claims {
            layout.scopes = claim_paths("identity.scopeClaims", scopes.clone())?;
        }
        if let Some(ids) = &self.client_id_claims {
            layout.client_id = claim_paths("identity.clientIdClaims", ids.clone())?;
        }
        for (field, paths) in [
            ("subjectClaim", &layout.subject),
            ("scopeClaims", &layout.scopes),
        ] {
            if paths.is_empty() {
                return Err(field_error(
                    &format!("identity.{field}"),
                    "list at least one claim",
                ));
            }
        }
        Ok(layout)
    }
}

fn claim_paths(field: &str, paths: Vec<String>) -> Result<Vec<String>, String> {
    if paths
        .iter()
        .any(|p| p.is_empty() || p.starts_with('.') || p.ends_with('.'))
    {
        return Err(field_error(
            field,
            "claim paths must be non-empty and not start or end with `.`",
        ));
    }
    Ok(paths)
}

impl RawRemoteJwks {
    /// `kind` is `remote` (the JWKS at `uri`) or `discovery` (of `issuer`).
    fn validate(self, kind: &str, issuer: Option<&str>) -> Result<RemoteJwks, String> {
        let field = |name: &str| format!("identity.jwks.{kind}.{name}");
        non_empty(&field("cluster"), &self.cluster)?;
        let ((authority, path), discovery) = match (issuer, self.uri) {
            (None, Some(uri)) => {
                if self.jwks_cluster.is_some() || self.allow_http_loopback {
                    return Err(field_error(
                        &field("jwksCluster"),
                        "jwksCluster and allowHttpLoopback belong to `discovery`",
                    ));
                }
                (
                    split_http_uri(&uri)
                        .ok_or_else(|| field_error(&field("uri"), "must be an http(s) URL"))?,
                    None,
                )
            }
            (None, None) => return Err(field_error(&field("uri"), "missing field `uri`")),
            (Some(_), Some(_)) => {
                return Err(field_error(
                    &field("uri"),
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
                    .map_err(|e| field_error("identity.issuer", e))?;
                (
                    split_http_uri(&url)
                        .ok_or_else(|| field_error("identity.issuer", "must be an http(s) URL"))?,
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

impl RawAudit {
    fn validate(self) -> Result<Audit, String> {
        non_empty("audit.cluster", &self.cluster)?;
        non_empty("audit.ingestToken", &self.ingest_token)?;
        at_least("audit.batchSize", self.batch_size as u64, 1)?;
        at_least("audit.flushIntervalMs", self.flush_interval_ms, 10)?;
        at_least(
            "audit.maxBufferedRecords",
            self.max_buffered_records as u64,
            1,
        )?;
        at_least(
            "audit.maxBufferedBytes",
            self.max_buffered_bytes as u64,
            1024,
        )?;
        at_least("audit.timeoutMs", self.timeout_ms, 1)?;
        at_least("audit.maxRetryDelayMs", self.max_retry_delay_ms, 100)?;
        Ok(Audit {
            authority: self.authority.unwrap_or_else(|| self.cluster.clone()),
            cluster: self.cluster,
            ingest_token: self.ingest_token,
            batch_size: self.batch_size,
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            max_buffered_records: self.max_buffered_records,
            max_buffered_bytes: self.max_buffered_bytes,
            timeout: Duration::from_millis(self.timeout_ms),
            max_retry_delay: Duration::from_millis(self.max_retry_delay_ms),
        })
    }
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

impl Config {
    /// The tenant a request belongs to: by its host when mapped, else the configured tenant.
    pub fn tenant_for_host(&self, authority: Option<&str>) -> &str {
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
    use serde_json::json;

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
        parse(v.to_string().as_bytes()).unwrap_err()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(minimal().to_string().as_bytes()).unwrap();
        assert_eq!(c.identity.clock_skew, Duration::from_secs(60));
        assert_eq!(c.identity.claims, ClaimLayout::generic());
        assert_eq!(c.audit.batch_size, 100);
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
}
