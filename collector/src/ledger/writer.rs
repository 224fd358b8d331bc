//! Group commit. One thread owns the write connection. Ingest handlers send their records with
//! a oneshot responder over a bounded channel (a full channel holds senders back); the thread
//! takes everything pending, writes it in one transaction, commits (`synchronous=FULL`: the
//! commit is on disk when it returns), and only then answers every sender. One fsync thus
//! covers many concurrent batches.
//!
//! The same transaction gives each record its tenant's next sequence number and tree hashes,
//! and signs the checkpoints that fall due ([`Ledger`]); a tick (timer, and once more at
//! shutdown) signs a checkpoint of every tree that has grown and applies retention.
//!
//! With PostgreSQL, several collector replicas each run such a writer on one database: the
//! transaction locks the tenants it touches ([`Ledger::lock`]), and one that fails on a
//! serialization failure, deadlock or unique violation ([`store::is_retryable`]) is run again,
//! up to [`ATTEMPTS`] times. The leaf hashes are computed before the transaction; inside it, a
//! group costs the same few round trips whatever its size (stored ids, lock, tree state, one
//! `COPY`, commit).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use tlog_tiles::tlog::Hash;

use crate::ledger::{merkle, Ledger};
use crate::metrics::Metrics;
use crate::store::records::{self, NewRecord};
use crate::store::{self, Conn, ConnExt, Store};

/// Batches that may wait for the writer before senders are held back.
pub const QUEUE_DEPTH: usize = 256;
/// Runs of a transaction that PostgreSQL aborted for a conflict with another replica.
const ATTEMPTS: usize = 5;

type Connection = Box<dyn Conn + Send>;

/// What happened to one batch of valid records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Newly stored records.
    pub accepted: usize,
    /// Records whose id was already stored (before or earlier in the same commit).
    pub duplicates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the writer has stopped")]
    Stopped,
    /// The whole group was rolled back; nothing of the batch is stored.
    #[error("database write failed: {0}")]
    Store(String),
}

enum Job {
    Write {
        records: Vec<NewRecord>,
        reply: Reply,
    },
    Tick,
}

/// Sends batches to the writer thread. The thread ends once every clone has been dropped and
/// the batches already sent are committed.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn` (from `db`'s [`Store::write`], which also
    /// replaces it once it is lost).
    /// Each commit is timed in `metrics`.
    pub fn start(
        db: Store,
        conn: Connection,
        ledger: Ledger,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("acp-writer".into())
            .spawn(move || run(db, conn, ledger, queue, &metrics))?;
        Ok((Writer { jobs }, thread))
    }

    /// Whether the writer thread still takes batches (its end, or a panic, closes the queue).
    pub fn is_alive(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// Batches (and ticks) sent and not yet taken by the writer thread.
    pub fn queue_depth(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Stores `records` durably; returns once their transaction has committed.
    pub async fn write(&self, records: Vec<NewRecord>) -> Result<Stored, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Write { records, reply })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Asks for the checkpoints and expiries that are due by time; does not wait for them.
    pub async fn tick(&self) -> Result<(), WriteError> {
        self.jobs
            .send(Job::Tick)
            .await
            .map_err(|_| WriteError::Stopped)
    }
}

fn run(
    db: Store,
    mut conn: Connection,
    mut ledger: Ledger,
    mut queue: mpsc::Receiver<Job>,
    metrics: &Metrics,
) {
    let mut group = Vec::new();
    while let Some(job) = queue.blocking_recv() {
        let mut ticked = false;
        for job in std::iter::once(job).chain(std::iter::from_fn(|| queue.try_recv().ok())) {
            match job {
                Job::Write { records, reply } => group.push((records, reply)),
                Job::Tick => ticked = true,
            }
        }
        if !group.is_empty() {
            write_group(&mut conn, &mut ledger, &mut group, metrics);
        }
        if ticked {
            tick(&mut conn, &mut ledger);
        }
        if conn.is_broken() {
            // The failed group was answered with an error; the next one gets a new connection.
            match db.write() {
                Ok(new) => conn = new,
                Err(err) => tracing::warn!(error = format!("{err:#}"), "cannot reconnect"),
            }
        }
    }
    // Every sender is gone: sign what the last commits added.
    tick(&mut conn, &mut ledger);
}

type Reply = oneshot::Sender<Result<Stored, WriteError>>;

fn write_group(
    conn: &mut Connection,
    ledger: &mut Ledger,
    group: &mut Vec<(Vec<NewRecord>, Reply)>,
    metrics: &Metrics,
) {
    let records: usize = group.iter().map(|(r, _)| r.len()).sum();
    let started = Instant::now();
    // Hashing the leaves needs no lock; only the tree hashes above them do.
    let leaves: Vec<Vec<Hash>> = group
        .iter()
        .map(|(records, _)| {
            records
                .iter()
                .map(|r| merkle::leaf_hash(r.json.as_bytes()))
                .collect()
        })
        .collect();
    let committed = retried(ledger, |next| commit(&**conn, next, group, &leaves));
    metrics.commit(started.elapsed().as_secs_f64(), committed.is_ok());
    match committed {
        Ok(stored) => {
            tracing::debug!(batches = group.len(), records, "committed");
            for ((_, reply), stored) in group.drain(..).zip(stored) {
                // A sender that has gone away (client disconnected) needs no answer.
                let _ = reply.send(Ok(stored));
            }
        }
        Err(err) => {
            let err = format!("{err:#}");
            tracing::warn!(batches = group.len(), records, error = err, "commit failed");
            for (_, reply) in group.drain(..) {
                let _ = reply.send(Err(WriteError::Store(err.clone())));
            }
        }
    }
}

/// Runs `transaction` on a copy of `ledger`, again while it fails for a conflict with another
/// writer; keeps the copy once it has committed.
fn retried<T>(
    ledger: &mut Ledger,
    mut transaction: impl FnMut(&mut Ledger) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut attempt = 1;
    loop {
        let mut next = ledger.clone();
        match transaction(&mut next) {
            Ok(value) => {
                *ledger = next;
                return Ok(value);
            }
            Err(err) if attempt < ATTEMPTS && store::is_retryable(&err) => {
                tracing::debug!(
                    attempt,
                    error = format!("{err:#}"),
                    "transaction conflict, retrying"
                );
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Writes every batch of `group` in one transaction: finds the ids stored already (one
/// query), locks the tenants it touches, gives the new records their sequence numbers and tree
/// hashes and inserts them all at once. `leaves` are the records' leaf hashes, computed before.
fn commit(
    conn: &dyn Conn,
    ledger: &mut Ledger,
    group: &[(Vec<NewRecord>, Reply)],
    leaves: &[Vec<Hash>],
) -> anyhow::Result<Vec<Stored>> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let all = || group.iter().flat_map(|(records, _)| records);
    conn.transaction(|tx| {
        // Looked up before the lock, which is held until the commit: an id another writer
        // commits in between fails the insert (a unique violation), and the retry looks again.
        let ids: Vec<&str> = all().map(|r| r.id.as_str()).collect();
        let mut known = records::stored_ids(tx, &ids)?;
        let tenants: BTreeSet<&str> = all().map(|r| r.tenant.as_str()).collect();
        ledger.lock(tx, &tenants)?;
        let mut new = Vec::with_capacity(ids.len());
        let mut stored = Vec::with_capacity(group.len());
        for ((records, _), leaves) in group.iter().zip(leaves) {
            let mut counts = Stored::default();
            for (record, leaf) in records.iter().zip(leaves) {
                if known.insert(record.id.clone()) {
                    new.push((record, *leaf));
                    counts.accepted += 1;
                } else {
                    counts.duplicates += 1;
                }
            }
            stored.push(counts);
        }
        ledger.append_all(tx, &new, now_ms)?;
        Ok(stored)
    })
}

/// Signs due checkpoints and applies retention in a transaction of its own, so that a failure
/// there never costs an ingest batch.
fn tick(conn: &mut Connection, ledger: &mut Ledger) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let result = retried(ledger, |next| conn.transaction(|tx| next.tick(tx, now_ms)));
    if let Err(err) = result {
        tracing::warn!(error = format!("{err:#}"), "checkpoint or retention failed");
    }
}
