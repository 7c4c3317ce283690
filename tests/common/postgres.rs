//! A database of its own on the PostgreSQL server `RUNBOOKD_TEST_POSTGRES_URL`
//! names (CI sets it to the local server), created for one test and dropped
//! after it. Without the variable, tests that need it say they were skipped.

use sqlx::Connection;

/// The variable that names the test server.
pub const URL_VAR: &str = "RUNBOOKD_TEST_POSTGRES_URL";

/// A fresh, empty database, dropped (with its connections) when this is.
pub struct TestDb {
    admin: String,
    name: String,
    /// The URL of the fresh database, for `--database`.
    pub url: String,
}

impl TestDb {
    /// A fresh database; `None` (saying so on stderr) when no server is named.
    pub fn create(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var(URL_VAR) else {
            eprintln!("skipped on PostgreSQL ({test}): {URL_VAR} is not set");
            return None;
        };
        let name = format!("runbookd_test_{}_{}", std::process::id(), rand_suffix());
        let mut url = url::Url::parse(&admin).expect("RUNBOOKD_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        let db = TestDb {
            admin,
            url: url.to_string(),
            name,
        };
        db.admin_sql(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    fn admin_sql(&self, sql: &str) {
        let (admin, sql) = (self.admin.clone(), sql.to_string());
        // Its own thread and runtime: callers may be inside a runtime, or in Drop.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("{URL_VAR}={admin} cannot be reached: {e}"));
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            })
        })
        .join()
        .expect("the admin statement ran");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.admin_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() % 1_000_000_000
}
