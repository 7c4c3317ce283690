//! PostgreSQL: reading rows into the store's types, and the writes several
//! transactions share.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use crate::store::*;

/// Free text as PostgreSQL stores it: a text value cannot hold NUL, so each
/// is replaced by U+FFFD (SQLite keeps it). Without this one stray byte in a
/// webhook body would fail the whole batch it arrived in.
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// [`cap_text`], then [`text`]: log lines and errors.
pub(super) fn capped(s: &str) -> String {
    text(&cap_text(s)).into_owned()
}

/// [`text`] of an optional value.
pub(super) fn opt_text(s: &Option<String>) -> Option<std::borrow::Cow<'_, str>> {
    s.as_deref().map(text)
}

pub(super) fn json_col(row: &PgRow, col: &str) -> Result<Option<serde_json::Value>> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
        .transpose()
}

pub(super) fn run_row(row: &PgRow) -> Result<RunRow> {
    Ok(RunRow {
        id: row.try_get("id")?,
        runbook: row.try_get("runbook")?,
        version_hash: row.try_get("version_hash")?,
        trigger_kind: row.try_get("trigger_kind")?,
        trigger_key: row.try_get("trigger_key")?,
        scheduled_at: row.try_get("scheduled_at")?,
        status: row.try_get("status")?,
        params: json_col(row, "params")?.unwrap_or_default(),
        trigger_data: json_col(row, "trigger_data")?.unwrap_or_default(),
        attempts: row.try_get::<i32, _>("attempts")? as u32,
        dry_run: row.try_get("dry_run")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        output: json_col(row, "output")?,
        error: row.try_get("error")?,
    })
}

pub(super) async fn insert_logs_in(tx: &mut PgConnection, lines: &[LogRow]) -> Result<()> {
    // 6 binds a row; PostgreSQL allows 65,535 binds a statement.
    for chunk in lines.chunks(1000) {
        let mut q = QueryBuilder::<Postgres>::new(
            "INSERT INTO logs (run_id, attempt, step, at, level, message) ",
        );
        q.push_values(chunk, |mut b, l| {
            b.push_bind(l.run_id)
                .push_bind(l.attempt as i32)
                .push_bind(l.step.clone())
                .push_bind(l.at)
                .push_bind(l.level.clone())
                .push_bind(capped(&l.message));
        });
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}
