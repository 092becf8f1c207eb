//! Every metric the engine records, in one place: its Prometheus name, kind, unit, labels,
//! histogram buckets and meaning, and the functions the crates record it with.
//!
//! The engine records through the [`metrics`](https://docs.rs/metrics) facade only. Nothing is
//! recorded until [`enable`] is called: before that, each recording function costs one relaxed
//! atomic load and builds no label. An application that wants the figures installs a recorder
//! (taskd installs `metrics-exporter-prometheus` and serves `/metrics`), then calls [`enable`]
//! and, for the help texts, [`describe_all`]. Give histograms the buckets of [`ALL`] (the
//! Prometheus exporter's `set_buckets_for_metric`).
//!
//! Labels are bounded: products come from the configuration, statuses, steps, priorities and
//! error codes are closed sets. Nothing is labelled by tenant or task id.
//!
//! ```
//! use task_core::telemetry::{ALL, MetricKind, TASKS_CREATED};
//!
//! assert_eq!(TASKS_CREATED.name, "taskd_tasks_created_total");
//! assert!(ALL.iter().filter(|m| m.kind == MetricKind::Histogram).all(|m| !m.buckets.is_empty()));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ids::ProductName;
use crate::task::{Status, Step, Task};

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A total that only grows.
    Counter,
    /// A value that is set.
    Gauge,
    /// Observations counted into buckets.
    Histogram,
}

/// One metric: what an operator reads on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// The Prometheus name, unit included (`_seconds`, `_total`).
    pub name: &'static str,
    /// Its kind.
    pub kind: MetricKind,
    /// Its labels, in the order they are recorded.
    pub labels: &'static [&'static str],
    /// The upper bounds of its buckets (histograms only; empty otherwise).
    pub buckets: &'static [f64],
    /// What it measures.
    pub help: &'static str,
}

/// Seconds from sub-millisecond to one hour: step runs (a probe takes milliseconds, an
/// analysis of a long film most of an hour).
const STEP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1200.0, 1800.0, 3600.0,
];
/// Seconds from ten milliseconds to a day: time in the queue.
const WAIT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0, 21600.0, 86400.0,
];
/// Seconds from 50 µs to 2.5 s: store commits and fsyncs.
const STORE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];
/// Counts in powers of two.
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Tasks created through the API (a request answered with an existing task is not counted).
pub const TASKS_CREATED: Metric = Metric {
    name: "taskd_tasks_created_total",
    kind: MetricKind::Counter,
    labels: &["product"],
    buckets: &[],
    help: "Tasks created (requests answered with an existing active task are not counted).",
};
/// Tasks that reached a final status, with the error code of failed ones (empty otherwise).
pub const TASKS_FINISHED: Metric = Metric {
    name: "taskd_tasks_finished_total",
    kind: MetricKind::Counter,
    labels: &["product", "status", "error_code"],
    buckets: &[],
    help: "Tasks that reached done, failed or cancelled; error_code is set for failed tasks.",
};
/// How long each step run took, whatever its result (a stopped step is not counted).
pub const STEP_DURATION: Metric = Metric {
    name: "taskd_step_duration_seconds",
    kind: MetricKind::Histogram,
    labels: &["product", "step"],
    buckets: STEP_BUCKETS,
    help: "Duration of each step run that succeeded or failed.",
};
/// From a task's creation to its first claim.
pub const QUEUE_WAIT: Metric = Metric {
    name: "taskd_queue_wait_seconds",
    kind: MetricKind::Histogram,
    labels: &["product", "priority"],
    buckets: WAIT_BUCKETS,
    help: "Time from a task's creation to its first claim.",
};
/// How many tasks one claim took (claims that found nothing are not counted).
pub const CLAIM_BATCH_SIZE: Metric = Metric {
    name: "taskd_claim_batch_size",
    kind: MetricKind::Histogram,
    labels: &[],
    buckets: COUNT_BUCKETS,
    help: "Tasks taken by one claim that found at least one.",
};
/// Tasks a runner abandoned because another worker holds their lease now.
pub const LEASES_LOST: Metric = Metric {
    name: "taskd_leases_lost_total",
    kind: MetricKind::Counter,
    labels: &["product"],
    buckets: &[],
    help: "Tasks abandoned by a runner because their lease was lost.",
};
/// Tasks by product and status, summed over tenants, from the store's kept counts.
pub const TASKS: Metric = Metric {
    name: "taskd_tasks",
    kind: MetricKind::Gauge,
    labels: &["product", "status"],
    buckets: &[],
    help: "Tasks in each status, every tenant together (the store's counts, read at scrape).",
};
/// How long a store write took to be acknowledged.
pub const STORE_COMMIT: Metric = Metric {
    name: "taskd_store_commit_seconds",
    kind: MetricKind::Histogram,
    labels: &[],
    buckets: STORE_BUCKETS,
    help: "Time of a store write: sled from submission to its answer (durable under strict \
           durability), PostgreSQL the COMMIT of each transaction.",
};
/// How long one fsync of the store's journal took (sled's group commit).
pub const STORE_FSYNC: Metric = Metric {
    name: "taskd_store_fsync_seconds",
    kind: MetricKind::Histogram,
    labels: &[],
    buckets: STORE_BUCKETS,
    help: "Time of one journal write and fdatasync (sled group commit).",
};
/// How many acknowledged writes one fsync made durable (sled's group commit).
pub const STORE_WRITES_PER_FSYNC: Metric = Metric {
    name: "taskd_store_writes_per_fsync",
    kind: MetricKind::Histogram,
    labels: &[],
    buckets: COUNT_BUCKETS,
    help: "Store writes acknowledged since the previous fsync started, per fsync (sled).",
};
/// Webhook delivery attempts by outcome.
pub const WEBHOOK_DELIVERIES: Metric = Metric {
    name: "taskd_webhook_deliveries_total",
    kind: MetricKind::Counter,
    labels: &["outcome"],
    buckets: &[],
    help: "Webhook delivery attempts: delivered, retried (will be tried again) or failed.",
};

/// Every metric, for describing them and setting histogram buckets.
pub const ALL: &[Metric] = &[
    TASKS_CREATED,
    TASKS_FINISHED,
    STEP_DURATION,
    QUEUE_WAIT,
    CLAIM_BATCH_SIZE,
    LEASES_LOST,
    TASKS,
    STORE_COMMIT,
    STORE_FSYNC,
    STORE_WRITES_PER_FSYNC,
    WEBHOOK_DELIVERIES,
];

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts recording (call it once a recorder is installed).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Stops recording: the recording functions go back to one relaxed load each.
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Gives the installed recorder the help text of every metric.
pub fn describe_all() {
    for metric in ALL {
        let (name, help) = (metric.name, metric.help);
        match metric.kind {
            MetricKind::Counter => ::metrics::describe_counter!(name, help),
            MetricKind::Gauge => ::metrics::describe_gauge!(name, help),
            MetricKind::Histogram => ::metrics::describe_histogram!(name, help),
        }
    }
}

fn product(product: &ProductName) -> String {
    product.as_str().to_owned()
}

/// Counts `count` tasks of `product` created.
pub fn tasks_created(product_name: &ProductName, count: u64) {
    if enabled() && count > 0 {
        ::metrics::counter!(TASKS_CREATED.name, "product" => product(product_name))
            .increment(count);
    }
}

/// Counts `task` as finished if its status is final (else nothing).
pub fn task_finished(task: &Task) {
    let status = task.status();
    if !enabled() || status.is_active() {
        return;
    }
    let code = task.error().map_or("", |e| e.code());
    ::metrics::counter!(
        TASKS_FINISHED.name,
        "product" => product(&task.key.product),
        "status" => status.as_str(),
        "error_code" => code,
    )
    .increment(1);
}

/// Counts the tasks among `tasks` that a store's own write ended, as [`task_finished`] does:
/// a claim giving a task up at its attempt limit, a lease that expired on a task whose cancel
/// was requested, a catalog item's deletion cancelling its pending tasks. Runners count the ends
/// they write, and the API the cancels it writes; tasks still active are skipped.
pub fn tasks_ended_by_the_store<'a>(tasks: impl IntoIterator<Item = &'a Task>) {
    if enabled() {
        tasks.into_iter().for_each(task_finished);
    }
}

/// Records a step run of `took` that ended with a result.
pub fn step_ran(product_name: &ProductName, step: Step, took: Duration) {
    if enabled() {
        ::metrics::histogram!(
            STEP_DURATION.name,
            "product" => product(product_name),
            "step" => step.as_str(),
        )
        .record(took.as_secs_f64());
    }
}

/// Records what one claim took: its batch size, and the queue wait of each task claimed for
/// the first time (from its `created_at` to its `started_at`).
pub fn claimed(tasks: &[Task]) {
    if !enabled() || tasks.is_empty() {
        return;
    }
    ::metrics::histogram!(CLAIM_BATCH_SIZE.name).record(tasks.len() as f64);
    for task in tasks.iter().filter(|t| t.attempt == 1) {
        let Some(started) = task.started_at else {
            continue;
        };
        ::metrics::histogram!(
            QUEUE_WAIT.name,
            "product" => product(&task.key.product),
            "priority" => task.priority.as_str(),
        )
        .record(started.since(task.created_at).as_secs_f64());
    }
}

/// Counts a task of `product` abandoned because its lease was lost.
pub fn lease_lost(product_name: &ProductName) {
    if enabled() {
        ::metrics::counter!(LEASES_LOST.name, "product" => product(product_name)).increment(1);
    }
}

/// Sets the task gauge of (`product`, `status`).
pub fn tasks_in_status(product_name: &str, status: Status, count: u64) {
    if enabled() {
        ::metrics::gauge!(
            TASKS.name,
            "product" => product_name.to_owned(),
            "status" => status.as_str(),
        )
        .set(count as f64);
    }
}

/// Records one durable store write of `took`.
pub fn store_commit(took: Duration) {
    if enabled() {
        ::metrics::histogram!(STORE_COMMIT.name).record(took.as_secs_f64());
    }
}

/// Records one journal fsync of `took` that made `writes` acknowledged writes durable.
pub fn store_fsync(took: Duration, writes: u64) {
    if enabled() {
        ::metrics::histogram!(STORE_FSYNC.name).record(took.as_secs_f64());
        ::metrics::histogram!(STORE_WRITES_PER_FSYNC.name).record(writes as f64);
    }
}

/// What became of one webhook delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Acknowledged by the receiver.
    Delivered,
    /// Failed; it will be tried again.
    Retried,
    /// Given up.
    Failed,
}

/// Counts one webhook delivery attempt.
pub fn webhook_delivery(outcome: DeliveryOutcome) {
    if enabled() {
        let outcome = match outcome {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retried => "retried",
            DeliveryOutcome::Failed => "failed",
        };
        ::metrics::counter!(WEBHOOK_DELIVERIES.name, "outcome" => outcome).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prometheus_names_with_units() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for metric in ALL {
            assert!(metric.name.starts_with("taskd_"), "{}", metric.name);
            assert!(
                metric
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                metric.name
            );
            assert_eq!(
                metric.kind == MetricKind::Counter,
                metric.name.ends_with("_total"),
                "{}",
                metric.name
            );
            assert!(!metric.labels.contains(&"tenant"), "{}", metric.name);
            let histogram = metric.kind == MetricKind::Histogram;
            assert_eq!(histogram, !metric.buckets.is_empty(), "{}", metric.name);
            assert!(
                metric.buckets.windows(2).all(|w| w[0] < w[1]),
                "{}: buckets must increase",
                metric.name
            );
        }
        assert_eq!(STEP_DURATION.buckets.last(), Some(&3600.0));
    }
}
