//! The steps a runner executes: three shared steps and one analyzer per product.

use std::collections::HashMap;
use std::sync::Arc;

use task_core::ids::ProductName;
use task_core::task::Step;

use crate::error::RunnerError;
use crate::step::TaskStep;

/// `s3_check -> probe -> length_gate -> analyze`, with the analyze step chosen by product.
#[derive(Clone)]
pub struct Pipeline {
    shared: [Arc<dyn TaskStep>; 3],
    analyzers: HashMap<ProductName, Arc<dyn TaskStep>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("analyzers", &self.analyzers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline from its three shared steps; each must report the step it stands for.
    pub fn new(
        s3_check: Arc<dyn TaskStep>,
        probe: Arc<dyn TaskStep>,
        length_gate: Arc<dyn TaskStep>,
    ) -> Result<Self, RunnerError> {
        let shared = [s3_check, probe, length_gate];
        for (step, expected) in shared
            .iter()
            .zip([Step::S3Check, Step::Probe, Step::LengthGate])
        {
            if step.step() != expected {
                return Err(RunnerError::StepMismatch {
                    slot: expected,
                    got: step.step(),
                });
            }
        }
        Ok(Self {
            shared,
            analyzers: HashMap::new(),
        })
    }

    /// Adds the analyze step of `product`.
    pub fn with_analyzer(
        mut self,
        product: ProductName,
        analyzer: Arc<dyn TaskStep>,
    ) -> Result<Self, RunnerError> {
        if analyzer.step() != Step::Analyze {
            return Err(RunnerError::StepMismatch {
                slot: Step::Analyze,
                got: analyzer.step(),
            });
        }
        self.analyzers.insert(product, analyzer);
        Ok(self)
    }

    /// The implementation of `step` for `product`, if the product has an analyzer.
    pub fn step(&self, product: &ProductName, step: Step) -> Option<Arc<dyn TaskStep>> {
        match step {
            Step::Analyze => self.analyzers.get(product).cloned(),
            other => Some(self.shared[other.index()].clone()),
        }
    }

    /// Whether `product` has an analyzer.
    pub fn has_product(&self, product: &ProductName) -> bool {
        self.analyzers.contains_key(product)
    }
}
