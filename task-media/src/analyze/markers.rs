//! The `markers` product: an episode's intro and end credits, from the audio it shares with the
//! other episodes of its season.
//!
//! Its analyze step ([`MarkersStep`]) reads the `fingerprint` results (of one configured
//! version) of the episode and of its siblings (the other children of its catalog parent).
//! Those that have none get a `fingerprint` task, or the active one is found, and the markers
//! task waits for them ([`StepOutput::waiting_for`]): it holds no worker meanwhile and runs
//! again once they have ended. A sibling whose latest fingerprint task failed or was cancelled
//! is left out and named in the result. The markers themselves come from
//! [`task_fingerprint::find_markers`]. No media is fetched: everything comes from the
//! fingerprints.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use task_core::catalog::CatalogItem;
use task_core::error::TaskError;
use task_core::hierarchy::CatalogStoreExt;
use task_core::ids::{InventoryId, ProductName, TaskId, Version};
use task_core::store::{NewTask, StoreError};
use task_core::task::{Step, TaskKey};
use task_fingerprint::{Fingerprint, FingerprintData, Marker, MarkerRules, find_markers};
use task_runner::step::{StepContext, StepOutput, TaskStep};

use super::store_result;
use super::tools::round_ms;
use crate::probe::ProbeOutput;

/// The product whose results markers are made from.
pub const FINGERPRINT_PRODUCT: &str = "fingerprint";
/// The most siblings compared: a season longer than this is compared with its first ones (by
/// inventory id).
pub const MAX_SIBLINGS: usize = 100;

/// The analyze step of the `markers` product.
#[derive(Debug, Clone)]
pub struct MarkersStep {
    /// The version of the `fingerprint` product whose results are used (and whose tasks are
    /// created when missing).
    pub fingerprint_version: Version,
    /// Where intro and credits may be.
    pub rules: MarkerRules,
}

impl MarkersStep {
    /// The step over fingerprints of `fingerprint_version`, with the default rules.
    pub fn new(fingerprint_version: Version) -> Self {
        Self {
            fingerprint_version,
            rules: MarkerRules::default(),
        }
    }
}

/// `markers` result data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkersData {
    /// `[start, end]` of the intro in seconds, or null.
    pub intro: Option<[f64; 2]>,
    /// `[start, end]` of the end credits in seconds, or null.
    pub credits: Option<[f64; 2]>,
    /// The siblings that share the intro.
    pub intro_shared_with: Vec<String>,
    /// The siblings that share the credits.
    pub credits_shared_with: Vec<String>,
    /// The fingerprint version compared.
    pub fingerprint_version: String,
    /// The siblings whose fingerprints were compared.
    pub siblings_compared: Vec<String>,
    /// Siblings left out, with why (their latest fingerprint task failed or was cancelled).
    pub siblings_left_out: BTreeMap<String, String>,
}

/// What is known of one item's fingerprint.
enum Found {
    Fingerprint(Fingerprint),
    Awaited(TaskId),
    Missing(String),
}

/// The checkpoint of the markers step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkersSummary {
    /// Siblings compared.
    pub siblings_compared: usize,
    /// Size of the stored result, bytes of JSON.
    pub result_bytes: usize,
}

#[async_trait]
impl TaskStep for MarkersStep {
    fn step(&self) -> Step {
        Step::Analyze
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let probe: ProbeOutput = ctx.output(Step::Probe)?;
        let key = &ctx.task.key;
        let mut siblings = ctx
            .store
            .siblings(&key.tenant, &key.inventory_id)
            .await
            .map_err(store_error)?;
        siblings.truncate(MAX_SIBLINGS);
        let mut awaited = Vec::new();
        let own = match self.fingerprint_of(ctx, &key.inventory_id).await? {
            Found::Fingerprint(f) => Some(f),
            Found::Awaited(id) => {
                awaited.push(id);
                None
            }
            Found::Missing(why) => {
                return Err(TaskError::AnalysisFailed {
                    message: format!("the episode has no fingerprint to compare: {why}"),
                });
            }
        };
        let mut compared: Vec<(String, Fingerprint)> = Vec::new();
        let mut left_out = BTreeMap::new();
        for CatalogItem { item, .. } in &siblings {
            match self.fingerprint_of(ctx, &item.inventory_id).await? {
                Found::Fingerprint(f) => compared.push((item.inventory_id.to_string(), f)),
                Found::Awaited(id) => awaited.push(id),
                Found::Missing(why) => {
                    left_out.insert(item.inventory_id.to_string(), why);
                }
            }
        }
        let Some(own) = own.filter(|_| awaited.is_empty()) else {
            return Ok(StepOutput::waiting_for(awaited));
        };
        let rules = self.rules.clone();
        let duration = probe.duration_secs;
        let fingerprints: Vec<Fingerprint> = compared.iter().map(|(_, f)| f.clone()).collect();
        // Each comparison reads every alignment of two fingerprints: off the runtime threads.
        let markers = tokio::task::spawn_blocking(move || {
            find_markers(&own, duration, &fingerprints, &rules)
        })
        .await
        .map_err(|e| TaskError::Internal {
            message: format!("the markers search stopped: {e}"),
        })?
        .map_err(|e| TaskError::AnalysisFailed {
            message: format!("the fingerprints cannot be compared: {e}"),
        })?;
        let names = |marker: &Option<Marker>| -> Vec<String> {
            marker
                .iter()
                .flat_map(|m| &m.shared_with)
                .map(|i| compared[*i].0.clone())
                .collect()
        };
        let bounds = |marker: &Option<Marker>| {
            marker
                .as_ref()
                .map(|m| [round_ms(m.start), round_ms(m.end)])
        };
        let data = MarkersData {
            intro: bounds(&markers.intro),
            credits: bounds(&markers.credits),
            intro_shared_with: names(&markers.intro),
            credits_shared_with: names(&markers.credits),
            fingerprint_version: self.fingerprint_version.to_string(),
            siblings_compared: compared.iter().map(|(id, _)| id.clone()).collect(),
            siblings_left_out: left_out,
        };
        let value = serde_json::to_value(&data).map_err(|e| TaskError::Internal {
            message: format!("markers data: {e}"),
        })?;
        let result_bytes = store_result(ctx, value).await?;
        StepOutput::new(&MarkersSummary {
            siblings_compared: compared.len(),
            result_bytes,
        })
    }
}

impl MarkersStep {
    /// The stored fingerprint of `inventory_id`, or the task that will make it (created when
    /// there is none), or why there will be none.
    async fn fingerprint_of(
        &self,
        ctx: &StepContext,
        inventory_id: &InventoryId,
    ) -> Result<Found, TaskError> {
        let tenant = &ctx.task.key.tenant;
        let product = ProductName::new(FINGERPRINT_PRODUCT).map_err(|e| TaskError::Internal {
            message: e.to_string(),
        })?;
        let version = &self.fingerprint_version;
        let stored = ctx
            .store
            .get_result(tenant, &product, inventory_id, Some(version))
            .await
            .map_err(store_error)?;
        if let Some(result) = stored {
            let data: FingerprintData =
                serde_json::from_value(result.data).map_err(|e| TaskError::AnalysisFailed {
                    message: format!("the fingerprint of {inventory_id} is unreadable: {e}"),
                })?;
            let fingerprint = data.decode().map_err(|e| TaskError::AnalysisFailed {
                message: format!("the fingerprint of {inventory_id} is unreadable: {e}"),
            })?;
            return Ok(Found::Fingerprint(fingerprint));
        }
        let key = TaskKey {
            tenant: tenant.clone(),
            inventory_id: inventory_id.clone(),
            product,
            version: version.clone(),
        };
        if let Some(latest) = ctx.store.latest_task(&key).await.map_err(store_error)?
            && !latest.status().is_active()
        {
            let why = match latest.error() {
                Some(error) => format!("its fingerprint task {} failed: {error}", latest.id),
                None => format!("its fingerprint task {} was {}", latest.id, latest.status()),
            };
            return Ok(Found::Missing(why));
        }
        let created = ctx
            .store
            .create_task(NewTask {
                key,
                priority: ctx.task.priority,
            })
            .await
            .map_err(store_error)?;
        Ok(Found::Awaited(created.task.id))
    }
}

fn store_error(err: StoreError) -> TaskError {
    if err.is_retryable() {
        TaskError::Transient {
            step: Step::Analyze,
            message: format!("the store failed: {err}"),
        }
    } else {
        TaskError::Internal {
            message: format!("the store failed: {err}"),
        }
    }
}
