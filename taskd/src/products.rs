//! One `[products.NAME]` table: its settings for the API and the runner, and the options of
//! its built-in analyzer, checked at start.

use std::time::Duration;

use serde::Deserialize;
use task_core::ids::{ProductName, Version};

use crate::config::setting;
use crate::error::TaskdError;

/// One product's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductEntry {
    /// Accepted versions (default: any).
    pub versions: Option<Vec<String>>,
    /// Minimum asset length in seconds (default 0).
    pub min_duration_secs: Option<f64>,
    /// Step timeout in seconds (default 600).
    pub step_timeout_secs: Option<u64>,
    /// Attempts on retryable errors (default 10).
    pub max_attempts: Option<u32>,
    /// Back-off after the first failed attempt, in seconds (default 2); it doubles per attempt.
    pub retry_base_secs: Option<f64>,
    /// The longest back-off between two attempts, in seconds (default 120).
    pub retry_max_secs: Option<f64>,
    /// Concurrent tasks of this product (default 4).
    pub concurrency: Option<usize>,
    /// thumbnails (required): where the stills go, `s3://bucket/prefix` (with the `[s3]`
    /// settings of the assets) or `file:///absolute/dir`.
    pub output: Option<String>,
    /// thumbnails: the most stills per asset, 1 to 999 (default 20).
    pub max_stills: Option<usize>,
    /// markers: the `fingerprint` version whose results it compares, and whose tasks it
    /// creates when missing (default `1`).
    pub fingerprint_version: Option<String>,
}

/// One enabled product, resolved.
#[derive(Debug, Clone)]
pub struct Product {
    /// Its name.
    pub name: ProductName,
    /// Accepted versions.
    pub versions: Option<Vec<Version>>,
    /// Runner settings.
    pub settings: task_runner::step::ProductSettings,
    /// What its built-in analyzer needs besides the name (checked; the S3 settings are added
    /// when the analyzer is built).
    pub analyzer: task_media::AnalyzerOptions,
    /// markers only: the fingerprint version it compares.
    pub fingerprint_version: Option<Version>,
}

/// Resolves the table of product `name`: every setting checked, each error naming its field.
pub fn resolve(name: String, entry: ProductEntry) -> Result<Product, TaskdError> {
    let product = ProductName::new(name.clone()).map_err(|e| setting("products", e))?;
    let versions = entry
        .versions
        .map(|vs| {
            vs.into_iter()
                .map(Version::new)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| setting(&format!("products.{name}.versions"), e))?;
    let mut settings = task_runner::step::ProductSettings::new(product.clone());
    if let Some(secs) = entry.min_duration_secs {
        settings.min_duration = Duration::try_from_secs_f64(secs)
            .map_err(|e| setting(&format!("products.{name}.min_duration_secs"), e))?;
    }
    if let Some(secs) = entry.step_timeout_secs {
        settings.step_timeout = Duration::from_secs(secs);
    }
    if let Some(n) = entry.max_attempts {
        if n == 0 {
            return Err(setting(
                &format!("products.{name}.max_attempts"),
                "must be at least 1",
            ));
        }
        settings.max_attempts = n;
    }
    if entry.retry_base_secs.is_some() || entry.retry_max_secs.is_some() {
        let defaults = task_runner::RetryPolicy::default();
        let seconds = |key: &str, value: Option<f64>, default: Duration| match value {
            None => Ok(default),
            Some(secs) if secs > 0.0 => Duration::try_from_secs_f64(secs)
                .map_err(|e| setting(&format!("products.{name}.{key}"), e)),
            Some(_) => Err(setting(
                &format!("products.{name}.{key}"),
                "must be a positive number of seconds",
            )),
        };
        let base = seconds("retry_base_secs", entry.retry_base_secs, defaults.base)?;
        let max = seconds("retry_max_secs", entry.retry_max_secs, defaults.max)?;
        if max < base {
            return Err(setting(
                &format!("products.{name}.retry_max_secs"),
                "must not be less than retry_base_secs",
            ));
        }
        settings.retry = Some(task_runner::RetryPolicy { base, max });
    }
    if let Some(n) = entry.concurrency {
        settings.concurrency = n;
    }
    let analyzer = task_media::AnalyzerOptions {
        output: entry.output,
        max_stills: entry.max_stills,
        s3: Default::default(),
    };
    analyzer
        .validate(&name)
        .map_err(|e| setting(&format!("products.{name}.{}", e.field), e.reason))?;
    let fingerprint_version = match (name.as_str(), entry.fingerprint_version) {
        ("markers", version) => Some(
            Version::new(version.unwrap_or_else(|| "1".to_owned()))
                .map_err(|e| setting("products.markers.fingerprint_version", e))?,
        ),
        (_, None) => None,
        (_, Some(_)) => {
            return Err(setting(
                &format!("products.{name}.fingerprint_version"),
                "only the markers product takes it",
            ));
        }
    };
    Ok(Product {
        name: product,
        versions,
        settings,
        analyzer,
        fingerprint_version,
    })
}

/// Markers are made from fingerprints: the `fingerprint` product must be enabled, with the
/// version markers compare among its accepted ones, or the fingerprint tasks markers create
/// would be refused or never run.
pub fn check_markers(products: &[Product]) -> Result<(), TaskdError> {
    let Some(version) = products
        .iter()
        .find(|p| p.name.as_str() == "markers")
        .and_then(|p| p.fingerprint_version.as_ref())
    else {
        return Ok(());
    };
    match products.iter().find(|p| p.name.as_str() == "fingerprint") {
        None => Err(setting(
            "products.markers",
            "markers need the fingerprint product: enable [products.fingerprint] too",
        )),
        Some(fingerprint)
            if fingerprint
                .versions
                .as_ref()
                .is_some_and(|vs| !vs.contains(version)) =>
        {
            Err(setting(
                "products.markers.fingerprint_version",
                format!("{version} is not among the fingerprint product's versions"),
            ))
        }
        Some(_) => Ok(()),
    }
}
