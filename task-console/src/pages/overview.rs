//! The overview: tasks by product and status from the store's counters (never a scan), and
//! the last hour's throughput, queue wait and step durations as per-minute charts.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use task_core::stats::{Activity, ActivityBucket, StatusCount, minute_of};
use task_core::task::{Status, Step};
use task_core::time::Timestamp;

use crate::charts::{Chart, Kind, Series, chart};
use crate::error::ConsoleError;
use crate::pages::layout::{Nav, duration_ms, page, when};
use crate::session::Session;
use crate::state::{ConsoleState, now_ms};

/// Minutes the charts show.
const MINUTES: u64 = 60;

fn counts_table(state: &ConsoleState, counts: &[StatusCount]) -> Markup {
    let mut products: BTreeSet<String> = state
        .config
        .products
        .keys()
        .map(|p| p.to_string())
        .collect();
    let mut cells: BTreeMap<(String, Status), u64> = BTreeMap::new();
    for count in counts {
        products.insert(count.product.to_string());
        *cells
            .entry((count.product.to_string(), count.status))
            .or_default() += count.count;
    }
    let total: u64 = cells.values().sum();
    let link = |product: &str, status: Option<Status>| {
        let status = status.map(|s| format!("&status={s}")).unwrap_or_default();
        state.at(&format!(
            "/tasks?product={}{status}",
            task_api::views::encode(product)
        ))
    };
    html! {
        div.table-scroll {
            table.counts id="counts" data-total=(total) {
                caption { "Tasks by product and status" }
                thead {
                    tr {
                        th scope="col" { "Product" }
                        @for status in Status::ALL { th scope="col" { (status) } }
                        th scope="col" { "All" }
                    }
                }
                tbody {
                    @for product in &products {
                        tr {
                            th scope="row" { (product) }
                            @for status in Status::ALL {
                                @let n = cells.get(&(product.clone(), status)).copied().unwrap_or(0);
                                td data-status=(status) {
                                    @if n > 0 { a href=(link(product, Some(status))) { (n) } } @else { "0" }
                                }
                            }
                            td { a href=(link(product, None)) { (Status::ALL.iter().map(|s| cells.get(&(product.clone(), *s)).copied().unwrap_or(0)).sum::<u64>()) } }
                        }
                    }
                }
            }
        }
        @if total == 0 {
            p.empty role="status" { "No tasks yet. Create some through the API (POST /task), and they show up here." }
        }
    }
}

/// Every product's activity merged, one entry per minute of the hour, oldest first.
fn minutes(buckets: &[ActivityBucket], now: Timestamp) -> (Vec<String>, Vec<Activity>) {
    let last = minute_of(now).as_millis();
    let first = last.saturating_sub((MINUTES - 1) * 60_000);
    let mut merged = vec![Activity::default(); MINUTES as usize];
    for bucket in buckets {
        let minute = bucket.minute.as_millis();
        if minute >= first && minute <= last {
            let slot = ((minute - first) / 60_000) as usize;
            if let Some(activity) = merged.get_mut(slot) {
                activity.merge(&bucket.activity);
            }
        }
    }
    let labels = (0..MINUTES)
        .map(|i| when(Timestamp::from_millis(first + i * 60_000))[11..16].to_owned())
        .collect();
    (labels, merged)
}

/// A count, or an axis mark between counts (2.5).
fn count(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

fn millis(ms: f64) -> String {
    duration_ms(ms as u64)
}

fn charts(buckets: &[ActivityBucket], now: Timestamp) -> Markup {
    let (slots, minutes) = minutes(buckets, now);
    let per = |f: fn(&Activity) -> u64| -> Vec<Option<f64>> {
        minutes.iter().map(|a| Some(f(a) as f64)).collect()
    };
    let throughput = [
        Series {
            label: "done",
            class: "s-done",
            values: per(|a| a.done),
        },
        Series {
            label: "failed",
            class: "s-failed",
            values: per(|a| a.failed),
        },
        Series {
            label: "cancelled",
            class: "s-cancelled",
            values: per(|a| a.cancelled),
        },
    ];
    let created = [Series {
        label: "created",
        class: "s-created",
        values: per(|a| a.created),
    }];
    let wait = [Series {
        label: "mean queue wait",
        class: "s-wait",
        values: minutes
            .iter()
            .map(|a| a.queue_wait.mean_ms().map(|ms| ms as f64))
            .collect(),
    }];
    let classes = ["s-step0", "s-step1", "s-step2", "s-step3"];
    let steps: Vec<Series> = Step::ALL
        .iter()
        .zip(classes)
        .map(|(step, class)| Series {
            label: step.as_str(),
            class,
            values: minutes
                .iter()
                .map(|a| a.step(*step).mean_ms().map(|ms| ms as f64))
                .collect(),
        })
        .collect();
    let frame = |id, title| Chart {
        id,
        title,
        format: count,
        slots: &slots,
    };
    html! {
        div.charts {
            (chart(&frame("throughput", "Tasks finished per minute"), Kind::StackedBars, &throughput))
            (chart(&frame("created", "Tasks created per minute"), Kind::StackedBars, &created))
            (chart(&Chart { format: millis, ..frame("queue-wait", "Queue wait (mean per minute)") }, Kind::Lines, &wait))
            (chart(&Chart { format: millis, ..frame("steps", "Step run time (mean per minute)") }, Kind::Lines, &steps))
        }
    }
}

fn unavailable(what: &str, error: &ConsoleError) -> Markup {
    html! {
        div.error role="alert" {
            p { strong { (what) " are unavailable." } " " (error) }
            p { "Reload the page to try again." }
        }
    }
}

/// `GET /`.
pub(crate) async fn show(State(state): State<ConsoleState>, session: Session) -> Response {
    let now = Timestamp::from_millis(now_ms());
    let since = Timestamp::from_millis(now.as_millis().saturating_sub(MINUTES * 60_000));
    let counts = state
        .store
        .status_counts(Some(&session.tenant))
        .await
        .map_err(ConsoleError::from);
    let activity = state
        .store
        .activity(Some(&session.tenant), since)
        .await
        .map_err(ConsoleError::from);
    let status = [counts.as_ref().err(), activity.as_ref().err()]
        .into_iter()
        .flatten()
        .map(ConsoleError::status)
        .next()
        .unwrap_or(axum::http::StatusCode::OK);
    let body = html! {
        h1 { "Overview" }
        section aria-labelledby="counts-title" {
            h2 id="counts-title" { "Tasks now" }
            @match &counts {
                Ok(counts) => (counts_table(&state, counts)),
                Err(e) => (unavailable("Task counts", e)),
            }
        }
        section aria-labelledby="activity-title" {
            h2 id="activity-title" { "The last hour" }
            @match &activity {
                Ok(buckets) => (charts(buckets, now)),
                Err(e) => (unavailable("Activity figures", e)),
            }
        }
    };
    (
        status,
        page(&state, Some(&session), Nav::Overview, "Overview", body),
    )
        .into_response()
}
