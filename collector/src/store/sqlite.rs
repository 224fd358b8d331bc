//! [`Conn`] over a rusqlite connection (or transaction, which derefs to one), and opening the
//! SQLite file.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, OpenFlags, ToSql};

use super::migrate::Backfill;
use super::{Backend, Conn, Row, Tables, Value};

/// How long a connection waits for another one's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema ([`Tables::Records`]); the webhook tables are in their own file.
const SCHEMA: &str = include_str!("schema/sqlite.sql");
const WEBHOOK_TABLES: &str = include_str!("schema/sqlite-webhooks.sql");

/// Opens the database read-write (WAL, `synchronous=FULL`), creating the file if needed.
pub fn open_rw(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "{}: cannot use WAL journal mode (got {mode})",
        path.display()
    );
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Brings an older database up to date ([`super::migrate`]) and creates what is missing of
/// the schema.
pub fn create_schema(
    conn: &mut Connection,
    tables: Tables,
    backfill: &mut dyn Backfill,
) -> anyhow::Result<()> {
    super::migrate::add_tree_columns(conn, backfill)?;
    super::migrate::add_correlation_columns(conn)?;
    conn.execute_batch(SCHEMA)?;
    if tables == Tables::WithWebhooks {
        conn.execute_batch(WEBHOOK_TABLES)?;
    }
    Ok(())
}

/// Opens a read-only connection to a database whose schema [`create_schema`] has made.
pub fn open_read(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

impl Conn for Connection {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        Ok(self
            .prepare_cached(sql)?
            .execute(params_from_iter(params))? as u64)
    }

    fn execute_batch(&self, sql: &str) -> anyhow::Result<()> {
        Ok(Connection::execute_batch(self, sql)?)
    }

    fn for_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Row) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut stmt = self.prepare_cached(sql)?;
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            each(&Row::Sqlite(row))?;
        }
        Ok(())
    }
}
