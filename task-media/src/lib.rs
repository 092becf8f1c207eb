//! The media steps of the task engine, on real object storage and real video.
//!
//! - [`S3Check`]: a HEAD of the asset; missing objects and buckets are
//!   `asset_not_found`, refused access is permanent, network trouble and 5xx are retryable.
//! - [`ProbeStep`]: duration and streams by a pure-Rust MP4 prober that
//!   reads only the `moov` box through range requests, or by ffprobe; an earlier probe of the
//!   same object (same URL, ETag and size) is reused.
//! - [`LengthGate`]: the product's minimum duration.
//! - [`AnalyzeStep`] with an [`Analyzer`] per product,
//!   such as [`AdbreaksAnalyzer`] (ffmpeg blackdetect +
//!   silencedetect); [`builtin_analyzer_with`] makes any of the built-in ones.
//!
//! Asset URLs are `s3://bucket/key`, `file://` under a configured root, or `memory://` (an
//! in-memory store, for tests and examples); see [`AssetLocator`].
//!
//! ```
//! use std::sync::Arc;
//! use object_store::{ObjectStoreExt, path::Path};
//! use task_media::asset_url::{AssetLocator, S3Settings};
//! use task_media::s3_check::head_asset;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let locator = AssetLocator::new(S3Settings::default(), None);
//! locator.memory().put(&Path::from("movie.mp4"), vec![0u8; 1024].into()).await?;
//! let info = head_asset(&locator.locate("memory:///movie.mp4")?).await?;
//! assert_eq!(info.size, 1024);
//! let missing = head_asset(&locator.locate("memory:///nope.mp4")?).await.unwrap_err();
//! assert_eq!(missing.to_string(), "Asset not found in the provided S3 location.");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod analyze;
pub mod asset_url;
mod error;
pub mod length_gate;
pub mod media;
mod options;
pub mod probe;
pub mod probe_step;
pub mod s3_check;

use std::sync::Arc;

pub use error::{MediaError, storage_error};
pub use options::{AnalyzerOptions, OptionError};

use task_core::ids::ProductName;
use task_runner::{Pipeline, RunnerError};

use crate::analyze::adbreaks::AdbreaksAnalyzer;
use crate::analyze::fingerprint::FingerprintAnalyzer;
use crate::analyze::scenes::ScenesAnalyzer;
use crate::analyze::{AnalyzeStep, Analyzer};
use crate::asset_url::AssetLocator;
use crate::length_gate::LengthGate;
use crate::probe::FfprobeProber;
use crate::probe_step::{ProbeStep, ProberChoice};
use crate::s3_check::S3Check;

/// Builds the runner's pipeline from the media steps.
pub fn pipeline(
    locator: Arc<AssetLocator>,
    choice: ProberChoice,
    analyzers: Vec<(ProductName, Arc<dyn Analyzer>)>,
) -> Result<Pipeline, RunnerError> {
    let mut pipeline = Pipeline::new(
        Arc::new(S3Check::new(locator.clone())),
        Arc::new(ProbeStep::new(
            locator.clone(),
            FfprobeProber::default(),
            choice,
        )),
        Arc::new(LengthGate),
    )?;
    for (product, analyzer) in analyzers {
        pipeline = pipeline.with_analyzer(
            product,
            Arc::new(AnalyzeStep::new(locator.clone(), analyzer)),
        )?;
    }
    Ok(pipeline)
}

/// The products this crate ships: those [`builtin_analyzer_with`] has an analyzer for, and
/// `markers`, whose analyze step is [`MarkersStep`](analyze::markers::MarkersStep) (it reads
/// fingerprints rather than the media).
pub const BUILTIN_PRODUCTS: [&str; 5] =
    ["adbreaks", "fingerprint", "markers", "scenes", "thumbnails"];

/// The analyzers this crate ships that need no options, by product name: every one of
/// [`BUILTIN_PRODUCTS`] but `thumbnails`, which needs an output (see [`builtin_analyzer_with`]).
pub fn builtin_analyzer(product: &ProductName) -> Option<Arc<dyn Analyzer>> {
    builtin_analyzer_with(product, &AnalyzerOptions::default())
        .ok()
        .flatten()
}

/// The analyzer this crate ships for `product` (one of [`BUILTIN_PRODUCTS`], else None), made
/// with `options`; an option the product does not take, or cannot use, is an error naming it.
pub fn builtin_analyzer_with(
    product: &ProductName,
    options: &AnalyzerOptions,
) -> Result<Option<Arc<dyn Analyzer>>, OptionError> {
    options.validate(product.as_str())?;
    Ok(match product.as_str() {
        "adbreaks" => Some(Arc::new(AdbreaksAnalyzer::default())),
        "fingerprint" => Some(Arc::new(FingerprintAnalyzer::default())),
        "scenes" => Some(Arc::new(ScenesAnalyzer::default())),
        "thumbnails" => Some(Arc::new(options.thumbnails()?)),
        _ => None,
    })
}
