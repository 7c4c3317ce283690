//! SQLite: reading rows into the store's types, and the writes several
//! transactions share.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::store::*;

pub(super) fn json_col(row: &SqliteRow, col: &str) -> Result<Option<serde_json::Value>> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
        .transpose()
}

pub(super) fn time_col(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.try_get(col)?;
    text.as_deref().map(parse_ts).transpose()
}

pub(super) fn status_col(row: &SqliteRow, col: &str) -> Result<RunStatus> {
    let s: String = row.try_get(col)?;
    RunStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s}")))
}

pub(super) fn required<T>(v: Option<T>, col: &str) -> Result<T> {
    v.ok_or_else(|| StoreError::Corrupt(format!("{col} is empty")))
}

pub(super) fn run_row(row: &SqliteRow) -> Result<RunRow> {
    Ok(RunRow {
        id: row.try_get("id")?,
        runbook: row.try_get("runbook")?,
        version_hash: row.try_get("version_hash")?,
        trigger_kind: row.try_get("trigger_kind")?,
        trigger_key: row.try_get("trigger_key")?,
        scheduled_at: time_col(row, "scheduled_at")?,
        status: status_col(row, "status")?,
        params: json_col(row, "params")?.unwrap_or_default(),
        trigger_data: json_col(row, "trigger_data")?.unwrap_or_default(),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        dry_run: row.try_get::<i64, _>("dry_run")? != 0,
        created_at: required(time_col(row, "created_at")?, "created_at")?,
        started_at: time_col(row, "started_at")?,
        finished_at: time_col(row, "finished_at")?,
        output: json_col(row, "output")?,
        error: row.try_get("error")?,
    })
}

/// Whether to keep the prepared form of a multi-row statement of `rows`
/// rows. Its text changes with the row count, so only small batches (the
/// shapes a lightly loaded daemon repeats) are kept in the connection's
/// statement cache; larger ones would push out the writer's other
/// statements for shapes seldom seen twice.
pub(super) fn keep_prepared(rows: usize) -> bool {
    rows <= 8
}

pub(super) async fn insert_logs_in(
    tx: &mut sqlx::SqliteConnection,
    lines: &[LogRow],
) -> Result<()> {
    // 6 binds a row; SQLite allows 32,766 binds a statement.
    for chunk in lines.chunks(1000) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO logs (run_id, attempt, step, at, level, message) ",
        );
        q.push_values(chunk, |mut b, l| {
            b.push_bind(l.run_id)
                .push_bind(l.attempt as i64)
                .push_bind(l.step.clone())
                .push_bind(ts(l.at))
                .push_bind(l.level.clone())
                .push_bind(cap_text(&l.message));
        });
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}
