//! Export API keys. A key is `gsk_` followed by 32 random bytes in unpadded base64url and is
//! bound to one tenant. Only its SHA-256 is stored: the key is high-entropy, so neither a salt
//! nor a slow hash adds anything, and a lookup by hash leaks nothing useful through timing.
//! Keys are listed and revoked by their first [`PREFIX_CHARS`] characters, which are not secret
//! (the remaining 37 characters still carry over 200 bits). Revoking keeps the row, so the list
//! shows when a key was revoked. The filter's shared ingest token is an [`IngestToken`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Conn, ConnExt};

/// What every key starts with.
pub const KEY_SCHEME: &str = "gsk_";
const RANDOM_BYTES: usize = 32;
/// Length of the listed prefix: `gsk_` and 8 characters of the random part.
pub const PREFIX_CHARS: usize = 12;

/// A key as `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub prefix: String,
    pub tenant: String,
    pub name: Option<String>,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key).to_vec()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Creates a key for `tenant` and returns it; this is the only time the key exists in clear.
pub fn create(conn: &dyn Conn, tenant: &str, name: Option<&str>) -> anyhow::Result<String> {
    anyhow::ensure!(!tenant.is_empty(), "the tenant must not be empty");
    let random: [u8; RANDOM_BYTES] = rand::random();
    let key = format!("{KEY_SCHEME}{}", URL_SAFE_NO_PAD.encode(random));
    conn.execute(
        "INSERT INTO api_keys (prefix, hash, tenant, name, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            key[..PREFIX_CHARS].into(),
            hash(&key).as_slice().into(),
            tenant.into(),
            name.into(),
            now_ms().into(),
        ],
    )?;
    Ok(key)
}

/// Keys of `tenant` (of every tenant when `None`), oldest first.
pub fn list(conn: &dyn Conn, tenant: Option<&str>) -> anyhow::Result<Vec<KeyInfo>> {
    conn.query(
        "SELECT prefix, tenant, name, created_ms, revoked_ms FROM api_keys
         WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_ms, prefix",
        &[tenant.into()],
        |row| {
            Ok(KeyInfo {
                prefix: row.get(0)?,
                tenant: row.get(1)?,
                name: row.get(2)?,
                created_ms: row.get(3)?,
                revoked_ms: row.get(4)?,
            })
        },
    )
}

/// Revokes the active key with `prefix`; `false` when there is none.
pub fn revoke(conn: &dyn Conn, prefix: &str) -> anyhow::Result<bool> {
    let changed = conn.execute(
        "UPDATE api_keys SET revoked_ms = ?2 WHERE prefix = ?1 AND revoked_ms IS NULL",
        &[prefix.into(), now_ms().into()],
    )?;
    Ok(changed == 1)
}

/// The tenant of `key` if it is a known, unrevoked key.
pub fn tenant_of(conn: &dyn Conn, key: &str) -> anyhow::Result<Option<String>> {
    if !key.starts_with(KEY_SCHEME) {
        return Ok(None);
    }
    conn.query_opt(
        "SELECT tenant FROM api_keys WHERE hash = ?1 AND revoked_ms IS NULL",
        &[hash(key).as_slice().into()],
        |row| row.get(0),
    )
}

/// The ingest token, kept as its SHA-256 so that checking a presented token takes the same
/// time whatever its length or content.
pub struct IngestToken([u8; 32]);

impl IngestToken {
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token).into())
    }

    pub fn verify(&self, presented: &str) -> bool {
        Sha256::digest(presented).ct_eq(&self.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::testing::open_rw(&dir.path().join("db"));
        let key = create(&conn, "org_a", Some("auditor")).unwrap();
        assert!(key.starts_with(KEY_SCHEME));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&key[4..]).unwrap().len(),
            RANDOM_BYTES
        );
        let other = create(&conn, "org_b", None).unwrap();
        assert_ne!(key, other);

        assert_eq!(tenant_of(&conn, &key).unwrap().as_deref(), Some("org_a"));
        assert_eq!(tenant_of(&conn, "gsk_unknown").unwrap(), None);
        let listed = list(&conn, Some("org_a")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].prefix, key[..PREFIX_CHARS]);
        assert_eq!(listed[0].name.as_deref(), Some("auditor"));
        assert_eq!(list(&conn, None).unwrap().len(), 2);

        assert!(revoke(&conn, &key[..PREFIX_CHARS]).unwrap());
        assert!(!revoke(&conn, &key[..PREFIX_CHARS]).unwrap());
        assert_eq!(tenant_of(&conn, &key).unwrap(), None);
        assert!(list(&conn, Some("org_a")).unwrap()[0].revoked_ms.is_some());
        assert_eq!(tenant_of(&conn, &other).unwrap().as_deref(), Some("org_b"));
    }

    #[test]
    fn ingest_token_verifies_only_itself() {
        let token = IngestToken::new("s3cret");
        assert!(token.verify("s3cret"));
        assert!(!token.verify("s3cre"));
        assert!(!token.verify("s3cret "));
        assert!(!token.verify(""));
    }
}
