//! Benchmarks of task-store-sled, printed as a table of figures measured in one run.
//!
//! `cargo bench --bench sled_store`. Measures, on this machine: a plain 4 KiB write + fdatasync
//! loop (the one-fsync-per-write rate), durable creates with 1, 16 and 256 concurrent writers,
//! the full task lifecycle with 64 concurrent workers (one call per event, claims of one), the
//! runner's write pattern with 64 workers (claims of up to 16, five applies per task), and
//! opening a store of 1,000,000 tasks (100,000 pending; built once into a cache under target/)
//! in a fresh process: time to first claim, resident memory and bytes on disk per task.
//! `-- --no-open` skips the open measurements; `-- --runner-only` runs the runner pattern only,
//! `-- --creates-only` the fsync loop and the 256-writer creates.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use task_core::prelude::*;
use task_core::time::{Clock, SystemClock};
use task_store_sled::{Durability, SledOptions, SledStore};

const PHASE: Duration = Duration::from_secs(3);

fn key(tenant: &str, item: String) -> TaskKey {
    TaskKey {
        tenant: TenantId::new(tenant).expect("tenant"),
        inventory_id: InventoryId::new(item).expect("item"),
        product: ProductName::new("adbreaks").expect("product"),
        version: Version::new("1").expect("version"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes of 4 KiB, each followed by fdatasync, for `PHASE`: the rate of one fsync per write.
fn fsync_rate(dir: &Path) -> f64 {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("create");
    let block = [7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < PHASE {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(path);
    rate
}

/// Durable creates per second with `writers` concurrent writers; and writes per flush.
fn creates(dir: &Path, writers: usize) -> (f64, f64) {
    let store = SledStore::open(dir.join(format!("creates-{writers}"))).expect("open");
    let rt = runtime();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let before = store.commit_stats();
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (store, count, stop) = (store.clone(), count.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let new = NewTask {
                            key: key("bench", format!("w{w}-{i}")),
                            priority: Priority::Low,
                        };
                        store.create_task(new).await.expect("create");
                        count.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(PHASE).await;
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            handle.await.expect("writer");
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let stats = store.commit_stats().since(&before);
    (
        count.load(Ordering::Relaxed) as f64 / elapsed,
        stats.writes_per_flush(),
    )
}

/// Full lifecycles per second (create, claim, 4 x (start, checkpoint), done: 11 durable
/// writes each) with `workers` concurrent workers.
fn lifecycles(dir: &Path, workers: usize) -> (f64, f64) {
    let store = SledStore::open(dir.join("lifecycle")).expect("open");
    let rt = runtime();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let before = store.commit_stats();
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (store, done, stop) = (store.clone(), done.clone(), stop.clone());
                tokio::spawn(async move {
                    let me = WorkerId::new(format!("w{w}")).expect("worker");
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let new = NewTask {
                            key: key("life", format!("w{w}-{i}")),
                            priority: Priority::Medium,
                        };
                        store.create_task(new).await.expect("create");
                        i += 1;
                        let Some(task) = store
                            .claim_one(me.clone(), Duration::from_secs(300))
                            .await
                            .expect("claim")
                        else {
                            continue;
                        };
                        for step in Step::ALL {
                            store
                                .apply(task.id, task.epoch, &[TaskEvent::StepStarted { step }])
                                .await
                                .expect("start");
                            let output = serde_json::json!({ "step": step.as_str(), "ok": true });
                            store
                                .record_checkpoint(task.id, task.epoch, output)
                                .await
                                .expect("checkpoint");
                        }
                        store.finish(task.id, task.epoch).await.expect("done");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(PHASE + PHASE).await;
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            handle.await.expect("worker");
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let stats = store.commit_stats().since(&before);
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        stats.writes_per_flush(),
    )
}

/// The runner's write pattern, as task-runner's executor does it: tasks created one per call by
/// 16 producers (at most 1,024 tasks in the system), a dispatcher claiming up to 16 tasks per
/// call for the free slots of `workers`, and 5 applies per task with the runner's event groups
/// ([start s3_check], [checkpoint, start probe], [checkpoint, start length_gate],
/// [checkpoint, start analyze], [checkpoint, done]): 7 durable calls per task (the claim shared).
fn runner_pattern(dir: &Path, workers: usize) -> (f64, task_store_sled::CommitStats) {
    use tokio::sync::Semaphore;
    let store = SledStore::open(dir.join(format!("runner-{workers}"))).expect("open");
    let rt = runtime();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let before = store.commit_stats();
    let start = Instant::now();
    rt.block_on(async {
        let backlog = Arc::new(Semaphore::new(1_024));
        let slots = Arc::new(Semaphore::new(workers));
        let producers: Vec<_> = (0..16)
            .map(|p| {
                let (store, stop, backlog) = (store.clone(), stop.clone(), backlog.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let permit = backlog.clone().acquire_owned().await.expect("backlog");
                        permit.forget();
                        let new = NewTask {
                            key: key("runner", format!("p{p}-{i}")),
                            priority: Priority::Medium,
                        };
                        store.create_task(new).await.expect("create");
                        i += 1;
                    }
                })
            })
            .collect();
        let dispatcher = {
            let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
            let (slots, backlog) = (slots.clone(), backlog.clone());
            tokio::spawn(async move {
                let me = WorkerId::new("runner").expect("worker");
                while !stop.load(Ordering::Relaxed) {
                    let mut permits = slots.clone().acquire_owned().await.expect("slot");
                    while permits.num_permits() < 16 {
                        match slots.clone().try_acquire_owned() {
                            Ok(more) => permits.merge(more),
                            Err(_) => break,
                        }
                    }
                    let request = ClaimRequest {
                        max: permits.num_permits(),
                        ..ClaimRequest::one(me.clone(), Duration::from_secs(300))
                    };
                    let claimed = store.claim(&request).await.expect("claim");
                    if claimed.is_empty() {
                        drop(permits);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    for task in claimed {
                        let slot = permits.split(1).expect("a permit per task");
                        let (store, done, backlog) = (store.clone(), done.clone(), backlog.clone());
                        tokio::spawn(async move {
                            for events in runner_events() {
                                store
                                    .apply(task.id, task.epoch, &events)
                                    .await
                                    .expect("apply");
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                            backlog.add_permits(1);
                            drop(slot);
                        });
                    }
                }
            })
        };
        tokio::time::sleep(PHASE + PHASE).await;
        stop.store(true, Ordering::Relaxed);
        backlog.add_permits(1_024);
        for handle in producers {
            handle.await.expect("producer");
        }
        dispatcher.await.expect("dispatcher");
    });
    let elapsed = start.elapsed().as_secs_f64();
    let stats = store.commit_stats().since(&before);
    (done.load(Ordering::Relaxed) as f64 / elapsed, stats)
}

/// The event groups of task-runner's executor for a task with four no-op steps.
fn runner_events() -> Vec<Vec<TaskEvent>> {
    let succeeded = |step: Step| TaskEvent::StepSucceeded {
        output: serde_json::json!({ "step": step.as_str(), "ok": true }),
        reused: false,
    };
    let mut groups = vec![vec![TaskEvent::StepStarted {
        step: Step::S3Check,
    }]];
    for pair in Step::ALL.windows(2) {
        groups.push(vec![
            succeeded(pair[0]),
            TaskEvent::StepStarted { step: pair[1] },
        ]);
    }
    groups.push(vec![succeeded(Step::Analyze), TaskEvent::Done]);
    groups
}

/// Builds (once) a store of `total` tasks of which `pending` stay pending; the rest are done
/// with a full history. With `prune`, a retention shorter than a round deletes the finished
/// tasks after every round of 1,000, as a store with a retention does continuously.
fn build_cache(path: &Path, total: usize, pending: usize, prune: bool) {
    let marker = path.join("bench-complete");
    if marker.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(path);
    eprintln!(
        "building {} ({total} tasks, {pending} pending), once...",
        path.display()
    );
    let begun = Instant::now();
    let options = SledOptions::default().with_durability(Durability::Buffered {
        interval: Duration::from_millis(500),
    });
    let store = SledStore::open_with(path, options).expect("open cache");
    let rt = runtime();
    rt.block_on(async {
        const BATCH: usize = 1_000;
        for b in 0..total / BATCH {
            let batch = (0..BATCH)
                .map(|i| NewTask {
                    key: key("bench", format!("item-{}", b * BATCH + i)),
                    priority: Priority::Low,
                })
                .collect();
            store.create_tasks(batch).await.expect("create");
        }
        let me = WorkerId::new("builder").expect("worker");
        let mut finished = 0;
        while finished < total - pending {
            let request = ClaimRequest {
                max: BATCH.min(total - pending - finished),
                ..ClaimRequest::one(me.clone(), Duration::from_secs(3600))
            };
            let claimed = store.claim(&request).await.expect("claim");
            finished += claimed.len();
            // Each task runs the runner's five applies; the tasks of a batch run concurrently.
            let mut running = tokio::task::JoinSet::new();
            for task in claimed {
                let store = store.clone();
                running.spawn(async move {
                    for events in runner_events() {
                        store
                            .apply(task.id, task.epoch, &events)
                            .await
                            .expect("run");
                    }
                });
            }
            while let Some(joined) = running.join_next().await {
                joined.expect("task");
            }
            if prune {
                let later = Timestamp::from_millis(SystemClock.now().as_millis() + 1);
                store.prune_finished_before(later).await.expect("prune");
            }
        }
    });
    drop(store);
    std::fs::write(&marker, b"ok").expect("marker");
    eprintln!("built in {:.0} s", begun.elapsed().as_secs_f64());
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// In a fresh process: open, first claim, release it again; prints `open_ms claim_ms rss_kib hwm_kib`.
fn open_probe(path: &Path) {
    let start = Instant::now();
    let store = SledStore::open(path).expect("open");
    let opened = start.elapsed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let task = rt
        .block_on(store.claim_one(WorkerId::new("probe").expect("w"), Duration::from_secs(60)))
        .expect("claim")
        .expect("a pending task");
    let claimed = start.elapsed();
    rt.block_on(store.apply(task.id, task.epoch, &[TaskEvent::LeaseReleased]))
        .expect("release");
    println!(
        "{} {} {} {}",
        opened.as_millis(),
        claimed.as_millis(),
        status_kib("VmRSS:"),
        status_kib("VmHWM:")
    );
}

fn probe(path: &Path) -> (u64, u64, u64, u64) {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg("--open-probe")
        .arg(path)
        .output()
        .expect("probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (v[0], v[1], v[2], v[3])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--open-probe") {
        open_probe(Path::new(&args[i + 1]));
        return;
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&target).expect("target tmp");
    let scratch = tempfile::tempdir_in(&target).expect("scratch dir");

    if args.iter().any(|a| a == "--creates-only") {
        let fsync = fsync_rate(scratch.path());
        let (rate, per_flush) = creates(scratch.path(), 256);
        println!(
            "fsync loop {fsync:.0} /s; durable creates, 256 writers: {rate:.0} /s ({per_flush:.1} writes per fsync), {:.2}x",
            rate / fsync
        );
        return;
    }
    if args.iter().any(|a| a == "--runner-only") {
        let (rate, stats) = runner_pattern(scratch.path(), 64);
        println!("runner pattern: {rate:.0} tasks/s, {stats:?}");
        return;
    }
    let fsync = fsync_rate(scratch.path());
    println!("| measure | figure | ratio |");
    println!("| --- | --- | --- |");
    println!("| 4 KiB write + fdatasync loop | {fsync:.0} /s | 1.00x |");
    for writers in [1, 16, 256] {
        let (rate, per_flush) = creates(scratch.path(), writers);
        println!(
            "| durable creates, {writers} writers | {rate:.0} /s ({per_flush:.1} writes per fsync) | {:.2}x |",
            rate / fsync
        );
    }
    let (rate, per_flush) = lifecycles(scratch.path(), 64);
    println!(
        "| full lifecycle (11 durable writes), 64 workers | {rate:.0} tasks/s = {:.0} writes/s ({per_flush:.1} writes per fsync) | {:.2}x |",
        rate * 11.0,
        rate * 11.0 / fsync
    );
    let (rate, stats) = runner_pattern(scratch.path(), 64);
    println!(
        "| runner pattern (create, claim x16, 5 applies), 64 workers | {rate:.0} tasks/s ({:.1} writes per commit, {:.1} writes per fsync, fsync busy {:.0}%) | |",
        stats.writes_per_commit(),
        stats.writes_per_flush(),
        100.0 * stats.flush_time.as_secs_f64() / (PHASE + PHASE).as_secs_f64()
    );
    if std::env::args().any(|a| a == "--no-open") {
        return;
    }

    let cache = target.join("sled-bench-cache");
    let mut resident: Vec<(usize, u64)> = Vec::new();
    for (name, total, pending) in [
        // "-v3": format 3, built with the runner's event groups. The three sizes share their
        // 100,000 pending tasks, so the differences are the cost of finished tasks.
        ("100k-pending-v3", 100_000, 100_000),
        ("400k-tasks-v3", 400_000, 100_000),
        ("1m-tasks-v3", 1_000_000, 100_000),
    ] {
        let path = cache.join(name);
        build_cache(&path, total, pending, false);
        // The first open after a bulk build replays sled's log; the second is the usual case.
        let (_, first_claim_ms, _, _) = probe(&path);
        let (open_ms, claim_ms, rss, hwm) = probe(&path);
        let bytes = dir_bytes(&path);
        println!(
            "| open {name} ({total} tasks, {pending} pending) | open {open_ms} ms, first claim {claim_ms} ms (first open after the build: {first_claim_ms} ms), RSS {} MiB (peak {} MiB), {:.0} bytes on disk per task | |",
            rss / 1024,
            hwm / 1024,
            bytes as f64 / total as f64
        );
        resident.push((total - pending, rss));
    }
    // The same histories with a retention: the finished tasks are deleted as they go.
    let mut kept: Vec<(usize, u64)> = Vec::new();
    for (name, total) in [
        ("400k-run-pruned-v3", 400_000),
        ("1m-run-pruned-v3", 1_000_000),
    ] {
        let path = cache.join(name);
        build_cache(&path, total, 100_000, true);
        let _ = probe(&path);
        let (open_ms, claim_ms, rss, hwm) = probe(&path);
        println!(
            "| open {name} ({total} tasks run, 100000 pending, the finished ones pruned as they finished) | open {open_ms} ms, first claim {claim_ms} ms, RSS {} MiB (peak {} MiB), {:.0} bytes on disk per task kept | |",
            rss / 1024,
            hwm / 1024,
            dir_bytes(&path) as f64 / 100_000.0
        );
        kept.push((total - 100_000, rss));
    }
    // The 1M-run pruned store compacted into a fresh database (its live data only).
    let compacted = cache.join("1m-run-pruned-compacted-v3");
    if !compacted.exists() {
        let begun = Instant::now();
        let report = SledStore::compact_into(
            cache.join("1m-run-pruned-v3"),
            &compacted,
            SledOptions::default(),
        )
        .expect("compact");
        eprintln!(
            "compacted in {:.1} s: {report:?}",
            begun.elapsed().as_secs_f64()
        );
    }
    let _ = probe(&compacted);
    let (open_ms, claim_ms, rss, hwm) = probe(&compacted);
    println!(
        "| open 1m-run-pruned-compacted-v3 (the previous store after SledStore::compact_into) | open {open_ms} ms, first claim {claim_ms} ms, RSS {} MiB (peak {} MiB), {:.0} bytes on disk per task kept | |",
        rss / 1024,
        hwm / 1024,
        dir_bytes(&compacted) as f64 / 100_000.0
    );
    if let [(few, rss_few), (many, rss_many)] = kept[..] {
        println!(
            "| resident memory per task run, with the retention ({few} -> {many} finished and pruned) | {:.0} bytes | |",
            (rss_many as f64 - rss_few as f64) * 1024.0 / (many - few) as f64
        );
    }
    if let (Some(&(few, rss_few)), Some(&(many, rss_many))) = (resident.first(), resident.last()) {
        println!(
            "| resident memory per finished task ({few} -> {many} finished) | {:.0} bytes | |",
            (rss_many as f64 - rss_few as f64) * 1024.0 / (many - few) as f64
        );
    }
}
