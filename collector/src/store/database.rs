//! Which store a collector uses, chosen by configuration: the SQLite file (`--db`, the
//! default) or a PostgreSQL server shared by several replicas (`--database-url`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::{Conn, PgPool};

#[derive(Clone)]
pub enum Database {
    Sqlite(Arc<PathBuf>),
    Postgres(PgPool),
}

impl Database {
    /// PostgreSQL when `url` is given (connected, its schema created if needed), else the
    /// SQLite file at `path` (opened by each connection).
    pub fn open(path: &Path, url: Option<&str>) -> anyhow::Result<Self> {
        match url.filter(|u| !u.is_empty()) {
            Some(url) => Ok(Self::Postgres(PgPool::open(url)?)),
            None => Ok(Self::Sqlite(Arc::new(path.to_owned()))),
        }
    }

    /// A read-write connection (the writer's, or a command's); creates the SQLite file and
    /// schema when missing.
    pub fn write(&self) -> anyhow::Result<Box<dyn Conn + Send>> {
        Ok(match self {
            Self::Sqlite(path) => Box::new(
                super::open_rw(path)
                    .with_context(|| format!("cannot open database {}", path.display()))?,
            ),
            Self::Postgres(pool) => Box::new(pool.get()?),
        })
    }

    /// A connection for reading.
    pub fn read(&self) -> anyhow::Result<Box<dyn Conn + Send>> {
        Ok(match self {
            Self::Sqlite(path) => Box::new(super::open_read(path)?),
            Self::Postgres(pool) => Box::new(pool.get()?),
        })
    }

    /// Where the store is, for logs (never the PostgreSQL password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(_) => "postgresql".to_owned(),
        }
    }
}
