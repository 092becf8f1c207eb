//! Test support: a fresh schema per test on the server at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when the test ends, pass or fail.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use task_core::time::ManualClock;
use task_store_postgres::{PostgresOptions, PostgresStore};

/// The server the tests use.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// Drops its schema when dropped.
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // A runtime of its own: the test's may be shutting down, or be a current-thread one.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                // A store dropped by the test may still have a background statement (the
                // statistics fold) in flight: PostgreSQL then breaks the deadlock with the
                // drop by failing one side; the drop goes again once that statement is gone.
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match sqlx::raw_sql(&drop).execute(&mut conn).await {
                        Err(sqlx::Error::Database(e))
                            if e.code().as_deref() == Some("40P01") && attempts < 5 => {}
                        other => {
                            other?;
                            break;
                        }
                    }
                }
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// Options for a store in `schema` on `clock`.
pub fn options(schema: &str, clock: &ManualClock) -> PostgresOptions {
    PostgresOptions::new(&database_url())
        .expect("a valid DATABASE_URL")
        .with_schema(schema)
        .with_clock(Arc::new(clock.clone()))
}

/// Opens `options`, failing the test with what to do if no server answers.
pub async fn open_with(options: PostgresOptions) -> PostgresStore {
    match tokio::time::timeout(Duration::from_secs(30), PostgresStore::open_with(options)).await {
        Ok(Ok(store)) => store,
        Ok(Err(err)) => panic!(
            "cannot open a PostgreSQL store at {}: {err}\n\
             These tests need a PostgreSQL server: set DATABASE_URL to one where this user may \
             create schemas, or run them through scripts/postgres.sh, which finds the local \
             server or starts a throwaway cluster: \
             scripts/postgres.sh cargo test -p task-store-postgres",
            database_url()
        ),
        Err(_) => panic!(
            "no PostgreSQL answered at {} within 30 s: set DATABASE_URL, or run the tests through \
             scripts/postgres.sh (scripts/postgres.sh cargo test -p task-store-postgres)",
            database_url()
        ),
    }
}

/// A store in a fresh schema, opened inside the calling (multi-thread) tokio runtime.
pub fn open(clock: ManualClock) -> (PostgresStore, TestSchema) {
    let name = fresh_schema();
    let guard = TestSchema {
        url: database_url(),
        name: name.clone(),
    };
    let store = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(open_with(options(&name, &clock)))
    });
    (store, guard)
}

/// A plain connection to the test server, for inspecting and breaking things.
pub async fn connect() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&database_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no PostgreSQL at {}: {e}; set DATABASE_URL, or run the tests through \
                 scripts/postgres.sh (scripts/postgres.sh cargo test -p task-store-postgres)",
                database_url()
            )
        })
}
