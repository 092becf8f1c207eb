//! The open measurements of the sled_store bench: stores of 100,000 to 1,000,000 tasks built
//! once under the target directory, opened in fresh processes (time to first claim, resident
//! memory, bytes on disk), with and without a retention, and compacted.

use std::path::Path;
use std::time::{Duration, Instant};

use task_core::prelude::*;
use task_core::time::{Clock, SystemClock};
use task_store_sled::{Durability, SledOptions, SledStore};

use super::{key, runner_events, runtime};

/// Opens the store at `path` twice in fresh processes (the first open after a build replays
/// sled's log; the second is the usual case), prints its row, and returns its RSS in KiB. The
/// bytes on disk are divided by `per`, the tasks the row counts.
fn open_row(path: &Path, label: &str, per: usize) -> u64 {
    let (_, first_claim_ms, _, _) = probe(path);
    let (open_ms, claim_ms, rss, hwm) = probe(path);
    println!(
        "| open {label} | open {open_ms} ms, first claim {claim_ms} ms (first open of this run: {first_claim_ms} ms), RSS {} MiB (peak {} MiB), {:.0} bytes on disk per task | |",
        rss / 1024,
        hwm / 1024,
        dir_bytes(path) as f64 / per as f64
    );
    rss
}

/// Builds the stores that are missing and prints a table row per store opened.
pub fn open_measurements(cache: &Path) {
    let mut resident: Vec<(usize, u64)> = Vec::new();
    for (name, total, pending) in [
        // "-v4": format 4, built with the runner's event groups. The three sizes share their
        // 100,000 pending tasks, so the differences are the cost of finished tasks.
        ("100k-pending-v4", 100_000, 100_000),
        ("400k-tasks-v4", 400_000, 100_000),
        ("1m-tasks-v4", 1_000_000, 100_000),
    ] {
        let path = cache.join(name);
        build_cache(&path, total, pending, false, false);
        let rss = open_row(
            &path,
            &format!("{name} ({total} tasks, {pending} pending)"),
            total,
        );
        resident.push((total - pending, rss));
    }
    // The 400,000-task store again, closed with SledStore::close after its build.
    let name = "400k-tasks-closed-v4";
    let path = cache.join(name);
    build_cache(&path, 400_000, 100_000, false, true);
    open_row(
        &path,
        &format!("{name} (the same, closed with SledStore::close after the build)"),
        400_000,
    );
    // The same numbers of tasks run with a retention: 1,000 at a time, deleted once finished.
    let mut kept: Vec<(usize, u64)> = Vec::new();
    for (name, total) in [
        ("400k-steady-pruned-v4", 400_000),
        ("1m-steady-pruned-v4", 1_000_000),
    ] {
        let path = cache.join(name);
        build_cache(&path, total, 100_000, true, false);
        let label = format!(
            "{name} ({total} tasks run, 100000 pending, the finished ones pruned as they finished; per task kept)"
        );
        kept.push((total - 100_000, open_row(&path, &label, 100_000)));
    }
    // The 1M-run pruned store compacted into a fresh database (its live data only).
    let compacted = cache.join("1m-steady-pruned-compacted-v4");
    if !compacted.exists() {
        let begun = Instant::now();
        let report = SledStore::compact_into(
            cache.join("1m-steady-pruned-v4"),
            &compacted,
            SledOptions::default(),
        )
        .expect("compact");
        eprintln!(
            "compacted in {:.1} s: {report:?}",
            begun.elapsed().as_secs_f64()
        );
    }
    open_row(
        &compacted,
        "1m-steady-pruned-compacted-v4 (the previous store after SledStore::compact_into; per task kept)",
        100_000,
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

/// The open after a crash: a child process runs `CRASH_TASKS` tasks through a copy of the
/// 400,000-task store, and is killed with SIGKILL as soon as it reports them done. sled 0.34 saves its recovery snapshot only
/// when it opens a database, so this open replays everything the run wrote. The OS page cache
/// is dropped first when this process may (root), as after the reboot that follows a power cut.
pub fn open_after_crash(cache: &Path, scratch: &Path) {
    const CRASH_TASKS: u64 = 200_000;
    let source = cache.join("400k-tasks-v4");
    build_cache(&source, 400_000, 100_000, false, false);
    let copy = scratch.join("crashed");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&source)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(copied.success(), "copying {}", source.display());
    let before = dir_bytes(&copy);
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg("--drive")
        .arg(&copy)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the driver");
    let progress = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let target = format!("done {CRASH_TASKS}");
    let reached = std::io::BufRead::lines(progress)
        .map(|line| line.expect("the driver's progress"))
        .any(|line| line == target);
    assert!(reached, "the driver stopped before {CRASH_TASKS} tasks");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let written = dir_bytes(&copy).saturating_sub(before);
    let cold = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let (_, crashed_ms, rss, _) = probe(&copy);
    let (_, next_ms, _, _) = probe(&copy);
    println!(
        "| open after SIGKILL ends a run of {CRASH_TASKS} tasks on 400k-tasks-v4 (store grew {} MiB) | first claim {crashed_ms} ms ({} page cache), then {next_ms} ms; RSS {} MiB | |",
        written / (1024 * 1024),
        if cold { "cold" } else { "warm" },
        rss / 1024
    );
}

/// Builds (once) a store of `total` tasks of which `pending` stay pending; the rest are done
/// with a full history.
///
/// Without `prune`, every task is created first and the finished ones are then run, so the
/// store holds all `total` tasks at the end. With `prune`, the store is built as a service
/// with a retention runs: the `pending` tasks (low priority) are created first, then each
/// round creates 1,000 high-priority tasks, runs them and deletes the finished ones, so the
/// store never holds more than `pending` + 1,000 tasks.
pub fn build_cache(path: &Path, total: usize, pending: usize, prune: bool, close: bool) {
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
        let create = |from: usize, count: usize, priority: Priority| {
            let batch = (from..from + count)
                .map(|i| NewTask {
                    key: key("bench", format!("item-{i}")),
                    priority,
                })
                .collect();
            store.create_tasks(batch)
        };
        let upfront = if prune { pending } else { total };
        for from in (0..upfront).step_by(BATCH) {
            let count = BATCH.min(upfront - from);
            create(from, count, Priority::Low).await.expect("create");
        }
        let me = WorkerId::new("builder").expect("worker");
        let mut finished = 0;
        while finished < total - pending {
            let round = BATCH.min(total - pending - finished);
            if prune {
                create(pending + finished, round, Priority::High)
                    .await
                    .expect("create");
            }
            let request = ClaimRequest {
                max: round,
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
    if close {
        // Saves sled's snapshot: the first open does not replay the build.
        let took = store.close().expect("close");
        eprintln!("SledStore::close took {:.1} s", took.as_secs_f64());
    } else {
        // As a crash would: the first open replays everything the build wrote.
        drop(store);
    }
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

pub fn status_kib(field: &str) -> u64 {
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
pub fn open_probe(path: &Path) {
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
    let v = child_figures("--open-probe", path);
    (v[0], v[1], v[2], v[3])
}

/// Runs this bench binary with `flag path` and returns the numbers its output holds.
pub fn child_figures(flag: &str, path: &Path) -> Vec<u64> {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg(flag)
        .arg(path)
        .output()
        .expect("probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect()
}
