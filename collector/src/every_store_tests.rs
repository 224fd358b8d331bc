//! The ledger, writer, export query, stats, checkpoints, policy versions, evidence and verify on
//! every store (SQLite always, PostgreSQL when `ACP_TEST_POSTGRES_URL` is set), and several
//! writers on one PostgreSQL database.

use std::collections::BTreeMap;

use acp_record::AuditRecord;
use serde_json::json;

use crate::export::stats::{self, StatsQuery};
use crate::ledger::checkpoints;
use crate::ledger::signing::{SigningKey, Verifiers};
use crate::ledger::writer::{Stored, Writer};
use crate::ledger::{Ledger, Policy};
use crate::policies;
use crate::store::records::{self, Filter, NewRecord};
use crate::store::testing::TestDatabase;
use crate::store::{Conn, ConnExt, Store};

const LOG: &str = "acp-test";
const DAY_MS: i64 = 86_400_000;

pub(crate) fn record(id: &str, tenant: &str, second: u32) -> NewRecord {
    new_record(value(id, tenant, second))
}

fn value(id: &str, tenant: &str, second: u32) -> serde_json::Value {
    let timestamp = format!("2026-03-15T10:{:02}:{:02}.000Z", second / 60, second % 60);
    let mut value = records::tests::sample(id, &timestamp);
    value["tenantId"] = tenant.into();
    value
}

/// A `tool.denied` record for lack of a scope.
fn denied(id: &str, tenant: &str, second: u32) -> NewRecord {
    let mut value = value(id, tenant, second);
    for (name, v) in [
        ("event", json!("tool.denied")),
        ("result", json!("denied")),
        ("reason", json!("insufficient_scope")),
        ("scopes", json!([])),
        ("scopeResult", json!("fail")),
    ] {
        value[name] = v;
    }
    new_record(value)
}

fn new_record(value: serde_json::Value) -> NewRecord {
    let record: AuditRecord = serde_json::from_value(value).unwrap();
    let ts = record.timestamp_millis().unwrap();
    NewRecord::new(record, ts).unwrap()
}

/// A writer thread on `test`'s database signing with its own key (file `name` in the test
/// directory).
pub(crate) fn writer(
    test: &TestDatabase,
    name: &str,
) -> (Writer, std::thread::JoinHandle<()>, String) {
    writer_on(test, &test.database, name)
}

/// [`writer`] through `db`, another handle on `test`'s database.
pub(crate) fn writer_on(
    test: &TestDatabase,
    db: &Store,
    name: &str,
) -> (Writer, std::thread::JoinHandle<()>, String) {
    let key = SigningKey::load_or_create(&test.dir.path().join(name), LOG).unwrap();
    let vkey = key.vkey().to_owned();
    let policy = Policy {
        log_name: LOG.into(),
        checkpoint_records: 5,
        retention_days: 0,
        tenant_retention_days: BTreeMap::new(),
    };
    let conn = db.write().unwrap();
    let ledger = Ledger::load(&*conn, key, policy, 0).unwrap();
    let (writer, thread) = Writer::start(db.clone(), conn, ledger, Default::default()).unwrap();
    (writer, thread, vkey)
}

/// The tree sizes of `tenant`'s checkpoints, after checking every record and checkpoint.
pub(crate) fn verified(db: &Store, vkeys: &[String], tenant: &str) -> Vec<u64> {
    let conn = db.read().unwrap();
    let trusted = Verifiers::new(vkeys.iter().map(String::as_str)).unwrap();
    crate::verify::verify_tenant(&*conn, &trusted, LOG, tenant).unwrap();
    checkpoints::all(&*conn, tenant)
        .unwrap()
        .iter()
        .map(|c| c.tree_size)
        .collect()
}

/// `tseq` of each of `tenant`'s records in export order, with its id.
pub(crate) fn exported(conn: &dyn Conn, tenant: &str) -> Vec<(u64, String)> {
    let filter = Filter {
        tenant: tenant.into(),
        ..Filter::default()
    };
    let records = records::query_page(conn, &filter, None, 10_000).unwrap();
    let ids = records.iter().map(|r| {
        serde_json::from_str::<serde_json::Value>(&r.json).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    records.iter().map(|r| r.tseq).zip(ids).collect()
}

#[test]
fn the_ledger_stores_checkpoints_and_verifies_on_every_store() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for test in TestDatabase::all() {
        let (writer, thread, vkey) = writer(&test, "key");
        let batch = |ids: std::ops::Range<u32>, tenant: &str| -> Vec<NewRecord> {
            ids.map(|i| record(&format!("{tenant}-{i}"), tenant, i))
                .collect()
        };
        let stored = runtime.block_on(async {
            let mut stored = Vec::new();
            let refused = (0..3).map(|i| denied(&format!("b-{i}"), "b", i)).collect();
            for records in [batch(0..7, "a"), refused, batch(5..12, "a")] {
                stored.push(writer.write(records).await.unwrap());
            }
            writer.tick().await.unwrap();
            stored
        });
        let s = |accepted, duplicates| Stored {
            accepted,
            duplicates,
        };
        assert_eq!(
            stored,
            [s(7, 0), s(3, 0), s(5, 2)],
            "a-5 and a-6 came twice"
        );
        drop(writer);
        thread.join().unwrap();

        let vkeys = [vkey];
        assert_eq!(
            verified(&test.database, &vkeys, "a"),
            [5, 10, 12],
            "by count, then at the tick"
        );
        assert_eq!(verified(&test.database, &vkeys, "b"), [3]);
        let conn = test.database.read().unwrap();
        let trees: Vec<(String, u64, Option<u64>)> = checkpoints::tree_gauges(&*conn)
            .unwrap()
            .into_iter()
            .map(|t| (t.tenant, t.size, t.checkpoint.map(|c| c.0)))
            .collect();
        assert_eq!(
            trees,
            [("a".into(), 12, Some(12)), ("b".into(), 3, Some(3))]
        );
        let a = exported(&*conn, "a");
        assert_eq!(
            a,
            (0..12).map(|i| (i, format!("a-{i}"))).collect::<Vec<_>>()
        );
        assert_eq!(checkpoints::keys(&*conn).unwrap(), vkeys);
        let query = StatsQuery {
            filter: Filter {
                tenant: "b".into(),
                ..Filter::default()
            },
            bucket: None,
        };
        let stats = stats::compute(&*conn, &query).unwrap();
        assert_eq!(stats.total, 3);
        let denials: Vec<(&str, u64)> = stats
            .top_denials
            .iter()
            .map(|c| (c.name.as_str(), c.count))
            .collect();
        assert_eq!(denials, [("insufficient_scope", 3)]);

        let key = SigningKey::load_or_create(&test.dir.path().join("key"), LOG).unwrap();
        let request = crate::evidence::Request {
            tenant: "a".into(),
            from_ms: DAY_MS * 20_527,
            to_ms: DAY_MS * 20_528,
            seed: 7,
            sample: 3,
        };
        let zip = crate::evidence::build(&*conn, &key, LOG, &request).unwrap();
        let bundle = test.dir.path().join("bundle.zip");
        std::fs::write(&bundle, zip).unwrap();
        let checked = crate::evidence::verify::run(&bundle, &vkeys).unwrap();
        assert!(checked.contains("12 records"), "{checked}");

        let conn = test.database.write().unwrap();
        let tenants = ["b".to_owned(), "a".to_owned()];
        let policy = json!({"tools": {"echo": ["a"]}});
        let stored = policies::store::insert(&*conn, &key, LOG, &tenants, &policy, 1).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(
            policies::store::insert(&*conn, &key, LOG, &tenants, &policy, 2)
                .unwrap()
                .is_empty()
        );
        let trusted = Verifiers::new([key.vkey()]).unwrap();
        assert_eq!(
            policies::store::verify_chain(&*conn, &trusted, LOG, "a").unwrap(),
            1
        );
        for sql in [
            "UPDATE records SET tool = 'x'",
            "DELETE FROM records",
            "DELETE FROM checkpoints",
            "DELETE FROM policy_versions",
        ] {
            let err = conn.execute(sql, &[]).unwrap_err();
            assert!(format!("{err:#}").contains("append-only"), "{sql}: {err:#}");
        }
    }
}

/// A record of tenant `c` at `second`, with `fields` set (the correlation fields among them).
fn correlated(id: &str, second: u32, fields: serde_json::Value) -> NewRecord {
    let mut value = value(id, "c", second);
    for (name, v) in fields.as_object().unwrap() {
        value[name] = v.clone();
    }
    new_record(value)
}

/// The ids of the first 100 records `filter` exports, in export order.
fn exported_ids(conn: &dyn Conn, filter: Filter) -> Vec<String> {
    records::query_page(conn, &filter, None, 100)
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.json).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A record as the collector stored it before the correlation fields existed: the canonical
/// JSON of the time, without their keys.
fn earlier(id: &str, second: u32) -> NewRecord {
    let mut record = correlated(id, second, json!({}));
    for field in crate::export::formats::CORRELATION_FIELDS {
        record.json = record.json.replace(&format!(",\"{field}\":null"), "");
    }
    assert!(!record.json.contains("sessionId"), "{}", record.json);
    record
}

#[test]
fn correlation_filters_access_review_and_bundle_on_every_store() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for test in TestDatabase::all() {
        let (writer, thread, vkey) = writer(&test, "key");
        let session = |n: u32| {
            json!({"sessionId": "s-1", "requestId": format!("req-{n}"), "traceId": null,
                   "sourceAddress": "10.0.0.7:51234", "userAgent": "ua/1", "protocolVersion": "2025-06-18"})
        };
        let denied = json!({"sessionId": "s-1", "event": "tool.denied", "result": "denied",
            "reason": "insufficient_scope", "tool": "salesforce.update", "scopeRequired": ["salesforce:write"],
            "scopeResult": "fail", "scopes": ["salesforce:read", "files:admin"]});
        let records = vec![
            earlier("old-1", 0),
            correlated("s-a", 1, session(1)),
            correlated("s-b", 2, denied),
            correlated("s-c", 3, session(3)),
            correlated(
                "t-a",
                4,
                json!({"traceId": "ab".repeat(16), "spanId": "cd".repeat(8),
                "sourceAddress": "10.0.0.9:4000", "clientType": "cursor"}),
            ),
            correlated(
                "t-b",
                5,
                json!({"sessionId": null, "traceId": "ab".repeat(16)}),
            ),
            earlier("old-2", 6),
        ];
        runtime.block_on(async {
            writer.write(records).await.unwrap();
            writer.tick().await.unwrap();
        });
        drop(writer);
        thread.join().unwrap();
        assert_eq!(
            verified(&test.database, std::slice::from_ref(&vkey), "c"),
            [5, 7],
            "earlier records verify"
        );

        let conn = test.database.read().unwrap();
        let ids = |filter: Filter| {
            exported_ids(
                &*conn,
                Filter {
                    tenant: "c".into(),
                    ..filter
                },
            )
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            ids(Filter {
                session: some("s-1"),
                ..Filter::default()
            }),
            ["s-a", "s-b", "s-c"]
        );
        assert_eq!(
            ids(Filter {
                session: some("s-1"),
                result: some("denied"),
                ..Filter::default()
            }),
            ["s-b"],
            "combined with the other filters"
        );
        assert_eq!(
            ids(Filter {
                trace: Some("ab".repeat(16)),
                ..Filter::default()
            }),
            ["t-a", "t-b"]
        );
        assert_eq!(
            ids(Filter {
                request: some("req-3"),
                ..Filter::default()
            }),
            ["s-c"]
        );
        assert_eq!(
            ids(Filter {
                source: some("10.0.0.9:4000"),
                ..Filter::default()
            }),
            ["t-a"]
        );
        assert!(ids(Filter {
            session: some("nope"),
            ..Filter::default()
        })
        .is_empty());
        assert_eq!(ids(Filter::default()).len(), 7, "earlier records export");
        let stats = stats::compute(
            &*conn,
            &StatsQuery {
                filter: Filter {
                    tenant: "c".into(),
                    session: some("s-1"),
                    ..Filter::default()
                },
                bucket: None,
            },
        )
        .unwrap();
        assert_eq!(stats.total, 3);
        assert_eq!(stats.top_denials[0].name, "insufficient_scope");

        // Each filter reads the tenant's records in time order, through the export index
        // (the planner told not to scan the table), with no sort.
        for column in records::CORRELATION_COLUMNS {
            let select = format!("SELECT json FROM records WHERE tenant = 'c' AND {column} = ? ORDER BY ts, seq LIMIT 10");
            let x = [crate::store::Value::from("x")];
            let plan: Vec<String> = match conn.backend() {
                crate::store::Backend::Sqlite => conn
                    .query(&format!("EXPLAIN QUERY PLAN {select}"), &x, |r| r.get(3))
                    .unwrap(),
                crate::store::Backend::Postgres => {
                    conn.execute_batch("SET enable_seqscan = off").unwrap();
                    conn.query(&format!("EXPLAIN {select}"), &x, |r| r.get(0))
                        .unwrap()
                }
            };
            let plan = plan.join("\n");
            assert!(plan.contains("records_export"), "{column}: {plan}");
            assert!(
                !plan.contains("TEMP B-TREE") && !plan.contains("Sort"),
                "{column} needs no sort: {plan}"
            );
        }

        let review =
            crate::evidence::access::load(&*conn, "c", DAY_MS * 20_527, DAY_MS * 20_528).unwrap();
        let alice = &review.users[0];
        assert_eq!(
            alice.usage.unused_scopes,
            std::collections::BTreeSet::from(["files:admin".to_owned()])
        );
        assert_eq!(
            alice.usage.missing_scopes,
            std::collections::BTreeSet::from(["salesforce:write".to_owned()])
        );
        assert_eq!(review.client_types.len(), 2);

        let key = SigningKey::load_or_create(&test.dir.path().join("key"), LOG).unwrap();
        let request = crate::evidence::Request {
            tenant: "c".into(),
            from_ms: DAY_MS * 20_527,
            to_ms: DAY_MS * 20_528,
            seed: 1,
            sample: 2,
        };
        let zip = crate::evidence::build(&*conn, &key, LOG, &request).unwrap();
        let bundle = test.dir.path().join("bundle.zip");
        std::fs::write(&bundle, &zip).unwrap();
        let checked = crate::evidence::verify::run(&bundle, &[vkey]).unwrap();
        assert!(checked.contains("7 records"), "{checked}");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut file = |name: &str| -> serde_json::Value {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut archive.by_name(name).unwrap(), &mut text).unwrap();
            if name.ends_with(".md") {
                serde_json::Value::String(text)
            } else {
                serde_json::from_str(&text).unwrap()
            }
        };
        assert_eq!(
            file("access-review/users.json")[0]["unusedScopes"],
            json!(["files:admin"])
        );
        let types = file("access-review/client-types.json");
        assert_eq!(types[1]["clientType"], "cursor");
        assert_eq!(
            file("controls/CC6.3.json")["summary"]["unusedScopeCandidates"],
            json!({"users": 1, "clientTypes": 1})
        );
        assert!(file("report.md")
            .as_str()
            .unwrap()
            .contains("| user | auth0|alice | files:admin |"));
    }
}

#[test]
fn several_writers_share_one_postgresql_database() {
    let Some(test) = TestDatabase::postgres() else {
        eprintln!(
            "skipped: {} is not set",
            crate::store::testing::POSTGRES_URL_VAR
        );
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let replicas = [writer(&test, "key-1"), writer(&test, "key-2")];
    let tenants = ["t1", "t2", "t3"];
    // Each replica gets 40 batches of 10 records over every tenant; ids 0..100 of each tenant
    // go to both replicas, and each replica has 150 ids of its own per tenant.
    let stored = runtime.block_on(async {
        let sends = replicas.iter().enumerate().flat_map(|(r, (writer, _, _))| {
            (0..40u32).map(move |b| {
                let writer = writer.clone();
                let records: Vec<NewRecord> = (0..10u32)
                    .map(|i| {
                        let n = b * 10 + i;
                        let tenant = tenants[(n % 3) as usize];
                        let id = if n < 100 {
                            format!("{tenant}-shared-{n}")
                        } else {
                            format!("{tenant}-{r}-{n}")
                        };
                        record(&id, tenant, n)
                    })
                    .collect();
                async move { writer.write(records).await.unwrap() }
            })
        });
        let stored: Vec<Stored> = futures_join(sends.collect()).await;
        for (writer, _, _) in &replicas {
            writer.tick().await.unwrap();
        }
        stored
    });
    let accepted: usize = stored.iter().map(|s| s.accepted).sum();
    let duplicates: usize = stored.iter().map(|s| s.duplicates).sum();
    assert_eq!(
        (accepted, duplicates),
        (700, 100),
        "each shared id is stored once"
    );
    let vkeys: Vec<String> = replicas.iter().map(|(_, _, k)| k.clone()).collect();
    for (writer, thread, _) in replicas {
        drop(writer);
        thread.join().unwrap();
    }
    let conn = test.database.read().unwrap();
    let mut recorded = checkpoints::keys(&*conn).unwrap();
    recorded.sort();
    let mut sorted = vkeys.clone();
    sorted.sort();
    assert_eq!(recorded, sorted, "both replicas' keys are recorded");
    let mut total = 0;
    for tenant in tenants {
        let mut seqs: Vec<u64> = exported(&*conn, tenant)
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        seqs.sort();
        assert_eq!(
            seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "{tenant}: gapless"
        );
        total += seqs.len();
        let sizes = verified(&test.database, &vkeys, tenant);
        assert_eq!(
            sizes.last(),
            Some(&(seqs.len() as u64)),
            "{tenant}: the last tick covers all"
        );
    }
    assert_eq!(total, 700);
}

/// Runs every future of `futures` concurrently on the current runtime; their results in order.
pub(crate) async fn futures_join<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// `verify`'s one pass over the SQLite table finds what the per-tenant check in `tseq` order
/// finds, and leaves a tenant with a problem to that check.
#[test]
fn the_one_pass_over_sqlite_agrees_with_the_per_tenant_check() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let test = TestDatabase::sqlite();
    let (writer, thread, vkey) = writer(&test, "key");
    runtime.block_on(async {
        for n in 0..10u32 {
            let records = (0..1000u32)
                .map(|i| {
                    let k = n * 1000 + i;
                    let tenant = if k % 4 == 3 { "b" } else { "a" };
                    record(&format!("r{k}"), tenant, k % 3600)
                })
                .collect();
            writer.write(records).await.unwrap();
        }
        writer.tick().await.unwrap();
    });
    drop(writer);
    thread.join().unwrap();

    let trusted = Verifiers::new([vkey.as_str()]).unwrap();
    let tenants = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let check = |tenant: &str| {
        let conn = test.database.read().unwrap();
        crate::verify::verify_tenant(&*conn, &trusted, LOG, tenant)
    };
    let scan = || {
        let conn = test.database.read().unwrap();
        crate::verify::scan_all(&*conn, &trusted, LOG, &tenants)
    };
    let scanned = scan();
    assert_eq!(scanned[0].as_ref(), Some(&check("a").unwrap()));
    assert_eq!(scanned[1].as_ref(), Some(&check("b").unwrap()));
    assert_eq!(scanned[2].as_ref(), Some(&check("c").unwrap()));

    // A record of `a` altered in the middle of its second block of rows.
    let path = test.dir.path().join("audit.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER records_no_update;
         UPDATE records SET json = replace(json, 'alice', 'mallory')
         WHERE tenant = 'a' AND tseq = 6000",
    )
    .unwrap();
    drop(conn);
    let scanned = scan();
    assert!(scanned[0].is_none());
    assert!(scanned[1].is_some());
    let err = check("a").unwrap_err();
    assert!(
        err.to_string().starts_with("record seq 6000 (id \"r"),
        "{err:#}"
    );
    assert!(err
        .to_string()
        .ends_with("was altered: its bytes no longer match its leaf hash"));
}

/// The `records` table as it was before the correlation columns, holding one record.
const RECORDS_BEFORE_CORRELATION: &str = "
    CREATE TABLE records (seq {seq}, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
        ts BIGINT NOT NULL, sub TEXT, email TEXT, tool TEXT, result TEXT NOT NULL,
        event TEXT NOT NULL, json TEXT NOT NULL, tseq BIGINT NOT NULL, hashes {blob} NOT NULL);
    INSERT INTO records (id, tenant, ts, result, event, json, tseq, hashes)
        VALUES ('old', 'c', 1, 'success', 'tool.call', '{\"id\":\"old\"}', 0, {hashes});";

#[test]
fn an_older_records_table_gets_the_correlation_columns_on_every_store() {
    let sqlite = RECORDS_BEFORE_CORRELATION
        .replace("{seq}", "INTEGER PRIMARY KEY")
        .replace("{blob}", "BLOB")
        .replace("{hashes}", "x'00'");
    let postgres = RECORDS_BEFORE_CORRELATION
        .replace("{seq}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        .replace("{blob}", "BYTEA")
        .replace("{hashes}", "'\\x00'");
    let tests = std::iter::once(TestDatabase::sqlite_after(&sqlite))
        .chain(TestDatabase::postgres_after(&postgres));
    for test in tests {
        let conn = test.database.write().unwrap();
        let new = correlated("new", 2, json!({"sessionId": "s-1", "traceId": "t-1"}));
        records::insert(&*conn, &new, 1, &[0]).unwrap();
        let ids = |filter: Filter| exported_ids(&*conn, filter);
        let tenant = |tenant: &str| Filter {
            tenant: tenant.into(),
            ..Filter::default()
        };
        assert_eq!(ids(tenant("c")), ["old", "new"], "{:?}", conn.backend());
        let in_session = Filter {
            session: Some("s-1".into()),
            ..tenant("c")
        };
        assert_eq!(ids(in_session), ["new"], "{:?}", conn.backend());
    }
}
