//! A simulated power cut: an observer keeps an image of what the disk durably holds (the store
//! as opened, then each journal segment up to its last `fdatasync`), writers run concurrently,
//! and at a random moment the image is taken as the disk after the cut, with a torn frame at
//! the end of the journal. Opened, it must hold every acknowledged write exactly as
//! acknowledged (or with the single write in flight at the cut applied too), and status counts
//! equal to the tasks it holds, before and after a prune.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use task_core::prelude::*;
use task_core::testing::{assert_counts_match_listing, claim_up_to, new_task, run_to_done};
use task_store_sled::{DurabilityObserver, SledOptions, SledStore};

/// Keeps `image` equal to what survives a power cut.
struct DiskImage {
    image: PathBuf,
    live: Mutex<Option<PathBuf>>,
    /// Held while the image changes, and by the test while it copies the image.
    lock: Mutex<()>,
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl DiskImage {
    fn in_image(&self, live_path: &Path) -> PathBuf {
        let live = self.live.lock().unwrap().clone().unwrap();
        self.image.join(live_path.strip_prefix(live).unwrap())
    }
}

impl DurabilityObserver for DiskImage {
    fn opened(&self, db_dir: &Path) {
        let _guard = self.lock.lock().unwrap();
        *self.live.lock().unwrap() = Some(db_dir.to_path_buf());
        copy_dir(db_dir, &self.image);
    }

    fn segment_created(&self, segment: &Path, len: u64) {
        let _guard = self.lock.lock().unwrap();
        let file = fs::File::create(self.in_image(segment)).unwrap();
        file.set_len(len).unwrap();
    }

    fn journal_synced(&self, segment: &Path, durable: u64) {
        let _guard = self.lock.lock().unwrap();
        let bytes = fs::read(segment).unwrap();
        let image = OpenOptions::new()
            .write(true)
            .open(self.in_image(segment))
            .unwrap();
        image.write_all_at(&bytes[..durable as usize], 0).unwrap();
    }
}

/// What the writers were told, per task: the last acknowledged state, and whether a write to
/// it was in flight when the power went.
#[derive(Default)]
struct Acks {
    tasks: HashMap<TaskId, (Task, bool)>,
}

async fn writer(store: Arc<SledStore>, acks: Arc<Mutex<Acks>>, name: String, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0.. {
        let created = store
            .create_task(new_task(&format!("{name}-{i}"), Priority::ALL[i % 3]))
            .await;
        let Ok(created) = created else { return };
        acks.lock()
            .unwrap()
            .tasks
            .insert(created.task.id, (created.task, false));
        if rng.random_bool(0.5) {
            let Some(task) = claim_up_to(&*store, &name, 1).await.pop() else {
                continue;
            };
            acks.lock()
                .unwrap()
                .tasks
                .insert(task.id, (task.clone(), true));
            let done = run_to_done(&*store, &task).await;
            acks.lock().unwrap().tasks.insert(done.id, (done, false));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_power_cut() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let observer = Arc::new(DiskImage {
            image: dir.path().join("image"),
            live: Mutex::new(None),
            lock: Mutex::new(()),
        });
        let options = SledOptions::default()
            .with_journal_segment_bytes(64 * 1024)
            .with_durability_observer(observer.clone());
        let store = Arc::new(SledStore::open_with(&live, options).unwrap());
        let acks = Arc::new(Mutex::new(Acks::default()));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                tokio::spawn(writer(
                    store.clone(),
                    acks.clone(),
                    format!("w{w}"),
                    round * 10 + w,
                ))
            })
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(round);
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        // The power goes: what the image holds now is the disk.
        let cut = dir.path().join("after-cut");
        let acknowledged = {
            let _guard = observer.lock.lock().unwrap();
            copy_dir(&observer.image, &cut);
            let acks = acks.lock().unwrap();
            acks.tasks.clone()
        };
        for w in writers {
            w.abort();
        }
        tear_the_journal_tail(&cut.join("journal"), &mut rng);
        let recovered = SledStore::open(&cut).unwrap();
        let mut checked = 0;
        for (id, (acked, in_flight)) in &acknowledged {
            let got = recovered
                .get_task(&acked.key.tenant, *id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged task {id} is lost"));
            if *in_flight {
                assert!(
                    got.updated_at >= acked.updated_at,
                    "round {round}: {id} went back"
                );
            } else {
                assert_eq!(
                    &got, acked,
                    "round {round}: {id} differs from what was acknowledged"
                );
            }
            checked += 1;
        }
        assert!(
            checked > 20,
            "round {round}: only {checked} acknowledged tasks"
        );
        eprintln!("round {round}: {checked} acknowledged tasks intact after the cut");
        // The status counts came back with the records they follow (same frames), and a prune
        // keeps them equal.
        let tenant = TenantId::new("t1").unwrap();
        let context = format!("round {round}, after the cut");
        assert_counts_match_listing(&recovered, &tenant, &context).await;
        assert_eq!(recovered.check_consistency().unwrap(), Vec::<String>::new());
        let pruned = recovered
            .prune_finished_before(Timestamp::from_millis(u64::MAX))
            .await
            .unwrap();
        assert!(pruned > 0, "round {round}: nothing finished to prune");
        let context = format!("round {round}, after pruning {pruned}");
        assert_counts_match_listing(&recovered, &tenant, &context).await;
        drop(recovered);
        drop(store);
    }
}

/// A power cut in the middle of a write leaves part of a frame after the last durable one.
fn tear_the_journal_tail(journal: &Path, rng: &mut impl Rng) {
    let mut segments: Vec<PathBuf> = fs::read_dir(journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let Some(last) = segments.last() else { return };
    let bytes = fs::read(last).unwrap();
    // The frames end where the zeros begin.
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    let torn: Vec<u8> = (0..rng.random_range(9..200))
        .map(|_| rng.random())
        .collect();
    let file = OpenOptions::new().write(true).open(last).unwrap();
    let room = (bytes.len() - end).min(torn.len());
    file.write_all_at(&torn[..room], end as u64).unwrap();
}
