//! Opening: migrations are applied once, concurrent opens of a new schema agree, a schema of a
//! newer format is refused naming both versions, and connection failures are retryable.

mod support;

use std::time::Duration;

use task_core::ids::{Priority, TenantId};
use task_core::store::{PageRequest, TaskFilter, TaskStore};
use task_core::testing::new_task;
use task_core::time::ManualClock;
use task_store_postgres::{PostgresOptions, PostgresStore, SCHEMA_VERSION};

fn fresh() -> support::TestSchema {
    support::TestSchema {
        url: support::database_url(),
        name: support::fresh_schema(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_the_data_and_applies_each_migration_once() {
    let schema = fresh();
    let clock = ManualClock::default();
    let first = support::open_with(support::options(&schema.name, &clock)).await;
    let made = first
        .create_task(new_task("kept", Priority::High))
        .await
        .expect("create")
        .task;
    drop(first);
    let again = support::open_with(support::options(&schema.name, &clock)).await;
    let tenant = TenantId::new("t1").expect("valid");
    let listed = again
        .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(listed.items, vec![made]);
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version")
            .fetch_all(again.pool())
            .await
            .expect("schema_version");
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // Schema version 4: `tasks` is vacuumed after a bounded number of dead rows.
    let mut storage: Vec<String> =
        sqlx::query_scalar("SELECT unnest(reloptions) FROM pg_class WHERE oid = 'tasks'::regclass")
            .fetch_all(again.pool())
            .await
            .expect("the storage parameters of tasks");
    storage.sort();
    assert_eq!(
        storage,
        [
            "autovacuum_vacuum_scale_factor=0.01",
            "autovacuum_vacuum_threshold=1000"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_new_schema_all_succeed() {
    let schema = fresh();
    let clock = ManualClock::default();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let options = support::options(&schema.name, &clock);
            tokio::spawn(PostgresStore::open_with(options))
        })
        .collect();
    for open in opens {
        open.await
            .expect("no panic")
            .expect("each open waits for the migration lock and succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_naming_both_versions() {
    let schema = fresh();
    let clock = ManualClock::default();
    let store = support::open_with(support::options(&schema.name, &clock)).await;
    let newer = SCHEMA_VERSION + 1;
    sqlx::query("INSERT INTO schema_version (version, description) VALUES ($1, 'from the future')")
        .bind(newer)
        .execute(store.pool())
        .await
        .expect("insert");
    drop(store);
    let err = PostgresStore::open_with(support::options(&schema.name, &clock))
        .await
        .expect_err("a newer schema is refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("version {newer}"))
            && text.contains(&format!("version {SCHEMA_VERSION}"))
            && text.contains(&schema.name),
        "{text}"
    );
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_retryable_error() {
    // Port 1 on the loopback: nothing listens, the connection is refused at once.
    let options = PostgresOptions::new("postgres://postgres@127.0.0.1:1/test")
        .expect("url")
        .with_acquire_timeout(Duration::from_secs(2));
    let err = PostgresStore::open_with(options)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pool_connections_fail_retryably_then_heal() {
    let schema = fresh();
    let clock = ManualClock::default();
    let store = support::open_with(support::options(&schema.name, &clock)).await;
    store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    let mut admin = support::connect().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(store.application_name())
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(!killed.is_empty(), "the store had pooled connections");
    let tenant = TenantId::new("t1").expect("valid");
    let (filter, page) = (TaskFilter::default(), PageRequest::first(5));
    let list = || store.list_tasks(&tenant, &filter, &page);
    if let Err(err) = list().await {
        assert!(err.is_retryable(), "a lost connection is retryable: {err}");
    }
    let healed = list().await.expect("the pool reconnects");
    assert_eq!(healed.items.len(), 1);
}
