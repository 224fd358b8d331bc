//! The `identity` section of the configuration: the issuer and audiences tokens must name, where
//! the keys come from and where each identity field is in a token.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::claims::{ClaimLayout, Preset};
use super::keys::source::{KeySource, RawJwks};
use crate::config_error::{at_least, non_empty, ConfigError};

/// Validated `identity` settings.
#[derive(Debug)]
pub struct IdentityConfig {
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

/// `identity` as written in the plugin configuration.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawIdentity {
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

fn default_skew() -> u64 {
    60
}
fn default_token_cache() -> usize {
    10_000
}

impl TryFrom<RawIdentity> for IdentityConfig {
    type Error = ConfigError;

    fn try_from(raw: RawIdentity) -> Result<IdentityConfig, ConfigError> {
        non_empty("identity.issuer", &raw.issuer)?;
        if raw.audiences.is_empty() || raw.audiences.iter().any(|a| a.is_empty()) {
            return Err(ConfigError::invalid(
                "identity.audiences",
                "list at least one non-empty audience",
            ));
        }
        at_least("identity.tokenCacheSize", raw.token_cache_size as u64, 1)?;
        let claims = raw.claim_layout()?;
        let keys = KeySource::from_raw(raw.jwks, &raw.issuer)?;
        Ok(IdentityConfig {
            issuer: raw.issuer,
            audiences: raw.audiences,
            keys,
            clock_skew: Duration::from_secs(raw.clock_skew_seconds),
            claims,
            role_scopes: raw.role_scopes,
            client_types: raw.client_types,
            resource_metadata_url: raw.resource_metadata_url,
            token_cache_size: raw.token_cache_size,
        })
    }
}

impl RawIdentity {
    /// The preset's claim layout (or the generic one) with the explicitly configured fields.
    fn claim_layout(&self) -> Result<ClaimLayout, ConfigError> {
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
                return Err(ConfigError::invalid(
                    format!("identity.{field}"),
                    "list at least one claim",
                ));
            }
        }
        Ok(layout)
    }
}

fn claim_paths(field: &str, paths: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if paths
        .iter()
        .any(|p| p.is_empty() || p.starts_with('.') || p.ends_with('.'))
    {
        return Err(ConfigError::invalid(
            field,
            "claim paths must be non-empty and not start or end with `.`",
        ));
    }
    Ok(paths)
}
