//! `runbookd migrate-store`: copy a SQLite history into an empty PostgreSQL
//! database, so a deployment can move to several daemons without losing its
//! runs, issues, state, schedule marks, deliveries and outbox.
//!
//! Table by table in one transaction (all or nothing), ids kept, column by
//! column as both schemas name them: a column the target lacks stops the
//! copy rather than dropping data. The target's triggers are off during the
//! copy (rows arrive as they were, not as if they happened now), and its id
//! sequences continue after the copied ids.

use std::path::Path;

use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{Access, PostgresStore, Result, SqliteStore, StoreError, parse_ts};

/// In dependency order (a run's version before the run, its attempts after).
const TABLES: [&str; 11] = [
    "runbook_versions",
    "runs",
    "attempts",
    "steps",
    "logs",
    "state",
    "schedule_marks",
    "deliveries",
    "webhook_dedup",
    "issues",
    "outbox",
];
/// Rows per INSERT: well under PostgreSQL's 65,535 parameters, and a page
/// of deliveries (bodies up to 1 MiB each) stays around 100 MiB in memory.
const PAGE: i64 = 100;

/// Values older SQLite histories lack where PostgreSQL requires one: the
/// source's expression for (table, column).
const FILLED: [(&str, &str, &str); 2] = [
    // Attempts recorded before leases had no owner or lease.
    ("attempts", "owner", "COALESCE(owner, 'before leases')"),
    (
        "attempts",
        "lease_until",
        "COALESCE(lease_until, finished_at, started_at)",
    ),
];

/// How many rows of one table were copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub rows: u64,
}

/// A column as the target types it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Time,
    Flag,
    Int,
    BigInt,
}

/// Copy every table of the SQLite file `from` into the PostgreSQL database
/// `to`, which must hold no history yet.
///
/// Fails when a daemon holds `from`, when `to` cannot be reached or already
/// holds history, or when a row does not fit; nothing is kept then.
pub async fn sqlite_to_postgres(from: &Path, to: &str) -> Result<Vec<Copied>> {
    let source = SqliteStore::open(from, Access::Exclusive).await?;
    let target = PostgresStore::open(to, Access::Exclusive).await?;
    let mut tx = target.pool().begin().await?;
    refuse_unless_empty(&mut tx, to).await?;
    let mut copied = Vec::new();
    for table in TABLES {
        let t = sqlx::AssertSqlSafe(format!("ALTER TABLE {table} DISABLE TRIGGER USER"));
        sqlx::query(t).execute(&mut *tx).await?;
        let rows = copy_table(source.reader(), &mut tx, table).await?;
        restart_ids(source.reader(), &mut tx, table).await?;
        let t = sqlx::AssertSqlSafe(format!("ALTER TABLE {table} ENABLE TRIGGER USER"));
        sqlx::query(t).execute(&mut *tx).await?;
        copied.push(Copied { table, rows });
    }
    // An email a stopped SQLite daemon was sending goes back to the queue
    // at the first look (SQLite kept no hold time).
    sqlx::query(
        "UPDATE outbox SET sending_until = now() WHERE status = $1 AND sending_until IS NULL",
    )
    .bind(super::EmailStatus::Sending)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(copied)
}

async fn refuse_unless_empty(tx: &mut sqlx::PgConnection, to: &str) -> Result<()> {
    for table in TABLES {
        let q = sqlx::AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {table})"));
        let held: bool = sqlx::query_scalar(q).fetch_one(&mut *tx).await?;
        if held {
            return Err(StoreError::Conflict(format!(
                "{} already holds history (its {table} table has rows); migrate-store copies into an empty database only",
                super::shown_url(to)
            )));
        }
    }
    Ok(())
}

/// The columns of `table` in the source, each with its type in the target.
async fn columns(
    source: &sqlx::SqlitePool,
    tx: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<(String, Kind)>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
        .bind(table)
        .fetch_all(source)
        .await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT data_type FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
        )
        .bind(table)
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?;
        let kind = match kind.as_deref() {
            Some("timestamp with time zone") => Kind::Time,
            Some("boolean") => Kind::Flag,
            Some("integer") => Kind::Int,
            Some("bigint") => Kind::BigInt,
            Some("text") => Kind::Text,
            other => {
                return Err(StoreError::Migrate(format!(
                    "column {table}.{name} has no counterpart in PostgreSQL ({}); upgrade runbookd on both sides first",
                    other.unwrap_or("missing")
                )));
            }
        };
        out.push((name, kind));
    }
    Ok(out)
}

async fn copy_table(
    source: &sqlx::SqlitePool,
    tx: &mut sqlx::PgConnection,
    table: &'static str,
) -> Result<u64> {
    let cols = columns(source, tx, table).await?;
    let list = cols
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let exprs = cols
        .iter()
        .map(
            |(n, _)| match FILLED.iter().find(|f| f.0 == table && f.1 == n) {
                Some((_, _, expr)) => format!("{expr} AS {n}"),
                None => n.clone(),
            },
        )
        .collect::<Vec<_>>()
        .join(", ");
    let read = format!(
        "SELECT rowid AS copy_rowid, {exprs} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT {PAGE}"
    );
    let (mut after, mut total) = (0i64, 0u64);
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(read.clone()))
            .bind(after)
            .fetch_all(source)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(total);
        };
        after = last.try_get("copy_rowid")?;
        let mut insert = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO {table} ({list}) OVERRIDING SYSTEM VALUE "
        ));
        let mut failed = None;
        insert.push_values(&rows, |mut b, row| {
            for (name, kind) in &cols {
                if let Err(e) = push_value(&mut b, row, name, *kind) {
                    failed.get_or_insert(e);
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        insert.build().execute(&mut *tx).await?;
        total += rows.len() as u64;
    }
}

/// Bind one source value as the target's column type wants it.
fn push_value(
    b: &mut sqlx::query_builder::Separated<'_, Postgres, &'static str>,
    row: &SqliteRow,
    name: &str,
    kind: Kind,
) -> Result<()> {
    match kind {
        Kind::Text => {
            let v: Option<String> = row.try_get(name)?;
            // PostgreSQL text cannot hold NUL; the daemon writes U+FFFD for it too.
            b.push_bind(v.map(|s| s.replace('\0', "\u{FFFD}")));
        }
        Kind::Time => {
            let v: Option<String> = row.try_get(name)?;
            b.push_bind(v.as_deref().map(parse_ts).transpose()?);
        }
        Kind::Flag => {
            let v: Option<i64> = row.try_get(name)?;
            b.push_bind(v.map(|x| x != 0));
        }
        Kind::Int => {
            let v: Option<i64> = row.try_get(name)?;
            let v = v.map(i32::try_from).transpose().map_err(|_| {
                StoreError::Migrate(format!("{name}: a value does not fit a PostgreSQL integer"))
            })?;
            b.push_bind(v);
        }
        Kind::BigInt => {
            let v: Option<i64> = row.try_get(name)?;
            b.push_bind(v);
        }
    }
    Ok(())
}

/// New ids continue after the copied ones (tables with an identity `id`).
async fn restart_ids(
    source: &sqlx::SqlitePool,
    tx: &mut sqlx::PgConnection,
    table: &str,
) -> Result<()> {
    let seq: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_serial_sequence(table_name, column_name) FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'id'
           AND is_identity = 'YES'",
    )
    .bind(table)
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    let Some(seq) = seq else { return Ok(()) };
    // Also after ids the source handed out and then pruned.
    let handed_out: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?1")
            .bind(table)
            .fetch_optional(source)
            .await?;
    let q = sqlx::AssertSqlSafe(format!(
        "SELECT setval($1, greatest($2::bigint, max(id))) FROM {table}
         HAVING greatest($2::bigint, max(id)) IS NOT NULL"
    ));
    let _: Option<i64> = sqlx::query_scalar(q)
        .bind(seq)
        .bind(handed_out)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(())
}
