//! Collector throughput over HTTP: starts the release `acp-collector` on a temporary database
//! and has concurrent clients post batches of records for a fixed time. A batch counts once its
//! 200 answer has arrived, which the collector sends only after the commit, so the figure is
//! durable records per second. Clients and collector share the machine. Then the database is
//! filled up to `ACP_BENCH_EXPORT_RECORDS` records (untimed) and the whole tenant is exported as
//! one streamed CSV through the export API (records/s, rows counted); last, `acp-collector
//! verify` checks the database (every leaf, root and signature) and its records/s are printed.
//!
//! `cargo bench -p acp-collector --bench ingest`; tune with `ACP_BENCH_CLIENTS` (default 8),
//! `ACP_BENCH_SECONDS` (10), `ACP_BENCH_BATCH` (100 records), `ACP_BENCH_EXPORT_RECORDS`
//! (1,000,000). With `ACP_BENCH_DATABASE_URL` (an empty PostgreSQL database or schema) the
//! collectors store there instead, and `ACP_BENCH_REPLICAS` (default 1) of them share it, the
//! clients spread over them. `ACP_BENCH_TENANTS` (default 1) spreads each batch's records over
//! that many tenants in turn (the export reads the first one's). `tests/bench/pg_ingest.py`
//! runs it on PostgreSQL in several shapes.

use std::fmt::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_acp-collector");
const TOKEN: &str = "bench-token";
/// The tenant of every record `batch_body` writes.
const TENANT: &str = "org_acme_corp";

fn setting(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let clients = setting("ACP_BENCH_CLIENTS", 8)?;
    let seconds = setting("ACP_BENCH_SECONDS", 10)?;
    let batch = setting("ACP_BENCH_BATCH", 100)?;
    let export_records = setting("ACP_BENCH_EXPORT_RECORDS", 1_000_000)?;
    let tenants = setting("ACP_BENCH_TENANTS", 1)?.max(1);

    let replicas = setting("ACP_BENCH_REPLICAS", 1)?;
    let url = std::env::var("ACP_BENCH_DATABASE_URL").ok();
    ensure!(
        replicas == 1 || url.is_some(),
        "several replicas need ACP_BENCH_DATABASE_URL"
    );

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let store: Vec<&std::ffi::OsStr> = match &url {
        Some(url) => vec!["--database-url".as_ref(), url.as_ref()],
        None => vec!["--db".as_ref(), db.as_os_str()],
    };
    let mut collectors = Vec::new();
    let mut bases = Vec::new();
    for replica in 0..replicas {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let base = format!("http://127.0.0.1:{port}");
        collectors.push(
            Command::new(BIN)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(&store)
                .arg("--signing-key")
                .arg(dir.path().join(format!("key-{replica}")))
                .env("ACP_INGEST_TOKEN", TOKEN)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()?,
        );
        let ready = (0..500).any(|_| {
            let up = reqwest::blocking::get(format!("{base}/healthz")).is_ok();
            if !up {
                std::thread::sleep(Duration::from_millis(20));
            }
            up
        });
        ensure!(ready, "the collector did not start");
        bases.push(base);
    }

    let runtime = tokio::runtime::Runtime::new()?;
    let batches = Arc::new(AtomicUsize::new(0));
    let duration = Duration::from_secs(seconds as u64);
    let shape = Shape { batch, tenants };
    let result = runtime.block_on(run(&bases, clients, shape, &batches, move |elapsed, _| {
        elapsed >= duration
    }));
    let export = result
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .and_then(|(stored, ..)| {
            let missing = export_records.saturating_sub(*stored);
            runtime.block_on(run(&bases, clients, shape, &batches, move |_, filled| {
                filled >= missing
            }))?;
            let key = api_key(&store)?;
            runtime.block_on(export_csv(&bases[0], &key))
        });
    for collector in &mut collectors {
        Command::new("kill")
            .args(["-TERM", &collector.id().to_string()])
            .status()?;
        ensure!(
            collector.wait()?.success(),
            "the collector did not stop cleanly"
        );
    }
    let (records, elapsed, mut latencies) = result?;
    let (rows, export_time) = export?;
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    let store_name = match &url {
        Some(_) => format!("PostgreSQL, {replicas} replicas"),
        None => format!("db {} MiB", std::fs::metadata(&db)?.len() >> 20),
    };
    println!(
        "ingest: {records} records in {:.2} s = {:.0} durable records/s \
         ({clients} clients, batches of {batch}, {tenants} tenants; batch latency p50 {:?}, \
         p99 {:?}; {store_name})",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        percentile(50),
        percentile(99),
    );
    println!(
        "export: {rows} records as one CSV in {:.2} s = {:.0} records/s ({store_name})",
        export_time.as_secs_f64(),
        rows as f64 / export_time.as_secs_f64(),
    );

    let verify = Command::new(BIN).arg("verify").args(&store).output()?;
    let report = String::from_utf8_lossy(&verify.stderr);
    ensure!(verify.status.success(), "verify failed: {report}");
    let line = report
        .lines()
        .find(|l| l.starts_with("verified"))
        .unwrap_or_default();
    println!("verify: {line}");
    Ok(())
}

/// Posts from `clients` tasks (spread over the collectors at `bases`) until `done(time taken,
/// records stored by this run)`; returns
/// the records stored, the time taken and every batch's latency. Batches are numbered from
/// `batches`, so every run posts new records.
async fn run(
    bases: &[String],
    clients: usize,
    Shape { batch, tenants }: Shape,
    batches: &Arc<AtomicUsize>,
    done: impl Fn(Duration, usize) -> bool + Send + Sync + 'static,
) -> anyhow::Result<(usize, Duration, Vec<Duration>)> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let (done, stored) = (Arc::new(done), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let base = &bases[client % bases.len()];
            let url = format!("{base}{}", acp_record::INGEST_PATH);
            let (http, batches) = (http.clone(), Arc::clone(batches));
            let (done, stored) = (Arc::clone(&done), Arc::clone(&stored));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !done(start.elapsed(), stored.load(Ordering::Relaxed)) {
                    let body = batch_body(batches.fetch_add(1, Ordering::Relaxed), batch, tenants);
                    let sent = Instant::now();
                    let r = http.post(&url).bearer_auth(TOKEN).body(body).send().await?;
                    let status = r.status();
                    let answer: Value = r.json().await?;
                    latencies.push(sent.elapsed());
                    if !status.is_success() || answer["accepted"] != batch {
                        bail!("batch refused: {status} {answer}");
                    }
                    stored.fetch_add(batch, Ordering::Relaxed);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((stored.load(Ordering::Relaxed), start.elapsed(), latencies))
}

/// A new API key of the bench tenant, from the CLI.
fn api_key(store: &[&std::ffi::OsStr]) -> anyhow::Result<String> {
    let out = Command::new(BIN)
        .args(["apikey", "create", "--tenant", TENANT])
        .args(store)
        .output()?;
    ensure!(
        out.status.success(),
        "apikey create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Streams the tenant's whole trail as CSV; returns the data rows and the time taken.
async fn export_csv(base: &str, key: &str) -> anyhow::Result<(usize, Duration)> {
    let start = Instant::now();
    let mut answer = reqwest::Client::new()
        .get(format!("{base}/{TENANT}/api/v1/audit?format=csv"))
        .bearer_auth(key)
        .send()
        .await?;
    ensure!(
        answer.status().is_success(),
        "export failed: {}",
        answer.status()
    );
    let mut lines = 0;
    while let Some(chunk) = answer.chunk().await? {
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    // The records' cells hold no line breaks: one line per record, after the header.
    Ok((lines.saturating_sub(1), start.elapsed()))
}

/// What each posted batch holds: `batch` records spread over `tenants` tenants.
#[derive(Clone, Copy)]
struct Shape {
    batch: usize,
    tenants: usize,
}

/// Batch `n`: `size` distinct records shaped like real `tool.call`s (correlation fields
/// included, and a UUIDv7 id made now, as the filter makes one per call), record `k` (counted
/// over every batch) of tenant `k % tenants` ([`TENANT`] and `TENANT-1`, `TENANT-2`, ...).
fn batch_body(n: usize, size: usize, tenants: usize) -> String {
    let mut body = String::from(r#"{"records":["#);
    for i in 0..size {
        let k = n * size + i;
        let tenant = match k % tenants {
            0 => TENANT.to_owned(),
            t => format!("{TENANT}-{t}"),
        };
        let ms = 1_773_584_587_142 + k as i64;
        // The correlation fields as Envoy and a client fill them: a session of 20 calls, and
        // request, trace and span ids spread like random ones.
        let spread = |x: usize, salt: u128| {
            (x as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835 ^ salt)
        };
        let (session, request, trace) = (spread(k / 20, 0), spread(k, 1), spread(k, 2));
        let span = spread(k, 3) as u64;
        let timestamp = acp_record::format_timestamp(ms).unwrap_or_default();
        let sep = if i == 0 { "" } else { "," };
        let id = uuid::Uuid::now_v7();
        let _ = write!(
            body,
            r#"{sep}{{"id":"{id}","event":"tool.call","timestamp":"{timestamp}","sub":"auth0|user{i}","email":"user{i}@acme.com","tool":"salesforce.query","input":{{"query":"SELECT Name FROM Opportunity WHERE CloseDate = THIS_MONTH"}},"scopes":["salesforce:read","salesforce:write"],"scopeRequired":["salesforce:read"],"scopeResult":"pass","contentScan":{{"piiDetected":false,"riskScore":0.02,"inputScanned":true,"outputScanned":true,"findings":[]}},"result":"success","reason":null,"latencyMs":142.5,"tenantId":"{tenant}","clientType":"claude-desktop","clientId":"claude-desktop-app","delegationChain":null,"sessionId":"{session:032x}","requestId":"{request:032x}","traceId":"{trace:032x}","spanId":"{span:016x}","sourceAddress":"10.1.{}.{}:{}","userAgent":"claude-desktop/0.9.3","protocolVersion":"2025-11-25"}}"#,
            k % 200,
            k % 250,
            40_000 + k % 20_000,
        );
    }
    body.push_str("]}");
    body
}
