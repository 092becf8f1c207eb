//! What the built-in analyzers may need besides their product name, checked before anything is
//! built so that a deployment refuses a bad setting at start.

use crate::analyze::thumbnails::{MAX_STILLS_LIMIT, ThumbnailsAnalyzer};
use crate::asset_url::{OutputRoot, S3Settings};

/// Settings of a built-in analyzer; each names the products that take it.
#[derive(Debug, Clone, Default)]
pub struct AnalyzerOptions {
    /// thumbnails (required): where the stills go, `s3://bucket/prefix` or
    /// `file:///absolute/dir`.
    pub output: Option<String>,
    /// thumbnails: the most stills per asset, 1 to 999 (default 20).
    pub max_stills: Option<usize>,
    /// The S3 endpoint and credentials of an `s3://` output (a deployment passes its assets').
    pub s3: S3Settings,
}

/// A setting a built-in analyzer cannot use: `field` is the option's name (`output`,
/// `max_stills`), `reason` says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct OptionError {
    /// The option.
    pub field: &'static str,
    /// Why it cannot be used.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> OptionError {
    OptionError {
        field,
        reason: reason.into(),
    }
}

impl AnalyzerOptions {
    /// Checks these options for `product` without touching any store or directory.
    pub fn validate(&self, product: &str) -> Result<(), OptionError> {
        if product != "thumbnails" {
            if self.output.is_some() {
                return Err(refuse("output", format!("{product} writes no files")));
            }
            if self.max_stills.is_some() {
                return Err(refuse("max_stills", format!("{product} makes no stills")));
            }
            return Ok(());
        }
        let output = self.output.as_deref().ok_or_else(|| {
            refuse(
                "output",
                "required for thumbnails: where the stills go, s3://bucket/prefix or \
                 file:///absolute/dir",
            )
        })?;
        OutputRoot::validate(output).map_err(|e| refuse("output", format!("{output:?}: {e}")))?;
        if let Some(n) = self.max_stills
            && !(1..=MAX_STILLS_LIMIT).contains(&n)
        {
            return Err(refuse(
                "max_stills",
                format!("must be from 1 to {MAX_STILLS_LIMIT}, not {n}"),
            ));
        }
        Ok(())
    }

    /// The thumbnails analyzer these options describe (its output opened: an S3 client built,
    /// or the directory created).
    pub(crate) fn thumbnails(&self) -> Result<ThumbnailsAnalyzer, OptionError> {
        self.validate("thumbnails")?;
        let url = self.output.as_deref().unwrap_or_default();
        let output = OutputRoot::open(url, &self.s3)
            .map_err(|e| refuse("output", format!("{url:?}: {e}")))?;
        let analyzer = ThumbnailsAnalyzer::new(output);
        Ok(match self.max_stills {
            Some(n) => analyzer.with_max_stills(n),
            None => analyzer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(output: Option<&str>, max_stills: Option<usize>) -> AnalyzerOptions {
        AnalyzerOptions {
            output: output.map(str::to_owned),
            max_stills,
            s3: S3Settings::default(),
        }
    }

    #[test]
    fn thumbnails_needs_an_output_and_a_sane_maximum() {
        let err = options(None, None).validate("thumbnails").unwrap_err();
        assert_eq!(err.field, "output");
        assert!(err.reason.contains("required"), "{err}");
        let err = options(Some("ftp://x/y"), None)
            .validate("thumbnails")
            .unwrap_err();
        assert_eq!(err.field, "output");
        let err = options(Some("s3://stills/p"), Some(0))
            .validate("thumbnails")
            .unwrap_err();
        assert_eq!(err.field, "max_stills");
        assert!(
            options(Some("s3://stills/p"), Some(999))
                .validate("thumbnails")
                .is_ok()
        );
    }

    #[test]
    fn other_products_take_neither_option() {
        assert!(options(None, None).validate("scenes").is_ok());
        let err = options(Some("s3://stills/p"), None)
            .validate("scenes")
            .unwrap_err();
        assert_eq!(err.field, "output");
        let err = options(None, Some(3)).validate("adbreaks").unwrap_err();
        assert_eq!(err.field, "max_stills");
    }
}
