//! Group commit. One thread owns the write connection. Ingest handlers send their records with
//! a oneshot responder over a bounded channel (a full channel holds senders back); the thread
//! takes everything pending, writes it in one transaction, commits (`synchronous=FULL`: the
//! commit is on disk when it returns), and only then answers every sender. One fsync thus
//! covers many concurrent batches.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::store::{self, NewRecord};

/// Batches that may wait for the writer before senders are held back.
const QUEUE_DEPTH: usize = 256;

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
    Database(String),
}

struct Job {
    records: Vec<NewRecord>,
    reply: oneshot::Sender<Result<Stored, WriteError>>,
}

/// Sends batches to the writer thread. The thread ends once every clone has been dropped and
/// the batches already sent are committed.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn` (from [`store::open_rw`]).
    pub fn start(conn: Connection) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("acp-writer".into())
            .spawn(move || run(conn, queue))?;
        Ok((Writer { jobs }, thread))
    }

    /// Stores `records` durably; returns once their transaction has committed.
    pub async fn write(&self, records: Vec<NewRecord>) -> Result<Stored, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { records, reply })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

fn run(mut conn: Connection, mut queue: mpsc::Receiver<Job>) {
    let mut group = Vec::new();
    while let Some(job) = queue.blocking_recv() {
        group.push(job);
        while let Ok(job) = queue.try_recv() {
            group.push(job);
        }
        let records: usize = group.iter().map(|j| j.records.len()).sum();
        match commit(&mut conn, &group) {
            Ok(stored) => {
                tracing::debug!(batches = group.len(), records, "committed");
                for (job, stored) in group.drain(..).zip(stored) {
                    // A sender that has gone away (client disconnected) needs no answer.
                    let _ = job.reply.send(Ok(stored));
                }
            }
            Err(err) => {
                tracing::warn!(batches = group.len(), records, error = %err, "commit failed");
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(WriteError::Database(err.to_string())));
                }
            }
        }
    }
}

/// Writes every job of `group` in one transaction.
fn commit(conn: &mut Connection, group: &[Job]) -> rusqlite::Result<Vec<Stored>> {
    let tx = conn.transaction()?;
    let mut stored = Vec::with_capacity(group.len());
    for job in group {
        let mut counts = Stored::default();
        for record in &job.records {
            if store::insert(&tx, record)? {
                counts.accepted += 1;
            } else {
                counts.duplicates += 1;
            }
        }
        stored.push(counts);
    }
    tx.commit()?;
    Ok(stored)
}
