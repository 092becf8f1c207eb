//! The `length_gate` step: the asset must be at least the product's minimum duration.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use task_core::error::TaskError;
use task_core::task::Step;
use task_runner::step::{StepContext, StepOutput, TaskStep};

use crate::probe::ProbeOutput;

/// The checkpoint of the length gate: both numbers it compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthCheck {
    /// The asset's duration, seconds.
    pub duration_secs: f64,
    /// The product's minimum, seconds.
    pub minimum_secs: f64,
}

/// The `length_gate` step.
#[derive(Debug, Clone, Copy, Default)]
pub struct LengthGate;

#[async_trait]
impl TaskStep for LengthGate {
    fn step(&self) -> Step {
        Step::LengthGate
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let probe: ProbeOutput = ctx.output(Step::Probe)?;
        let check = LengthCheck {
            duration_secs: probe.duration_secs,
            minimum_secs: ctx.product.min_duration.as_secs_f64(),
        };
        if check.duration_secs < check.minimum_secs {
            return Err(TaskError::AssetTooShort {
                duration_secs: check.duration_secs,
                minimum_secs: check.minimum_secs,
            });
        }
        StepOutput::new(&check)
    }
}
