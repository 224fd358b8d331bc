//! Which store a collector uses, chosen by configuration: the SQLite file (`--db`, the
//! default) or a PostgreSQL server shared by several replicas (`--database-url`).
//!
//! Connections are blocking (rusqlite, rust-postgres): they are taken, used and dropped on a
//! blocking thread, never on the async runtime (where closing a PostgreSQL client would call
//! `block_on` inside the runtime). Async code goes through [`Store::blocking`]; the writer
//! thread and the commands, which are not async, call [`Store::write`] and [`Store::read`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::migrate::Backfill;
use super::{sqlite, Conn, PgPool};

#[derive(Clone)]
pub enum Store {
    Sqlite(Arc<PathBuf>),
    Postgres(PgPool),
}

/// Which tables [`Store::create_schema`] makes on SQLite (PostgreSQL gets every table when
/// the store is opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// Records, checkpoints, expiry notes, signing and API keys, policy versions.
    Records,
    /// And the webhook tables (`serve` and `webhook`).
    WithWebhooks,
}

/// Which connection [`Store::blocking`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A failure of the store itself (a connection or query), or of the blocking task running it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Store(#[from] anyhow::Error),
    #[error("blocking store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Store {
    /// PostgreSQL when `url` is given (connected, its schema created if needed), else the
    /// SQLite file at `path` (opened by each connection; [`Store::create_schema`] makes it).
    pub fn open(path: &Path, url: Option<&str>) -> anyhow::Result<Self> {
        match url.filter(|u| !u.is_empty()) {
            Some(url) => Ok(Self::Postgres(PgPool::open(url)?)),
            None => Ok(Self::Sqlite(Arc::new(path.to_owned()))),
        }
    }

    /// Creates the SQLite file and what is missing of its schema, after bringing an older
    /// database up to date with `backfill`. Once, when a command that writes starts; blocking.
    /// PostgreSQL's schema was made by [`Store::open`].
    pub fn create_schema(&self, tables: Tables, backfill: &mut dyn Backfill) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(path) => {
                let context = || format!("cannot open database {}", path.display());
                let mut conn = sqlite::open_rw(path).with_context(context)?;
                sqlite::create_schema(&mut conn, tables, backfill).with_context(context)
            }
            Self::Postgres(_) => Ok(()),
        }
    }

    /// A read-write connection (the writer's, or a command's). Blocking.
    pub fn write(&self) -> anyhow::Result<Box<dyn Conn + Send>> {
        Ok(match self {
            Self::Sqlite(path) => Box::new(
                sqlite::open_rw(path)
                    .with_context(|| format!("cannot open database {}", path.display()))?,
            ),
            Self::Postgres(pool) => Box::new(pool.get()?),
        })
    }

    /// A connection for reading. Blocking.
    pub fn read(&self) -> anyhow::Result<Box<dyn Conn + Send>> {
        Ok(match self {
            Self::Sqlite(path) => Box::new(sqlite::open_read(path)?),
            Self::Postgres(pool) => Box::new(pool.get()?),
        })
    }

    /// Runs `work` on a blocking thread with a connection taken there, and drops the
    /// connection there: the one way async code reaches the store.
    pub async fn blocking<T, E>(
        &self,
        access: Access,
        work: impl FnOnce(&dyn Conn) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match access {
                Access::Read => store.read(),
                Access::Write => store.write(),
            }
            .map_err(StoreError::from)?;
            work(&*conn)
        })
        .await
        .map_err(StoreError::from)?
    }

    /// Where the store is, for logs (never the PostgreSQL password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(_) => "postgresql".to_owned(),
        }
    }
}
