//! Brings an older SQLite database up to date. From before tamper evidence: adds each record's
//! sequence number and tree hashes, in arrival order per tenant, and lets the schema
//! (`schema/sqlite.sql`) replace the delete trigger with the one that admits retention. The
//! hashes come from a [`Backfill`] (the ledger's, [`crate::ledger::TreeBackfill`]): the store
//! knows nothing of Merkle trees. From before the correlation columns: adds them, NULL in the
//! records stored then (which have no correlation fields). PostgreSQL's schema does the latter
//! itself (`schema/postgres.sql`).

use std::collections::HashSet;

use rusqlite::Connection;

use super::correlation_columns::CORRELATION_COLUMNS;

/// Gives each record of an older database, in arrival order, its sequence number in its
/// tenant's tree and the tree hashes to store with it.
pub trait Backfill {
    fn next(&mut self, tenant: &str, json: &[u8]) -> anyhow::Result<(u64, Vec<u8>)>;
}

/// The columns of the `records` table; none when there is no such table yet.
fn record_columns(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare("SELECT name FROM pragma_table_info('records')")?
        .query_map([], |row| row.get(0))?
        .collect()
}

/// Adds the [`CORRELATION_COLUMNS`] to a `records` table that lacks them; a
/// no-op otherwise.
pub fn add_correlation_columns(conn: &mut Connection) -> anyhow::Result<()> {
    let columns = record_columns(conn)?;
    if columns.is_empty() || columns.iter().any(|c| c == "session_id") {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for column in CORRELATION_COLUMNS {
        tx.execute_batch(&format!("ALTER TABLE records ADD COLUMN {column} TEXT"))?;
    }
    tx.commit()?;
    tracing::info!("added the correlation columns");
    Ok(())
}

/// Adds `tseq` and `hashes` to a `records` table that lacks them; a no-op otherwise.
pub fn add_tree_columns(conn: &mut Connection, backfill: &mut dyn Backfill) -> anyhow::Result<()> {
    let columns = record_columns(conn)?;
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
    let mut records = 0u64;
    let mut tenants = HashSet::new();
    {
        let mut rows = tx.prepare("SELECT seq, tenant, json FROM records ORDER BY seq")?;
        let mut update = tx.prepare("UPDATE records SET tseq = ?1, hashes = ?2 WHERE seq = ?3")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let tenant: String = row.get(1)?;
            let (tseq, hashes) = backfill.next(&tenant, row.get_ref(2)?.as_bytes()?)?;
            update.execute(rusqlite::params![
                tseq as i64,
                hashes,
                row.get::<_, i64>(0)?
            ])?;
            records += 1;
            tenants.insert(tenant);
        }
    }
    tx.commit()?;
    tracing::info!(
        records,
        tenants = tenants.len(),
        "added sequence numbers and tree hashes"
    );
    Ok(())
}
