//! Random operation sequences give the same observable results on the sled store as on the
//! in-memory reference store (task-core's `MemoryStore`), including across reopens.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use task_core::prelude::*;
use task_core::testing::{key, worker};
use task_store_sled::{SledOptions, SledStore};

#[derive(Debug, Clone)]
enum Op {
    Create {
        item: u8,
        product: bool,
        priority: u8,
    },
    Batch(Vec<(u8, bool, u8)>),
    Claim {
        max: usize,
        exclude: bool,
    },
    Step {
        which: usize,
    },
    Finish {
        which: usize,
    },
    Fail {
        which: usize,
        retry: bool,
    },
    Release {
        which: usize,
    },
    Cancel {
        which: usize,
    },
    Advance {
        ms: u64,
    },
    Requeue,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..5, any::<bool>(), 0u8..3)
            .prop_map(|(item, product, priority)| Op::Create { item, product, priority }),
        1 => prop::collection::vec((0u8..5, any::<bool>(), 0u8..3), 1..4).prop_map(Op::Batch),
        3 => (1usize..4, any::<bool>()).prop_map(|(max, exclude)| Op::Claim { max, exclude }),
        3 => (0usize..8).prop_map(|which| Op::Step { which }),
        1 => (0usize..8).prop_map(|which| Op::Finish { which }),
        1 => (0usize..8, any::<bool>()).prop_map(|(which, retry)| Op::Fail { which, retry }),
        1 => (0usize..8).prop_map(|which| Op::Release { which }),
        1 => (0usize..16).prop_map(|which| Op::Cancel { which }),
        1 => (0u64..40_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Requeue),
        1 => Just(Op::Reopen),
    ]
}

fn new_task(item: u8, product: bool, priority: u8) -> NewTask {
    let product = if product { "markers" } else { "adbreaks" };
    NewTask {
        key: key("t1", &format!("item-{item}"), product, "1"),
        priority: Priority::ALL[usize::from(priority) % 3],
    }
}

/// The two stores and the correspondence of their task ids (sled id -> memory id).
struct Pair {
    memory: MemoryStore,
    sled: Option<SledStore>,
    dir: tempfile::TempDir,
    clock: ManualClock,
    ids: HashMap<TaskId, TaskId>,
    created: Vec<(TaskId, TaskId)>,
    held: Vec<(TaskId, TaskId, u64)>,
}

type Observed = Result<Vec<Task>, String>;

impl Pair {
    fn sled(&self) -> &SledStore {
        self.sled.as_ref().expect("open")
    }

    /// Closes and reopens the sled store. Opening requeues expired leases, which the model
    /// mirrors with a `requeue_expired` on the memory store.
    async fn reopen(&mut self) {
        self.memory.requeue_expired().await.expect("requeue");
        self.sled = None;
        let options = SledOptions::default().with_clock(Arc::new(self.clock.clone()));
        self.sled = Some(SledStore::open_with(self.dir.path(), options).expect("reopen"));
    }

    /// A sled task or error rewritten with memory ids, to compare.
    fn normalize(&self, observed: Result<Vec<Task>, StoreError>) -> Observed {
        match observed {
            Ok(tasks) => Ok(tasks
                .into_iter()
                .map(|mut t| {
                    t.id = self.ids.get(&t.id).copied().unwrap_or(t.id);
                    t
                })
                .collect()),
            Err(err) => {
                let mut text = err.to_string();
                for (sled, memory) in &self.ids {
                    text = text.replace(&sled.to_string(), &memory.to_string());
                }
                Err(text)
            }
        }
    }

    fn record_created(&mut self, memory: &[CreateOutcome], sled: &[CreateOutcome]) {
        for (m, s) in memory.iter().zip(sled) {
            if m.created && s.created {
                self.ids.insert(s.task.id, m.task.id);
                self.created.push((m.task.id, s.task.id));
            }
        }
    }

    async fn run(&mut self, op: &Op) -> (Observed, Observed) {
        let tenant = TenantId::new("t1").expect("valid");
        let pick = |list: &[(TaskId, TaskId, u64)], which: usize| {
            (!list.is_empty()).then(|| list[which % list.len()])
        };
        let many = |r: Result<Task, StoreError>| r.map(|t| vec![t]);
        let (memory, sled) = match op {
            Op::Create {
                item,
                product,
                priority,
            } => {
                let new = new_task(*item, *product, *priority);
                let m = self.memory.create_tasks(vec![new.clone()]).await;
                let s = self.sled().create_tasks(vec![new]).await;
                if let (Ok(m), Ok(s)) = (&m, &s) {
                    self.record_created(m, s);
                }
                let flags = |r: &Result<Vec<CreateOutcome>, StoreError>| {
                    r.as_ref()
                        .ok()
                        .map(|o| o.iter().map(|c| c.created).collect::<Vec<_>>())
                };
                assert_eq!(flags(&m), flags(&s));
                (
                    m.map(|o| o.into_iter().map(|c| c.task).collect()),
                    s.map(|o| o.into_iter().map(|c| c.task).collect()),
                )
            }
            Op::Batch(entries) => {
                let batch: Vec<NewTask> = entries
                    .iter()
                    .map(|(i, p, r)| new_task(*i, *p, *r))
                    .collect();
                let m = self.memory.create_tasks(batch.clone()).await;
                let s = self.sled().create_tasks(batch).await;
                if let (Ok(m), Ok(s)) = (&m, &s) {
                    self.record_created(m, s);
                }
                (
                    m.map(|o| o.into_iter().map(|c| c.task).collect()),
                    s.map(|o| o.into_iter().map(|c| c.task).collect()),
                )
            }
            Op::Claim { max, exclude } => {
                let request = ClaimRequest {
                    max: *max,
                    exclude_products: if *exclude {
                        vec![ProductName::new("markers").expect("valid")]
                    } else {
                        vec![]
                    },
                    ..ClaimRequest::one(worker("w"), Duration::from_secs(30))
                };
                let m = self.memory.claim(&request).await;
                let s = self.sled().claim(&request).await;
                if let (Ok(m), Ok(s)) = (&m, &s) {
                    for (mt, st) in m.iter().zip(s) {
                        self.held.push((mt.id, st.id, mt.epoch));
                    }
                }
                (m, s)
            }
            Op::Step { which }
            | Op::Finish { which }
            | Op::Fail { which, .. }
            | Op::Release { which } => {
                let Some((m_id, s_id, epoch)) = pick(&self.held, *which) else {
                    return (Ok(vec![]), Ok(vec![]));
                };
                let current = self.memory.get_task(&tenant, m_id).await.ok().flatten();
                let step = current
                    .as_ref()
                    .and_then(Task::next_step)
                    .unwrap_or(Step::Analyze);
                let events = match op {
                    Op::Step { .. } => vec![
                        TaskEvent::StepStarted { step },
                        TaskEvent::StepSucceeded {
                            output: serde_json::json!({"s": step.as_str()}),
                            reused: false,
                        },
                    ],
                    Op::Finish { .. } => vec![TaskEvent::Done],
                    Op::Fail { retry, .. } => vec![
                        TaskEvent::StepStarted { step },
                        TaskEvent::StepFailed {
                            error: TaskError::Transient {
                                step,
                                message: "x".into(),
                            },
                            retry_after_ms: retry.then_some(1_000),
                        },
                    ],
                    _ => vec![TaskEvent::LeaseReleased],
                };
                (
                    many(self.memory.apply(m_id, epoch, &events).await),
                    many(self.sled().apply(s_id, epoch, &events).await),
                )
            }
            Op::Cancel { which } => {
                if self.created.is_empty() {
                    return (Ok(vec![]), Ok(vec![]));
                }
                let (m_id, s_id) = self.created[which % self.created.len()];
                (
                    many(self.memory.request_cancel(&tenant, m_id).await),
                    many(self.sled().request_cancel(&tenant, s_id).await),
                )
            }
            Op::Advance { ms } => {
                self.clock.advance(Duration::from_millis(*ms));
                (Ok(vec![]), Ok(vec![]))
            }
            Op::Requeue => {
                let m = self.memory.requeue_expired().await.map(|ids| ids.len());
                let s = self.sled().requeue_expired().await.map(|ids| ids.len());
                assert_eq!(m.ok(), s.ok(), "requeued counts");
                (Ok(vec![]), Ok(vec![]))
            }
            Op::Reopen => {
                self.reopen().await;
                (Ok(vec![]), Ok(vec![]))
            }
        };
        let memory = memory.map_err(|e| e.to_string());
        (memory, self.normalize(sled))
    }

    /// Everything a user can read: the task list, each history and the next wake-up.
    async fn compare_all(&self) {
        let tenant = TenantId::new("t1").expect("valid");
        let page = PageRequest::first(1_000);
        let m = self
            .memory
            .list_tasks(&tenant, &TaskFilter::default(), &page)
            .await
            .expect("list");
        let s = self
            .sled()
            .list_tasks(&tenant, &TaskFilter::default(), &page)
            .await;
        assert_eq!(
            Ok(m.items),
            self.normalize(s.map(|p| p.items)),
            "task lists"
        );
        for (m_id, s_id) in &self.created {
            let mh = self.memory.history(&tenant, *m_id).await.expect("history");
            let sh = self.sled().history(&tenant, *s_id).await.expect("history");
            assert_eq!(mh, sh, "history of {m_id}");
        }
        assert_eq!(
            self.memory.next_wakeup().await.expect("wakeup"),
            self.sled().next_wakeup().await.expect("wakeup")
        );
        let problems = self.sled().check_consistency().expect("check");
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

fn check(ops: Vec<Op>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let clock = ManualClock::default();
        let mut pair = Pair {
            memory: MemoryStore::new(Arc::new(clock.clone())),
            sled: None,
            dir: tempfile::tempdir().expect("temp dir"),
            clock,
            ids: HashMap::new(),
            created: Vec::new(),
            held: Vec::new(),
        };
        pair.reopen().await;
        for (index, op) in ops.iter().enumerate() {
            let (memory, sled) = pair.run(op).await;
            assert_eq!(memory, sled, "op {index}: {op:?}");
        }
        pair.compare_all().await;
        pair.reopen().await;
        pair.compare_all().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sled_matches_the_memory_store(ops in prop::collection::vec(op(), 1..40)) {
        check(ops);
    }
}
