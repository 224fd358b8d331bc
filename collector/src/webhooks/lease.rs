//! Which replica delivers an endpoint's next batch. Replicas sharing a PostgreSQL database poll
//! the same endpoints; a replica sends a batch only while it holds the endpoint's session-level
//! advisory lock, on a connection of its own kept for the whole delivery (plan, request and
//! cursor move), so two replicas never send the same batch at the same time. A replica that
//! does not get the lock leaves the endpoint to the other one this round. If the holder dies,
//! its connection closes and the lock is free again. A SQLite collector is the only process
//! delivering, and its leases are always granted.

use crate::store::{Conn, ConnExt, Store};

/// The right to deliver one endpoint's batch, until dropped.
pub struct Lease {
    /// The connection holding the PostgreSQL lock.
    locked: Option<(Box<dyn Conn + Send>, String)>,
}

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended('acp-webhook/' || ?1, 0))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtextextended('acp-webhook/' || ?1, 0))";

impl Lease {
    /// The lease of endpoint `id`, or `None` while another replica holds it.
    pub fn try_acquire(database: &Store, id: &str) -> anyhow::Result<Option<Lease>> {
        let Store::Postgres(pool) = database else {
            return Ok(Some(Lease { locked: None }));
        };
        let conn = pool.get()?;
        let granted = conn.query_opt(TRY_LOCK, &[id.into()], |row| row.get::<bool>(0))?;
        Ok(granted.unwrap_or(false).then(|| Lease {
            locked: Some((Box::new(conn), id.to_owned())),
        }))
    }

    /// The connection to work on while the lease is held: the locking one on PostgreSQL,
    /// `shared` on SQLite.
    pub fn conn<'a>(&'a self, shared: &'a dyn Conn) -> &'a dyn Conn {
        match &self.locked {
            Some((conn, _)) => conn.as_ref(),
            None => shared,
        }
    }
}

impl Drop for Lease {
    /// Unlocks on a thread of its own: a lease may be dropped on the async runtime (when its
    /// task is cancelled), where the blocking PostgreSQL client must not run.
    fn drop(&mut self) {
        if let Some((conn, id)) = self.locked.take() {
            let unlocked = std::thread::spawn(move || {
                conn.execute(UNLOCK, &[id.as_str().into()])
                    .map_err(|err| (id, format!("{err:#}")))
            })
            .join();
            if let Ok(Err((id, error))) = unlocked {
                // A lost connection has released the lock with its session.
                tracing::warn!(webhook = id, error, "cannot release a webhook lease");
            }
        }
    }
}
