//! The `policy_versions` table: every distinct policy document of a tenant, numbered from 1 in
//! the order first received, once per `(tenant, hash)` (every filter VM sends the same document).
//!
//! Tamper evidence: each version carries `chain = SHA-256(previous chain || version || hash ||
//! received_ms)` (the chain before version 1 is 32 zero bytes) and a checkpoint note signed with
//! the collector's key, origin `<log name>/<tenant>/policies`, tree size = version, root hash =
//! chain. Altering, removing or inserting a version breaks the chain or a signature, which
//! `acp-collector verify` reports ([`verify_chain`]). Rows can neither be updated nor deleted.
//!
//! Other modules (e.g. webhooks emitting `policy.changed`) read new versions with [`after`].

use serde_json::Value;
use sha2::{Digest, Sha256};
use tlog_tiles::tlog::Hash;

use crate::ledger::checkpoints;
use crate::ledger::signing::{SigningKey, Verifiers};
use crate::store::{Conn, ConnExt, Row};

/// One stored version.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyVersion {
    pub tenant: String,
    pub version: u64,
    pub hash: String,
    pub received_ms: i64,
    /// The document's compact JSON, as hashed.
    pub document: String,
}

impl PolicyVersion {
    pub fn document_value(&self) -> serde_json::Result<Value> {
        serde_json::from_str(&self.document)
    }
}

/// `sha256:<hex>` of a document's compact JSON (object keys sorted), as the filter computes it.
pub fn document_hash(document: &Value) -> String {
    format!(
        "sha256:{}",
        hex(&Sha256::digest(document.to_string().as_bytes()))
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn origin(log_name: &str, tenant: &str) -> String {
    format!("{}/policies", checkpoints::origin(log_name, tenant))
}

fn chain(previous: &Hash, version: u64, hash: &str, received_ms: i64) -> Hash {
    let mut h = Sha256::new();
    h.update(previous.0);
    h.update(version.to_be_bytes());
    h.update(hash.as_bytes());
    h.update(received_ms.to_be_bytes());
    Hash(h.finalize().into())
}

/// Stores `document` for each tenant that has not got it yet; returns the new versions.
/// Each tenant's chain is extended under its lock ([`ConnExt::lock_tenant`]), as replicas
/// sharing a PostgreSQL database may receive the same document at once.
pub fn insert(
    conn: &dyn Conn,
    key: &SigningKey,
    log_name: &str,
    tenants: &[String],
    document: &Value,
    received_ms: i64,
) -> anyhow::Result<Vec<PolicyVersion>> {
    let hash = document_hash(document);
    let text = document.to_string();
    let mut sorted: Vec<&String> = tenants.iter().collect();
    sorted.sort();
    conn.transaction(|tx| {
        let mut stored = Vec::new();
        for tenant in sorted {
            tx.lock_tenant(tenant)?;
            let known = tx.query_opt(
                "SELECT version FROM policy_versions WHERE tenant = ?1 AND hash = ?2",
                &[tenant.into(), hash.as_str().into()],
                |row| row.get::<i64>(0),
            )?;
            if known.is_some() {
                continue;
            }
            let last = tx.query_opt(
                "SELECT version, chain FROM policy_versions WHERE tenant = ?1 ORDER BY version DESC LIMIT 1",
                &[tenant.into()],
                |row| Ok((row.u64(0)?, row.get::<Vec<u8>>(1)?)),
            )?;
            let (version, previous) = match last {
                Some((v, c)) => (v + 1, Hash(c.try_into().map_err(|_| anyhow::anyhow!("bad chain"))?)),
                None => (1, Hash::default()),
            };
            let link = chain(&previous, version, &hash, received_ms);
            let note = key.checkpoint(&origin(log_name, tenant), version, link, "")?;
            tx.execute(
                "INSERT INTO policy_versions (tenant, version, hash, received_ms, document, chain, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &[
                    tenant.into(),
                    version.into(),
                    hash.as_str().into(),
                    received_ms.into(),
                    text.as_str().into(),
                    link.0.as_slice().into(),
                    note.into(),
                ],
            )?;
            stored.push(PolicyVersion {
                tenant: tenant.clone(),
                version,
                hash: hash.clone(),
                received_ms,
                document: text.clone(),
            });
        }
        Ok(stored)
    })
}

const COLUMNS: &str = "tenant, version, hash, received_ms, document";

fn row(row: &Row) -> anyhow::Result<PolicyVersion> {
    Ok(PolicyVersion {
        tenant: row.get(0)?,
        version: row.u64(1)?,
        hash: row.get(2)?,
        received_ms: row.get(3)?,
        document: row.get(4)?,
    })
}

/// The versions of `tenant` after `version` (0: all), oldest first.
pub fn after(conn: &dyn Conn, tenant: &str, version: u64) -> anyhow::Result<Vec<PolicyVersion>> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM policy_versions WHERE tenant = ?1 AND version > ?2 ORDER BY version"),
        &[tenant.into(), version.into()],
        row,
    )
}

pub fn get(conn: &dyn Conn, tenant: &str, version: u64) -> anyhow::Result<Option<PolicyVersion>> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM policy_versions WHERE tenant = ?1 AND version = ?2"),
        &[tenant.into(), version.into()],
        row,
    )
}

/// Every tenant with a policy version.
pub fn tenants(conn: &dyn Conn) -> anyhow::Result<Vec<String>> {
    conn.query(
        "SELECT DISTINCT tenant FROM policy_versions ORDER BY tenant",
        &[],
        |row| row.get(0),
    )
}

/// Checks `tenant`'s versions: document hashes, the chain and every signed note. Returns how
/// many verified; the error names the first bad version.
pub fn verify_chain(
    conn: &dyn Conn,
    trusted: &Verifiers,
    log_name: &str,
    tenant: &str,
) -> anyhow::Result<u64> {
    let origin = origin(log_name, tenant);
    let sql = "SELECT version, hash, received_ms, document, chain, note FROM policy_versions
         WHERE tenant = ?1 ORDER BY version";
    let mut previous = Hash::default();
    let mut expected = 1u64;
    conn.for_each(sql, &[tenant.into()], &mut |r| {
        let version = r.u64(0)?;
        let (hash, received_ms): (String, i64) = (r.get(1)?, r.get(2)?);
        let (document, stored_chain, note): (String, Vec<u8>, String) =
            (r.get(3)?, r.get(4)?, r.get(5)?);
        let label = format!("policy version {version}");
        anyhow::ensure!(
            version == expected,
            "policy version {expected} is missing (next stored: {version})"
        );
        let value: Value = serde_json::from_str(&document)
            .map_err(|e| anyhow::anyhow!("{label}: document is not JSON: {e}"))?;
        anyhow::ensure!(
            document_hash(&value) == hash,
            "{label}: the document does not match its hash (altered)"
        );
        let link = chain(&previous, version, &hash, received_ms);
        anyhow::ensure!(
            stored_chain == link.0,
            "{label}: the hash chain is broken (altered, inserted or removed)"
        );
        let checkpoint = trusted
            .open(&note, &origin)
            .map_err(|e| anyhow::anyhow!("{label}: {e:#}"))?;
        anyhow::ensure!(
            checkpoint.size() == version && *checkpoint.hash() == link,
            "{label}: the signed note states another version or chain"
        );
        previous = link;
        expected += 1;
        Ok(())
    })?;
    Ok(expected - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup() -> (tempfile::TempDir, rusqlite::Connection, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::testing::open_rw(&dir.path().join("db"));
        let key = SigningKey::load_or_create(&dir.path().join("key"), "test-log").unwrap();
        (dir, conn, key)
    }

    #[test]
    fn versions_once_per_tenant_and_hash_chained_and_signed() {
        let (_dir, conn, key) = setup();
        let tenants = ["org_a".to_owned(), "org_b".to_owned()];
        let v1 = json!({"tools": {"echo": ["a"]}});
        let v2 = json!({"tools": {"echo": ["b"]}});
        assert_eq!(
            insert(&conn, &key, "test-log", &tenants, &v1, 10)
                .unwrap()
                .len(),
            2
        );
        assert!(
            insert(&conn, &key, "test-log", &tenants, &v1, 11)
                .unwrap()
                .is_empty(),
            "same document again"
        );
        let stored = insert(&conn, &key, "test-log", &tenants[..1], &v2, 12).unwrap();
        assert_eq!((stored[0].version, stored[0].received_ms), (2, 12));
        let all = after(&conn, "org_a", 0).unwrap();
        assert_eq!(all.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(all[0].document_value().unwrap(), v1);
        assert_eq!(all[0].hash, document_hash(&v1));
        assert_eq!(after(&conn, "org_b", 0).unwrap().len(), 1);

        let trusted = Verifiers::new([key.vkey()]).unwrap();
        assert_eq!(
            verify_chain(&conn, &trusted, "test-log", "org_a").unwrap(),
            2
        );
        let other =
            Verifiers::new([
                SigningKey::load_or_create(&_dir.path().join("other"), "test-log")
                    .unwrap()
                    .vkey(),
            ])
            .unwrap();
        let err = verify_chain(&conn, &other, "test-log", "org_a")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("policy version 1: "), "{err}");
        assert!(
            conn.execute("DELETE FROM policy_versions", []).is_err(),
            "append-only"
        );
    }

    #[test]
    fn an_altered_document_is_named() {
        let (_dir, conn, key) = setup();
        let tenants = ["org_a".to_owned()];
        insert(&conn, &key, "test-log", &tenants, &json!({"v": 1}), 10).unwrap();
        insert(&conn, &key, "test-log", &tenants, &json!({"v": 2}), 11).unwrap();
        conn.execute_batch(
            "DROP TRIGGER policy_versions_no_update;
             UPDATE policy_versions SET document = '{\"v\":3}' WHERE version = 2;",
        )
        .unwrap();
        let trusted = Verifiers::new([key.vkey()]).unwrap();
        let err = verify_chain(&conn, &trusted, "test-log", "org_a")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "policy version 2: the document does not match its hash (altered)"
        );
    }
}
