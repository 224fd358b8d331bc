//! One connection interface over the two stores: the embedded SQLite file (the default) and a
//! shared PostgreSQL server (for several collector replicas). Queries are written once, in
//! SQLite's `?N` placeholder form; [`pg_sql`] rewrites them to PostgreSQL's `$N`. Integers are
//! 64-bit on both sides (PostgreSQL columns are `BIGINT`), blobs are `BLOB`/`BYTEA`.

mod correlation_columns;
mod database;
pub mod migrate;
mod pg;
pub mod records;
mod sqlite;

pub use database::{Access, Store, StoreError, Tables};
pub use pg::PgPool;

/// A parameter of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    /// Sequence numbers and tree sizes; they stay far below `i64::MAX`.
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A column type both drivers read (`i64`, `String`, `Vec<u8>`, `Option` of these).
pub trait Column: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a> {}
impl<T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>> Column for T {}

/// One result row.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a postgres::Row),
}

impl Row<'_> {
    pub fn get<T: Column>(&self, index: usize) -> anyhow::Result<T> {
        Ok(match self {
            Row::Sqlite(row) => row.get(index)?,
            Row::Pg(row) => row.try_get(index)?,
        })
    }

    /// A text column, borrowed from the row (no copy, for bulk reads). A value of another type
    /// fails as [`Row::get`] would.
    pub fn text(&self, index: usize) -> anyhow::Result<&str> {
        match self {
            Row::Sqlite(row) => match row.get_ref(index)?.as_str() {
                Ok(text) => Ok(text),
                Err(_) => Err(self
                    .get::<String>(index)
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("column {index} is not valid text"))),
            },
            Row::Pg(row) => Ok(row.try_get(index)?),
        }
    }

    /// A blob column, borrowed from the row; a value of another type fails as [`Row::get`]
    /// would.
    pub fn blob(&self, index: usize) -> anyhow::Result<&[u8]> {
        match self {
            Row::Sqlite(row) => match row.get_ref(index)?.as_blob() {
                Ok(blob) => Ok(blob),
                Err(_) => Err(self
                    .get::<Vec<u8>>(index)
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("column {index} is not a blob"))),
            },
            Row::Pg(row) => Ok(row.try_get(index)?),
        }
    }

    /// A sequence number or size, stored as a non-negative `BIGINT`.
    pub fn u64(&self, index: usize) -> anyhow::Result<u64> {
        Ok(u64::try_from(self.get::<i64>(index)?)?)
    }
}

/// Which server a connection talks to, where a statement differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database connection of either store.
pub trait Conn {
    fn backend(&self) -> Backend;
    /// Runs one statement; returns the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> anyhow::Result<u64>;
    /// Runs several statements without parameters.
    fn execute_batch(&self, sql: &str) -> anyhow::Result<()>;
    /// Whether the connection is lost for good (the server went away); a new one is needed.
    fn is_broken(&self) -> bool {
        false
    }
    /// Runs a query and hands each row to `each`.
    fn for_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Row) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>;
    /// Inserts `rows` (values in the order of `columns`) into `table`, all or none: a
    /// conflict fails the call. SQLite runs a prepared `INSERT` per row; PostgreSQL streams
    /// them in one binary `COPY`, one round trip for the lot.
    fn insert_rows(
        &self,
        table: &str,
        columns: &[&str],
        rows: &[Vec<Value>],
    ) -> anyhow::Result<()> {
        let sql = insert_sql(table, columns);
        for row in rows {
            self.execute(&sql, row)?;
        }
        Ok(())
    }
}

/// `INSERT INTO table (columns) VALUES (?1, ...)`.
pub(crate) fn insert_sql(table: &str, columns: &[&str]) -> String {
    let placeholders: Vec<String> = (1..=columns.len()).map(|n| format!("?{n}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    )
}

/// The `FROM` item that turns parameter `?1`, a JSON array of strings, into rows of one
/// column `value`: a whole list of tenants or ids in one parameter (and one prepared
/// statement), on either store.
pub fn json_list(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "json_each(?1) AS list",
        Backend::Postgres => "jsonb_array_elements_text(CAST(?1 AS TEXT)::jsonb) AS list(value)",
    }
}

/// Queries and transactions, for every [`Conn`].
pub trait ConnExt: Conn {
    /// Every row of a query, mapped.
    fn query<T>(
        &self,
        sql: &str,
        params: &[Value],
        mut map: impl FnMut(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<Vec<T>> {
        let mut rows = Vec::new();
        self.for_each(sql, params, &mut |row| {
            rows.push(map(row)?);
            Ok(())
        })?;
        Ok(rows)
    }

    /// The first row of a query, mapped, if there is one.
    fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        Ok(self.query(sql, params, map)?.into_iter().next())
    }

    /// Runs `work` in a transaction: committed when it returns `Ok`, rolled back otherwise.
    /// SQLite's takes the write lock at once, so that it never fails half-way for another
    /// connection's write.
    fn transaction<T>(&self, work: impl FnOnce(&Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.execute_batch(match self.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        })?;
        match work(self) {
            Ok(value) => {
                self.execute_batch("COMMIT")?;
                Ok(value)
            }
            Err(err) => {
                // The rollback's own failure would hide the cause.
                let _ = self.execute_batch("ROLLBACK");
                Err(err)
            }
        }
    }

    /// Serialises the writers of `tenant`'s tree until the end of the current transaction.
    /// SQLite has one writer (the collector's writer thread), so this only matters for
    /// PostgreSQL, where replicas share the database: a transaction-scoped advisory lock keyed
    /// by the tenant. Callers take the locks of several tenants in sorted order.
    fn lock_tenant(&self, tenant: &str) -> anyhow::Result<()> {
        if self.backend() == Backend::Postgres {
            self.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('acp-tree/' || ?1, 0))",
                &[tenant.into()],
            )?;
        }
        Ok(())
    }

    /// [`ConnExt::lock_tenant`] for every tenant of `tenants` (sorted), in one statement.
    fn lock_tenants(&self, tenants: &std::collections::BTreeSet<&str>) -> anyhow::Result<()> {
        if self.backend() == Backend::Postgres && !tenants.is_empty() {
            // The subquery's order (bytewise, as `lock_tenant`'s callers sort) is the order
            // in which the aggregate takes the locks.
            self.execute(
                &format!(
                    "SELECT COUNT(pg_advisory_xact_lock(hashtextextended('acp-tree/' || value, 0)))
                     FROM (SELECT value FROM {} ORDER BY value COLLATE \"C\") AS sorted",
                    json_list(Backend::Postgres)
                ),
                &[serde_json::to_string(tenants)?.into()],
            )?;
        }
        Ok(())
    }
}

impl<C: Conn + ?Sized> ConnExt for C {}

/// Whether `err` is a PostgreSQL serialization failure or deadlock, after which the whole
/// transaction may simply be run again, or a unique violation: another replica committed a
/// row with the same key after this transaction looked (a record id it stored under another
/// tenant, whose lock this one does not hold), which the next run sees.
pub fn is_retryable(err: &anyhow::Error) -> bool {
    use postgres::error::SqlState;
    err.chain()
        .filter_map(|e| e.downcast_ref::<postgres::Error>())
        .filter_map(postgres::Error::code)
        .any(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::UNIQUE_VIOLATION
        })
}

/// Rewrites SQLite placeholders to PostgreSQL's: `?N` becomes `$N`, and a bare `?` the next
/// number after the highest one so far. String literals and quoted names are left alone.
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote = None;
    let mut highest = 0u32;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    digits.push(d);
                }
                let n = digits.parse().unwrap_or(highest + 1);
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            (None, _) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_outside_literals() {
        assert_eq!(
            pg_sql("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?2 OR c = ?1"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $2 OR c = $1"
        );
        assert_eq!(
            pg_sql("WHERE tenant = ? AND ts >= ? AND 'it''s?' = ? LIMIT ?"),
            "WHERE tenant = $1 AND ts >= $2 AND 'it''s?' = $3 LIMIT $4"
        );
        assert_eq!(pg_sql("a = ?10 AND b = ?"), "a = $10 AND b = $11");
    }
}

#[cfg(test)]
pub(crate) mod testing;
