//! The SOC 2 evidence bundle of one tenant and period: a zip an auditor can check offline with
//! `acp-collector verify-bundle` ([`verify`]). See `VERIFY.md` in a bundle for its layout.
//!
//! Completeness: the period's records are those with a timestamp in `[from, to)`; they occupy
//! the sequence range `lo..hi` of the tenant's tree (from the first to the last of them). The
//! bundle proves every sequence number of that range, each leaf against the latest signed
//! checkpoint, so no record of the range can be missing; those of the range outside the period
//! (out-of-order arrivals) are included with their proofs and marked `inPeriod: false`.

pub mod access;
pub mod controls;
pub mod verify;

use std::io::Write;

use anyhow::{ensure, Context};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tlog_tiles::tlog::{self, Hash};

use crate::export::parse_time;
use crate::ledger::checkpoints;
use crate::ledger::merkle::StoredTree;
use crate::ledger::signing::SigningKey;
use crate::policies::{self, rfc3339};
use crate::store::{Backend, Conn, ConnExt};

/// The file that lists every other file's SHA-256, as a note signed with the collector's key.
pub const MANIFEST: &str = "MANIFEST";
pub const DEFAULT_SAMPLE: usize = 25;

/// What to put in a bundle.
pub struct Request {
    pub tenant: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub seed: u64,
    pub sample: usize,
}

/// A line of `population/proofs.jsonl` or `sample/records.ndjson`: the record, when there,
/// byte for byte as stored (its leaf hash is over those bytes).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProofLine<'a> {
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    in_period: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tree_size: Option<u64>,
    audit_path: Vec<String>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    record: Option<&'a RawValue>,
}

fn raw(json: &str) -> anyhow::Result<&RawValue> {
    Ok(serde_json::from_str(json)?)
}

/// One record of the proven range.
struct Leaf {
    seq: u64,
    json: String,
    in_period: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn jsonl<T: Serialize>(lines: &[T]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut out, line)?;
        out.push(b'\n');
    }
    Ok(out)
}

fn pretty(value: &Value) -> anyhow::Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(value)?;
    out.push(b'\n');
    Ok(out)
}

/// Why no bundle is made.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The period, seed or sample asked for.
    #[error("{0}")]
    Request(String),
    /// The store cannot back the bundle (e.g. no checkpoint covers the period).
    #[error("{0:#}")]
    Build(anyhow::Error),
}

/// Builds the bundle (zip bytes).
pub fn build(
    conn: &dyn Conn,
    key: &SigningKey,
    log_name: &str,
    req: &Request,
) -> anyhow::Result<Vec<u8>> {
    let tenant = req.tenant.as_str();
    ensure!(req.to_ms > req.from_ms, "`to` must be later than `from`");
    let latest =
        checkpoints::latest(conn, tenant)?.context("this tenant has no signed checkpoint yet")?;
    let size = latest.tree_size;
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .query_opt(
            "SELECT MIN(tseq), MAX(tseq) + 1 FROM records WHERE tenant = ?1 AND ts >= ?2 AND ts < ?3",
            &[tenant.into(), req.from_ms.into(), req.to_ms.into()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .unwrap_or_default();
    let (lo, hi) = (lo.unwrap_or(0) as u64, hi.unwrap_or(0) as u64);
    ensure!(
        hi <= size,
        "records up to seq {} of the period are not in a signed checkpoint yet (latest covers {size}); \
         ask again after the next checkpoint",
        hi - 1
    );
    let leaves: Vec<Leaf> = conn.query(
        "SELECT tseq, json, ts >= ?4 AND ts < ?5 FROM records WHERE tenant = ?1 AND tseq >= ?2 AND tseq < ?3 ORDER BY tseq",
        &[tenant.into(), lo.into(), hi.into(), req.from_ms.into(), req.to_ms.into()],
        |r| Ok(Leaf { seq: r.u64(0)?, json: r.get(1)?, in_period: r.get(2)? }),
    )?;
    let expired = checkpoints::latest_expired(conn, tenant)?.map(|e| e.frontier);
    let tree = StoredTree::new(conn, tenant, expired);
    let path = |seq: u64| -> anyhow::Result<Vec<String>> {
        Ok(tlog::prove_record(size, seq, &tree)?
            .iter()
            .map(Hash::to_string)
            .collect())
    };

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let period: Vec<&Leaf> = leaves.iter().filter(|l| l.in_period).collect();
    let records: Vec<Value> = period
        .iter()
        .map(|l| serde_json::from_str(&l.json))
        .collect::<Result<_, _>>()?;
    files.push((
        "population/records.jsonl".into(),
        period
            .iter()
            .flat_map(|l| [l.json.as_bytes(), b"\n"].concat())
            .collect(),
    ));
    files.push((
        "population/records.csv".into(),
        records_csv(conn, tenant, req)?,
    ));
    let mut proofs = Vec::new();
    for leaf in &leaves {
        proofs.push(ProofLine {
            seq: leaf.seq,
            in_period: Some(leaf.in_period),
            tree_size: None,
            audit_path: path(leaf.seq)?,
            record: if leaf.in_period {
                None
            } else {
                Some(raw(&leaf.json)?)
            },
        });
    }
    files.push(("population/proofs.jsonl".into(), jsonl(&proofs)?));
    files.push((
        "checkpoints/latest.note".into(),
        latest.note.clone().into_bytes(),
    ));
    let mut earlier = Vec::new();
    for c in checkpoints::all(conn, tenant)?
        .into_iter()
        .filter(|c| c.tree_size > lo && c.tree_size < size)
    {
        let proof: Vec<String> = tlog::prove_tree(size, c.tree_size, &tree)?
            .iter()
            .map(Hash::to_string)
            .collect();
        earlier
            .push(json!({"treeSize": c.tree_size, "note": c.note, "consistencyToLatest": proof}));
    }
    files.push((
        "checkpoints/consistency.json".into(),
        pretty(&json!({"latestTreeSize": size, "checkpoints": earlier}))?,
    ));

    // The sample: an NDJSON export with proofs, as `verify-proof` reads it.
    let mut rng = StdRng::seed_from_u64(req.seed);
    let mut picked =
        rand::seq::index::sample(&mut rng, period.len(), req.sample.min(period.len())).into_vec();
    picked.sort_unstable();
    let mut sample = jsonl(&[json!({"checkpoint": latest.note})])?;
    let mut lines = Vec::new();
    for &i in &picked {
        let leaf = period[i];
        lines.push(ProofLine {
            seq: leaf.seq,
            in_period: None,
            tree_size: Some(size),
            audit_path: path(leaf.seq)?,
            record: Some(raw(&leaf.json)?),
        });
    }
    sample.extend(jsonl(&lines)?);
    let seqs: Vec<u64> = picked.iter().map(|&i| period[i].seq).collect();
    files.push(("sample/sample.json".into(), pretty(&json!({"seed": req.seed, "population": period.len(), "size": seqs.len(), "seqs": seqs, "rng": "rand StdRng::seed_from_u64, rand::seq::index::sample"}))?));
    files.push(("sample/records.ndjson".into(), sample));

    let history = policies::history(conn, tenant)?;
    let in_force: Vec<_> = history
        .iter()
        .enumerate()
        .filter(|(i, (v, _, _))| {
            v.received_ms < req.to_ms
                && history
                    .get(i + 1)
                    .is_none_or(|(n, _, _)| n.received_ms > req.from_ms)
        })
        .map(|(_, h)| h.clone())
        .collect();
    let review = access::review(&records);
    let mut controls = controls::record_controls(&records, &review);
    controls.push(("CC8.1", json!({
        "title": "Change management: policy versions in force in the period and their changes",
        "summary": {"versions": in_force.len(), "changedInPeriod": in_force.iter().filter(|(v, _, _)| v.received_ms >= req.from_ms).count()},
        "records": policies::history_json(&in_force)["policies"],
    })));
    for (id, control) in &controls {
        files.push((format!("controls/{id}.json"), pretty(control)?));
    }
    files.push((
        "access-review/users.json".into(),
        pretty(&json!(review.users))?,
    ));
    files.push((
        "access-review/client-types.json".into(),
        pretty(&json!(review.client_types))?,
    ));
    files.push(("access-review/users.csv".into(), access_csv(&review.users)?));
    for (v, document, _) in &in_force {
        files.push((format!("configuration/policy-v{}.json", v.version), pretty(&json!({"version": v.version, "hash": v.hash, "receivedAt": rfc3339(v.received_ms), "policy": document}))?));
    }
    if let Some(webhooks) = webhook_configuration(conn, tenant)? {
        files.push(("configuration/webhooks.json".into(), pretty(&webhooks)?));
    }
    files.push((
        "public-keys.txt".into(),
        checkpoints::keys(conn)?
            .iter()
            .map(|k| format!("{k}\n"))
            .collect::<String>()
            .into_bytes(),
    ));
    files.push((
        "report.md".into(),
        report(
            req,
            size,
            (lo, hi),
            records.len(),
            &controls,
            &review,
            seqs.len(),
        )
        .into_bytes(),
    ));
    files.push((
        "VERIFY.md".into(),
        include_str!("VERIFY.md").as_bytes().to_vec(),
    ));

    let origin = checkpoints::origin(log_name, tenant);
    let mut manifest = format!(
        "acp evidence bundle\norigin {origin}\nperiod {} {}\nrange {lo} {hi}\n",
        rfc3339(req.from_ms),
        rfc3339(req.to_ms)
    );
    for (name, bytes) in &files {
        manifest.push_str(&format!("{}  {name}\n", hex(&Sha256::digest(bytes))));
    }
    files.push((MANIFEST.into(), key.sign(manifest.as_bytes())?.into_bytes()));
    zip(&files)
}

fn zip(files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        out.start_file(name.as_str(), options)?;
        out.write_all(bytes)?;
    }
    Ok(out.finish()?.into_inner())
}

fn records_csv(conn: &dyn Conn, tenant: &str, req: &Request) -> anyhow::Result<Vec<u8>> {
    let filter = crate::store::records::Filter {
        tenant: tenant.to_owned(),
        from: Some(req.from_ms),
        to: Some(req.to_ms),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = crate::store::records::query_page(conn, &filter, after, 1000)?;
        out.extend(crate::export::formats::Format::Csv.rows(&page, after.is_none())?);
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.position),
            _ => return Ok(out),
        }
    }
}

fn access_csv(review: &[access::Access]) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "sub",
        "emails",
        "scopes",
        "scopesRequired",
        "unusedScopes",
        "missingScopes",
        "tools",
        "results",
        "firstSeen",
        "lastSeen",
    ])?;
    let join = |items: Vec<String>| items.join(" ");
    for a in review {
        out.write_record([
            a.sub.clone(),
            join(a.emails.iter().cloned().collect()),
            join(a.usage.scopes.iter().cloned().collect()),
            join(a.usage.scopes_required.iter().cloned().collect()),
            join(a.usage.unused_scopes.iter().cloned().collect()),
            join(a.usage.missing_scopes.iter().cloned().collect()),
            join(a.tools.iter().map(|(t, n)| format!("{t}={n}")).collect()),
            join(a.results.iter().map(|(t, n)| format!("{t}={n}")).collect()),
            a.first_seen.clone(),
            a.last_seen.clone(),
        ])?;
    }
    Ok(out.into_inner()?)
}

/// The tenant's webhook endpoints when the collector has a `webhooks` table, without any
/// column whose name says it holds a credential (the signing secret, a Splunk HEC token).
pub(crate) fn webhook_configuration(
    conn: &dyn Conn,
    tenant: &str,
) -> anyhow::Result<Option<Value>> {
    // Every column of the table, by name and declared type.
    let columns = conn.query(
        match conn.backend() {
            Backend::Sqlite => "SELECT name, type FROM pragma_table_info('webhooks')",
            Backend::Postgres => {
                "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = 'webhooks'
                 ORDER BY ordinal_position"
            }
        },
        &[],
        |row| Ok((row.get::<String>(0)?, row.get::<String>(1)?)),
    )?;
    if columns.is_empty() {
        return Ok(None);
    }
    let shown: Vec<(String, bool)> = columns
        .into_iter()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            !name.contains("secret") && !name.contains("token")
        })
        .map(|(name, ty)| {
            let integer = matches!(ty.to_ascii_uppercase().as_str(), "INTEGER" | "BIGINT");
            (name, integer)
        })
        .collect();
    let names: Vec<&str> = shown.iter().map(|(name, _)| name.as_str()).collect();
    let sql = format!(
        "SELECT {} FROM webhooks WHERE tenant = ?1",
        names.join(", ")
    );
    let rows = conn.query(&sql, &[tenant.into()], |row| {
        let mut out = serde_json::Map::new();
        for (i, (name, integer)) in shown.iter().enumerate() {
            let value = if *integer {
                json!(row.get::<Option<i64>>(i)?)
            } else {
                json!(row.get::<Option<String>>(i)?)
            };
            out.insert(name.clone(), value);
        }
        Ok(Value::Object(out))
    })?;
    Ok(Some(json!({ "webhooks": rows })))
}

fn report(
    req: &Request,
    size: u64,
    (lo, hi): (u64, u64),
    records: usize,
    controls: &[(&str, Value)],
    review: &access::AccessReview,
    sampled: usize,
) -> String {
    let mut out = format!(
        "# SOC 2 evidence: {}\n\nPeriod: {} to {} (end exclusive).\n\n\
         - Population: {records} records (`population/records.jsonl`, `.csv`), sequence numbers {lo} to {}, \
         every one proven against the signed checkpoint of tree size {size} (`population/proofs.jsonl`, \
         `checkpoints/latest.note`).\n- Sample: {sampled} records drawn with seed {} (`sample/`).\n\
         - Users seen: {}, client types {} (`access-review/`).\n\n## Controls\n\n| control | what | summary |\n|---|---|---|\n",
        req.tenant,
        rfc3339(req.from_ms),
        rfc3339(req.to_ms),
        hi.saturating_sub(1),
        req.seed,
        review.users.len(),
        review.client_types.len()
    );
    for (id, c) in controls {
        out.push_str(&format!(
            "| {id} | {} | `{}` |\n",
            c["title"].as_str().unwrap_or(""),
            c["summary"]
        ));
    }
    out.push_str(
        "\n## Users\n\n| user | emails | scopes held | scopes required | tools used |\n|---|---|---|---|---|\n",
    );
    let words = |set: &std::collections::BTreeSet<String>| -> String {
        set.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
    };
    for a in &review.users {
        let emails: Vec<&str> = a.emails.iter().map(String::as_str).collect();
        let tools: Vec<String> = a.tools.iter().map(|(t, n)| format!("{t} ({n})")).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            a.sub,
            emails.join(", "),
            words(&a.usage.scopes),
            words(&a.usage.scopes_required),
            tools.join(", ")
        ));
    }
    out.push_str(
        "\n## Least privilege: unused scopes\n\nHeld scopes that no call of the period required \
         (its tool's `scopeRequired`, allowed or refused calls alike): candidates for removal \
         (`access-review/users.json`, `client-types.json`).\n\n",
    );
    let mut candidates = String::new();
    for a in review.user_candidates() {
        let unused = words(&a.usage.unused_scopes);
        candidates.push_str(&format!("| user | {} | {unused} |\n", a.sub));
    }
    for c in review.client_type_candidates() {
        let name = c.client_type.as_deref().unwrap_or("(unmapped)");
        let unused = words(&c.usage.unused_scopes);
        candidates.push_str(&format!("| client type | {name} | {unused} |\n"));
    }
    if candidates.is_empty() {
        out.push_str("None: every held scope was required by a call.\n");
    } else {
        out.push_str("| kind | who | unused scopes |\n|---|---|---|\n");
        out.push_str(&candidates);
    }
    out.push_str("\nCheck this bundle offline: see `VERIFY.md`.\n");
    out
}
/// Parses `from`, `to` (dates or RFC 3339 times, as in the export API), `seed` and `sample`.
pub fn parse(tenant: &str, params: &[(String, String)]) -> Result<Request, String> {
    let (mut from, mut to, mut seed, mut sample) = (None, None, None, DEFAULT_SAMPLE);
    for (name, value) in params {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("invalid parameter `{name}`: expected a non-negative integer"))
        };
        match name.as_str() {
            "from" => from = Some(parse_time(name, value, false).map_err(|e| e.to_string())?),
            "to" => to = Some(parse_time(name, value, true).map_err(|e| e.to_string())?),
            "seed" => seed = Some(number()?),
            "sample" => sample = number()? as usize,
            other => {
                return Err(format!(
                    "invalid parameter `{other}`: unknown; expected from, to, seed, sample"
                ))
            }
        }
    }
    let (Some(from_ms), Some(to_ms)) = (from, to) else {
        return Err("`from` and `to` are required".into());
    };
    if to_ms <= from_ms {
        return Err("invalid parameter `to`: must be later than `from`".into());
    }
    Ok(Request {
        tenant: tenant.to_owned(),
        from_ms,
        to_ms,
        seed: seed.unwrap_or_else(rand::random),
        sample,
    })
}

#[cfg(test)]
mod request_tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn period_seed_and_sample_are_parsed_and_checked() {
        let r = parse(
            "org_a",
            &params(&[
                ("from", "2026-03-01"),
                ("to", "2026-03-01"),
                ("seed", "7"),
                ("sample", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (r.to_ms - r.from_ms, r.seed, r.sample, r.tenant.as_str()),
            (86_400_000, 7, 3, "org_a")
        );
        let err = |p: &[(&str, &str)]| parse("org_a", &params(p)).err().unwrap();
        assert_eq!(
            err(&[("from", "2026-03-01")]),
            "`from` and `to` are required"
        );
        assert!(
            err(&[("from", "2026-03-02"), ("to", "2026-03-01T00:00:00Z")])
                .contains("must be later than `from`")
        );
        assert!(
            err(&[("from", "2026-03-01"), ("to", "2026-03-02"), ("seed", "-1")])
                .starts_with("invalid parameter `seed`")
        );
        assert!(err(&[("limit", "1")]).starts_with("invalid parameter `limit`: unknown"));
    }
}
