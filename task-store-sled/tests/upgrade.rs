//! Databases written by formats 1 and 2 (one sled tree per keyspace, history values in their
//! own tree) are upgraded on open to format 4 with every task, history, index, item, result
//! and cache entry intact; an upgrade interrupted before its marker is redone from scratch.
//! Format 3 has format 4's layout without the journal: it is only marked 4.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use support::{open, populate};
use task_core::prelude::*;
use task_core::testing::LEASE;
use task_store_sled::{RawEntry, SledStore};

/// Everything a client can read, for comparing two stores.
async fn observable(store: &SledStore) -> Vec<String> {
    let mut seen = Vec::new();
    for tenant in ["t1", "t2"] {
        let tenant = TenantId::new(tenant).expect("valid");
        let page = store
            .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(100))
            .await
            .expect("list");
        for task in page.items {
            let history = store.history(&tenant, task.id).await.expect("history");
            let latest = store.latest_task(&task.key).await.expect("latest");
            seen.push(format!("{task:?}\n{history:?}\n{:?}", latest.map(|t| t.id)));
        }
        let items = store
            .list_items(&tenant, true, &PageRequest::first(100))
            .await
            .expect("items");
        seen.push(format!("{:?}", items.items));
    }
    seen
}

/// Writes, into `dir`, the database of `dump` as format `version` stored it.
fn write_legacy(dir: &Path, version: u32, dump: &[RawEntry]) {
    let db = sled::open(dir).expect("raw open");
    db.open_tree("meta")
        .expect("tree")
        .insert("format", &version.to_be_bytes()[..])
        .expect("marker");
    // A half-finished earlier upgrade attempt: the upgrade must start over.
    db.open_tree("data")
        .expect("tree")
        .insert(b"Tleftover", &b"junk"[..])
        .expect("leftover");
    let legacy_value = |value: &[u8]| [&[version as u8][..], &value[1..]].concat();
    for entry in dump {
        let tree = db.open_tree(entry.tree).expect("tree");
        match entry.tree {
            "meta" => continue,
            "tasks" => {
                let record: BTreeMap<String, Value> =
                    serde_json::from_slice(&entry.value[1..]).expect("record");
                let history = record["history"].as_array().expect("history").clone();
                let old = json!({
                    "task": record["task"],
                    // Left out when None, as the current format does.
                    "ready_seq": record.get("ready_seq").cloned().unwrap_or(Value::Null),
                    "history_len": history.len(),
                });
                tree.insert(
                    &entry.key,
                    legacy_value(&[&[0][..], &serde_json::to_vec(&old).expect("json")].concat()),
                )
                .expect("record");
                let history_tree = db.open_tree("history").expect("tree");
                for (seq, item) in history.iter().enumerate() {
                    // Format 1: one entry per value; format 2: the entries of one call (here one).
                    let body = if version == 1 {
                        item.clone()
                    } else {
                        json!([item])
                    };
                    let key = [&entry.key[..], &(seq as u32).to_be_bytes()].concat();
                    let value = [
                        &[version as u8][..],
                        &serde_json::to_vec(&body).expect("json"),
                    ]
                    .concat();
                    history_tree.insert(key, value).expect("history");
                }
            }
            "items" | "results" | "cache" => {
                tree.insert(&entry.key, legacy_value(&entry.value))
                    .expect("value");
            }
            _ => {
                tree.insert(&entry.key, entry.value.clone()).expect("index");
            }
        }
    }
    db.flush().expect("flush");
}

async fn upgrade_from(version: u32) {
    let source_dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let source = open(source_dir.path(), &clock);
    populate(&source, &clock).await;
    let dump = source.raw_dump().expect("dump");
    let expected = observable(&source).await;
    drop(source);

    let legacy_dir = tempfile::tempdir().expect("temp dir");
    write_legacy(legacy_dir.path(), version, &dump);
    let upgraded = open(legacy_dir.path(), &clock);
    assert_eq!(observable(&upgraded).await, expected);
    assert!(upgraded.check_consistency().expect("check").is_empty());
    let upgraded_dump = upgraded.raw_dump().expect("dump");
    let records = |dump: &[RawEntry]| -> Vec<RawEntry> {
        dump.iter().filter(|e| e.tree == "tasks").cloned().collect()
    };
    assert_eq!(
        records(&upgraded_dump),
        records(&dump),
        "records re-encoded in the current format"
    );
    let marker = upgraded_dump
        .iter()
        .find(|e| e.tree == "meta" && e.key == b"format")
        .expect("marker");
    assert_eq!(marker.value, 4u32.to_be_bytes());
    assert_eq!(
        upgraded_dump.iter().filter(|e| e.tree == "ready").count(),
        dump.iter().filter(|e| e.tree == "ready").count(),
        "the in-memory queue is rebuilt"
    );
    // The queue works: the pending tasks are claimable, in priority order.
    let claimed = upgraded
        .claim(&ClaimRequest {
            max: 10,
            ..ClaimRequest::one(WorkerId::new("w9").expect("valid"), LEASE)
        })
        .await
        .expect("claim");
    assert!(!claimed.is_empty());
    assert!(
        claimed
            .windows(2)
            .all(|w| w[0].priority.rank() <= w[1].priority.rank())
    );
    drop(upgraded);

    let db = support::raw_open(legacy_dir.path());
    let names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "tasks" || n == "history" || n == "ready"),
        "old trees dropped: {names:?}"
    );
}

#[tokio::test]
async fn a_format_2_database_is_upgraded_whole() {
    upgrade_from(2).await;
}

#[tokio::test]
async fn a_format_1_database_is_upgraded_whole() {
    upgrade_from(1).await;
}

#[tokio::test]
async fn a_format_3_database_is_marked_4_and_kept_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    populate(&store, &clock).await;
    let expected = observable(&store).await;
    let dump = store.raw_dump().expect("dump");
    drop(store);

    // What a format-3 build leaves: the same trees, marker 3, no journal.
    support::set_format_marker(dir.path(), 3);
    std::fs::remove_dir_all(dir.path().join("journal")).expect("no journal in format 3");

    let reopened = open(dir.path(), &clock);
    assert_eq!(observable(&reopened).await, expected);
    assert_eq!(reopened.raw_dump().expect("dump"), dump);
    assert!(reopened.check_consistency().expect("check").is_empty());
}
