//! Who is calling: the audit identity derived from a verified token's claims (subject, email,
//! tenant, scopes, client, delegation chain), and the per-worker cache of verified tokens.
//! Nothing here reads request headers: every field comes from the verified token.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;
use serde_json::{Map, Value};

use crate::auth::claims::{all_strings, first_string};
use crate::auth::settings::IdentityConfig;
use crate::auth::token::Claims;

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub sub: String,
    pub email: Option<String>,
    /// The token's tenant claim, when the configuration names one.
    pub tenant: Option<String>,
    /// Granted scopes: the scope claims plus the scopes of the token's roles, in first-seen order.
    pub scopes: Vec<String>,
    pub client_id: Option<String>,
    pub client_type: Option<String>,
    /// RFC 8693 `act` chain, outermost (current) actor first.
    pub delegation_chain: Option<Vec<Value>>,
    /// Token expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Identity {
    pub fn from_claims(claims: &Claims, cfg: &IdentityConfig) -> Identity {
        // Registered claims are parsed out by jwt-simple; put `sub` back for the claim paths.
        let mut custom = claims.custom.clone();
        if let Some(sub) = &claims.subject {
            custom.insert("sub".into(), Value::String(sub.clone()));
        }
        let layout = &cfg.claims;
        let mut scopes = all_strings(&custom, &layout.scopes);
        for role in all_strings(&custom, &layout.roles) {
            for granted in cfg.role_scopes.get(&role).into_iter().flatten() {
                if !scopes.contains(granted) {
                    scopes.push(granted.clone());
                }
            }
        }
        let client_id = first_string(&custom, &layout.client_id);
        Identity {
            sub: first_string(&custom, &layout.subject).unwrap_or_default(),
            email: first_string(&custom, &layout.email),
            tenant: first_string(&custom, &layout.tenant),
            scopes,
            client_type: client_id
                .as_ref()
                .and_then(|id| cfg.client_types.get(id).cloned()),
            client_id,
            delegation_chain: delegation_chain(custom.get("act")),
            expires_at: claims.expires_at.map_or(0, |t| t.as_secs()),
        }
    }
}

/// Unfolds nested `act` claims into a list, outermost first; each entry keeps the actor's own
/// claims (e.g. `sub`, `client_id`) without its nested `act`. Bounded against deep nesting.
fn delegation_chain(act: Option<&Value>) -> Option<Vec<Value>> {
    const MAX_DEPTH: usize = 16;
    let mut chain = Vec::new();
    let mut current = act;
    while let Some(Value::Object(actor)) = current {
        if chain.len() == MAX_DEPTH {
            break;
        }
        let own: Map<String, Value> = actor
            .iter()
            .filter(|(k, _)| *k != "act")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        chain.push(Value::Object(own));
        current = actor.get("act");
    }
    (!chain.is_empty()).then_some(chain)
}

/// Verified identities by their token, so RS256 runs once per token and worker. The map hashes
/// the token's length and last 64 bytes (its signature's end: a token is about a kilobyte, and
/// hashing all of it was a visible share of a cached call) with foldhash under a random
/// per-cache key, so callers cannot aim tokens at one bucket, and compares the token in full: a
/// hit is the exact token that was verified. Only verified tokens enter, and their signatures'
/// ends differ. Bounded: expired entries are evicted first, then an arbitrary one.
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<Box<str>, Rc<Identity>, TailHashing>,
}

/// How many of a token's last bytes its hash covers.
const HASHED_TAIL: usize = 64;

/// Builds [`TailHasher`]s under the cache's random key.
#[derive(Clone)]
struct TailHashing(SeedableRandomState);

impl BuildHasher for TailHashing {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

/// A foldhash hasher that takes, of each byte string written to it, its length and its last
/// [`HASHED_TAIL`] bytes.
struct TailHasher(foldhash::fast::FoldHasher<'static>);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0.write(
            bytes
                .get(bytes.len().saturating_sub(HASHED_TAIL)..)
                .unwrap_or(bytes),
        );
    }

    /// The end mark `str` writes after its bytes.
    fn write_u8(&mut self, byte: u8) {
        self.0.write_u8(byte);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        // 64 random bits: std's hasher is keyed from the system's random source (WASI's).
        let key = std::hash::RandomState::new().hash_one(capacity);
        TokenCache {
            capacity,
            entries: HashMap::with_hasher(TailHashing(SeedableRandomState::with_seed(
                key,
                SharedSeed::global_random(),
            ))),
        }
    }

    /// The cached identity, unless its token has expired (`now` in Unix seconds). Expiry is
    /// exact here; the clock skew only widens acceptance of a token being verified.
    pub fn get(&mut self, token: &str, now: u64) -> Option<Rc<Identity>> {
        match self.entries.get(token) {
            Some(id) if id.expires_at > now => Some(Rc::clone(id)),
            Some(_) => {
                self.entries.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn insert(&mut self, token: &str, identity: Rc<Identity>, now: u64) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, id| id.expires_at > now);
        }
        if self.entries.len() >= self.capacity {
            if let Some(victim) = self.entries.keys().next().cloned() {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(token.into(), identity);
    }

    /// Forgets every identity, e.g. when the signing keys changed.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::tests::{identity_config, TestIdp, NOW};
    use serde_json::json;

    fn identity(claims: Value, adjust: impl FnOnce(&mut IdentityConfig)) -> Identity {
        let idp = TestIdp::new();
        let mut cfg = identity_config();
        adjust(&mut cfg);
        let token = idp.sign(claims);
        let claims = crate::auth::token::verify(
            &token,
            &idp.keys,
            &cfg,
            std::time::Duration::from_secs(NOW),
        )
        .unwrap();
        Identity::from_claims(&claims, &cfg)
    }

    #[test]
    fn fields_come_from_the_configured_claims() {
        let id = identity(
            json!({"email": "alice@acme.com", "org_id": "org_acme_corp", "azp": "claude-desktop-app",
                   "scope": "salesforce:read files:read", "scp": ["files:read", "github:write"],
                   "roles": ["admin"]}),
            |c| {
                c.claims.tenant = vec!["org_id".into()];
                c.claims.roles = vec!["roles".into()];
                c.role_scopes
                    .insert("admin".into(), vec!["salesforce:write".into()]);
                c.client_types
                    .insert("claude-desktop-app".into(), "claude-desktop".into());
            },
        );
        assert_eq!(id.sub, "alice");
        assert_eq!(id.email.as_deref(), Some("alice@acme.com"));
        assert_eq!(id.tenant.as_deref(), Some("org_acme_corp"));
        assert_eq!(
            id.scopes,
            [
                "salesforce:read",
                "files:read",
                "github:write",
                "salesforce:write"
            ]
        );
        assert_eq!(id.client_id.as_deref(), Some("claude-desktop-app"));
        assert_eq!(id.client_type.as_deref(), Some("claude-desktop"));
        assert_eq!(id.delegation_chain, None);
        assert_eq!(id.expires_at, NOW + 3600);
    }

    #[test]
    fn preset_layouts_read_their_providers_tokens() {
        use crate::auth::claims::{ClaimLayout, Preset};
        let id = identity(
            json!({"oid": "0000-66f3", "tid": "72f988bf", "azp": "6e74172b", "scp": "Files.Read Mail.Send",
                   "roles": ["Salesforce.Write"], "upn": "u@acme.com", "preferred_username": "alice@acme.com"}),
            |c| c.claims = ClaimLayout::preset(Preset::Entra, &c.audiences),
        );
        assert_eq!(
            (id.sub.as_str(), id.email.as_deref(), id.tenant.as_deref()),
            ("0000-66f3", Some("alice@acme.com"), Some("72f988bf"))
        );
        assert_eq!(id.scopes, ["Files.Read", "Mail.Send", "Salesforce.Write"]);
        assert_eq!(id.client_id.as_deref(), Some("6e74172b"));

        let id = identity(
            json!({"scope": "openid files:read", "realm_access": {"roles": ["sales"]},
                   "resource_access": {"acp": {"roles": ["admin"]}, "account": {"roles": ["hr"]}}}),
            |c| {
                c.claims = ClaimLayout::preset(Preset::Keycloak, &c.audiences);
                for (role, scope) in [
                    ("sales", "salesforce:read"),
                    ("admin", "salesforce:write"),
                    ("hr", "hr:read"),
                ] {
                    c.role_scopes.insert(role.into(), vec![scope.into()]);
                }
            },
        );
        assert_eq!(
            (id.sub.as_str(), id.tenant.as_deref()),
            ("alice", None),
            "`sub` when no other subject claim"
        );
        assert_eq!(
            id.scopes,
            [
                "openid",
                "files:read",
                "salesforce:read",
                "salesforce:write"
            ]
        );
    }

    #[test]
    fn unmapped_client_and_permissions_claim() {
        let id = identity(json!({"client_id": "cli", "permissions": ["a:b"]}), |_| {});
        assert_eq!(
            (id.client_id.as_deref(), id.client_type),
            (Some("cli"), None)
        );
        assert_eq!(id.scopes, ["a:b"]);
        assert_eq!(id.tenant, None);
    }

    #[test]
    fn nested_act_becomes_a_chain_outermost_first() {
        let id = identity(
            json!({"act": {"sub": "agent-b", "client_id": "b", "act": {"sub": "agent-a"}}}),
            |_| {},
        );
        assert_eq!(
            id.delegation_chain,
            Some(vec![
                json!({"sub": "agent-b", "client_id": "b"}),
                json!({"sub": "agent-a"})
            ])
        );
        let mut deep = json!({"sub": "a0"});
        for i in 1..40 {
            deep = json!({"sub": format!("a{i}"), "act": deep});
        }
        assert_eq!(delegation_chain(Some(&deep)).unwrap().len(), 16);
    }

    #[test]
    fn cache_expires_entries_and_stays_bounded() {
        let id = |exp| {
            Rc::new(Identity {
                expires_at: exp,
                ..identity(json!({}), |_| {})
            })
        };
        let mut cache = TokenCache::new(2);
        let (a, b, c) = ("a", "b", "c");
        cache.insert(a, id(100), 0);
        cache.insert(b, id(200), 0);
        assert!(cache.get(a, 99).is_some());
        assert!(cache.get(a, 100).is_none(), "expired at exp");
        cache.insert(a, id(100), 0);
        cache.insert(c, id(300), 150);
        assert_eq!(cache.entries.len(), 2, "expired entry a evicted first");
        assert!(cache.get(b, 150).is_some() && cache.get(c, 150).is_some());
        cache.insert(a, id(400), 150);
        assert_eq!(cache.entries.len(), 2);
    }

    #[test]
    fn tokens_alike_in_what_is_hashed_are_told_apart_in_full() {
        let with_sub = |sub: &str| Rc::new(identity(json!({ "sub": sub }), |_| {}));
        let tail = "s".repeat(HASHED_TAIL);
        let (a, b) = (format!("aaa.{tail}"), format!("bbb.{tail}"));
        let mut cache = TokenCache::new(4);
        cache.insert(&a, with_sub("alice"), 0);
        assert!(
            cache.get(&b, 1).is_none(),
            "same length and tail, other token"
        );
        cache.insert(&b, with_sub("bob"), 0);
        assert_eq!(cache.get(&a, 1).unwrap().sub, "alice");
        assert_eq!(cache.get(&b, 1).unwrap().sub, "bob");
        assert!(cache.get(&tail, 1).is_none(), "the tail alone");
    }
}
