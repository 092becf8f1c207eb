//! Benchmarks of task-store-sled, printed as a table of figures measured in one run.
//!
//! `cargo bench --bench sled_store`. Measures, on this machine: a plain 4 KiB write + fdatasync
//! loop (the one-fsync-per-write rate), durable creates with 1, 16 and 256 concurrent writers,
//! the full task lifecycle with 64 concurrent workers (one call per event, claims of one), the
//! runner's write pattern with 64 workers (claims of up to 16, five applies per task), and
//! opening a store of 1,000,000 tasks (100,000 pending; built once into a cache under target/)
//! in a fresh process: time to first claim, resident memory and bytes on disk per task.
//! `-- --no-open` skips the open measurements and `-- --open-only` runs them alone;
//! `-- --runner-only` runs the runner pattern only, `-- --creates-only` the fsync loop and the
//! 256-writer creates. `-- --crash-open` measures the open of a 400,000-task store after a
//! child process ran 200,000 tasks through it the runner's way and was killed with SIGKILL.
//! `-- --raw-sled` measures sled 0.34 alone: the memory an open costs for plain keys.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "support/sled_open.rs"]
mod sled_open;
#[path = "support/sled_raw.rs"]
mod sled_raw;

use task_core::prelude::*;
use task_store_sled::SledStore;

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
    let store = SledStore::open(dir.join(format!("runner-{workers}"))).expect("open");
    let before = store.commit_stats();
    let start = Instant::now();
    let done = drive(&store, workers, PHASE + PHASE, None);
    let elapsed = start.elapsed().as_secs_f64();
    let stats = store.commit_stats().since(&before);
    (done as f64 / elapsed, stats)
}

/// Runs tasks through `store` the way task-runner does (creates by 16 producers, claims of up
/// to 16, five applies per task) with `workers` at once, for `run_for`; returns the tasks done.
/// With `report_every`, prints `done N` on stdout each time N more tasks are done.
fn drive(store: &SledStore, workers: usize, run_for: Duration, report_every: Option<u64>) -> u64 {
    use tokio::sync::Semaphore;
    let rt = runtime();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
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
                            let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if report_every.is_some_and(|every| finished % every == 0) {
                                let mut out = std::io::stdout().lock();
                                writeln!(out, "done {finished}").expect("stdout");
                                out.flush().expect("stdout");
                            }
                            backlog.add_permits(1);
                            drop(slot);
                        });
                    }
                }
            })
        };
        tokio::time::sleep(run_for).await;
        stop.store(true, Ordering::Relaxed);
        backlog.add_permits(1_024);
        for handle in producers {
            handle.await.expect("producer");
        }
        dispatcher.await.expect("dispatcher");
    });
    done.load(Ordering::Relaxed)
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--open-probe") {
        sled_open::open_probe(Path::new(&args[i + 1]));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--raw-open-probe") {
        sled_raw::raw_open_probe(Path::new(&args[i + 1]));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--drive") {
        // The child of the crash measurement: reports its progress until it is killed.
        let store = SledStore::open(Path::new(&args[i + 1])).expect("open");
        drive(&store, 64, Duration::from_secs(3600), Some(10_000));
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
    if args.iter().any(|a| a == "--open-only") {
        sled_open::open_measurements(&target.join("sled-bench-cache"));
        return;
    }
    if args.iter().any(|a| a == "--raw-sled") {
        sled_raw::raw_measurements(scratch.path());
        return;
    }
    if args.iter().any(|a| a == "--crash-open") {
        sled_open::open_after_crash(&target.join("sled-bench-cache"), scratch.path());
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

    sled_open::open_measurements(&target.join("sled-bench-cache"));
}
