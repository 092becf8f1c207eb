//! Status counts of a database written by a build that kept none are counted at open; listing
//! with a filter that few tasks match pages through the tenant within a scan budget.

mod support;

use std::collections::BTreeSet;

use support::{open, populate, raw_open};
use task_core::prelude::*;
use task_core::testing::{assert_counts_match_listing, new_task};

/// Removes what this build adds for the counts (the counts keyspace and its marker), as a
/// build that kept none leaves the database.
fn forget_counts(dir: &std::path::Path) -> usize {
    let db = raw_open(dir);
    let meta = db.open_tree("meta").expect("meta");
    meta.remove("counts_kept").expect("remove marker");
    let data = db.open_tree("data").expect("data");
    let keys: Vec<_> = data
        .scan_prefix(b"U")
        .map(|entry| entry.expect("entry").0)
        .collect();
    for key in &keys {
        data.remove(key).expect("remove count");
    }
    db.flush().expect("flush");
    keys.len()
}

#[tokio::test]
async fn counts_missing_from_an_older_database_are_counted_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    populate(&store, &clock).await;
    let expected = store.status_counts(None).await.expect("counts");
    drop(store);
    assert!(forget_counts(dir.path()) >= 4, "several counts were kept");

    let reopened = open(dir.path(), &clock);
    assert_eq!(
        reopened.status_counts(None).await.expect("counts"),
        expected
    );
    assert_eq!(
        reopened.check_consistency().expect("check"),
        Vec::<String>::new()
    );
    let tenant = TenantId::new("t1").expect("valid");
    assert_counts_match_listing(&reopened, &tenant, "after counting at open").await;
    // Counted once: the marker is back, and later writes keep the counts in step.
    reopened
        .create_task(new_task("later", Priority::Medium))
        .await
        .expect("create");
    drop(reopened);
    let reopened = open(dir.path(), &clock);
    assert_counts_match_listing(&reopened, &tenant, "after a write and a reopen").await;
}

#[tokio::test]
async fn a_rare_filter_pages_within_the_scan_budget_and_finds_every_match() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let total = 12_000;
    let mut wanted = BTreeSet::new();
    for chunk in (0..total).collect::<Vec<_>>().chunks(2_000) {
        let batch = chunk
            .iter()
            .map(|i| {
                // One task in 3,000 is high: the filter matches four.
                let priority = if i % 3_000 == 2_999 {
                    Priority::High
                } else {
                    Priority::Low
                };
                new_task(&format!("i{i}"), priority)
            })
            .collect();
        for outcome in store.create_tasks(batch).await.expect("create") {
            if outcome.task.priority == Priority::High {
                wanted.insert(outcome.task.id);
            }
        }
    }
    assert_eq!(wanted.len(), 4);
    let tenant = TenantId::new("t1").expect("valid");
    let filter = TaskFilter {
        priority: Some(Priority::High),
        ..TaskFilter::default()
    };
    let mut page = PageRequest::first(10);
    let mut found = BTreeSet::new();
    let mut pages = 0;
    let mut short_pages_with_next = 0;
    loop {
        let got = store
            .list_tasks(&tenant, &filter, &page)
            .await
            .expect("list");
        pages += 1;
        assert!(pages <= 10, "paging must end");
        for task in &got.items {
            assert!(found.insert(task.id), "task {} listed twice", task.id);
        }
        match got.next {
            Some(next) => {
                if got.items.len() < 10 {
                    short_pages_with_next += 1;
                }
                page.after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(found, wanted, "every match found, each once");
    assert!(
        short_pages_with_next >= 2,
        "the budget cut pages short ({pages} pages)"
    );
    // A filter every task matches still fills its pages.
    let full = store
        .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(full.items.len(), 100);
    assert!(full.next.is_some());
}
