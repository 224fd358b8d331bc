//! [`Conn`] over a rusqlite connection (or transaction, which derefs to one).

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ToSql};

use super::{Backend, Conn, Row, Value};

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
