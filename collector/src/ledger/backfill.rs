//! The Merkle tree side of bringing a database from before tamper evidence up to date
//! ([`crate::store::migrate`]): each record's sequence number and tree hashes, in arrival order
//! per tenant.

use std::collections::HashMap;

use crate::ledger::merkle::{self, Frontier};
use crate::store::migrate::Backfill;

/// The trees of every tenant as the older records are replayed.
#[derive(Default)]
pub struct TreeBackfill(HashMap<String, Frontier>);

impl Backfill for TreeBackfill {
    fn next(&mut self, tenant: &str, json: &[u8]) -> anyhow::Result<(u64, Vec<u8>)> {
        let tree = self.0.entry(tenant.to_owned()).or_default();
        let hashes = tree.next_hashes(merkle::leaf_hash(json))?;
        let tseq = tree.size();
        tree.push(&hashes);
        Ok((tseq, merkle::join_hashes(&hashes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{self, Tables};

    #[test]
    fn records_of_an_older_database_get_sequence_numbers_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                tenant TEXT NOT NULL, ts INTEGER NOT NULL, sub TEXT, email TEXT, tool TEXT,
                result TEXT NOT NULL, event TEXT NOT NULL, json TEXT NOT NULL);
             CREATE TRIGGER records_no_delete BEFORE DELETE ON records
             BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
             INSERT INTO records (id, tenant, ts, result, event, json) VALUES
                ('a', 't1', 1, 'success', 'tool.call', '{\"id\":\"a\"}'),
                ('b', 't2', 2, 'success', 'tool.call', '{\"id\":\"b\"}'),
                ('c', 't1', 3, 'success', 'tool.call', '{\"id\":\"c\"}');",
        )
        .unwrap();
        drop(conn);
        let store = store::Store::open(&path, None).unwrap();
        store
            .create_schema(Tables::Records, &mut TreeBackfill::default())
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let rows: Vec<(String, i64, i64)> = conn
            .prepare("SELECT id, tseq, length(hashes) FROM records ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("a".into(), 0, 32),
                ("b".into(), 0, 32),
                ("c".into(), 1, 64)
            ]
        );
        let err = conn.execute("DELETE FROM records", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        drop(conn);
        // Idempotent.
        store
            .create_schema(Tables::Records, &mut TreeBackfill::default())
            .unwrap();
    }
}
