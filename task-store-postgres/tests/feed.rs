//! The change feed across processes: a change made through one store instance reaches the
//! subscribers of another on the same schema, also after the listener's connection is
//! killed, and a store never announces its own changes twice.

mod support;

use std::time::Duration;

use task_core::ids::Priority;
use task_core::store::{TaskChange, TaskStore};
use task_core::testing::new_task;
use task_core::time::ManualClock;
use task_store_postgres::PostgresStore;
use tokio::sync::broadcast;

/// Two stores (two "processes") on one fresh schema; `poll` is the first one's poll interval.
async fn pair(poll: Duration) -> (PostgresStore, PostgresStore, support::TestSchema) {
    let clock = ManualClock::default();
    let name = support::fresh_schema();
    let guard = support::TestSchema {
        url: support::database_url(),
        name: name.clone(),
    };
    let watcher =
        support::open_with(support::options(&name, &clock).with_poll_interval(poll)).await;
    let writer = support::open_with(support::options(&name, &clock)).await;
    (watcher, writer, guard)
}

async fn next_change(changes: &mut broadcast::Receiver<TaskChange>) -> TaskChange {
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a change arrives within 10 s")
        .expect("the channel is open")
}

/// The pids of the backends whose application_name is `name`.
async fn backends(name: &str) -> Vec<i32> {
    let mut conn = support::connect().await;
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
        .bind(name)
        .fetch_all(&mut conn)
        .await
        .expect("pg_stat_activity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_change_is_seen_once_and_own_changes_are_not_repeated() {
    // A poll of a minute: within the 10 s wait only a notification can deliver.
    let (watcher, writer, _guard) = pair(Duration::from_secs(60)).await;
    let mut changes = watcher.subscribe();
    let mine = watcher
        .create_task(new_task("mine", Priority::Low))
        .await
        .expect("create")
        .task;
    assert_eq!(next_change(&mut changes).await.task_id, mine.id);
    let theirs = writer
        .create_task(new_task("theirs", Priority::Low))
        .await
        .expect("create")
        .task;
    let seen = next_change(&mut changes).await;
    assert_eq!(
        seen.task_id, theirs.id,
        "the other instance's change, not a repeat of our own"
    );
    assert_eq!(seen, TaskChange::of(&theirs));
    // Nothing else: our own change is not read back from the feed.
    writer
        .create_task(new_task("marker", Priority::Low))
        .await
        .expect("create");
    let marker = next_change(&mut changes).await;
    assert_ne!(marker.task_id, mine.id, "our own change came back");
    assert!(changes.try_recv().is_err(), "exactly one change per write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_reconnects_and_sees_later_changes() {
    let (watcher, writer, _guard) = pair(Duration::from_secs(60)).await;
    let mut changes = watcher.subscribe();
    let name = watcher.listener_application_name();
    // The listener connects in the background: wait until it is there.
    let mut before = Vec::new();
    for _ in 0..100 {
        before = backends(&name).await;
        if !before.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(before.len(), 1, "one listener connection named {name}");
    let mut admin = support::connect().await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(before[0])
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed, "the listener's backend was terminated");

    // A change made while the listener is down or reconnecting is read by the resync that
    // follows the reconnection; one made after it by the notification. Either way it arrives,
    // long before the one-minute poll.
    let during = writer
        .create_task(new_task("during", Priority::Low))
        .await
        .expect("create")
        .task;
    assert_eq!(next_change(&mut changes).await.task_id, during.id);
    let mut after = Vec::new();
    for _ in 0..200 {
        after = backends(&name).await;
        if !after.is_empty() && after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !after.is_empty() && after != before,
        "the listener reconnected with a new backend: {before:?} -> {after:?}"
    );
    let later = writer
        .create_task(new_task("later", Priority::Low))
        .await
        .expect("create")
        .task;
    assert_eq!(next_change(&mut changes).await.task_id, later.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_alone_delivers_when_notifications_are_lost() {
    let (watcher, writer, _guard) = pair(Duration::from_millis(200)).await;
    let mut changes = watcher.subscribe();
    let task = writer
        .create_task(new_task("polled", Priority::Low))
        .await
        .expect("create")
        .task;
    let first = next_change(&mut changes).await;
    assert_eq!(first.task_id, task.id);
    let mut admin = support::connect().await;
    sqlx::raw_sql(&format!(
        "SET search_path TO \"{schema}\";
         UPDATE change_counter SET seq = seq + 1;
         UPDATE tasks SET seq = (SELECT seq FROM change_counter),
             doc = jsonb_set(doc, '{{priority}}', '\"high\"')
         WHERE id = '{id}';",
        schema = writer.schema(),
        id = task.id
    ))
    .execute(&mut admin)
    .await
    .expect("a silent write");
    let polled = tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .expect("the poll delivers a change without any notification")
        .expect("open");
    assert_eq!(polled.task_id, task.id);
}
