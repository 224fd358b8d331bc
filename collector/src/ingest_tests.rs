//! What batched ingest risks (ids checked once per transaction, sequence numbers and tree
//! hashes assigned under the tenants' locks, the records inserted in one statement): duplicates
//! inside a batch and against stored records, batches over many tenants, two writers on one hot
//! tenant with overlapping ids, and a writer whose connection is cut while it writes.

use std::collections::{BTreeMap, BTreeSet};

use crate::every_store_tests::{exported, futures_join, record, verified, writer, writer_on};
use crate::ledger::writer::Stored;
use crate::store::records::NewRecord;
use crate::store::testing::{schema_url, TestDatabase, POSTGRES_URL_VAR};
use crate::store::{ConnExt, Store};

fn stored(accepted: usize, duplicates: usize) -> Stored {
    Stored {
        accepted,
        duplicates,
    }
}

/// The ids of `tenant`'s records in `tseq` order, after checking that the sequence is gapless
/// from 0, no id is stored twice and `verify` passes with `vkeys`.
fn checked_tree(test: &TestDatabase, vkeys: &[String], tenant: &str) -> Vec<String> {
    let conn = test.database.read().unwrap();
    let mut rows = exported(&*conn, tenant);
    rows.sort();
    let seqs: Vec<u64> = rows.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (0..rows.len() as u64).collect::<Vec<_>>(),
        "{tenant}: gapless"
    );
    let ids: Vec<String> = rows.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "{tenant}: an id stored twice"
    );
    verified(&test.database, vkeys, tenant);
    ids
}

fn skipped() {
    eprintln!("skipped: {POSTGRES_URL_VAR} is not set");
}

#[test]
fn duplicates_inside_a_batch_and_against_stored_records_take_no_sequence_number() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for test in TestDatabase::all() {
        let (writer, thread, vkey) = writer(&test, "key");
        let batches = [
            vec![
                ("a1", "a"),
                ("a2", "a"),
                ("a1", "a"),
                ("b1", "b"),
                ("a3", "a"),
            ],
            vec![
                ("a2", "a"),
                ("a4", "a"),
                ("a4", "a"),
                ("b1", "b"),
                ("b2", "b"),
            ],
            // The same id under another tenant is a duplicate too: ids are global.
            vec![("a1", "b"), ("b3", "b"), ("a5", "a")],
        ];
        let counts: Vec<Stored> = runtime.block_on(async {
            let mut counts = Vec::new();
            for batch in &batches {
                let records = batch
                    .iter()
                    .enumerate()
                    .map(|(i, (id, tenant))| record(id, tenant, i as u32))
                    .collect();
                counts.push(writer.write(records).await.unwrap());
            }
            writer.tick().await.unwrap();
            counts
        });
        assert_eq!(counts, [stored(4, 1), stored(2, 3), stored(2, 1)]);
        drop(writer);
        thread.join().unwrap();
        let vkeys = [vkey];
        assert_eq!(
            checked_tree(&test, &vkeys, "a"),
            ["a1", "a2", "a3", "a4", "a5"]
        );
        assert_eq!(checked_tree(&test, &vkeys, "b"), ["b1", "b2", "b3"]);
    }
}

#[test]
fn one_batch_over_many_tenants_grows_each_tree_in_order() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for test in TestDatabase::all() {
        let (writer, thread, vkey) = writer(&test, "key");
        let tenant = |k: u32| format!("t{:03}", k % 150);
        let batch = |from: u32| -> Vec<NewRecord> {
            (from..from + 1200)
                .map(|k| record(&format!("r{k}"), &tenant(k), k % 3600))
                .collect()
        };
        let counts = runtime.block_on(async {
            let first = writer.write(batch(0)).await.unwrap();
            // Overlaps the first by 600 records.
            let second = writer.write(batch(600)).await.unwrap();
            writer.tick().await.unwrap();
            [first, second]
        });
        assert_eq!(counts, [stored(1200, 0), stored(600, 600)]);
        drop(writer);
        thread.join().unwrap();
        let vkeys = [vkey];
        for t in 0..150 {
            let expected: Vec<String> = (0..1800)
                .filter(|k| k % 150 == t)
                .map(|k| format!("r{k}"))
                .collect();
            assert_eq!(checked_tree(&test, &vkeys, &tenant(t)), expected);
        }
    }
}

/// Two writers take turns: one adds `gap` records to every tree, the other one; the second
/// reads what the first added (each record, or the frontier when the gap is large) and its
/// records extend the same trees.
#[test]
fn a_writer_catches_up_with_trees_another_writer_has_grown() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for test in TestDatabase::all() {
        let (first, second) = (writer(&test, "key-1"), writer(&test, "key-2"));
        let tenants = ["a", "b", "c"];
        let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut n = 0u32;
        runtime.block_on(async {
            for gap in [1u32, 3, 31, 32, 33, 100, 2] {
                for (writer, count) in [(&first.0, gap), (&second.0, 1)] {
                    let mut records = Vec::new();
                    for tenant in tenants {
                        for _ in 0..count {
                            let id = format!("r{n}");
                            records.push(record(&id, tenant, n % 3600));
                            expected.entry(tenant).or_default().push(id);
                            n += 1;
                        }
                    }
                    let accepted = records.len();
                    assert_eq!(writer.write(records).await.unwrap(), stored(accepted, 0));
                }
            }
            first.0.tick().await.unwrap();
            second.0.tick().await.unwrap();
        });
        let vkeys = [first.2.clone(), second.2.clone()];
        for (writer, thread, _) in [first, second] {
            drop(writer);
            thread.join().unwrap();
        }
        for tenant in tenants {
            assert_eq!(checked_tree(&test, &vkeys, tenant), expected[tenant]);
        }
    }
}

#[test]
fn two_writers_on_one_hot_tenant_store_each_id_once() {
    let Some(test) = TestDatabase::postgres() else {
        return skipped();
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let replicas = [writer(&test, "key-1"), writer(&test, "key-2")];
    // 30 batches of 50 per replica, all of tenant `hot`; even ids are sent by both replicas,
    // in the same batches, so that both try to store them at the same time.
    let counts = runtime.block_on(async {
        let sends = replicas.iter().enumerate().flat_map(|(r, (writer, _, _))| {
            (0..30u32).map(move |b| {
                let writer = writer.clone();
                let records: Vec<NewRecord> = (0..50u32)
                    .map(|i| {
                        let n = b * 50 + i;
                        let id = match n % 2 {
                            0 => format!("shared-{n}"),
                            _ => format!("own-{r}-{n}"),
                        };
                        record(&id, "hot", n % 3600)
                    })
                    .collect();
                async move { writer.write(records).await.unwrap() }
            })
        });
        let counts: Vec<Stored> = futures_join(sends.collect()).await;
        for (writer, _, _) in &replicas {
            writer.tick().await.unwrap();
        }
        counts
    });
    let accepted: usize = counts.iter().map(|s| s.accepted).sum();
    let duplicates: usize = counts.iter().map(|s| s.duplicates).sum();
    assert_eq!((accepted, duplicates), (2250, 750), "each shared id once");
    let vkeys: Vec<String> = replicas.iter().map(|(_, _, k)| k.clone()).collect();
    for (writer, thread, _) in replicas {
        drop(writer);
        thread.join().unwrap();
    }
    let ids = checked_tree(&test, &vkeys, "hot");
    assert_eq!(ids.len(), 2250);
}

#[test]
fn a_connection_cut_while_writing_loses_nothing_acknowledged() {
    let Some(test) = TestDatabase::postgres() else {
        return skipped();
    };
    // The writer's connections carry a name of their own, so that only they are cut.
    let name = format!("acp_cut_{:016x}", rand::random::<u64>());
    let server = std::env::var(POSTGRES_URL_VAR).unwrap();
    let schema = test.schema_name().expect("a PostgreSQL test database");
    let url = format!("{}&application_name={name}", schema_url(&server, schema));
    let db = Store::open(std::path::Path::new("unused.db"), Some(&url)).unwrap();
    let (writer, thread, vkey) = writer_on(&test, &db, "key");
    let cutter = {
        let admin = test.database.clone();
        std::thread::spawn(move || {
            let mut cut = 0;
            for _ in 0..40 {
                let conn = admin.read().unwrap();
                cut += conn
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = ?1",
                        &[name.as_str().into()],
                        |row| row.get::<bool>(0),
                    )
                    .unwrap()
                    .len();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            cut
        })
    };
    // 8 senders each post their batches (of 3 tenants) until each is acknowledged, as an
    // ingesting client retries a failed batch.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (counts, failures) = runtime.block_on(async {
        let sends = (0..8u32).map(|s| {
            let writer = writer.clone();
            async move {
                let (mut counts, mut failures) = (Vec::new(), 0);
                for b in 0..15u32 {
                    let records: Vec<NewRecord> = (0..40u32)
                        .map(|i| {
                            let n = (s * 15 + b) * 40 + i;
                            record(&format!("r{n}"), &format!("t{}", n % 3), n % 3600)
                        })
                        .collect();
                    loop {
                        match writer.write(records.clone()).await {
                            Ok(stored) => break counts.push(stored),
                            Err(_) => failures += 1,
                        }
                    }
                }
                (counts, failures)
            }
        });
        let results = futures_join(sends.collect()).await;
        writer.tick().await.unwrap();
        let failures: usize = results.iter().map(|(_, f)| f).sum();
        let counts: Vec<Stored> = results.into_iter().flat_map(|(c, _)| c).collect();
        (counts, failures)
    });
    let cut = cutter.join().unwrap();
    drop(writer);
    thread.join().unwrap();
    eprintln!("{cut} connections cut, {failures} batches failed and were sent again");
    assert!(cut > 0, "the writer's connection was never cut");
    // A batch whose commit succeeded but whose answer was lost comes back as duplicates.
    let accepted: usize = counts.iter().map(|s| s.accepted).sum();
    let duplicates: usize = counts.iter().map(|s| s.duplicates).sum();
    assert_eq!(accepted + duplicates, 4800);
    let vkeys = [vkey];
    let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..4800u32 {
        by_tenant
            .entry(format!("t{}", n % 3))
            .or_default()
            .push(format!("r{n}"));
    }
    for (tenant, mut expected) in by_tenant {
        let mut ids = checked_tree(&test, &vkeys, &tenant);
        ids.sort();
        expected.sort();
        assert_eq!(ids, expected, "{tenant}: every record once");
    }
}
