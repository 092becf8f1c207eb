//! How long the console's task list takes to answer over a big sled store: the first page,
//! pages deep into the list by cursor, and filtered pages. Prints figures; asserts nothing.
//!
//! `TASKS=1000000 cargo bench -p task-console --bench task_pages` (default 1,000,000 tasks;
//! `--profile dev` skips the long release build and measures the same ratios, slower).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use task_console::{Console, ConsoleOptions};
use task_core::prelude::*;
use task_core::store::NewTask;
use task_core::task::TaskKey;
use task_http::ServiceConfig;
use task_store_sled::SledStore;
use tower::ServiceExt;

const KEY: &str = "bench-console-key";

async fn get(router: &axum::Router, cookie: &str, path: &str) -> (Duration, String) {
    let started = Instant::now();
    let request = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (started.elapsed(), String::from_utf8(body.to_vec()).unwrap())
}

/// The "More tasks" link of a list page.
fn next_link(page: &str) -> Option<String> {
    let start = page.find("rel=\"next\" href=\"")? + "rel=\"next\" href=\"".len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].replace("&amp;", "&"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::var("TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path().join("data")).unwrap());
    let tenant = TenantId::new("bench").unwrap();
    let product = ProductName::new("adbreaks").unwrap();
    let filling = Instant::now();
    for start in (0..total).step_by(5_000) {
        let batch = (start..(start + 5_000).min(total))
            .map(|n| NewTask {
                key: TaskKey {
                    tenant: tenant.clone(),
                    inventory_id: InventoryId::new(format!("item-{n}")).unwrap(),
                    product: product.clone(),
                    // One task in 1,000 is of version "rare": a sparse filter.
                    version: Version::new(if n % 1_000 == 7 { "rare" } else { "1" }).unwrap(),
                },
                priority: Priority::ALL[n % 3],
            })
            .collect();
        store.create_tasks(batch).await.unwrap();
    }
    println!(
        "filled {total} tasks in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let config = ServiceConfig::new()
        .with_api_key(KEY, tenant)
        .with_product(product);
    let router = Console::new(store, config, ConsoleOptions::default())
        .unwrap()
        .router();
    let signed_in = router
        .clone()
        .oneshot(
            Request::post("/ui/sign-in")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("key={KEY}")))
                .unwrap(),
        )
        .await
        .unwrap();
    let cookie = signed_in.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let one_item = format!("/ui/tasks?inventory_id=item-{}", total * 3 / 4);
    for (label, first) in [
        ("every task", "/ui/tasks"),
        ("priority high", "/ui/tasks?priority=high"),
        ("version rare (1 in 1,000)", "/ui/tasks?version=rare"),
        ("one inventory id", one_item.as_str()),
    ] {
        let (took, mut page) = get(&router, &cookie, first).await;
        let mut times = vec![took];
        for _ in 0..20 {
            let Some(next) = next_link(&page) else { break };
            let (took, body) = get(&router, &cookie, &next).await;
            times.push(took);
            page = body;
        }
        let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
        let worst = times.iter().map(|d| ms(*d)).fold(0.0, f64::max);
        println!(
            "{label:<28} first page {:>7.2} ms; {} pages by cursor: mean {mean:>7.2} ms, worst {worst:>7.2} ms",
            ms(times[0]),
            times.len()
        );
    }
}
