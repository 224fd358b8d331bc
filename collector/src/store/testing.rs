//! The stores tests run against: always a SQLite file, and a PostgreSQL schema of its own when
//! `ACP_TEST_POSTGRES_URL` names a server (`tests/pg/with-postgres.sh` starts one).

use std::path::PathBuf;

use super::migrate::Backfill;
use super::{sqlite, Store, Tables};

/// Where `ACP_TEST_POSTGRES_URL` is read from.
pub const POSTGRES_URL_VAR: &str = "ACP_TEST_POSTGRES_URL";

/// For a new database, which has no older records to bring up to date.
pub struct NoBackfill;

impl Backfill for NoBackfill {
    fn next(&mut self, _: &str, _: &[u8]) -> anyhow::Result<(u64, Vec<u8>)> {
        anyhow::bail!("not an older database")
    }
}

/// A read-write connection to a new SQLite file at `path`, with the schema.
pub fn open_rw(path: &std::path::Path) -> rusqlite::Connection {
    let mut conn = sqlite::open_rw(path).unwrap();
    sqlite::create_schema(&mut conn, Tables::Records, &mut NoBackfill).unwrap();
    conn
}

/// A throw-away store: a temporary SQLite file, or a PostgreSQL schema dropped afterwards.
pub struct TestDatabase {
    pub database: Store,
    /// The signing key files and the SQLite file live here.
    pub dir: tempfile::TempDir,
    schema: Option<(String, String)>,
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        Self::sqlite_after("")
    }

    /// [`Self::sqlite`], with `setup` run on the new file before the store opens it.
    pub fn sqlite_after(setup: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(setup)
            .unwrap();
        let database = Store::open(&path, None).unwrap();
        database
            .create_schema(Tables::WithWebhooks, &mut NoBackfill)
            .unwrap();
        Self {
            database,
            dir,

            schema: None,
        }
    }

    /// A fresh schema on the server of `ACP_TEST_POSTGRES_URL`, if it is set.
    pub fn postgres() -> Option<Self> {
        Self::postgres_after("")
    }

    /// [`Self::postgres`], with `setup` run in the schema before the store opens it.
    pub fn postgres_after(setup: &str) -> Option<Self> {
        let server = std::env::var(POSTGRES_URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())?;
        let schema = format!("acp_test_{:016x}", rand::random::<u64>());
        let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path = {schema}; {setup}"
            ))
            .unwrap();
        let url = schema_url(&server, &schema);
        let dir = tempfile::tempdir().unwrap();
        let database = Store::open(&PathBuf::from("unused.db"), Some(&url)).unwrap();
        Some(Self {
            database,
            dir,

            schema: Some((server, schema)),
        })
    }

    /// The PostgreSQL schema of the test (`None` on SQLite).
    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_ref().map(|(_, schema)| schema.as_str())
    }

    /// SQLite, and PostgreSQL when available.
    pub fn all() -> Vec<Self> {
        std::iter::once(Self::sqlite())
            .chain(Self::postgres())
            .collect()
    }
}

/// `server` with every connection's `search_path` set to `schema`.
pub fn schema_url(server: &str, schema: &str) -> String {
    let separator = if server.contains('?') { '&' } else { '?' };
    format!("{server}{separator}options=-csearch_path%3D{schema}")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, schema)) = &self.schema {
            if let Ok(mut admin) = postgres::Client::connect(server, postgres::NoTls) {
                let _ = admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
            }
        }
    }
}
