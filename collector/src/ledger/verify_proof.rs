//! `acp-collector verify-proof`: checks an export made with `proof=true` without the database:
//! the checkpoint's signature against trusted keys, then each record's inclusion proof from
//! the SHA-256 leaf hash of its exact bytes to the checkpoint's root.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context};
use serde::Deserialize;
use serde_json::value::RawValue;
use tlog_tiles::tlog::{self, Hash};

use crate::ledger::checkpoints;
use crate::ledger::merkle;
use crate::ledger::signing::Verifiers;

/// One record of the export with its proof.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Proven<'a> {
    seq: u64,
    tree_size: u64,
    audit_path: Option<Vec<String>>,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
}

/// A JSON page of `proof=true`.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
    checkpoint: Option<String>,
    #[serde(borrow)]
    proofs: Vec<Proven<'a>>,
}

#[derive(Deserialize)]
struct CheckpointLine {
    checkpoint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantOf {
    tenant_id: String,
}

pub fn run(log_name: &str, file: &Path, public_keys: &[String]) -> anyhow::Result<()> {
    let name = file.display();
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
    }
    let (note, records) =
        parse(&text).with_context(|| format!("{name} is not an export made with proof=true"))?;
    let trusted = Verifiers::new(public_keys.iter().map(String::as_str))?;
    let Some((_, first)) = records.first() else {
        bail!("{name} holds no records");
    };
    let tenant = serde_json::from_str::<TenantOf>(first.get())?.tenant_id;
    let note = note.context("the export has no checkpoint: none had been signed yet")?;
    let checkpoint = trusted
        .open(&note, &checkpoints::origin(log_name, &tenant))
        .context("the export's checkpoint")?;
    let (size, root) = (checkpoint.size(), *checkpoint.hash());
    let mut unproven = 0;
    for (proof, record) in &records {
        let what = format!("record seq {}", proof.seq);
        ensure!(
            serde_json::from_str::<TenantOf>(record.get())?.tenant_id == tenant,
            "{what} belongs to another tenant"
        );
        let Some(path) = &proof.audit_path else {
            unproven += 1;
            continue;
        };
        ensure!(
            proof.tree_size == size,
            "{what}: its proof is for tree size {}, the checkpoint's is {size}",
            proof.tree_size
        );
        let path = path
            .iter()
            .map(|h| Hash::parse_hash(h))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{what}: malformed audit path"))?;
        let leaf = merkle::leaf_hash(record.get().as_bytes());
        tlog::check_record(&path, size, root, proof.seq, leaf).map_err(|_| {
            anyhow::anyhow!(
                "{what}: its bytes are not in the checkpoint's tree (altered, or a wrong proof)"
            )
        })?;
    }
    ensure!(
        unproven == 0,
        "{unproven} records are newer than the checkpoint and have no proof: export again after the next checkpoint"
    );
    println!(
        "ok: {} records of {tenant} are in the checkpoint of tree size {size} (root {root})",
        records.len()
    );
    Ok(())
}

type Records<'a> = Vec<(Proven<'a>, &'a RawValue)>;

/// The checkpoint note and the records with their proofs, from a JSON page or NDJSON.
fn parse(text: &str) -> anyhow::Result<(Option<String>, Records<'_>)> {
    if let Ok(page) = serde_json::from_str::<Page>(text) {
        ensure!(
            page.records.len() == page.proofs.len(),
            "records and proofs differ in number"
        );
        return Ok((
            page.checkpoint,
            page.proofs.into_iter().zip(page.records).collect(),
        ));
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().context("empty file")?;
    let checkpoint = serde_json::from_str::<CheckpointLine>(first)
        .context("the first line is not {\"checkpoint\": ...}")?
        .checkpoint;
    let records = lines
        .enumerate()
        .map(|(i, line)| {
            let proven: Proven =
                serde_json::from_str(line).with_context(|| format!("line {}", i + 2))?;
            let record = proven
                .record
                .with_context(|| format!("line {}: no record", i + 2))?;
            Ok((proven, record))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((checkpoint, records))
}
