//! `acp-collector verify`: checks the database offline, tenant by tenant, in sequence order.
//!
//! - Expiry notes: signature, origin, and that they remove consecutive prefixes; the latest
//!   one's frontier stands in for the removed records.
//! - Records: sequence numbers gapless from the end of the expired prefix; the leaf hash
//!   recomputed from the stored bytes and the tree hashes recomputed from the records before;
//!   the `id` and `tenant` columns equal the JSON's.
//! - Checkpoints: signature, origin, and root equal to the root recomputed from the records at
//!   its size. All roots come from one sequence of leaves, so consecutive checkpoints are
//!   consistent (each tree extends the one before). Checkpoints older than the expired prefix
//!   can only be checked by their signature.
//!
//! - Policy versions: document hashes, hash chain and signed notes ([`crate::policies::store`]).
//!
//! The first problem of a tenant is reported with the record it concerns.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use tlog_tiles::checkpoint::Checkpoint;
use tlog_tiles::tlog::Hash;

use crate::ledger::checkpoints::{self, Expired, StoredNote};
use crate::ledger::merkle::{self, Frontier};
use crate::ledger::signing::Verifiers;
use crate::policies;
use crate::store::{Conn, Store};

/// What verified for one tenant.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Summary {
    /// Records stored.
    records: u64,
    /// Seq of the first stored record (records below it expired).
    first: u64,
    checkpoints: usize,
    expiries: usize,
    /// Size of the latest checkpoint.
    checkpointed: u64,
}

pub fn run(
    db: &Path,
    url: Option<&str>,
    log_name: &str,
    public_keys: &[String],
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        url.is_some() || db.exists(),
        "no database at {}",
        db.display()
    );
    let database = Store::open(db, url)?;
    let conn = database.read().context("cannot open the database")?;
    let conn = &*conn;
    let vkeys = if public_keys.is_empty() {
        eprintln!(
            "warning: no --public-key given: trusting the keys recorded in the database, \
             which someone able to rewrite it could replace"
        );
        checkpoints::keys(conn)?
    } else {
        public_keys.to_vec()
    };
    let trusted = Verifiers::new(vkeys.iter().map(String::as_str))?;
    ensure!(
        !trusted.is_empty(),
        "no public key to check signatures with"
    );
    let tenants = match tenant {
        Some(tenant) => vec![tenant.to_owned()],
        None => {
            let mut tenants = checkpoints::tenants(conn)?;
            tenants.extend(policies::store::tenants(conn)?);
            tenants.sort();
            tenants.dedup();
            tenants
        }
    };
    let started = Instant::now();
    let (mut records, mut failed) = (0, 0);
    for tenant in &tenants {
        let checked = verify_tenant(conn, &trusted, log_name, tenant).and_then(|s| {
            Ok((
                s,
                policies::store::verify_chain(conn, &trusted, log_name, tenant)?,
            ))
        });
        match checked {
            Ok((s, policy_versions)) => {
                records += s.records;
                let expired = match s.first {
                    0 => String::new(),
                    first => format!(
                        ", seq 0..{} expired ({} expiry notes)",
                        first - 1,
                        s.expiries
                    ),
                };
                println!(
                    "{tenant}: ok: {} records{expired}, {} checkpoints (latest covers {} of {}), \
                     {policy_versions} policy versions",
                    s.records,
                    s.checkpoints,
                    s.checkpointed,
                    s.first + s.records
                );
            }
            Err(err) => {
                failed += 1;
                println!("{tenant}: FAILED: {err:#}");
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "verified {records} records of {} tenants in {seconds:.2} s ({:.0} records/s)",
        tenants.len(),
        records as f64 / seconds.max(1e-9)
    );
    ensure!(
        failed == 0,
        "{failed} of {} tenants failed verification",
        tenants.len()
    );
    Ok(())
}

/// Roots the records must reproduce, by tree size, with what stated them.
type Expected = BTreeMap<u64, Vec<(Hash, String)>>;

pub(crate) fn verify_tenant(
    conn: &dyn Conn,
    trusted: &Verifiers,
    log_name: &str,
    tenant: &str,
) -> anyhow::Result<Summary> {
    let origin = checkpoints::origin(log_name, tenant);
    let mut expected = Expected::new();
    let mut frontier = Frontier::default();
    let expiries = checkpoints::expiries(conn, tenant)?;
    for stored in &expiries {
        let (checkpoint, label) = open(trusted, &origin, stored, "expiry note")?;
        let expired = Expired::parse(checkpoint.extension())
            .with_context(|| format!("{label} does not say what it removed"))?;
        ensure!(
            expired.from == frontier.size() && checkpoint.size() >= expired.to,
            "{label} removes seq {}..{} but the records before ended at seq {}",
            expired.from,
            expired.to,
            frontier.size()
        );
        expected
            .entry(checkpoint.size())
            .or_default()
            .push((*checkpoint.hash(), label));
        frontier = expired.frontier;
    }
    let first = frontier.size();
    let stored_checkpoints = checkpoints::all(conn, tenant)?;
    for stored in &stored_checkpoints {
        let (checkpoint, label) = open(trusted, &origin, stored, "checkpoint")?;
        expected
            .entry(checkpoint.size())
            .or_default()
            .push((*checkpoint.hash(), label));
    }
    // Checkpoints of trees that ended before the expired prefix verify by signature only.
    let mut expected = expected.split_off(&first);
    check_roots(&mut expected, &frontier, first)?;

    let mut records = 0;
    let sql =
        "SELECT tseq, id, tenant, json, hashes FROM records WHERE tenant = ?1 ORDER BY tseq, seq";
    conn.for_each(sql, &[tenant.into()], &mut |row| {
        let seq: Option<i64> = row.get(0)?;
        let id: String = row.get(1)?;
        let next = frontier.size();
        let seq = match seq.map(|s| s as u64) {
            None => bail!("record id {id:?} was inserted: it has no sequence number"),
            Some(seq) if seq < first => bail!(
                "record seq {seq} (id {id:?}) was inserted: seq 0..{} expired",
                first - 1
            ),
            Some(seq) if seq < next => bail!(
                "record seq {seq} (id {id:?}) was inserted: another record already has seq {seq}"
            ),
            Some(seq) if seq > next => bail!(
                "{} removed: seq {next}..{} is missing (the next record present is seq {seq}, \
                 id {id:?})",
                count(seq - next),
                seq - 1
            ),
            Some(seq) => seq,
        };
        let json: String = row.get(3)?;
        let leaf = merkle::leaf_hash(json.as_bytes());
        let computed = frontier.next_hashes(leaf)?;
        let stored = merkle::split_hashes(&row.get::<Vec<u8>>(4)?);
        if stored.as_ref().and_then(|h| h.first()) != Some(&leaf) {
            bail!(
                "record seq {seq} (id {id:?}) was altered: its bytes no longer match its leaf hash"
            );
        }
        if stored.as_ref() != Some(&computed) {
            bail!(
                "record seq {seq} (id {id:?}): its stored tree hashes disagree with the records \
                 before it: a record at or before seq {seq} was altered"
            );
        }
        let tenant_column: String = row.get(2)?;
        ensure!(
            names_match(&json, &id, &tenant_column)?,
            "record seq {seq} (id {id:?}) was altered: its id or tenant column ({tenant_column:?}) \
             differs from its JSON"
        );
        frontier.push(&computed);
        records += 1;
        check_roots(&mut expected, &frontier, seq + 1)
    })?;
    if let Some((size, stated)) = expected.first_key_value() {
        let next = frontier.size();
        bail!(
            "{} removed: {} covers {size} records but the store ends before seq {next}, so seq \
             {next}..{} is missing",
            count(size - next),
            stated[0].1,
            size - 1
        );
    }
    Ok(Summary {
        records,
        first,
        checkpoints: stored_checkpoints.len(),
        expiries: expiries.len(),
        checkpointed: stored_checkpoints.last().map_or(0, |c| c.tree_size),
    })
}

/// The checkpoint of a stored note signed by a trusted key for the tree size it is stored
/// under, and how to name it.
fn open(
    trusted: &Verifiers,
    origin: &str,
    stored: &StoredNote,
    kind: &str,
) -> anyhow::Result<(Checkpoint, String)> {
    let label = format!("the {kind} of tree size {}", stored.tree_size);
    let checkpoint = trusted
        .open(&stored.note, origin)
        .with_context(|| label.clone())?;
    ensure!(
        checkpoint.size() == stored.tree_size,
        "{label} is signed for tree size {}",
        checkpoint.size()
    );
    Ok((checkpoint, label))
}

/// Checks the roots stated for the tree of `frontier` (of `size` records).
fn check_roots(expected: &mut Expected, frontier: &Frontier, size: u64) -> anyhow::Result<()> {
    let Some(stated) = expected.remove(&size) else {
        return Ok(());
    };
    let root = frontier.root();
    for (hash, label) in stated {
        ensure!(
            hash == root,
            "{label} does not match the records: a record before seq {size} was altered \
             (with its stored hashes) or the checkpoint is not of this tree"
        );
    }
    Ok(())
}

fn count(n: u64) -> String {
    match n {
        1 => "1 record".to_owned(),
        n => format!("{n} records"),
    }
}

/// Whether the `id` and `tenant` columns are the stored JSON's. That JSON is the compact
/// serialization of an `AuditRecord`, which starts with `{"id":` and has `"tenantId":` once at
/// the top level; text search keeps this check from costing more than the hashing. (A nested
/// `"tenantId"` can only make it pass wrongly, never fail wrongly, and a record moved to another
/// tenant still breaks both tenants' sequences.)
fn names_match(json: &str, id: &str, tenant: &str) -> serde_json::Result<bool> {
    let id = serde_json::to_string(id)?;
    let tenant = format!("\"tenantId\":{}", serde_json::to_string(tenant)?);
    Ok(json
        .strip_prefix("{\"id\":")
        .is_some_and(|rest| rest.starts_with(&id))
        && json.contains(&tenant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ingest::check_batch;
    use crate::store::records::tests::sample;

    #[test]
    fn columns_are_checked_against_the_canonical_json() {
        let mut value = sample("id \"quoted\" é", "2026-03-15T14:23:07.142Z");
        value["tenantId"] = serde_json::json!("org/ünïcode \"x\"");
        let (records, _) = check_batch(vec![value]);
        let r = &records[0];
        assert!(names_match(&r.json, &r.id, &r.tenant).unwrap());
        assert!(!names_match(&r.json, "other", &r.tenant).unwrap());
        assert!(!names_match(&r.json, "id \"quoted\"", &r.tenant).unwrap());
        assert!(!names_match(&r.json, &r.id, "org_acme_corp").unwrap());
    }
}
