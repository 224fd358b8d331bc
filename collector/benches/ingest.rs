//! Ingest throughput over HTTP: starts the release `acp-collector` on a temporary database and
//! has concurrent clients post batches of records for a fixed time. A batch counts once its
//! 200 answer has arrived, which the collector sends only after the commit, so the figure is
//! durable records per second. Clients and collector share the machine. Then `acp-collector
//! verify` checks the database the run left (every leaf, root and signature) and its
//! records/s are printed too.
//!
//! `cargo bench -p acp-collector --bench ingest`; tune with `ACP_BENCH_CLIENTS` (default 8),
//! `ACP_BENCH_SECONDS` (10), `ACP_BENCH_BATCH` (100 records). With `ACP_BENCH_DATABASE_URL`
//! (an empty PostgreSQL database or schema) the collectors store there instead, and
//! `ACP_BENCH_REPLICAS` (default 1) of them share it, the clients spread over them.

use std::fmt::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_acp-collector");
const TOKEN: &str = "bench-token";

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
    let result = runtime.block_on(run(
        &bases,
        clients,
        batch,
        Duration::from_secs(seconds as u64),
    ));
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
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    let store_name = match &url {
        Some(_) => format!("PostgreSQL, {replicas} replicas"),
        None => format!("db {} MiB", std::fs::metadata(&db)?.len() >> 20),
    };
    println!(
        "ingest: {records} records in {:.2} s = {:.0} durable records/s \
         ({clients} clients, batches of {batch}; batch latency p50 {:?}, p99 {:?}; {store_name})",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        percentile(50),
        percentile(99),
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

/// Posts from `clients` tasks (spread over the collectors at `bases`) until `duration` has
/// passed; returns the records stored, the time taken and every batch's latency.
async fn run(
    bases: &[String],
    clients: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<(usize, Duration, Vec<Duration>)> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let base = &bases[client % bases.len()];
            let (http, url) = (http.clone(), format!("{base}{}", acp_record::INGEST_PATH));
            tokio::spawn(async move {
                let mut stored = 0;
                let mut latencies = Vec::new();
                for n in 0.. {
                    if start.elapsed() >= duration {
                        break;
                    }
                    let body = batch_body(client, n, batch);
                    let sent = Instant::now();
                    let r = http.post(&url).bearer_auth(TOKEN).body(body).send().await?;
                    let status = r.status();
                    let answer: Value = r.json().await?;
                    latencies.push(sent.elapsed());
                    if !status.is_success() || answer["accepted"] != batch {
                        bail!("batch refused: {status} {answer}");
                    }
                    stored += batch;
                }
                anyhow::Ok((stored, latencies))
            })
        })
        .collect();
    let mut total = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let (stored, l) = task.await??;
        total += stored;
        latencies.extend(l);
    }
    Ok((total, start.elapsed(), latencies))
}

/// Batch `n` of `client`: `size` distinct records shaped like real `tool.call`s.
fn batch_body(client: usize, n: usize, size: usize) -> String {
    let mut body = String::from(r#"{"records":["#);
    for i in 0..size {
        let ms = 1_773_584_587_142 + (n * size + i) as i64;
        let timestamp = acp_record::format_timestamp(ms).unwrap_or_default();
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            body,
            r#"{sep}{{"id":"bench-{client}-{n}-{i}","event":"tool.call","timestamp":"{timestamp}","sub":"auth0|user{i}","email":"user{i}@acme.com","tool":"salesforce.query","input":{{"query":"SELECT Name FROM Opportunity WHERE CloseDate = THIS_MONTH"}},"scopes":["salesforce:read","salesforce:write"],"scopeRequired":["salesforce:read"],"scopeResult":"pass","contentScan":{{"piiDetected":false,"riskScore":0.02,"inputScanned":true,"outputScanned":true,"findings":[]}},"result":"success","reason":null,"latencyMs":142.5,"tenantId":"org_acme_corp","clientType":"claude-desktop","clientId":"claude-desktop-app","delegationChain":null}}"#
        );
    }
    body.push_str("]}");
    body
}
