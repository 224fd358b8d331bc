//! End-to-end tests: each starts the real `acp-collector` binary on a free port with its own
//! database, creates API keys with the `apikey` subcommand, ingests over HTTP and reads back
//! through the export API.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_acp-collector");
const TOKEN: &str = "test-ingest-token";
const ACME: &str = "org_acme_corp";
const GLOBEX: &str = "org_globex";

/// A running collector; killed when dropped.
struct Collector {
    child: Child,
    base: String,
    db: PathBuf,
    log: PathBuf,
    http: Client,
}

impl Collector {
    /// Starts a collector on `dir/audit.db` with extra `serve` flags.
    fn start_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Collector {
        let db = dir.join("audit.db");
        let log = dir.join("collector.log");
        for _attempt in 0..5 {
            // The port is free now; another process could take it before the collector binds,
            // which the retry covers.
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(BIN)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--db")
                .arg(&db)
                .args(extra)
                .envs(env.iter().copied())
                .env("RUST_LOG", "debug")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let base = format!("http://127.0.0.1:{port}");
            let http = Client::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(r) = http.get(format!("{base}/healthz")).send() {
                    assert_eq!(r.status(), StatusCode::OK);
                    assert_eq!(r.text().unwrap(), "ok");
                    return Collector {
                        child,
                        base,
                        db,
                        log,
                        http,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "collector did not start:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }

    fn start(dir: &Path) -> Collector {
        Collector::start_with(dir, &["--ingest-token", TOKEN], &[])
    }

    fn post(&self, token: &str, body: impl Into<reqwest::blocking::Body>) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/v1/records", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = r.status();
        (status, r.json().unwrap())
    }

    /// Posts a batch; asserts that every record was valid.
    fn ingest(&self, records: &[Value]) -> Value {
        let (status, body) = self.post(TOKEN, json!({ "records": records }).to_string());
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// `GET` a path (with query) of the collector.
    fn get(&self, key: &str, path_and_query: &str) -> Response {
        self.http
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(key)
            .send()
            .unwrap()
    }

    /// Follows `next` from `path_and_query` to the end; returns every page's records.
    fn export_all_pages(&self, key: &str, path_and_query: &str) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut next = Some(path_and_query.to_owned());
        while let Some(url) = next {
            let r = self.get(key, &url);
            assert_eq!(r.status(), StatusCode::OK);
            let link = r
                .headers()
                .get("link")
                .map(|l| l.to_str().unwrap().to_owned());
            let page: Value = r.json().unwrap();
            next = page["next"].as_str().map(str::to_owned);
            assert_eq!(link, next.as_ref().map(|n| format!("<{n}>; rel=\"next\"")));
            pages.push(page["records"].as_array().unwrap().clone());
        }
        pages
    }

    fn export(&self, key: &str, tenant: &str, query: &str) -> Vec<Value> {
        self.export_all_pages(key, &format!("/{tenant}/api/v1/audit?limit=1000&{query}"))
            .concat()
    }

    /// Stops the collector with SIGTERM, as a service manager would.
    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        self.child.wait().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `acp-collector apikey ...` on `db`; returns stdout.
fn apikey(db: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("apikey")
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn create_key(db: &Path, tenant: &str) -> String {
    let key = apikey(db, &["create", "--tenant", tenant, "--name", "auditor"]);
    let key = key.strip_suffix('\n').unwrap().to_owned();
    assert!(key.starts_with("gsk_") && key.len() >= 4 + 43, "{key}");
    key
}

/// A valid `tool.call` record in the schema of the product reference.
fn record(id: &str, timestamp: &str) -> Value {
    json!({
        "id": id,
        "event": "tool.call",
        "timestamp": timestamp,
        "sub": "auth0|8f3a2b1c9d4e5f6a",
        "email": "alice@acme.com",
        "tool": "salesforce.query",
        "input": {"query": "SELECT Name FROM Opportunity WHERE CloseDate = THIS_MONTH"},
        "scopes": ["salesforce:read", "salesforce:write"],
        "scopeRequired": ["salesforce:read"],
        "scopeResult": "pass",
        "contentScan": {"piiDetected": false, "riskScore": 0.02, "inputScanned": true,
                        "outputScanned": true, "findings": []},
        "result": "success",
        "reason": null,
        "latencyMs": 142.25,
        "tenantId": ACME,
        "clientType": "claude-desktop",
        "clientId": "claude-desktop-app",
        "delegationChain": null,
        "sessionId": null,
        "requestId": null,
        "traceId": null,
        "spanId": null,
        "sourceAddress": null,
        "userAgent": null,
        "protocolVersion": null,
        "inputSummary": null
    })
}

fn denied(id: &str, timestamp: &str) -> Value {
    let mut r = record(id, timestamp);
    r["event"] = json!("tool.denied");
    r["result"] = json!("denied");
    r["reason"] = json!("insufficient_scope");
    r["scopes"] = json!([]);
    r["scopeResult"] = json!("fail");
    r["contentScan"] = json!(null);
    r["sub"] = json!("auth0|bob");
    r["email"] = json!("bob@acme.com");
    r["tool"] = json!("salesforce.update");
    r["delegationChain"] = json!([{"sub": "agent-1"}]);
    r
}

fn auth_failed(id: &str, timestamp: &str) -> Value {
    let mut r = record(id, timestamp);
    for field in [
        "sub",
        "email",
        "tool",
        "input",
        "scopeRequired",
        "scopeResult",
        "contentScan",
    ] {
        r[field] = json!(null);
    }
    r["event"] = json!("auth.failed");
    r["result"] = json!("auth_failed");
    r["reason"] = json!("expired");
    r["scopes"] = json!([]);
    r
}

fn ids(records: &[Value]) -> Vec<&str> {
    records.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

#[test]
fn records_read_back_exactly_as_ingested() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    let sent = [
        record("r1", "2026-03-15T14:23:07.142Z"),
        denied("r2", "2026-03-15T14:23:08.000Z"),
        auth_failed("r3", "2026-03-15T14:23:09.999Z"),
    ];
    assert_eq!(c.ingest(&sent), json!({"accepted": 3, "duplicates": 0}));

    let r = c.get(&key, &format!("/{ACME}/api/v1/audit"));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().get("link").is_none());
    let page: Value = r.json().unwrap();
    assert_eq!(page["next"], Value::Null);
    let got = page["records"].as_array().unwrap();
    assert_eq!(got.len(), sent.len());
    for (got, sent) in got.iter().zip(&sent) {
        let (got, sent) = (got.as_object().unwrap(), sent.as_object().unwrap());
        assert_eq!(got.len(), sent.len(), "{got:?}");
        for (field, value) in sent {
            assert_eq!(&got[field], value, "field {field} of {}", sent["id"]);
        }
    }
    assert!(c.log().contains("ingested batch"));
}

#[test]
fn pages_follow_the_cursor_and_link_header() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    // Arrival order differs from time order, and some records share a timestamp.
    let mut records: Vec<Value> = (0..25)
        .rev()
        .map(|i| {
            record(
                &format!("r{i:02}"),
                &format!("2026-03-15T10:00:{:02}.000Z", i / 2),
            )
        })
        .collect();
    c.ingest(&records[..10]);
    c.ingest(&records[10..]);

    let pages = c.export_all_pages(
        &key,
        &format!("/{ACME}/api/v1/audit?limit=10&tool=salesforce.query"),
    );
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let got: Vec<Value> = pages.concat();
    // Time order, and arrival order within one timestamp (r01 arrived before r00).
    records.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
    assert_eq!(ids(&got), ids(&records));
    assert_eq!(&ids(&got)[..4], ["r01", "r00", "r03", "r02"]);

    // The next URL keeps the filters.
    let r = c.get(
        &key,
        &format!("/{ACME}/api/v1/audit?limit=10&tool=salesforce.query"),
    );
    let next = r.json::<Value>().unwrap()["next"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.starts_with(&format!(
        "/{ACME}/api/v1/audit?limit=10&tool=salesforce.query&cursor="
    )));
}

#[test]
fn filters_select_by_user_tool_result_event_and_time() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    c.ingest(&[
        record("a1", "2026-02-28T23:59:59.999Z"),
        record("a2", "2026-03-01T00:00:00.000Z"),
        denied("b1", "2026-03-15T12:00:00.000Z"),
        auth_failed("x1", "2026-03-31T23:59:59.999Z"),
        record("a3", "2026-04-01T00:00:00.000Z"),
    ]);
    let select = |query: &str| -> Vec<String> {
        ids(&c.export(&key, ACME, query))
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(select("user=auth0%7C8f3a2b1c9d4e5f6a"), ["a1", "a2", "a3"]);
    assert_eq!(select("user=bob%40acme.com"), ["b1"]);
    assert_eq!(select("user=auth0%7Cbob"), ["b1"]);
    assert_eq!(select("tool=salesforce.update"), ["b1"]);
    assert_eq!(select("tool=salesforce"), Vec::<String>::new());
    assert_eq!(select("result=auth_failed"), ["x1"]);
    assert_eq!(select("result=success"), ["a1", "a2", "a3"]);
    assert_eq!(select("event=tool.denied"), ["b1"]);
    assert_eq!(select("from=2026-03-01&to=2026-03-31"), ["a2", "b1", "x1"]);
    assert_eq!(
        select("from=2026-03-01T00:00:00.001Z&to=2026-04-01T00:00:00Z"),
        ["b1", "x1"]
    );
    assert_eq!(
        select("from=2026-03-15T13:00:00%2B01:00"),
        ["b1", "x1", "a3"]
    );
    assert_eq!(select("from=2026-03-01&result=success"), ["a2", "a3"]);

    let r = c.get(&key, &format!("/{ACME}/api/v1/audit?from=last-week"));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let error = r.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.starts_with("invalid parameter `from`: "), "{error}");
    let r = c.get(&key, &format!("/{ACME}/api/v1/audit?colour=red"));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("`colour`"));
}

#[test]
fn ndjson_and_csv_stream_the_whole_range() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    let records: Vec<Value> = (0..2500)
        .map(|i| {
            let ms = i % 1000;
            record(
                &format!("s{i:04}"),
                &format!("2026-03-15T10:{:02}:{:02}.{ms:03}Z", i / 60_000, i / 1000),
            )
        })
        .collect();
    for batch in records.chunks(500) {
        c.ingest(batch);
    }
    let mut expected: Vec<&Value> = records.iter().collect();
    expected.sort_by_key(|r| r["timestamp"].as_str().unwrap().to_owned());

    let r = c.get(&key, &format!("/{ACME}/api/v1/audit?format=ndjson"));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert!(r.headers().get("link").is_none());
    let body = r.text().unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2500);
    assert_eq!(lines.iter().collect::<Vec<_>>(), expected);

    let r = c.get(
        &key,
        &format!("/{ACME}/api/v1/audit?format=csv&tool=salesforce.query"),
    );
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers().get("link").is_none());
    let rows = csv_rows(&r.text().unwrap());
    assert_eq!(rows.len(), 1 + 2500);
    assert_eq!(rows[0][0], "id");
    let csv_ids: Vec<&str> = rows[1..].iter().map(|row| row[0].as_str()).collect();
    assert_eq!(
        csv_ids,
        ids(&expected.into_iter().cloned().collect::<Vec<_>>())
    );

    // With a limit, ndjson and csv paginate like json.
    let r = c.get(&key, &format!("/{ACME}/api/v1/audit?format=csv&limit=1000"));
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.starts_with(&format!(
        "</{ACME}/api/v1/audit?format=csv&limit=1000&cursor="
    )));
    assert_eq!(csv_rows(&r.text().unwrap()).len(), 1 + 1000);
    let next = link
        .trim_start_matches('<')
        .split_once('>')
        .unwrap()
        .0
        .to_owned();
    let r = c.get(&key, &next);
    assert_eq!(csv_rows(&r.text().unwrap())[1][0], csv_ids[1000]);
    let r = c.get(
        &key,
        &format!("/{ACME}/api/v1/audit?format=ndjson&limit=2&user=nobody"),
    );
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.text().unwrap(), "");
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    assert!(text.is_empty() || text.ends_with("\r\n"));
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn csv_neutralises_formulas_and_escapes() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    let mut evil = record("e1", "2026-03-15T14:23:07.142Z");
    evil["sub"] = json!("@SUM(1+1)*cmd|' /C calc'!A0");
    evil["email"] = json!("=HYPERLINK(\"http://evil\",\"click, here\")");
    evil["tool"] = json!("+tool\r\nsecond line");
    evil["reason"] = json!("-2+3");
    evil["input"] = json!(-1);
    evil["clientType"] = json!("\tindent");
    c.ingest(&[evil]);

    let r = c.get(&key, &format!("/{ACME}/api/v1/audit?format=csv"));
    let rows = csv_rows(&r.text().unwrap());
    let header = &rows[0];
    let cell = |name: &str| &rows[1][header.iter().position(|h| h == name).unwrap()];
    assert_eq!(
        header,
        &[
            "id",
            "timestamp",
            "event",
            "tenantId",
            "sub",
            "email",
            "tool",
            "result",
            "reason",
            "scopes",
            "scopeRequired",
            "scopeResult",
            "latencyMs",
            "clientType",
            "clientId",
            "input",
            "contentScan",
            "delegationChain",
            "inputSummary",
            "sessionId",
            "requestId",
            "traceId",
            "spanId",
            "sourceAddress",
            "userAgent",
            "protocolVersion",
        ]
    );
    assert_eq!(cell("sub"), "'@SUM(1+1)*cmd|' /C calc'!A0");
    assert_eq!(
        cell("email"),
        "'=HYPERLINK(\"http://evil\",\"click, here\")"
    );
    assert_eq!(cell("tool"), "'+tool\r\nsecond line");
    assert_eq!(cell("reason"), "'-2+3");
    assert_eq!(cell("input"), "'-1");
    assert_eq!(cell("clientType"), "'\tindent");
    assert_eq!(cell("scopes"), "salesforce:read salesforce:write");
    assert_eq!(cell("latencyMs"), "142.25");
    assert_eq!(cell("delegationChain"), "");
    let scan: Value = serde_json::from_str(cell("contentScan")).unwrap();
    assert_eq!(scan["riskScore"], json!(0.02));

    // The JSON export keeps the record as it was.
    let stored = c.export(&key, ACME, "");
    assert_eq!(
        stored[0]["email"],
        json!("=HYPERLINK(\"http://evil\",\"click, here\")")
    );
}

#[test]
fn duplicates_are_stored_once() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    let batch = [
        record("d1", "2026-03-15T14:23:07.142Z"),
        record("d2", "2026-03-15T14:23:07.143Z"),
        record("d1", "2026-03-15T14:23:07.142Z"),
    ];
    assert_eq!(c.ingest(&batch), json!({"accepted": 2, "duplicates": 1}));
    assert_eq!(c.ingest(&batch), json!({"accepted": 0, "duplicates": 3}));
    assert_eq!(ids(&c.export(&key, ACME, "")), ["d1", "d2"]);
}

#[test]
fn invalid_records_are_rejected_and_their_neighbours_stored() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    let mut bad_time = record("v2", "2026-03-15T14:23:07.142Z");
    bad_time["timestamp"] = json!("2026-03-15 14:23:07");
    let mut extra = record("v4", "2026-03-15T14:23:07.142Z");
    extra["password"] = json!("hunter2");
    let batch = json!({"records": [
        record("v1", "2026-03-15T14:23:07.142Z"),
        bad_time,
        record("v3", "2026-03-15T14:23:08.142Z"),
        extra,
        42,
    ]});
    let (status, body) = c.post(TOKEN, batch.to_string());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["duplicates"], 0);
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3);
    assert_eq!(
        (&rejected[0]["index"], &rejected[0]["id"]),
        (&json!(1), &json!("v2"))
    );
    assert!(rejected[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("timestamp: "));
    assert_eq!(
        (&rejected[1]["index"], &rejected[1]["id"]),
        (&json!(3), &json!("v4"))
    );
    assert!(rejected[1]["error"].as_str().unwrap().contains("password"));
    assert_eq!(
        (&rejected[2]["index"], &rejected[2]["id"]),
        (&json!(4), &Value::Null)
    );

    assert_eq!(ids(&c.export(&key, ACME, "")), ["v1", "v3"]);
    assert!(c.log().contains("rejected audit record"));
}

#[test]
fn ingest_refuses_bad_tokens_and_bodies() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start_with(
        dir.path(),
        &["--ingest-token", TOKEN, "--max-body-bytes", "4096"],
        &[],
    );
    let key = create_key(&c.db, ACME);
    let one = json!({"records": [record("t1", "2026-03-15T14:23:07.142Z")]}).to_string();

    for token in ["wrong", "test-ingest-token2", "test-ingest-toke"] {
        let (status, body) = c.post(token, one.clone());
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["error"].is_string());
    }
    let r = c
        .http
        .post(format!("{}/v1/records", c.base))
        .body(one.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    for body in [
        "not json",
        "[]",
        r#"{"records": {}}"#,
        r#"{"records": [], "more": 1}"#,
    ] {
        let (status, answer) = c.post(TOKEN, body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let big: Vec<Value> = (0..20)
        .map(|i| record(&format!("big{i}"), "2026-03-15T14:23:07.142Z"))
        .collect();
    let (status, answer) = c.post(TOKEN, json!({"records": big}).to_string());
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer["error"].is_string());

    assert_eq!(c.ingest(&[]), json!({"accepted": 0, "duplicates": 0}));
    assert_eq!(c.post(TOKEN, one).0, StatusCode::OK);
    assert_eq!(ids(&c.export(&key, ACME, "")), ["t1"]);
}

#[test]
fn keys_only_read_their_own_tenant() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let acme_key = create_key(&c.db, ACME);
    let globex_key = create_key(&c.db, GLOBEX);
    let mut g = record("g1", "2026-03-15T14:23:07.142Z");
    g["tenantId"] = json!(GLOBEX);
    c.ingest(&[record("a1", "2026-03-15T14:23:07.142Z"), g]);

    assert_eq!(ids(&c.export(&acme_key, ACME, "")), ["a1"]);
    assert_eq!(ids(&c.export(&globex_key, GLOBEX, "")), ["g1"]);
    for format in ["json", "ndjson", "csv"] {
        let r = c.get(
            &acme_key,
            &format!("/{GLOBEX}/api/v1/audit?format={format}"),
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(!r.text().unwrap().contains("g1"));
    }
    let unknown = format!("gsk_{}", "A".repeat(43));
    for key in [unknown.as_str(), "", TOKEN] {
        let r = c.get(key, &format!("/{ACME}/api/v1/audit"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{key:?}");
    }
    let r = c
        .http
        .get(format!("{}/{ACME}/api/v1/audit", c.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A bad query with a foreign key is still 403, not 400: nothing about the query is checked.
    let r = c.get(&acme_key, &format!("/{GLOBEX}/api/v1/audit?from=bad"));
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Revocation, by the prefix that `list` shows.
    let list = apikey(&c.db, &["list", "--tenant", ACME]);
    assert!(
        !list.contains(&acme_key) && !list.contains(GLOBEX),
        "{list}"
    );
    let prefix = list
        .lines()
        .nth(1)
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    assert!(acme_key.starts_with(&prefix));
    apikey(&c.db, &["revoke", "--prefix", &prefix]);
    let r = c.get(&acme_key, &format!("/{ACME}/api/v1/audit"));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(apikey(&c.db, &["list"])
        .lines()
        .nth(1)
        .unwrap()
        .ends_with('Z'));
    assert_eq!(
        c.get(&globex_key, &format!("/{GLOBEX}/api/v1/audit"))
            .status(),
        StatusCode::OK
    );
}

#[test]
fn stats_count_a_tenants_records_with_the_export_filters() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let acme_key = create_key(&c.db, ACME);
    let globex_key = create_key(&c.db, GLOBEX);
    let mut g = record("g1", "2026-03-15T10:00:00.000Z");
    g["tenantId"] = json!(GLOBEX);
    c.ingest(&[
        record("a1", "2026-03-15T10:05:00.000Z"),
        denied("a2", "2026-03-15T10:40:00.000Z"),
        auth_failed("a3", "2026-03-15T12:10:00.000Z"),
        g,
    ]);
    let stats = |key: &str, query: &str| c.get(key, &format!("/{ACME}/api/v1/stats?{query}"));

    let r = stats(&acme_key, "bucket=3600");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().unwrap();
    assert_eq!(
        body,
        json!({
            "total": 3,
            "bucketSeconds": 3600,
            "byResult": {"auth_failed": 1, "denied": 1, "success": 1},
            "timeline": [
                {"start": "2026-03-15T10:00:00.000Z", "counts": {"denied": 1, "success": 1}},
                {"start": "2026-03-15T11:00:00.000Z", "counts": {}},
                {"start": "2026-03-15T12:00:00.000Z", "counts": {"auth_failed": 1}},
            ],
            "topUsers": [{"name": "alice@acme.com", "count": 1}, {"name": "bob@acme.com", "count": 1}],
            "topTools": [
                {"name": "salesforce.query", "count": 1},
                {"name": "salesforce.update", "count": 1},
            ],
            "topDenials": [
                {"name": "expired", "count": 1},
                {"name": "insufficient_scope", "count": 1},
            ],
        })
    );
    let body: Value = stats(&acme_key, "user=bob%40acme.com&from=2026-03-15")
        .json()
        .unwrap();
    // From midnight to the last match (10:40): 15-minute buckets, the first size giving <= 60.
    assert_eq!(
        (&body["total"], &body["bucketSeconds"]),
        (&json!(1), &json!(900))
    );
    assert_eq!(body["timeline"].as_array().unwrap().len(), 43);
    assert_eq!(body["timeline"][42]["counts"], json!({"denied": 1}));

    let r = stats(&acme_key, "bucket=1&from=2026-03-01&to=2026-03-31");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("invalid parameter `bucket`"));
    assert_eq!(stats(&globex_key, "").status(), StatusCode::FORBIDDEN);
    assert_eq!(stats("gsk_unknown", "").status(), StatusCode::UNAUTHORIZED);
    let globex: Value = c
        .get(&globex_key, &format!("/{GLOBEX}/api/v1/stats"))
        .json()
        .unwrap();
    assert_eq!(globex["total"], 1);
}

#[test]
fn the_dashboard_is_served_with_a_strict_content_security_policy() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    for (path, content_type) in [
        ("/dashboard", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
    ] {
        let r = c.http.get(format!("{}{path}", c.base)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let headers = r.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
    }
    let page = c
        .http
        .get(format!("{}/dashboard", c.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains(r#"<script src="/dashboard/app.js" defer></script>"#));
    assert_eq!(page.matches("<script").count(), 1, "no inline script");
}

#[test]
fn the_database_refuses_updates_and_deletes() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    c.ingest(&[record("i1", "2026-03-15T14:23:07.142Z")]);

    let conn = rusqlite::Connection::open(&c.db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    for sql in [
        "UPDATE records SET result = 'denied'",
        "UPDATE records SET json = '{}' WHERE id = 'i1'",
        "DELETE FROM records",
        "DELETE FROM records WHERE id = 'i1'",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(
        c.export(&key, ACME, "")[0],
        record("i1", "2026-03-15T14:23:07.142Z")
    );
}

#[test]
fn records_survive_a_restart() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let key = create_key(&c.db, ACME);
    c.ingest(&[record("p1", "2026-03-15T14:23:07.142Z")]);
    // Killed without warning: what was acknowledged is on disk.
    drop(c);

    let c = Collector::start(dir.path());
    c.ingest(&[record("p2", "2026-03-15T14:23:08.142Z")]);
    assert_eq!(ids(&c.export(&key, ACME, "")), ["p1", "p2"]);
    let log = dir.path().join("collector.log");
    let status = c.terminate();
    assert!(status.success(), "{status:?}");
    assert!(std::fs::read_to_string(log)
        .unwrap()
        .contains("acp-collector stopped"));

    let c = Collector::start(dir.path());
    assert_eq!(ids(&c.export(&key, ACME, "")), ["p1", "p2"]);
}

#[test]
fn settings_come_from_flag_env_and_config_file() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("acp.toml");
    std::fs::write(
        &config,
        "ingest_token = \"from-file\"\nmax_body_bytes = 100000\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();

    // The file gives the token.
    let c = Collector::start_with(dir.path(), &["--config", config], &[]);
    assert_eq!(c.post("from-file", r#"{"records": []}"#).0, StatusCode::OK);
    drop(c);
    // The environment overrides the file.
    let c = Collector::start_with(
        dir.path(),
        &["--config", config],
        &[("ACP_INGEST_TOKEN", "from-env")],
    );
    assert_eq!(
        c.post("from-file", r#"{"records": []}"#).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(c.post("from-env", r#"{"records": []}"#).0, StatusCode::OK);
    drop(c);

    // Without a token the service does not start, and says why.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("audit.db"))
        .env_remove("ACP_INGEST_TOKEN")
        .env_remove("ACP_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingest token is required"));
}

/// Runs `acp-collector <args> --db <db>`; returns whether it succeeded, stdout and stderr.
fn run(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The verifier key that `key show` publishes.
fn public_key(db: &Path) -> String {
    let (ok, out, err) = run(db, &["key", "show"]);
    assert!(ok, "{err}");
    out.trim().to_owned()
}

/// `verify --public-key <the collector's key>`: success and stdout.
fn verify(db: &Path) -> (bool, String) {
    let (ok, out, err) = run(db, &["verify", "--public-key", &public_key(db)]);
    assert!(err.contains("records/s"), "{err}");
    (ok, out)
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().into()
}

/// A copy of `db` changed by `sql`, as someone with write access to the file could.
fn tampered(db: &Path, name: &str, sql: &str) -> PathBuf {
    let copy = db.with_file_name(name);
    std::fs::copy(db, &copy).unwrap();
    std::fs::copy(
        db.with_extension("db.signing-key"),
        copy.with_extension("db.signing-key"),
    )
    .unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER records_no_update; DROP TRIGGER records_no_delete;
         DROP TRIGGER expiries_no_delete; DROP INDEX records_tseq; {sql}"
    ))
    .unwrap();
    copy
}

#[test]
fn verify_names_the_altered_removed_or_inserted_record() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start(dir.path());
    let acme: Vec<Value> = (0..10)
        .map(|i| record(&format!("r{i}"), &format!("2026-03-15T10:00:0{i}.000Z")))
        .collect();
    c.ingest(&acme[..6]);
    c.ingest(&acme[6..]);
    let mut other = record("g0", "2026-03-15T10:00:00.000Z");
    other["tenantId"] = json!(GLOBEX);
    c.ingest(&[other]);
    // Stopping signs a checkpoint of every tree that grew.
    let db = c.db.clone();
    assert!(c.terminate().success());

    let (ok, out) = verify(&db);
    assert!(ok, "{out}");
    assert!(
        out.contains("org_acme_corp: ok: 10 records, 1 checkpoints (latest covers 10 of 10), 0 policy versions"),
        "{out}"
    );
    assert!(out.contains("org_globex: ok: 1 records"), "{out}");

    let seq_of = |id: &str| format!("(SELECT tseq FROM records WHERE id = '{id}')");
    for (name, sql, expected) in [
        (
            "altered.db",
            "UPDATE records SET json = replace(json, 'alice', 'mallory') WHERE id = 'r4'"
                .to_owned(),
            "org_acme_corp: FAILED: record seq 4 (id \"r4\") was altered: its bytes no longer \
             match its leaf hash",
        ),
        (
            "removed.db",
            "DELETE FROM records WHERE id = 'r6'".to_owned(),
            "org_acme_corp: FAILED: 1 record removed: seq 6..6 is missing (the next record \
             present is seq 7, id \"r7\")",
        ),
        (
            "removed-last.db",
            "DELETE FROM records WHERE id = 'r9'".to_owned(),
            "org_acme_corp: FAILED: 1 record removed: the checkpoint of tree size 10 covers 10 \
             records but the store ends before seq 9",
        ),
        (
            "inserted.db",
            "INSERT INTO records (id, tenant, ts, result, event, json, tseq, hashes)
             SELECT 'forged', tenant, ts, result, event, replace(json, '\"r3\"', '\"forged\"'),
             tseq, hashes FROM records WHERE id = 'r3'"
                .to_owned(),
            "org_acme_corp: FAILED: record seq 3 (id \"forged\") was inserted: another record \
             already has seq 3",
        ),
        (
            "renumbered.db",
            format!(
                "UPDATE records SET tseq = tseq + 1 WHERE tseq >= {}",
                seq_of("r8")
            ),
            "org_acme_corp: FAILED: 1 record removed: seq 8..8 is missing",
        ),
        (
            "moved.db",
            format!("UPDATE records SET tenant = '{GLOBEX}' WHERE id = 'r0'"),
            "org_acme_corp: FAILED: 1 record removed: seq 0..0 is missing",
        ),
    ] {
        let copy = tampered(&db, name, &sql);
        let (ok, out) = verify(&copy);
        assert!(!ok, "{name}: {out}");
        assert!(out.contains(expected), "{name}: {out}");
        assert!(out.contains("org_globex: "), "{name}: {out}");
    }
    let copy = tampered(
        &db,
        "moved-too.db",
        &format!("UPDATE records SET tenant = '{GLOBEX}' WHERE id = 'r0'"),
    );
    let (_, out) = verify(&copy);
    assert!(
        out.contains("org_globex: FAILED: record seq 0 (id \"r0\") was altered: its id or tenant column (\"org_globex\") differs"),
        "{out}"
    );

    // The altered record's stored hashes recomputed as well (seq 8 holds its leaf hash, seq 9
    // the hash over both): only the signed checkpoint gives it away.
    let copy = tampered(&db, "rehashed.db", "");
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let json_of = |id: &str| -> String {
        conn.query_row("SELECT json FROM records WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    };
    let altered = json_of("r8").replace("alice", "mallory");
    let leaf8 = sha256(&[&[0], altered.as_bytes()]);
    let leaf9 = sha256(&[&[0], json_of("r9").as_bytes()]);
    let node = sha256(&[&[1], &leaf8, &leaf9]);
    conn.execute(
        "UPDATE records SET json = ?1, hashes = ?2 WHERE id = 'r8'",
        rusqlite::params![altered, leaf8.to_vec()],
    )
    .unwrap();
    conn.execute(
        "UPDATE records SET hashes = ?1 WHERE id = 'r9'",
        [[leaf9, node].concat()],
    )
    .unwrap();
    drop(conn);
    let (ok, out) = verify(&copy);
    assert!(!ok);
    assert!(
        out.contains(
            "org_acme_corp: FAILED: the checkpoint of tree size 10 does not match the \
                      records: a record before seq 10 was altered"
        ),
        "{out}"
    );

    // Signatures count only with a trusted key.
    let other = dir.path().join("other.key");
    let (ok, stranger, _) = run(
        &db,
        &["key", "show", "--signing-key", other.to_str().unwrap()],
    );
    assert!(ok);
    let (ok, out, _) = run(&db, &["verify", "--public-key", stranger.trim()]);
    assert!(!ok);
    assert!(
        out.contains("org_acme_corp: FAILED: the checkpoint of tree size 10: not signed by any trusted public key"),
        "{out}"
    );
}

/// `verify-proof <file> --public-key <key>`: success and stdout or stderr.
fn verify_proof(db: &Path, export: &str, key: &str) -> (bool, String) {
    let file = db.with_file_name("export.json");
    std::fs::write(&file, export).unwrap();
    let (ok, out, err) = run(
        db,
        &["verify-proof", file.to_str().unwrap(), "--public-key", key],
    );
    (ok, out + &err)
}

/// The base64 root hash of the checkpoint note `note`.
fn root_of(note: &str) -> String {
    note.lines().nth(2).unwrap().to_owned()
}

#[test]
fn exports_carry_inclusion_proofs_that_verify_offline() {
    let dir = TempDir::new().unwrap();
    // A checkpoint as soon as a tree grows.
    let c = Collector::start_with(
        dir.path(),
        &["--ingest-token", TOKEN, "--checkpoint-records", "1"],
        &[],
    );
    let key = create_key(&c.db, ACME);
    let records: Vec<Value> = (0..7)
        .map(|i| record(&format!("p{i}"), &format!("2026-03-15T10:00:0{i}.000Z")))
        .collect();
    c.ingest(&records[..3]);
    c.ingest(&records[3..]);

    let published = c
        .http
        .get(format!("{}/v1/signing-keys", c.base))
        .send()
        .unwrap();
    assert_eq!(published.status(), StatusCode::OK);
    let published = published.text().unwrap();
    assert_eq!(published.trim(), public_key(&c.db));

    let latest: Value = c
        .get(&key, &format!("/{ACME}/api/v1/checkpoints/latest"))
        .json()
        .unwrap();
    assert_eq!(latest["treeSize"], 7);
    let note = latest["note"].as_str().unwrap();
    assert!(
        note.starts_with("acp-collector/org_acme_corp\n7\n"),
        "{note}"
    );
    assert_eq!(latest["rootHash"], root_of(note));

    // A JSON page: records as stored plus a proof each.
    let page = c
        .get(&key, &format!("/{ACME}/api/v1/audit?limit=3&proof=true"))
        .text()
        .unwrap();
    let parsed: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(parsed["records"].as_array().unwrap()[..], records[..3]);
    assert_eq!(parsed["proofs"][2]["seq"], 2);
    assert_eq!(parsed["proofs"][2]["treeSize"], 7);
    let (ok, out) = verify_proof(&c.db, &page, published.trim());
    assert!(ok, "{out}");
    assert!(
        out.contains("ok: 3 records of org_acme_corp are in the checkpoint of tree size 7"),
        "{out}"
    );

    // The whole range as NDJSON.
    let ndjson = c
        .get(
            &key,
            &format!("/{ACME}/api/v1/audit?format=ndjson&proof=true"),
        )
        .text()
        .unwrap();
    assert_eq!(ndjson.lines().count(), 8);
    let (ok, out) = verify_proof(&c.db, &ndjson, published.trim());
    assert!(ok, "{out}");
    assert!(out.contains("ok: 7 records"), "{out}");

    // An altered record, a wrong key, a checkpoint of another tenant's log fail.
    let mut lines: Vec<String> = ndjson.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replace("alice@acme.com", "mallory@acme.com");
    let altered = lines.join("\n");
    let (ok, out) = verify_proof(&c.db, &altered, published.trim());
    assert!(!ok);
    assert!(
        out.contains("record seq 2: its bytes are not in the checkpoint's tree"),
        "{out}"
    );
    let other = dir.path().join("other.key");
    let (_, stranger, _) = run(
        &c.db,
        &["key", "show", "--signing-key", other.to_str().unwrap()],
    );
    let (ok, out) = verify_proof(&c.db, &ndjson, stranger.trim());
    assert!(!ok);
    assert!(
        out.contains("not signed by any trusted public key"),
        "{out}"
    );

    // Consistency between the tree of 3 and that of 7, against both signed roots.
    let proof: Value = c
        .get(
            &key,
            &format!("/{ACME}/api/v1/checkpoints/consistency?from=3&to=7"),
        )
        .json()
        .unwrap();
    let conn = rusqlite::Connection::open(&c.db).unwrap();
    let old_note: String = conn
        .query_row(
            "SELECT note FROM checkpoints WHERE tenant = ?1 AND tree_size = 3",
            [ACME],
            |r| r.get(0),
        )
        .unwrap();
    let hash = |b64: &str| tlog_tiles::tlog::Hash::parse_hash(b64).unwrap();
    let path: Vec<_> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect();
    let (old_root, new_root) = (hash(&root_of(&old_note)), hash(&root_of(note)));
    assert!(tlog_tiles::tlog::check_tree(&path, 7, new_root, 3, old_root).is_ok());
    assert!(tlog_tiles::tlog::check_tree(&path, 7, old_root, 3, new_root).is_err());

    for (query, status) in [
        ("audit?proof=true&format=csv", StatusCode::BAD_REQUEST),
        ("checkpoints/consistency?from=0", StatusCode::BAD_REQUEST),
        (
            "checkpoints/consistency?from=3&to=8",
            StatusCode::BAD_REQUEST,
        ),
        ("checkpoints/consistency?to=3", StatusCode::BAD_REQUEST),
        ("checkpoints/consistency?from=x", StatusCode::BAD_REQUEST),
    ] {
        let r = c.get(&key, &format!("/{ACME}/api/v1/{query}"));
        assert_eq!(r.status(), status, "{query}");
        let body: Value = r.json().unwrap();
        assert!(!body["error"].as_str().unwrap().is_empty(), "{query}");
    }
    let r = c.get(&key, &format!("/{GLOBEX}/api/v1/checkpoints/latest"));
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c.get("gsk_unknown", &format!("/{ACME}/api/v1/checkpoints/latest"));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Polls `query` (one integer) on the database until it is `want`; at most 30 s.
fn wait_for(db: &Path, query: &str, want: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: i64 = conn.query_row(query, [], |r| r.get(0)).unwrap();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: {got}, expected {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn retention_removes_old_records_and_verify_explains_the_gap() {
    let dir = TempDir::new().unwrap();
    let args = [
        "--ingest-token",
        TOKEN,
        "--checkpoint-interval",
        "1",
        "--tenant-retention-days",
        "org_acme_corp=30, org_globex=0",
    ];
    let c = Collector::start_with(dir.path(), &args, &[]);
    let key = create_key(&c.db, ACME);
    let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut records: Vec<Value> = (0..5)
        .map(|i| {
            record(
                &format!("old{i}"),
                &format!("2025-01-0{}T00:00:00.000Z", i + 1),
            )
        })
        .collect();
    records.extend((0..3).map(|i| record(&format!("new{i}"), &now())));
    c.ingest(&records);
    let mut kept = record("globex-old", "2025-01-01T00:00:00.000Z");
    kept["tenantId"] = json!(GLOBEX);
    c.ingest(&[kept]);

    wait_for(&c.db, "SELECT COUNT(*) FROM expiries", 1);
    assert_eq!(ids(&c.export(&key, ACME, "")), ["new0", "new1", "new2"]);
    c.ingest(&[record("new3", &now()), record("new4", &now())]);
    wait_for(
        &c.db,
        "SELECT MAX(tree_size) FROM checkpoints WHERE tenant = 'org_acme_corp'",
        10,
    );

    // Proofs of the records kept go through the hashes the expiry note keeps.
    let ndjson = c
        .get(
            &key,
            &format!("/{ACME}/api/v1/audit?format=ndjson&proof=true"),
        )
        .text()
        .unwrap();
    let (ok, out) = verify_proof(&c.db, &ndjson, &public_key(&c.db));
    assert!(ok, "{out}");
    assert!(out.contains("ok: 5 records"), "{out}");
    let gone = c.get(
        &key,
        &format!("/{ACME}/api/v1/checkpoints/consistency?from=2"),
    );
    assert_eq!(gone.status(), StatusCode::GONE);
    let r = c.get(
        &key,
        &format!("/{ACME}/api/v1/checkpoints/consistency?from=5&to=10"),
    );
    assert_eq!(r.status(), StatusCode::OK);

    // Records not covered by an expiry note stay undeletable.
    let conn = rusqlite::Connection::open(&c.db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let err = conn
        .execute("DELETE FROM records WHERE id = 'new0'", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    drop(conn);
    let db = c.db.clone();
    assert!(c.terminate().success());

    // The tree goes on after a restart.
    let c = Collector::start_with(dir.path(), &args, &[]);
    c.ingest(&[record("new5", &now())]);
    assert!(c.terminate().success());
    let (ok, out) = verify(&db);
    assert!(ok, "{out}");
    assert!(
        out.contains("org_acme_corp: ok: 6 records, seq 0..4 expired (1 expiry notes)"),
        "{out}"
    );
    assert!(out.contains("(latest covers 11 of 11)"), "{out}");
    assert!(out.contains("org_globex: ok: 1 records,"), "{out}");

    // Without its expiry note, the gap is unexplained.
    let copy = tampered(&db, "no-expiry.db", "DELETE FROM expiries");
    let (ok, out) = verify(&copy);
    assert!(!ok);
    assert!(
        out.contains(
            "org_acme_corp: FAILED: 5 records removed: seq 0..4 is missing (the next \
                      record present is seq 5, id \"new0\")"
        ),
        "{out}"
    );
}

/// A schema of its own on the PostgreSQL server of `ACP_TEST_POSTGRES_URL` (which
/// `tests/pg/with-postgres.sh` provides); dropped at the end.
struct PgSchema {
    server: String,
    name: String,
    /// `--database-url` of the schema.
    url: String,
}

impl PgSchema {
    fn new() -> Option<PgSchema> {
        let server = std::env::var("ACP_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let Some(server) = server else {
            eprintln!("skipped: ACP_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("acp_e2e_{:016x}", rand::random::<u64>());
        let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-csearch_path%3D{name}");
        Some(PgSchema { server, name, url })
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
        }
    }
}

#[test]
fn replicas_share_one_postgresql_database() {
    let Some(pg) = PgSchema::new() else { return };
    let dirs = [TempDir::new().unwrap(), TempDir::new().unwrap()];
    let flags = [
        "--ingest-token",
        TOKEN,
        "--database-url",
        &pg.url,
        "--checkpoint-records",
        "40",
    ];
    let replicas: Vec<Collector> = dirs
        .iter()
        .map(|d| Collector::start_with(d.path(), &flags, &[]))
        .collect();
    // Each replica: 3 clients × 20 batches × 25 records over two tenants. Every fifth record
    // (by number) has the same id on both replicas; the others are the replica's own.
    let accepted: u64 = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..2)
            .flat_map(|r| (0..3).map(move |t| (r, t)))
            .map(|(r, t)| {
                let replica = &replicas[r];
                scope.spawn(move || {
                    let mut accepted = 0;
                    for b in 0..20 {
                        let batch: Vec<Value> = (0..25)
                            .map(|i| {
                                let n = (t * 20 + b) * 25 + i;
                                let id = match n % 5 {
                                    0 => format!("shared-{n}"),
                                    _ => format!("r{r}-{n}"),
                                };
                                let mut rec = record(&id, "2026-03-15T10:00:00.000Z");
                                rec["tenantId"] = [ACME, GLOBEX][n % 2].into();
                                rec
                            })
                            .collect();
                        accepted += replica.ingest(&batch)["accepted"].as_u64().unwrap();
                    }
                    accepted
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum()
    });
    assert_eq!(
        accepted, 2700,
        "300 shared ids stored once, 2 × 1200 own ids"
    );

    let mut client = pg.client();
    for tenant in [ACME, GLOBEX] {
        let row = client
            .query_one(
                "SELECT COUNT(*), COUNT(DISTINCT id), MIN(tseq), MAX(tseq) FROM records
                 WHERE tenant = $1",
                &[&tenant],
            )
            .unwrap();
        let (count, ids, min, max): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            (count, ids, min, max),
            (1350, 1350, 0, 1349),
            "{tenant}: gapless tseq"
        );
    }
    // Keys made through either replica's database work on both.
    let db = dirs[0].path().join("audit.db");
    let (ok, key, err) = run(
        &db,
        &[
            "apikey",
            "create",
            "--tenant",
            ACME,
            "--database-url",
            &pg.url,
        ],
    );
    assert!(ok, "{err}");
    for replica in &replicas {
        assert_eq!(replica.export(key.trim(), ACME, "").len(), 1350);
    }
    for replica in replicas {
        assert!(replica.terminate().success());
    }

    // Checkpoints of both replicas, each signed with its own key, describe one tree.
    let keys: Vec<String> = dirs
        .iter()
        .map(|d| public_key(&d.path().join("audit.db")))
        .collect();
    let verify = || {
        let mut args = vec!["verify", "--database-url", &pg.url];
        for key in &keys {
            args.extend(["--public-key", key.as_str()]);
        }
        run(&db, &args)
    };
    let (ok, out, err) = verify();
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("{ACME}: ok: 1350 records")), "{out}");
    assert!(out.contains("(latest covers 1350 of 1350)"), "{out}");

    client
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE records SET json = replace(json, 'salesforce', 'SALESF0RCE')
             WHERE tenant = '{GLOBEX}' AND tseq = 7"
        ))
        .unwrap();
    let (ok, out, _) = verify();
    assert!(!ok);
    assert!(out.contains(&format!("{ACME}: ok")), "{out}");
    assert!(
        out.contains(&format!("{GLOBEX}: FAILED: record seq 7")) && out.contains("was altered"),
        "{out}"
    );
}

/// A SIEM receiver on loopback (`json` format), slow to answer: keeps the event ids of every
/// request it accepts. [`Receiver::down`] closes its port until [`Receiver::up`] opens it again.
struct Receiver {
    runtime: tokio::runtime::Runtime,
    port: u16,
    ids: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Receiver {
    fn start() -> Receiver {
        let mut receiver = Receiver {
            runtime: tokio::runtime::Runtime::new().unwrap(),
            port: 0,
            ids: Default::default(),
            stop: None,
        };
        receiver.up();
        receiver
    }

    fn up(&mut self) {
        let ids = self.ids.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| async move {
                // A SIEM takes its time: both replicas poll while a batch is in flight.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let events = body["events"].as_array().unwrap();
                let mut ids = ids.lock().unwrap();
                ids.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            }),
        );
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .unwrap();
        self.port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = self.runtime.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        self.stop = Some((stop, server));
    }

    fn down(&mut self) {
        let (stop, server) = self.stop.take().unwrap();
        stop.send(()).unwrap();
        self.runtime.block_on(server).unwrap();
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

/// Polls `check` until it holds; gives up after a minute.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never so: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ingests `count` records numbered from `first` through both replicas, two clients each.
fn ingest_through(replicas: &[Collector], first: usize, count: usize) -> Vec<String> {
    let ids: Vec<String> = (first..first + count).map(|n| format!("rec-{n}")).collect();
    std::thread::scope(|scope| {
        for (i, chunk) in ids.chunks(count / 4).enumerate() {
            let replica = &replicas[i % replicas.len()];
            scope.spawn(move || {
                for batch in chunk.chunks(10) {
                    let records: Vec<Value> = batch
                        .iter()
                        .map(|id| record(id, "2026-03-15T10:00:00.000Z"))
                        .collect();
                    replica.ingest(&records);
                }
            });
        }
    });
    ids
}

#[test]
fn replicas_deliver_each_webhook_batch_once() {
    let Some(pg) = PgSchema::new() else { return };
    let mut receiver = Receiver::start();
    let dirs = [TempDir::new().unwrap(), TempDir::new().unwrap()];
    let allow = ["--webhook-allow-cidrs", "127.0.0.1/32"];
    let mut flags = vec!["--ingest-token", TOKEN, "--database-url", &pg.url];
    flags.extend(allow);
    flags.extend([
        "--webhook-retry-initial-ms",
        "50",
        "--webhook-retry-max-ms",
        "200",
    ]);
    let replicas: Vec<Collector> = dirs
        .iter()
        .map(|d| Collector::start_with(d.path(), &flags, &[]))
        .collect();
    // Made with the CLI on the shared database, read back through the other replica's API.
    let db = dirs[0].path().join("audit.db");
    let url = receiver.url();
    let mut create = vec!["webhook", "create", "--tenant", ACME, "--url", &url];
    create.extend([
        "--events",
        "tool.call",
        "--max-events",
        "20",
        "--max-wait-ms",
        "20",
    ]);
    create.extend(["--database-url", &pg.url]);
    create.extend(allow);
    let (ok, out, err) = run(&db, &create);
    assert!(ok, "{err}");
    let hook: Value = serde_json::from_str(&out).unwrap();
    let (ok, key, err) = run(
        &db,
        &[
            "apikey",
            "create",
            "--tenant",
            ACME,
            "--database-url",
            &pg.url,
        ],
    );
    assert!(ok, "{err}");
    let show = |replica: &Collector| -> Value {
        let path = format!("/{ACME}/api/v1/webhooks/{}", hook["id"].as_str().unwrap());
        let r = replica.get(key.trim(), &path);
        assert_eq!(r.status(), StatusCode::OK);
        r.json().unwrap()
    };
    assert_eq!(show(&replicas[1])["url"], url);

    // Receiver up: every record arrives, and none twice.
    let mut sent = ingest_through(&replicas, 0, 400);
    eventually("400 records delivered", || receiver.ids().len() >= 400);
    eventually("the cursor is at the end", || {
        show(&replicas[0])["lag"] == 0
    });
    let mut got = receiver.ids();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "each record once");

    // Receiver down: deliveries fail and are retried until it is back.
    receiver.down();
    let more = ingest_through(&replicas, 400, 200);
    eventually("a failed attempt", || {
        show(&replicas[1])["consecutiveFailures"].as_u64() > Some(0)
    });
    receiver.up();
    eventually("600 records delivered", || {
        let got: std::collections::HashSet<String> = receiver.ids().into_iter().collect();
        sent.iter().chain(&more).all(|id| got.contains(id))
    });
    eventually("delivered and caught up", || {
        let view = show(&replicas[0]);
        view["lag"] == 0 && view["consecutiveFailures"] == 0 && view["deliveredSeq"] == 600
    });
}

/// The value of one series (name with its labels, exactly as exposed) in `/metrics` text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

#[test]
fn metrics_count_ingest_export_and_key_failures_and_readyz_checks_the_store() {
    let dir = TempDir::new().unwrap();
    let c = Collector::start_with(
        dir.path(),
        &["--ingest-token", TOKEN, "--checkpoint-records", "2"],
        &[],
    );
    let key = create_key(&c.db, ACME);
    c.ingest(&[
        record("m1", "2026-03-15T14:23:07.142Z"),
        record("m2", "2026-03-15T14:23:08.142Z"),
    ]);
    let body = c.ingest(&[record("m1", "2026-03-15T14:23:07.142Z")]);
    assert_eq!(body["duplicates"], 1);
    let mut bad_time = record("m4", "2026-03-15T14:23:07.142Z");
    bad_time["timestamp"] = json!("yesterday");
    let batch = json!({"records": [record("m3", "2026-03-15T14:23:09.142Z"), bad_time]});
    let (status, _) = c.post(TOKEN, batch.to_string());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = c.post("wrong-token", batch.to_string());
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for format in ["json", "csv"] {
        let r = c.get(&key, &format!("/{ACME}/api/v1/audit?format={format}"));
        assert_eq!(r.status(), StatusCode::OK, "{format}");
        r.bytes().unwrap();
    }
    let path = format!("/{ACME}/api/v1/audit");
    assert_eq!(
        c.get("gsk_not_a_key", &path).status(),
        StatusCode::UNAUTHORIZED
    );

    let r = c.http.get(format!("{}/metrics", c.base)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let text = r.text().unwrap();
    let value =
        |series: &str| metric(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    let tree = format!("acp_collector_tree_size{{tenant=\"{ACME}\"}}");
    let checkpointed = format!("acp_collector_checkpoint_tree_size{{tenant=\"{ACME}\"}}");
    for (series, want) in [
        (
            "acp_collector_ingest_records_total{outcome=\"accepted\"}",
            3.0,
        ),
        (
            "acp_collector_ingest_records_total{outcome=\"duplicate\"}",
            1.0,
        ),
        (
            "acp_collector_ingest_records_total{outcome=\"rejected\"}",
            1.0,
        ),
        ("acp_collector_ingest_requests_total{code=\"200\"}", 2.0),
        ("acp_collector_ingest_requests_total{code=\"422\"}", 1.0),
        ("acp_collector_ingest_requests_total{code=\"401\"}", 1.0),
        ("acp_collector_ingest_batch_duration_seconds_count", 4.0),
        (
            "acp_collector_ingest_batch_duration_seconds_bucket{le=\"+Inf\"}",
            4.0,
        ),
        ("acp_collector_writer_commit_duration_seconds_count", 3.0),
        ("acp_collector_writer_commit_failures_total", 0.0),
        (
            "acp_collector_export_requests_total{format=\"json\",code=\"200\"}",
            1.0,
        ),
        (
            "acp_collector_export_requests_total{format=\"csv\",code=\"200\"}",
            1.0,
        ),
        (
            "acp_collector_export_requests_total{format=\"json\",code=\"401\"}",
            1.0,
        ),
        (
            "acp_collector_auth_failures_total{credential=\"api_key\",reason=\"invalid\"}",
            1.0,
        ),
        (
            "acp_collector_auth_failures_total{credential=\"ingest_token\",reason=\"invalid\"}",
            1.0,
        ),
        (
            "acp_collector_webhook_deliveries_total{outcome=\"failed\"}",
            0.0,
        ),
        ("acp_collector_writer_queue_depth", 0.0),
        ("acp_collector_writer_queue_capacity", 256.0),
        ("acp_collector_writer_up", 1.0),
        ("acp_collector_store_up", 1.0),
        ("acp_collector_checkpoint_interval_seconds", 60.0),
        (tree.as_str(), 3.0),
        // A checkpoint every 2 records: the latest covers the first two.
        (checkpointed.as_str(), 2.0),
    ] {
        assert_eq!(value(series), want, "{series}");
    }
    let age = value(&format!(
        "acp_collector_checkpoint_age_seconds{{tenant=\"{ACME}\"}}"
    ));
    assert!((0.0..60.0).contains(&age), "{age}");
    for family in [
        "# TYPE acp_collector_ingest_batch_duration_seconds histogram",
        "# TYPE acp_collector_writer_commit_duration_seconds histogram",
        "# UNIT acp_collector_checkpoint_age_seconds seconds",
    ] {
        assert!(text.contains(family), "{family}");
    }
    assert!(text.ends_with("# EOF\n"));

    // A webhook to a closed port, made after those records: nothing to send, until one more
    // record, whose deliveries then fail.
    let url = "http://127.0.0.1:1/hook";
    let create = [
        "webhook",
        "create",
        "--tenant",
        ACME,
        "--url",
        url,
        "--events",
        "tool.call",
        "--webhook-allow-cidrs",
        "127.0.0.1/32",
    ];
    let (ok, out, err) = run(&c.db, &create);
    assert!(ok, "{err}");
    let hook: Value = serde_json::from_str(&out).unwrap();
    let endpoint = format!(
        "{{tenant=\"{ACME}\",webhook=\"{}\"}}",
        hook["id"].as_str().unwrap()
    );
    let scrape = || {
        c.http
            .get(format!("{}/metrics", c.base))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let text = scrape();
    let lag = format!("acp_collector_webhook_lag_records{endpoint}");
    let failures = format!("acp_collector_webhook_consecutive_failures{endpoint}");
    let disabled = format!("acp_collector_webhooks_disabled{{tenant=\"{ACME}\"}}");
    assert_eq!(metric(&text, &lag), Some(0.0), "{text}");
    assert_eq!(metric(&text, &failures), Some(0.0), "{text}");
    assert_eq!(metric(&text, &disabled), Some(0.0), "{text}");
    c.ingest(&[record("m5", "2026-03-15T14:23:10.142Z")]);
    eventually("a failed delivery", || {
        let text = scrape();
        metric(&text, &lag) == Some(1.0)
            && metric(&text, &failures) >= Some(1.0)
            && metric(
                &text,
                "acp_collector_webhook_deliveries_total{outcome=\"failed\"}",
            ) >= Some(1.0)
    });

    let readyz = |status: StatusCode| {
        let r = c.http.get(format!("{}/readyz", c.base)).send().unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.text().unwrap()
    };
    assert_eq!(readyz(StatusCode::OK), "ok");
    // Without its file the store cannot be opened for reading: not ready, yet alive, and
    // /metrics still answers with the service's own counters.
    let moved = dir.path().join("moved.db");
    std::fs::rename(&c.db, &moved).unwrap();
    let body: Value = serde_json::from_str(&readyz(StatusCode::SERVICE_UNAVAILABLE)).unwrap();
    assert_eq!(body["ready"], false, "{body}");
    assert_ne!(body["checks"]["store"], "ok", "{body}");
    assert_eq!(body["checks"]["writer"], "ok", "{body}");
    assert_eq!(body["checks"]["signing_key"], "ok", "{body}");
    let r = c.http.get(format!("{}/healthz", c.base)).send().unwrap();
    assert_eq!(r.text().unwrap(), "ok");
    let text = scrape();
    assert_eq!(metric(&text, "acp_collector_store_up"), Some(0.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "acp_collector_ingest_records_total{outcome=\"accepted\"}"
        ),
        Some(4.0)
    );
    assert_eq!(metric(&text, &lag), None, "{text}");
    std::fs::rename(&moved, &c.db).unwrap();
    assert_eq!(readyz(StatusCode::OK), "ok");
}
