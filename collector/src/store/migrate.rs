//! Brings a database from before tamper evidence up to date: adds each record's sequence
//! number and tree hashes, in arrival order per tenant, and lets [`crate::store`]'s schema
//! replace the delete trigger with the one that admits retention.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::ledger::merkle::{self, Frontier};

/// Adds `tseq` and `hashes` to a `records` table that lacks them; a no-op otherwise.
pub fn add_tree_columns(conn: &mut Connection) -> anyhow::Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('records')")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if columns.is_empty() || columns.iter().any(|c| c == "tseq") {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(
        "ALTER TABLE records ADD COLUMN tseq INTEGER;
         ALTER TABLE records ADD COLUMN hashes BLOB;
         DROP TRIGGER IF EXISTS records_no_update;
         DROP TRIGGER IF EXISTS records_no_delete;",
    )?;
    let mut trees: HashMap<String, Frontier> = HashMap::new();
    {
        let mut rows = tx.prepare("SELECT seq, tenant, json FROM records ORDER BY seq")?;
        let mut update = tx.prepare("UPDATE records SET tseq = ?1, hashes = ?2 WHERE seq = ?3")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let tree = trees.entry(row.get(1)?).or_default();
            let hashes = tree.next_hashes(merkle::leaf_hash(row.get_ref(2)?.as_bytes()?))?;
            update.execute(rusqlite::params![
                tree.size() as i64,
                merkle::join_hashes(&hashes),
                row.get::<_, i64>(0)?
            ])?;
            tree.push(&hashes);
        }
    }
    tx.commit()?;
    let records: u64 = trees.values().map(Frontier::size).sum();
    tracing::info!(
        records,
        tenants = trees.len(),
        "added sequence numbers and tree hashes"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store;

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
        let conn = store::open_rw(&path).unwrap();
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
        store::open_rw(&path).unwrap();
    }
}
