//! Crash safety: a child process writes as fast as it can and is killed with SIGKILL at random
//! moments; after each kill, every acknowledged write is present, the indexes agree with the
//! records and no task is in an impossible state.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use task_core::prelude::*;
use task_store_sled::SledStore;

const WRITER: &str = env!("CARGO_BIN_EXE_sled-crash-writer");
const ROUNDS: u64 = 24;

/// One acknowledged write: the history entry it added and the status it led to.
#[derive(Debug, Clone)]
struct Ack {
    id: TaskId,
    attempt: u32,
    event: String,
    step: Option<Step>,
    status: Status,
}

fn parse(line: &str) -> Option<Ack> {
    let mut parts = line.trim_end().strip_prefix("ack ")?.split(' ');
    let id = TaskId::parse(parts.next()?).ok()?;
    let attempt = parts.next()?.parse().ok()?;
    let event = parts.next()?.to_owned();
    let step = match parts.next()? {
        "-" => None,
        name => Some(Step::ALL.into_iter().find(|s| s.as_str() == name)?),
    };
    let status = parts.next()?.parse().ok()?;
    Some(Ack {
        id,
        attempt,
        event,
        step,
        status,
    })
}

fn spawn(dir: &Path, buffered: bool) -> Child {
    Command::new(WRITER)
        .arg(dir)
        .arg("6")
        .args(buffered.then_some("buffered"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the crash writer")
}

/// Runs the writer until it acknowledged `kill_after` writes, SIGKILLs it, and returns every
/// ack it printed (including those still in the pipe).
fn run_and_kill(dir: &Path, kill_after: usize, buffered: bool) -> Vec<Ack> {
    let mut child = spawn(dir, buffered);
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut acks = Vec::new();
    let mut line = String::new();
    let mut killed = false;
    loop {
        if acks.len() >= kill_after && !killed {
            child.kill().expect("SIGKILL the writer");
            killed = true;
        }
        line.clear();
        let read = stdout
            .read_line(&mut line)
            .expect("read the writer's output");
        if read == 0 {
            break;
        }
        // A line without its newline was cut by the kill: its write was never acknowledged.
        if line.ends_with('\n') {
            acks.push(parse(&line).unwrap_or_else(|| panic!("unexpected output {line:?}")));
        }
    }
    let status = child.wait().expect("reap the writer");
    if !killed {
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
        panic!(
            "the writer stopped by itself ({status}) after {} acks: {err}",
            acks.len()
        );
    }
    acks
}

fn verify(dir: &Path, acks: &[Ack], round: u64) {
    let store = SledStore::open(dir).expect("reopen after the kill");
    let problems = store.check_consistency().expect("check");
    assert!(problems.is_empty(), "round {round}: {problems:#?}");
    let tenant = TenantId::new("crash").expect("valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut histories: HashMap<TaskId, (Task, Vec<HistoryEntry>)> = HashMap::new();
        for ack in acks {
            if let std::collections::hash_map::Entry::Vacant(slot) = histories.entry(ack.id) {
                let task = store
                    .get_task(&tenant, ack.id)
                    .await
                    .expect("get")
                    .unwrap_or_else(|| {
                        panic!("round {round}: acknowledged task {} is lost", ack.id)
                    });
                let history = store.history(&tenant, ack.id).await.expect("history");
                slot.insert((task, history));
            }
            let (task, history) = &histories[&ack.id];
            let found = history.iter().find(|e| {
                e.attempt == ack.attempt
                    && e.event == ack.event
                    && ack.step.is_none_or(|s| e.step == Some(s))
            });
            let entry = found.unwrap_or_else(|| {
                panic!("round {round}: acknowledged write {ack:?} is lost\n{task:#?}\n{history:#?}")
            });
            assert_eq!(entry.to, ack.status, "round {round}: {ack:?}");
            assert!(task.attempt >= ack.attempt, "round {round}: {ack:?}");
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut seed = u64::from(std::process::id()) | 1;
    let mut total = 0;
    for round in 0..ROUNDS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Some rounds kill the writer while it opens and recovers the database.
        let kill_after = if round % 6 == 5 {
            0
        } else {
            1 + (seed % 800) as usize
        };
        let acks = run_and_kill(dir.path(), kill_after, false);
        total += acks.len();
        verify(dir.path(), &acks, round);
    }
    assert!(
        total > ROUNDS as usize * 50,
        "the writer made too little progress: {total} acks"
    );
}

/// Buffered durability may lose the writes of its last interval, but every kill must still
/// leave a store that opens, whose indexes agree with its records.
#[test]
fn buffered_writes_leave_a_consistent_store_after_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut total = 0;
    for round in 0..8u64 {
        let acks = run_and_kill(dir.path(), 50 + (round as usize * 97) % 600, true);
        total += acks.len();
        let store = SledStore::open(dir.path()).expect("reopen after the kill");
        let problems = store.check_consistency().expect("check");
        assert!(problems.is_empty(), "round {round}: {problems:#?}");
    }
    assert!(
        total > 400,
        "the writer made too little progress: {total} acks"
    );
}

#[test]
fn a_second_process_gets_a_clear_lock_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _store = SledStore::open(dir.path()).expect("open");
    let output = Command::new(WRITER)
        .arg(dir.path())
        .output()
        .expect("run the writer");
    assert_eq!(output.status.code(), Some(2), "the second open must fail");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("in use by another process"), "{err}");
}
