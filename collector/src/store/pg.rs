//! [`Conn`] over PostgreSQL (rust-postgres, synchronous: call it from the writer thread or
//! `spawn_blocking`, never from an async task), and the pool the replicas' requests share.
//! Connections are unencrypted (`NoTls`): keep the database on a trusted network or tunnel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;

use anyhow::Context;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{NoTls, Statement};
use r2d2_postgres::PostgresConnectionManager;

use super::{insert_sql, pg_sql, Backend, Conn, ConnExt, Row, Value};

type Manager = PostgresConnectionManager<NoTls>;
type Client = r2d2::PooledConnection<Manager>;

/// Connections a collector process opens at most (the writer keeps one for good).
const POOL_SIZE: u32 = 8;
/// The advisory lock key of schema creation.
const SCHEMA_LOCK: i64 = 0x4143_5000;
/// The tables, indexes and append-only triggers.
const SCHEMA: &str = include_str!("schema/postgres.sql");

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The shared PostgreSQL database of every replica.
#[derive(Clone)]
pub struct PgPool(r2d2::Pool<Manager>);

impl PgPool {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or libpq's
    /// `key=value` form) and creates the schema if needed.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let config = url
            .parse::<postgres::Config>()
            .context("invalid --database-url")?;
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .connection_customizer(Box::new(CustomPlans))
            .build(Manager::new(config, NoTls))
            .context("cannot connect to PostgreSQL")?;
        let pool = Self(pool);
        // Under an advisory lock, so that replicas starting together create it once.
        pool.get()?
            .transaction(|tx| {
                tx.execute("SELECT pg_advisory_xact_lock(?1)", &[SCHEMA_LOCK.into()])?;
                tx.execute_batch(SCHEMA)
            })
            .context("cannot create the PostgreSQL schema")?;
        Ok(pool)
    }

    pub fn get(&self) -> anyhow::Result<Pg> {
        let client = self.0.get().context("no PostgreSQL connection")?;
        Ok(Pg(RefCell::new((client, HashMap::new()))))
    }
}

/// Sets `plan_cache_mode = force_custom_plan` on every connection the pool opens. The
/// collector prepares each statement once per connection, and PostgreSQL would otherwise keep
/// a generic plan made when the records table was small: the ingest's duplicate-id lookup kept
/// a sequential scan of the whole table for every batch (14 ms per batch at 150,000 records,
/// growing with the table) until an ANALYZE. A custom plan is made at each execution with the
/// table's current size, for a fraction of a millisecond.
#[derive(Debug)]
struct CustomPlans;

impl r2d2::CustomizeConnection<postgres::Client, postgres::Error> for CustomPlans {
    fn on_acquire(&self, client: &mut postgres::Client) -> Result<(), postgres::Error> {
        client.batch_execute("SET plan_cache_mode = force_custom_plan")
    }
}

/// A pooled connection with its prepared statements.
pub struct Pg(RefCell<(Client, HashMap<String, Statement>)>);

impl Pg {
    /// Runs `work` with the client and the statement prepared for `sql`.
    fn with_statement<T>(
        &self,
        sql: &str,
        work: impl FnOnce(&mut Client, &Statement) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut guard = self
            .0
            .try_borrow_mut()
            .map_err(|_| anyhow::anyhow!("the connection is busy with another query's rows"))?;
        let (client, statements) = &mut *guard;
        let statement = match statements.get(sql) {
            Some(statement) => statement.clone(),
            None => {
                let statement = client.prepare(&pg_sql(sql))?;
                statements.insert(sql.to_owned(), statement.clone());
                statement
            }
        };
        work(client, &statement)
    }
}

fn pg_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Conn for Pg {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn execute(&self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        self.with_statement(sql, |client, stmt| {
            Ok(client.execute(stmt, &pg_params(params))?)
        })
    }

    fn is_broken(&self) -> bool {
        self.0.try_borrow().is_ok_and(|guard| guard.0.is_closed())
    }

    fn execute_batch(&self, sql: &str) -> anyhow::Result<()> {
        Ok(self.0.borrow_mut().0.batch_execute(sql)?)
    }

    fn for_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Row) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.with_statement(sql, |client, stmt| {
            let mut rows = client.query_raw(stmt, pg_params(params))?;
            while let Some(row) = rows.next()? {
                each(&Row::Pg(&row))?;
            }
            Ok(())
        })
    }

    fn insert_rows(
        &self,
        table: &str,
        columns: &[&str],
        rows: &[Vec<Value>],
    ) -> anyhow::Result<()> {
        // The column types come from the INSERT the rows would otherwise take (prepared once).
        self.with_statement(&insert_sql(table, columns), |client, insert| {
            let sink = client.copy_in(&format!(
                "COPY {table} ({}) FROM STDIN (FORMAT binary)",
                columns.join(", ")
            ))?;
            let mut writer = BinaryCopyInWriter::new(sink, insert.params());
            for row in rows {
                writer.write(&pg_params(row))?;
            }
            writer.finish()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::TestDatabase;
    use crate::store::ConnExt;

    #[test]
    fn every_connection_plans_its_statements_at_execution() {
        let Some(test) = TestDatabase::postgres() else {
            return;
        };
        for conn in [
            test.database.write().unwrap(),
            test.database.read().unwrap(),
        ] {
            let mode = conn
                .query_opt("SHOW plan_cache_mode", &[], |row| row.get::<String>(0))
                .unwrap();
            assert_eq!(mode.as_deref(), Some("force_custom_plan"));
        }
    }
}
