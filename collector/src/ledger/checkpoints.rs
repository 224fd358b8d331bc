//! The signed notes of each tenant's tree, in their own tables: checkpoints (c2sp.org
//! tlog-checkpoint, origin `<log name>/<tenant>`), expiry notes (a checkpoint of the tree when
//! retention removed a prefix, with two extension lines naming the removed range and keeping the
//! hashes that proofs over the rest still need) and every verifier key that has signed.

use tlog_tiles::tlog::Hash;

use std::collections::BTreeSet;

use crate::ledger::merkle::Frontier;
use crate::metrics::TreeGauges;
use crate::store::{json_list, Conn, ConnExt, Row};

/// The checkpoint origin of `tenant`'s tree.
pub fn origin(log_name: &str, tenant: &str) -> String {
    format!("{log_name}/{tenant}")
}

/// A stored checkpoint or expiry note.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNote {
    pub tree_size: u64,
    pub note: String,
}

pub fn insert_checkpoint(
    conn: &dyn Conn,
    tenant: &str,
    size: u64,
    root: Hash,
    now_ms: i64,
    note: &str,
) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO checkpoints (tenant, tree_size, root, created_ms, note)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            tenant.into(),
            size.into(),
            root.0.as_slice().into(),
            now_ms.into(),
            note.into(),
        ],
    )?;
    Ok(())
}

/// The latest checkpoint of `tenant`.
pub fn latest(conn: &dyn Conn, tenant: &str) -> anyhow::Result<Option<StoredNote>> {
    conn.query_opt(
        "SELECT tree_size, note FROM checkpoints WHERE tenant = ?1
         ORDER BY tree_size DESC LIMIT 1",
        &[tenant.into()],
        note_row,
    )
}

/// Every checkpoint of `tenant`, smallest tree first.
pub fn all(conn: &dyn Conn, tenant: &str) -> anyhow::Result<Vec<StoredNote>> {
    conn.query(
        "SELECT tree_size, note FROM checkpoints WHERE tenant = ?1 ORDER BY tree_size",
        &[tenant.into()],
        note_row,
    )
}

fn note_row(row: &Row) -> anyhow::Result<StoredNote> {
    Ok(StoredNote {
        tree_size: row.u64(0)?,
        note: row.get(1)?,
    })
}

/// What an expiry note says was removed: seqs `from..to`, whose tree's frontier at `to` it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub from: u64,
    pub to: u64,
    pub frontier: Frontier,
}

impl Expired {
    /// The checkpoint extension lines: `expired <from> <to>` and `frontier <base64 hash>...`.
    pub fn extension(&self) -> String {
        let hashes: Vec<String> = self.frontier.hashes().iter().map(Hash::to_string).collect();
        format!(
            "expired {} {}\nfrontier {}\n",
            self.from,
            self.to,
            hashes.join(" ")
        )
    }

    /// Parses [`Expired::extension`].
    pub fn parse(extension: &str) -> Option<Self> {
        let mut lines = extension.lines();
        let mut range = lines.next()?.strip_prefix("expired ")?.split(' ');
        let from = range.next()?.parse().ok()?;
        let to = range.next()?.parse().ok()?;
        let hashes = lines
            .next()?
            .strip_prefix("frontier ")?
            .split(' ')
            .map(|h| Hash::parse_hash(h).ok())
            .collect::<Option<Vec<_>>>()?;
        let frontier = Frontier::from_hashes(to, &hashes)?;
        (range.next().is_none() && lines.next().is_none() && from < to).then_some(Self {
            from,
            to,
            frontier,
        })
    }
}

pub fn insert_expiry(
    conn: &dyn Conn,
    tenant: &str,
    expired: &Expired,
    tree_size: u64,
    cutoff_ms: i64,
    now_ms: i64,
    note: &str,
) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO expiries (tenant, from_seq, to_seq, tree_size, cutoff_ms, created_ms, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &[
            tenant.into(),
            expired.from.into(),
            expired.to.into(),
            tree_size.into(),
            cutoff_ms.into(),
            now_ms.into(),
            note.into(),
        ],
    )?;
    Ok(())
}

/// Every expiry note of `tenant`, oldest first.
pub fn expiries(conn: &dyn Conn, tenant: &str) -> anyhow::Result<Vec<StoredNote>> {
    conn.query(
        "SELECT tree_size, note FROM expiries WHERE tenant = ?1 ORDER BY to_seq",
        &[tenant.into()],
        note_row,
    )
}

/// What the latest expiry of `tenant` removed, read from its note (whose signature
/// `acp-collector verify` checks).
pub fn latest_expired(conn: &dyn Conn, tenant: &str) -> anyhow::Result<Option<Expired>> {
    let note: Option<String> = conn.query_opt(
        "SELECT note FROM expiries WHERE tenant = ?1 ORDER BY to_seq DESC LIMIT 1",
        &[tenant.into()],
        |row| row.get(0),
    )?;
    note.map(|note| parse_expired(tenant, &note)).transpose()
}

fn parse_expired(tenant: &str, note: &str) -> anyhow::Result<Expired> {
    note_extension(note)
        .and_then(|ext| Expired::parse(&ext))
        .ok_or_else(|| anyhow::anyhow!("the latest expiry note of {tenant:?} is malformed"))
}

/// A tenant's tree as stored: what the writer's cache is checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeState {
    pub tenant: String,
    /// The highest stored `tseq` + 1 (`None` without records).
    pub next: Option<u64>,
    /// The size of the latest checkpoint (0 without one).
    pub checkpointed: u64,
    /// What the latest expiry note removed.
    pub expired: Option<Expired>,
}

/// The [`TreeState`] of each of `tenants`, in one query (a few index lookups per tenant).
pub fn tree_states(conn: &dyn Conn, tenants: &BTreeSet<&str>) -> anyhow::Result<Vec<TreeState>> {
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT list.value,
                (SELECT MAX(tseq) + 1 FROM records WHERE tenant = list.value),
                (SELECT MAX(tree_size) FROM checkpoints WHERE tenant = list.value),
                (SELECT note FROM expiries WHERE tenant = list.value ORDER BY to_seq DESC LIMIT 1)
         FROM {}",
        json_list(conn.backend())
    );
    conn.query(&sql, &[serde_json::to_string(tenants)?.into()], |row| {
        let tenant: String = row.get(0)?;
        let expired = row
            .get::<Option<String>>(3)?
            .map(|note| parse_expired(&tenant, &note))
            .transpose()?;
        Ok(TreeState {
            next: row.get::<Option<i64>>(1)?.map(u64::try_from).transpose()?,
            checkpointed: row.get::<Option<i64>>(2)?.map_or(Ok(0), u64::try_from)?,
            expired,
            tenant,
        })
    })
}

/// The extension lines of a checkpoint note, without checking its signature.
fn note_extension(note: &str) -> Option<String> {
    let text = note.split_once("\n\n")?.0;
    let checkpoint =
        tlog_tiles::checkpoint::Checkpoint::from_bytes(format!("{text}\n").as_bytes()).ok()?;
    Some(checkpoint.extension().to_owned())
}

/// Tenants with records, checkpoints or expiry notes, in order: a few index lookups per
/// tenant, never a scan of the records.
pub fn tenants(conn: &dyn Conn) -> anyhow::Result<Vec<String>> {
    let mut tenants = BTreeSet::new();
    for table in ["records", "checkpoints", "expiries"] {
        tenants.extend(distinct_tenants(conn, table)?);
    }
    Ok(tenants.into_iter().collect())
}

/// Every tenant's tree size and latest checkpoint (size, when signed), for the metrics: a few
/// index lookups per tenant, never a scan of the records. Several replicas sharing a
/// PostgreSQL database all see every tenant's tree as stored.
pub fn tree_gauges(conn: &dyn Conn) -> anyhow::Result<Vec<TreeGauges>> {
    tenants(conn)?
        .into_iter()
        .map(|tenant| {
            let next = conn
                .query_opt(
                    "SELECT MAX(tseq) + 1 FROM records WHERE tenant = ?1",
                    &[(&tenant).into()],
                    |row| row.get::<Option<i64>>(0),
                )?
                .flatten();
            let checkpoint = conn.query_opt(
                "SELECT tree_size, created_ms FROM checkpoints WHERE tenant = ?1
                 ORDER BY tree_size DESC LIMIT 1",
                &[(&tenant).into()],
                |row| Ok((row.u64(0)?, row.get::<i64>(1)?)),
            )?;
            // Once retention has removed every record, the latest checkpoint still has the size.
            let size = next
                .map_or(0, |n| n as u64)
                .max(checkpoint.map_or(0, |c| c.0));
            Ok(TreeGauges {
                tenant,
                size,
                checkpoint,
            })
        })
        .collect()
}

/// The tenants of `table`, skipping through its index on `tenant`: one lookup per tenant.
fn distinct_tenants(conn: &dyn Conn, table: &str) -> anyhow::Result<Vec<String>> {
    let sql = format!(
        "WITH RECURSIVE t(tenant) AS (
            SELECT MIN(tenant) FROM {table}
            UNION ALL
            SELECT (SELECT MIN(tenant) FROM {table} WHERE tenant > t.tenant) FROM t
            WHERE t.tenant IS NOT NULL)
         SELECT tenant FROM t WHERE tenant IS NOT NULL"
    );
    conn.query(&sql, &[], |row| row.get(0))
}

/// Records that `vkey` signs from now on (kept for good: old checkpoints verify with it).
pub fn record_key(conn: &dyn Conn, vkey: &str, now_ms: i64) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO signing_keys (vkey, created_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        &[vkey.into(), now_ms.into()],
    )?;
    Ok(())
}

/// Every verifier key that has signed, oldest first.
pub fn keys(conn: &dyn Conn) -> anyhow::Result<Vec<String>> {
    conn.query(
        "SELECT vkey FROM signing_keys ORDER BY created_ms, vkey",
        &[],
        |row| row.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::merkle::tests::Memory;

    #[test]
    fn expiry_extension_round_trips() {
        let mut tree = Memory::default();
        for i in 0..11u32 {
            tree.append(&i.to_be_bytes());
        }
        let expired = Expired {
            from: 4,
            to: 11,
            frontier: tree.frontier.clone(),
        };
        let text = expired.extension();
        assert!(text.starts_with("expired 4 11\nfrontier "), "{text}");
        assert_eq!(Expired::parse(&text), Some(expired));
        for bad in [
            "expired 4 11\n",
            "expired 11 4\nfrontier x\n",
            "expired 4 11 12\nfrontier \n",
            "frontier \nexpired 4 11\n",
        ] {
            assert_eq!(Expired::parse(bad), None, "{bad}");
        }
    }
}
