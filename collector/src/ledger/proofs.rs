//! Proofs for auditors: inclusion proofs in exports (`proof=true`), the latest checkpoint, a
//! consistency proof between two tree sizes, and the published verifier keys.
//!
//! - `GET /{tenant}/api/v1/checkpoints/latest`: `{"treeSize", "rootHash", "note"}` (404 before
//!   the first checkpoint).
//! - `GET /{tenant}/api/v1/checkpoints/consistency?from=M&to=N`: `{"from", "to", "proof"}`,
//!   the RFC 6962 consistency proof between the trees of M and N records
//!   (`1 <= M <= N <= latest checkpoint`; `to` defaults to the latest checkpoint).
//! - `GET /v1/signing-keys`: every verifier key that has signed, one per line (no API key).
//!
//! With `proof=true`, a JSON export page adds `"checkpoint"` (the latest signed checkpoint note)
//! and `"proofs"`, one `{"seq", "treeSize", "auditPath"}` per record in order; an NDJSON export
//! starts with a `{"checkpoint": ...}` line and wraps each record as
//! `{"seq", "treeSize", "auditPath", "record"}`. `record` is the stored JSON, byte for byte, so
//! its leaf hash is SHA-256(0x00 || those bytes). A record newer than the checkpoint has
//! `"auditPath": null` until the next checkpoint.

use serde::Serialize;
use serde_json::value::RawValue;
use tlog_tiles::tlog::{self, Hash};

use crate::ledger::checkpoints::{self, StoredNote};
use crate::ledger::merkle::StoredTree;
use crate::store::records::StoredRecord;
use crate::store::Conn;

/// Makes inclusion proofs against the latest checkpoint of one tenant.
pub struct Prover<'a> {
    checkpoint: Option<StoredNote>,
    tree: StoredTree<'a>,
}

/// The proof part of one exported record.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordProof<'a> {
    seq: u64,
    tree_size: u64,
    audit_path: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a RawValue>,
}

impl<'a> Prover<'a> {
    pub fn load(conn: &'a dyn Conn, tenant: &'a str) -> anyhow::Result<Self> {
        let expired = checkpoints::latest_expired(conn, tenant)?.map(|e| e.frontier);
        Ok(Self {
            checkpoint: checkpoints::latest(conn, tenant)?,
            tree: StoredTree::new(conn, tenant, expired),
        })
    }

    fn size(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |c| c.tree_size)
    }

    fn proof<'r>(
        &self,
        record: &'r StoredRecord,
        with_record: bool,
    ) -> anyhow::Result<RecordProof<'r>> {
        let size = self.size();
        let audit_path = if record.tseq < size {
            let path = tlog::prove_record(size, record.tseq, &self.tree)?;
            Some(path.iter().map(Hash::to_string).collect())
        } else {
            None
        };
        Ok(RecordProof {
            seq: record.tseq,
            tree_size: size,
            audit_path,
            record: with_record
                .then(|| serde_json::from_str(&record.json))
                .transpose()?,
        })
    }

    /// A JSON export page with the checkpoint and a proof per record.
    pub fn page(&self, records: &[StoredRecord], next: Option<&str>) -> anyhow::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Page<'a> {
            records: Vec<&'a RawValue>,
            next: Option<&'a str>,
            checkpoint: Option<&'a str>,
            proofs: Vec<RecordProof<'a>>,
        }
        Ok(serde_json::to_vec(&Page {
            records: records
                .iter()
                .map(|r| serde_json::from_str(&r.json))
                .collect::<Result<_, _>>()?,
            next,
            checkpoint: self.checkpoint.as_ref().map(|c| c.note.as_str()),
            proofs: records
                .iter()
                .map(|r| self.proof(r, false))
                .collect::<Result<_, _>>()?,
        })?)
    }

    /// NDJSON lines: the checkpoint first when `first`, then one wrapped record per line.
    pub fn ndjson(&self, records: &[StoredRecord], first: bool) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        if first {
            let note = self.checkpoint.as_ref().map(|c| c.note.as_str());
            serde_json::to_writer(&mut out, &serde_json::json!({ "checkpoint": note }))?;
            out.push(b'\n');
        }
        for record in records {
            serde_json::to_writer(&mut out, &self.proof(record, true)?)?;
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Why a checkpoint or consistency proof cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("no checkpoint has been signed yet")]
    NoCheckpoint,
    #[error("need 1 <= from <= to <= {latest} (the latest checkpoint); got from={from}, to={to}")]
    OutOfRange { latest: u64, from: u64, to: u64 },
    #[error("records before seq {to} have expired; from must be at least that")]
    Expired { to: u64 },
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// The latest signed checkpoint of `tenant`.
pub fn latest_checkpoint(conn: &dyn Conn, tenant: &str) -> Result<StoredNote, ProofError> {
    checkpoints::latest(conn, tenant)?.ok_or(ProofError::NoCheckpoint)
}

/// The consistency proof of `tenant`'s tree from size `from` to size `to` (default: the latest
/// checkpoint's); returns `to` and the proof.
pub fn consistency_proof(
    conn: &dyn Conn,
    tenant: &str,
    from: u64,
    to: Option<u64>,
) -> Result<(u64, Vec<Hash>), ProofError> {
    let latest = checkpoints::latest(conn, tenant)?.map_or(0, |c| c.tree_size);
    let to = to.unwrap_or(latest);
    if !(1..=to).contains(&from) || to > latest {
        return Err(ProofError::OutOfRange { latest, from, to });
    }
    let expired = checkpoints::latest_expired(conn, tenant)?;
    if let Some(expired) = expired.as_ref().filter(|e| from < e.to) {
        return Err(ProofError::Expired { to: expired.to });
    }
    let tree = StoredTree::new(conn, tenant, expired.map(|e| e.frontier));
    let proof = tlog::prove_tree(to, from, &tree).map_err(anyhow::Error::from)?;
    Ok((to, proof))
}
