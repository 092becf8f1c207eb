//! The store a test daemon runs on: sled under the test's directory, or PostgreSQL at
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) in a schema of the test's
//! own, dropped when the test ends, pass or fail (as task-store-postgres's tests do, with its
//! `schema` option: here the `[postgres] schema` setting of taskd's TOML).

use std::ffi::OsString;
use std::path::Path;

use sqlx::Connection;

/// The server the tests use.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema no other test uses, dropped with this value.
pub struct Schema {
    /// The server.
    pub url: String,
    /// The schema's name.
    pub name: String,
}

impl Schema {
    /// A fresh name on [`database_url`]; nothing is created until a daemon opens it.
    pub fn fresh() -> Self {
        Self {
            url: database_url(),
            name: format!("taskd_{}", uuid::Uuid::now_v7().simple()),
        }
    }

    /// A plain connection to the server, failing the test with what to do if none answers.
    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no PostgreSQL at {}: {e}; set DATABASE_URL, or run the tests through \
                 scripts/postgres.sh (scripts/postgres.sh cargo test -p taskd)",
                    self.url
                )
            })
    }

    /// How many of the schema's tasks have each status, as `(status, count)` pairs.
    pub async fn status_counts(&self, conn: &mut sqlx::PgConnection) -> Vec<(String, i64)> {
        sqlx::query_as(&format!(
            "SELECT status, count(*) FROM \"{}\".tasks GROUP BY status ORDER BY status",
            self.name
        ))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("counting the tasks of schema {}: {e}", self.name))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // A runtime of its own: the test's may be shutting down.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// Which store a test's daemons use.
pub enum Backend {
    /// sled in `DIR/data`.
    Sled,
    /// PostgreSQL in a fresh schema.
    Postgres(Schema),
}

impl Backend {
    /// PostgreSQL in a fresh schema.
    pub fn postgres() -> Self {
        Backend::Postgres(Schema::fresh())
    }

    /// The flags that point a daemon with its files under `root` at this store.
    pub fn args(&self, root: &Path) -> Vec<OsString> {
        match self {
            Backend::Sled => vec!["--data-dir".into(), root.join("data").into()],
            Backend::Postgres(schema) => vec!["--store".into(), schema.url.clone().into()],
        }
    }

    /// What to append to the TOML config (a `[postgres]` table; nothing for sled). Each
    /// daemon keeps 4 pooled connections, so that a test's several daemons and the tests
    /// running beside it stay well under the server's connection limit.
    pub fn toml(&self) -> String {
        match self {
            Backend::Sled => String::new(),
            Backend::Postgres(schema) => format!(
                "\n[postgres]\nschema = \"{}\"\nmax_connections = 4\n",
                schema.name
            ),
        }
    }

    /// The schema, on PostgreSQL.
    pub fn schema(&self) -> Option<&Schema> {
        match self {
            Backend::Sled => None,
            Backend::Postgres(schema) => Some(schema),
        }
    }
}
