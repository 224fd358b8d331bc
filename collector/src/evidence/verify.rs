//! `acp-collector verify-bundle`: checks an evidence bundle offline (see `VERIFY.md`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tlog_tiles::tlog::{self, Hash};

use crate::ledger::merkle;
use crate::ledger::signing::Verifiers;

use super::{hex, ProofLine, MANIFEST};

/// Reads every file of the zip.
fn unzip(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = zip::ZipArchive::new(file).context("not a zip file")?;
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        files.insert(entry.name().to_owned(), bytes);
    }
    Ok(files)
}

fn hashes(path: &[String]) -> anyhow::Result<Vec<Hash>> {
    path.iter()
        .map(|h| Hash::parse_hash(h).ok().context("malformed hash"))
        .collect()
}

/// Checks the bundle; returns a one-line summary, or the first problem found.
pub fn run(path: &Path, public_keys: &[String]) -> anyhow::Result<String> {
    let files = unzip(path)?;
    let text = |name: &str| -> anyhow::Result<&str> {
        std::str::from_utf8(
            files
                .get(name)
                .with_context(|| format!("{name} is missing"))?,
        )
        .with_context(|| format!("{name} is not UTF-8"))
    };
    let keys: Vec<String> = if public_keys.is_empty() {
        eprintln!(
            "warning: no --public-key given: trusting public-keys.txt from the bundle itself"
        );
        text("public-keys.txt")?
            .lines()
            .map(str::to_owned)
            .collect()
    } else {
        public_keys.to_vec()
    };
    let trusted = Verifiers::new(keys.iter().map(String::as_str))?;
    let manifest = trusted.verify(text(MANIFEST)?).context("MANIFEST")?;
    let manifest = String::from_utf8(manifest)?;
    let mut header = BTreeMap::new();
    let mut listed = BTreeMap::new();
    for line in manifest.lines().skip(1) {
        match line.split_once("  ") {
            Some((hash, name)) => listed.insert(name.to_owned(), hash.to_owned()),
            None => line
                .split_once(' ')
                .and_then(|(k, v)| header.insert(k.to_owned(), v.to_owned())),
        };
    }
    for (name, bytes) in files.iter().filter(|(n, _)| *n != MANIFEST) {
        let expected = listed
            .get(name)
            .with_context(|| format!("{name} is not in the manifest (added)"))?;
        ensure!(
            *expected == hex(&Sha256::digest(bytes)),
            "{name} does not match its hash in the manifest (altered)"
        );
    }
    if let Some(name) = listed.keys().find(|n| !files.contains_key(*n)) {
        bail!("{name} is listed in the manifest but missing from the bundle (removed)");
    }
    let origin = header.get("origin").context("MANIFEST names no origin")?;
    let (lo, hi) = header
        .get("range")
        .and_then(|r| r.split_once(' '))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .context("MANIFEST names no range")?;
    let checkpoint = trusted
        .open(text("checkpoints/latest.note")?, origin)
        .context("checkpoints/latest.note")?;
    let (size, root) = (checkpoint.size(), *checkpoint.hash());

    let population: Vec<&str> = text("population/records.jsonl")?.lines().collect();
    let mut in_period = population.iter();
    let mut expected_seq = lo;
    for (i, line) in text("population/proofs.jsonl")?.lines().enumerate() {
        let proof: ProofLine = serde_json::from_str(line)
            .with_context(|| format!("population/proofs.jsonl line {}", i + 1))?;
        let seq = proof.seq;
        ensure!(
            seq == expected_seq,
            "population: seq {expected_seq} is missing from the proven range"
        );
        let record = match (proof.in_period, proof.record) {
            (Some(true), _) => *in_period
                .next()
                .with_context(|| format!("population/records.jsonl ends before seq {seq}"))?,
            (_, Some(record)) => record.get(),
            _ => bail!("population/proofs.jsonl: seq {seq} has no record"),
        };
        let path = hashes(&proof.audit_path)?;
        tlog::check_record(&path, size, root, seq, merkle::leaf_hash(record.as_bytes()))
            .map_err(|_| anyhow::anyhow!("population: record seq {seq} is not in the checkpoint's tree (altered or replaced)"))?;
        expected_seq += 1;
    }
    ensure!(
        expected_seq == hi,
        "population: the proven range ends at seq {expected_seq}, the manifest says {hi}"
    );
    ensure!(
        in_period.next().is_none(),
        "population/records.jsonl has records outside the proven range"
    );

    let consistency: Value = serde_json::from_slice(&files["checkpoints/consistency.json"])?;
    for c in consistency["checkpoints"].as_array().into_iter().flatten() {
        let note = c["note"]
            .as_str()
            .context("checkpoints/consistency.json: no note")?;
        let earlier = trusted
            .open(note, origin)
            .context("checkpoints/consistency.json")?;
        let proof: Vec<String> = serde_json::from_value(c["consistencyToLatest"].clone())
            .context("checkpoints/consistency.json")?;
        let proof = hashes(&proof)?;
        tlog::check_tree(&proof, size, root, earlier.size(), *earlier.hash()).map_err(|_| {
            anyhow::anyhow!(
                "the checkpoint of tree size {} is not consistent with the latest",
                earlier.size()
            )
        })?;
    }

    let sample: Value = serde_json::from_slice(&files["sample/sample.json"])?;
    let mut sampled = Vec::new();
    for line in text("sample/records.ndjson")?.lines().skip(1) {
        let proof: ProofLine = serde_json::from_str(line).context("sample/records.ndjson")?;
        let seq = proof.seq;
        let record = proof
            .record
            .with_context(|| format!("sample: seq {seq} has no record"))?;
        let path = hashes(&proof.audit_path)?;
        tlog::check_record(
            &path,
            size,
            root,
            seq,
            merkle::leaf_hash(record.get().as_bytes()),
        )
        .map_err(|_| {
            anyhow::anyhow!("sample: record seq {seq} is not in the checkpoint's tree (altered)")
        })?;
        sampled.push(seq);
    }
    ensure!(
        sample["seqs"] == serde_json::json!(sampled),
        "sample/records.ndjson is not the sample sample/sample.json names"
    );
    Ok(format!(
        "ok: {} records of {origin} (seq {lo}..{hi}) proven in the checkpoint of tree size {size}, {} sampled (seed {}), {} files match the signed manifest",
        population.len(),
        sampled.len(),
        sample["seed"],
        listed.len()
    ))
}
