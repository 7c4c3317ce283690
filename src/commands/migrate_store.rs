//! `runbookd migrate-store FROM TO`: move a SQLite history into PostgreSQL.

use super::{Exit, Failure, Outcome};
use crate::cli::MigrateStoreArgs;
use crate::store::{StoreError, shown_url, sqlite_path};

pub async fn run(args: MigrateStoreArgs) -> Outcome {
    let scheme = |url: &str| url.split_once("://").map(|(s, _)| s.to_string());
    if !matches!(scheme(&args.from).as_deref(), Some("sqlite") | None) {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "FROM {}: copies from a SQLite database (sqlite://FILE)",
                shown_url(&args.from)
            ),
        ));
    }
    if !matches!(scheme(&args.to).as_deref(), Some("postgres" | "postgresql")) {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "TO {}: copies into a PostgreSQL database (postgres://USER@HOST/DB)",
                shown_url(&args.to)
            ),
        ));
    }
    let from = sqlite_path(&args.from);
    if !from.exists() {
        return Err(Failure::new(
            Exit::Unavailable,
            format!("FROM {}: there is no such file", from.display()),
        ));
    }
    let copied = crate::store::copy::sqlite_to_postgres(&from, &args.to)
        .await
        .map_err(|e| match e {
            e @ StoreError::Busy { .. } => Failure::new(Exit::Unavailable, e.to_string())
                .hint("stop the daemon first: the copy must see a history nobody writes"),
            other => other.into(),
        })?;
    for c in &copied {
        println!("{:<18} {:>9} row(s)", c.table, c.rows);
    }
    println!(
        "copied {} into {}; start the daemons with --database {}",
        from.display(),
        shown_url(&args.to),
        shown_url(&args.to)
    );
    Ok(Exit::Ok)
}
