//! The webhook tables, event sources and leases on every store (SQLite always, PostgreSQL when
//! `ACP_TEST_POSTGRES_URL` is set).

use std::collections::BTreeSet;

use super::db::{self, Outcome, MAX_PER_TENANT};
use super::events::{Kind, CHECKPOINTS, POLICIES, RECORDS, SOURCES};
use super::formats::Format;
use super::lease::Lease;
use super::spec::{Batch, Spec};
use crate::every_store_tests::{record, writer};
use crate::metrics::WebhookGauges;
use crate::store::testing::TestDatabase;
use crate::store::{Backend, Store};

fn spec(events: &[Kind]) -> Spec {
    Spec {
        url: "https://siem.example/hook".into(),
        events: events.iter().copied().collect::<BTreeSet<_>>(),
        format: Format::Ocsf,
        batch: Batch {
            max_events: 50,
            max_wait_ms: 250,
        },
        hec_token: None,
    }
}

/// Stores records `a-0..a-{n}` of tenant `a` and signs a checkpoint over them.
fn ingest(test: &TestDatabase, n: u32) {
    let (writer, thread, _) = writer(test, "key");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let records = (0..n).map(|i| record(&format!("a-{i}"), "a", i)).collect();
        writer.write(records).await.unwrap();
        writer.tick().await.unwrap();
    });
    drop(writer);
    thread.join().unwrap();
}

#[test]
fn endpoints_cursors_and_status_on_every_store() {
    for test in TestDatabase::all() {
        ingest(&test, 3);
        let conn = test.database.write().unwrap();
        let conn = &*conn;
        let hook = db::create(conn, "a", &spec(&[Kind::ToolCall, Kind::AuditCheckpoint])).unwrap();
        assert!(hook.secret.starts_with("whsec_"), "{}", hook.secret);
        assert_eq!(hook.spec, spec(&[Kind::ToolCall, Kind::AuditCheckpoint]));
        assert!(hook.enabled);
        // New endpoints start at the end of every source.
        let cursors =
            |id: &str| [RECORDS, CHECKPOINTS, POLICIES].map(|s| db::cursor(conn, id, s).unwrap());
        assert_eq!(cursors(&hook.id), [3, 4, 0]);
        let view = db::view(conn, &hook).unwrap();
        assert_eq!((view.delivered_seq, view.lag), (3, 0));
        assert!(!serde_json::to_string(&view).unwrap().contains(&hook.secret));

        // Replay: records from 1 on and the checkpoint covering them are pending again.
        db::replay(conn, &hook.id, 1).unwrap();
        assert_eq!(cursors(&hook.id), [1, 2, 0]);
        assert_eq!(db::view(conn, &hook).unwrap().lag, 3);
        let lag = |gauges: Vec<WebhookGauges>| {
            gauges
                .into_iter()
                .map(|g| g.lag_records)
                .collect::<Vec<_>>()
        };
        assert_eq!(lag(db::gauges(conn).unwrap()), [Some(2)], "records 1 and 2");
        let records = (SOURCES[0].read)(conn, "a", 1, 10).unwrap();
        let ids: Vec<&str> = records.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a-1", "a-2"]);
        assert_eq!(records[0].seq, Some(1));
        assert_eq!(records[0].data["id"], "a-1");
        let checkpoints = (SOURCES[1].read)(conn, "a", 2, 10).unwrap();
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(checkpoints[0].data["treeSize"], 3);
        assert_eq!(
            (SOURCES[0].read)(conn, "a", 1, 1).unwrap().len(),
            1,
            "limit"
        );

        // A cursor moves only from where it is.
        db::advance(conn, &hook.id, RECORDS, 1, 3).unwrap();
        db::advance(conn, &hook.id, RECORDS, 1, 2).unwrap();
        assert_eq!(db::cursor(conn, &hook.id, RECORDS).unwrap(), 3);

        // Attempts: a failure postpones, 410 disables, enable makes it due again.
        let now = chrono::Utc::now().timestamp_millis();
        let due = |at: i64| -> Vec<String> {
            db::due(conn, at)
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect()
        };
        assert_eq!(due(now), [hook.id.as_str()]);
        let failed = Outcome::Failed {
            error: "the receiver answered 503".into(),
            retry_at_ms: now + 60_000,
        };
        db::record_attempt(conn, &hook.id, now, &failed).unwrap();
        db::record_attempt(conn, &hook.id, now, &failed).unwrap();
        let stored = db::find(conn, &hook.id).unwrap().unwrap();
        assert_eq!(
            (
                stored.failures,
                stored.next_attempt_ms,
                stored.last_attempt_ms
            ),
            (2, now + 60_000, Some(now))
        );
        assert!(due(now).is_empty());
        assert_eq!(due(now + 60_000), [hook.id.as_str()]);
        db::record_attempt(conn, &hook.id, now, &Outcome::Delivered).unwrap();
        let stored = db::find(conn, &hook.id).unwrap().unwrap();
        assert_eq!((stored.failures, stored.last_success_ms), (0, Some(now)));
        let gone = Outcome::Disabled {
            reason: "410".into(),
        };
        db::record_attempt(conn, &hook.id, now, &gone).unwrap();
        let stored = db::find(conn, &hook.id).unwrap().unwrap();
        assert!(!stored.enabled);
        assert_eq!(stored.disabled_reason.as_deref(), Some("410"));
        assert_eq!(
            db::gauges(conn).unwrap(),
            [WebhookGauges {
                tenant: "a".into(),
                id: hook.id.clone(),
                enabled: false,
                lag_records: Some(0),
                consecutive_failures: 1,
            }]
        );
        assert!(due(now + 60_000).is_empty());
        assert!(db::enable(conn, &hook.id).unwrap());
        assert_eq!(due(now), [hook.id.as_str()]);

        // Tenants see their own endpoints only; at most MAX_PER_TENANT each.
        assert!(db::get(conn, "b", &hook.id).unwrap().is_none());
        assert_eq!(db::get(conn, "a", &hook.id).unwrap().unwrap().id, hook.id);
        for _ in 1..MAX_PER_TENANT {
            db::create(conn, "a", &spec(&[Kind::PolicyChanged])).unwrap();
        }
        let refused = db::create(conn, "a", &spec(&[Kind::ToolCall])).unwrap_err();
        assert!(refused.to_string().contains("at most"), "{refused}");
        let other = db::create(conn, "b", &spec(&[Kind::ToolDenied])).unwrap();
        assert_eq!(cursors(&other.id), [0, 0, 0], "tenant b has no events yet");
        assert_eq!(db::list(conn, Some("a")).unwrap().len(), MAX_PER_TENANT);
        assert_eq!(
            db::list(conn, Some("b")).unwrap(),
            std::slice::from_ref(&other)
        );
        assert_eq!(db::list(conn, None).unwrap().len(), MAX_PER_TENANT + 1);
        assert_eq!(db::list(conn, None).unwrap()[0].id, hook.id, "oldest first");

        // The evidence bundle's configuration: every column but the credentials.
        let shown = crate::evidence::webhook_configuration(conn, "b")
            .unwrap()
            .unwrap();
        assert_eq!(shown["webhooks"][0]["id"], other.id.as_str());
        assert_eq!(shown["webhooks"][0]["max_events"], 50);
        assert!(shown["webhooks"][0].get("hec_token").is_none(), "{shown}");
        assert!(!shown.to_string().contains(&other.secret), "{shown}");

        assert!(db::delete(conn, &hook.id).unwrap());
        assert!(!db::delete(conn, &hook.id).unwrap());
        assert!(db::find(conn, &hook.id).unwrap().is_none());
        assert_eq!(cursors(&hook.id), [0, 0, 0], "its cursors are gone");
    }
}

#[test]
fn one_replica_at_a_time_holds_an_endpoints_lease() {
    for test in TestDatabase::all() {
        let database: &Store = &test.database;
        let first = Lease::try_acquire(database, "wh_1").unwrap();
        assert!(first.is_some());
        let second = Lease::try_acquire(database, "wh_1").unwrap();
        let other = Lease::try_acquire(database, "wh_2").unwrap();
        assert!(other.is_some(), "each endpoint has its own lease");
        let postgres = database.write().unwrap().backend() == Backend::Postgres;
        // SQLite has one delivering process: its leases are always granted.
        assert_eq!(second.is_none(), postgres);
        drop((first, second));
        assert!(
            Lease::try_acquire(database, "wh_1").unwrap().is_some(),
            "released when dropped"
        );
    }
}
