//! The writer's view of every tenant's tree: appends records with their sequence numbers and
//! tree hashes, signs checkpoints and applies retention, always inside the writer's transaction.
//! A [`Ledger`] is cloned before a transaction and kept only once it has committed, so a
//! rolled-back group leaves no trace in it.
//!
//! The database, not this cache, is the truth: several collector replicas may write one
//! PostgreSQL database. Every transaction first locks the tenants it touches
//! ([`crate::store::ConnExt::lock_tenants`], in sorted order, one statement) and then
//! [`Ledger::refresh`]es them: their trees' sizes, latest checkpoints and expiries are read
//! again in one query, and a cached frontier is reused only when its size still matches (else
//! the grown ones are read from the stored hashes, in one query too).
//! [`Ledger::append_all`] then assigns sequence numbers and tree hashes in memory and inserts
//! the whole group at once, so the locks are held for a fixed number of round trips.

pub mod backfill;
pub mod checkpoints;
pub mod ingest;
pub mod merkle;
pub mod proofs;
pub mod signing;
pub mod verify_proof;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Context;

use crate::ledger::signing::SigningKey;
use crate::store::records::{self, NewRecord};
use crate::store::{Conn, ConnExt};
pub use backfill::TreeBackfill;
use checkpoints::Expired;
use merkle::{Frontier, StoredTree};
use tlog_tiles::tlog::Hash;

const DAY_MS: i64 = 86_400_000;

/// How often to sign and how long to keep records.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Key name and origin prefix of the checkpoints.
    pub log_name: String,
    /// A checkpoint once a tenant's tree has grown by this many records since its last one.
    pub checkpoint_records: u64,
    /// Days records are kept (by their timestamp); 0 keeps them forever.
    pub retention_days: u32,
    /// Per-tenant exceptions to `retention_days`.
    pub tenant_retention_days: BTreeMap<String, u32>,
}

impl Policy {
    fn retention_days(&self, tenant: &str) -> u32 {
        self.tenant_retention_days
            .get(tenant)
            .copied()
            .unwrap_or(self.retention_days)
    }
}

/// Parses `tenant=days,tenant=days` (an empty text is no exception).
pub fn parse_tenant_retention(text: &str) -> Result<BTreeMap<String, u32>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (tenant, days) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not tenant=days"))?;
            let days = days
                .trim()
                .parse()
                .map_err(|_| format!("{item:?}: days must be a whole number"))?;
            Ok((tenant.trim().to_owned(), days))
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
struct Tree {
    frontier: Frontier,
    /// Size of the latest checkpoint.
    checkpointed: u64,
    /// Records below this seq have expired.
    expired_to: u64,
}

#[derive(Clone)]
pub struct Ledger {
    key: Arc<SigningKey>,
    policy: Arc<Policy>,
    trees: HashMap<String, Tree>,
}

impl Ledger {
    /// Reads every tenant's tree from the database and records the signing key as one in use.
    pub fn load(
        conn: &dyn Conn,
        key: SigningKey,
        policy: Policy,
        now_ms: i64,
    ) -> anyhow::Result<Self> {
        checkpoints::record_key(conn, key.vkey(), now_ms)?;
        let mut ledger = Self {
            key: Arc::new(key),
            policy: Arc::new(policy),
            trees: HashMap::new(),
        };
        let tenants = checkpoints::tenants(conn)?;
        ledger.refresh(conn, &tenants.iter().map(String::as_str).collect())?;
        Ok(ledger)
    }

    /// Locks the trees of `tenants` for the current transaction (in one statement) and reads
    /// their state again.
    pub fn lock(&mut self, conn: &dyn Conn, tenants: &BTreeSet<&str>) -> anyhow::Result<()> {
        conn.lock_tenants(tenants)?;
        self.refresh(conn, tenants)
    }

    /// Brings the trees of `tenants` up to date with the database (whose locks the caller
    /// holds): their state in one query, then the rows of each tree another writer has grown:
    /// the records it gained, or its frontier (a row per maximal subtree) when that is fewer.
    fn refresh(&mut self, conn: &dyn Conn, tenants: &BTreeSet<&str>) -> anyhow::Result<()> {
        let (mut grown, mut behind) = (Vec::new(), Vec::new());
        for state in checkpoints::tree_states(conn, tenants)? {
            let expired_to = state.expired.as_ref().map_or(0, |e| e.to);
            let size = state.next.unwrap_or(expired_to);
            let tree = self.trees.entry(state.tenant.clone()).or_default();
            let known = tree.frontier.size();
            if known < size && size - known <= size.count_ones().into() && expired_to <= known {
                behind.push((state.tenant, tree.frontier.clone(), size));
            } else if known != size {
                grown.push((state.tenant, size, state.expired.map(|e| e.frontier)));
            }
            tree.checkpointed = state.checkpointed;
            tree.expired_to = expired_to;
        }
        let caught_up = merkle::catch_up(conn, behind)?;
        for (tenant, frontier) in caught_up
            .into_iter()
            .chain(merkle::read_frontiers(conn, grown)?)
        {
            self.trees.entry(tenant).or_default().frontier = frontier;
        }
        Ok(())
    }

    /// Stores `records` (ids not stored yet, each once, whose tenants are
    /// [`Ledger::lock`]ed in this transaction; each with its leaf hash) as the next leaves of
    /// their tenants' trees, in order and in one insert. Signs the checkpoints that fall due by
    /// count on the way.
    pub fn append_all(
        &mut self,
        conn: &dyn Conn,
        records: &[(&NewRecord, Hash)],
        now_ms: i64,
    ) -> anyhow::Result<()> {
        let mut rows = Vec::with_capacity(records.len());
        for &(record, leaf) in records {
            let tenant = record.tenant.as_str();
            let tree = self
                .trees
                .get_mut(tenant)
                .with_context(|| format!("the tree of {tenant:?} is not locked"))?;
            let hashes = tree.frontier.next_hashes(leaf)?;
            rows.push((record, tree.frontier.size(), merkle::join_hashes(&hashes)));
            tree.frontier.push(&hashes);
            if tree.frontier.size() - tree.checkpointed >= self.policy.checkpoint_records {
                self.checkpoint(conn, tenant, now_ms)?;
            }
        }
        records::insert_all(conn, rows)
    }

    /// Signs a checkpoint of every tree that has grown since its last one, then removes expired
    /// records. Covers the tenants this collector has seen (at start and since).
    pub fn tick(&mut self, conn: &dyn Conn, now_ms: i64) -> anyhow::Result<()> {
        let tenants: Vec<String> = self.trees.keys().cloned().collect();
        self.lock(conn, &tenants.iter().map(String::as_str).collect())?;
        for tenant in &tenants {
            self.checkpoint(conn, tenant, now_ms)?;
            self.expire(conn, tenant, now_ms)?;
        }
        Ok(())
    }

    /// Signs and stores a checkpoint of `tenant`'s tree unless its latest covers it already.
    fn checkpoint(&mut self, conn: &dyn Conn, tenant: &str, now_ms: i64) -> anyhow::Result<()> {
        let Some(tree) = self.trees.get_mut(tenant) else {
            return Ok(());
        };
        let size = tree.frontier.size();
        if size == tree.checkpointed {
            return Ok(());
        }
        let root = tree.frontier.root();
        let origin = checkpoints::origin(&self.policy.log_name, tenant);
        let note = self.key.checkpoint(&origin, size, root, "")?;
        checkpoints::insert_checkpoint(conn, tenant, size, root, now_ms, &note)?;
        tree.checkpointed = size;
        tracing::debug!(tenant, size, "signed checkpoint");
        Ok(())
    }

    /// Removes the oldest records of `tenant` whose timestamp is past its retention, as one
    /// prefix of its sequence (up to the first record still kept), and stores the signed
    /// expiry note that accounts for them.
    fn expire(&mut self, conn: &dyn Conn, tenant: &str, now_ms: i64) -> anyhow::Result<()> {
        let days = self.policy.retention_days(tenant);
        let Some(tree) = self.trees.get(tenant) else {
            return Ok(());
        };
        if days == 0 || tree.frontier.size() == tree.expired_to {
            return Ok(());
        }
        let cutoff_ms = now_ms - i64::from(days) * DAY_MS;
        let from = tree.expired_to;
        // The first record still kept ends the prefix.
        let kept = conn.query_opt(
            "SELECT MIN(tseq) FROM records WHERE tenant = ?1 AND tseq >= ?2 AND ts >= ?3",
            &[tenant.into(), from.into(), cutoff_ms.into()],
            |row| row.get::<Option<i64>>(0),
        )?;
        let to = kept
            .flatten()
            .map_or(tree.frontier.size(), |kept| kept as u64);
        if to == from {
            return Ok(());
        }
        self.checkpoint(conn, tenant, now_ms)?;
        let before = checkpoints::latest_expired(conn, tenant)?.map(|e| e.frontier);
        let frontier = Frontier::read(to, &StoredTree::new(conn, tenant, before))
            .with_context(|| format!("cannot read the tree of {tenant:?} at {to}"))?;
        let expired = Expired { from, to, frontier };
        let tree = &self.trees[tenant];
        let size = tree.frontier.size();
        let origin = checkpoints::origin(&self.policy.log_name, tenant);
        let note =
            self.key
                .checkpoint(&origin, size, tree.frontier.root(), &expired.extension())?;
        checkpoints::insert_expiry(conn, tenant, &expired, size, cutoff_ms, now_ms, &note)?;
        let removed = conn.execute(
            "DELETE FROM records WHERE tenant = ?1 AND tseq < ?2",
            &[tenant.into(), to.into()],
        )?;
        if let Some(tree) = self.trees.get_mut(tenant) {
            tree.expired_to = to;
        }
        tracing::info!(
            tenant,
            from,
            to,
            removed,
            days,
            "expired records past retention"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_retention_is_a_list_of_tenant_days() {
        let parsed = parse_tenant_retention(" org_a=30, org_b = 0 ,").unwrap();
        assert_eq!(
            parsed.into_iter().collect::<Vec<_>>(),
            [("org_a".to_owned(), 30), ("org_b".to_owned(), 0)]
        );
        assert!(parse_tenant_retention("").unwrap().is_empty());
        for bad in ["org_a", "org_a=-1", "org_a=ten"] {
            assert!(parse_tenant_retention(bad).is_err(), "{bad}");
        }
        let policy = Policy {
            log_name: "l".into(),
            checkpoint_records: 1,
            retention_days: 400,
            tenant_retention_days: parse_tenant_retention("org_a=30").unwrap(),
        };
        assert_eq!(
            (
                policy.retention_days("org_a"),
                policy.retention_days("org_b")
            ),
            (30, 400)
        );
    }
}
