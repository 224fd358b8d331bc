//! Where an identity provider puts each identity field in its tokens: claim paths, the claim
//! layouts of common providers (presets), and reading a path out of a token's claims.
//!
//! A claim path names a top-level claim (`email`, `https://acme.com/tenant`) or, with dots, a
//! claim nested in objects (`realm_access.roles`). A claim whose whole name matches wins, so
//! namespaced claims with dots in their names (Auth0) need no escaping.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The claim paths of each identity field. Lists are tried in order: for `subject`, `email`,
/// `tenant` and `client_id` the first present claim wins; `scopes` and `roles` are merged from
/// every listed claim.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimLayout {
    pub subject: Vec<String>,
    pub email: Vec<String>,
    /// Empty: the token's tenant is not checked.
    pub tenant: Vec<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub client_id: Vec<String>,
}

/// A named claim layout (`identity.preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    Auth0,
    Okta,
    Entra,
    Keycloak,
}

fn paths(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

impl ClaimLayout {
    /// The layout without a preset.
    pub fn generic() -> ClaimLayout {
        ClaimLayout {
            subject: paths(&["sub"]),
            email: paths(&["email"]),
            tenant: Vec::new(),
            scopes: paths(&["scope", "scp", "permissions"]),
            roles: Vec::new(),
            client_id: paths(&["azp", "client_id"]),
        }
    }

    /// The layout of `preset`'s access tokens. Keycloak's client roles are read for each of
    /// `audiences` (`resource_access.<audience>.roles`).
    pub fn preset(preset: Preset, audiences: &[String]) -> ClaimLayout {
        let generic = ClaimLayout::generic();
        match preset {
            // API permissions (RBAC) in `permissions`; Organizations put the tenant in `org_id`.
            Preset::Auth0 => ClaimLayout {
                tenant: paths(&["org_id"]),
                scopes: paths(&["scope", "permissions"]),
                ..generic
            },
            // `scp` array, groups in `groups`, the client in `cid`.
            Preset::Okta => ClaimLayout {
                scopes: paths(&["scp"]),
                roles: paths(&["groups"]),
                client_id: paths(&["cid", "client_id"]),
                ..generic
            },
            // Delegated scopes in the `scp` string, application permissions (app roles) in
            // `roles`; `oid` is the user's stable id (`sub` differs per application).
            Preset::Entra => ClaimLayout {
                subject: paths(&["oid", "sub"]),
                email: paths(&["email", "preferred_username", "upn"]),
                tenant: paths(&["tid"]),
                scopes: paths(&["scp", "roles"]),
                roles: Vec::new(),
                client_id: paths(&["azp", "appid"]),
            },
            Preset::Keycloak => ClaimLayout {
                scopes: paths(&["scope"]),
                roles: std::iter::once("realm_access.roles".to_string())
                    .chain(
                        audiences
                            .iter()
                            .map(|a| format!("resource_access.{a}.roles")),
                    )
                    .collect(),
                ..generic
            },
        }
    }
}

/// The value at claim path `path`: the claim named `path` itself, else the claim named by a
/// dot-separated prefix of it, followed into its object with the rest of the path.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.match_indices('.')
        .find_map(|(i, _)| match claims.get(&path[..i]) {
            Some(Value::Object(inner)) => lookup(inner, &path[i + 1..]),
            _ => None,
        })
}

/// The first of `paths` present as a string.
pub fn first_string(claims: &Map<String, Value>, paths: &[String]) -> Option<String> {
    paths
        .iter()
        .find_map(|p| lookup(claims, p).and_then(Value::as_str))
        .map(str::to_string)
}

/// The strings of every claim of `paths`: a space-delimited string (`scope`, Entra's `scp`) or
/// an array of strings (`scp`, `permissions`, `roles`), without repeats, in first-seen order.
pub fn all_strings(claims: &Map<String, Value>, paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for value in paths.iter().filter_map(|p| lookup(claims, p)) {
        let items: Vec<&str> = match value {
            Value::String(s) => s.split_whitespace().collect(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for item in items {
            if !out.iter().any(|o| o == item) {
                out.push(item.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn paths_reach_nested_and_namespaced_claims() {
        let c = obj(json!({
            "https://acme.com/tenant": "org_a",
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"my.api": {"roles": ["reader"]}, "other": {"roles": ["x"]}},
            "a": {"b": "nested"}, "a.b": "flat",
        }));
        assert_eq!(lookup(&c, "https://acme.com/tenant"), Some(&json!("org_a")));
        assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["admin"])));
        assert_eq!(
            lookup(&c, "resource_access.my.api.roles"),
            Some(&json!(["reader"])),
            "dots in a key"
        );
        assert_eq!(
            lookup(&c, "a.b"),
            Some(&json!("flat")),
            "the whole name wins"
        );
        assert_eq!(lookup(&c, "realm_access.roles.0"), None);
        assert_eq!(lookup(&c, "missing.path"), None);
        assert_eq!(lookup(&c, "https://acme.com/tenant.x"), None);
    }

    #[test]
    fn first_present_string_wins_and_lists_merge() {
        let c = obj(
            json!({"upn": "u@acme.com", "preferred_username": "p@acme.com", "email": 7,
                           "scp": "a b", "roles": ["b", "c"]}),
        );
        let email = paths(&["email", "preferred_username", "upn"]);
        assert_eq!(
            first_string(&c, &email).as_deref(),
            Some("p@acme.com"),
            "non-strings are skipped"
        );
        assert_eq!(
            all_strings(&c, &paths(&["scp", "roles", "none"])),
            ["a", "b", "c"]
        );
        assert_eq!(first_string(&c, &[]), None);
    }

    #[test]
    fn presets() {
        let aud = ["acp".to_string()];
        let kc = ClaimLayout::preset(Preset::Keycloak, &aud);
        assert_eq!(
            kc.roles,
            ["realm_access.roles", "resource_access.acp.roles"]
        );
        assert_eq!(kc.scopes, ["scope"]);
        let entra = ClaimLayout::preset(Preset::Entra, &aud);
        assert_eq!(
            (entra.subject[0].as_str(), entra.tenant[0].as_str()),
            ("oid", "tid")
        );
        assert_eq!(ClaimLayout::preset(Preset::Okta, &aud).roles, ["groups"]);
        assert_eq!(
            ClaimLayout::preset(Preset::Auth0, &aud).scopes,
            ["scope", "permissions"]
        );
    }
}
