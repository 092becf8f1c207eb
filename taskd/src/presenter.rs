//! The adbreaks result presentation of the service: the query filters of the results route,
//! applied by task-media's pure filter to the stored candidates.

use serde_json::{Value, json};
use task_http::{FieldError, QueryParams, ResultPresenter};
use task_media::analyze::adbreaks::{AdbreakFilter, AdbreaksData, filter_adbreaks};

/// Presents adbreaks results as `{"adbreak": [{"rank", "candidates"}], "duration_secs"}`.
#[derive(Debug, Default, Clone, Copy)]
pub struct AdbreaksPresenter;

fn parse_filter(query: &QueryParams) -> Result<AdbreakFilter, Vec<FieldError>> {
    let mut filter = AdbreakFilter::default();
    let mut errors = Vec::new();
    let fields: [(&str, &mut f64); 4] = [
        ("minimum_separation", &mut filter.minimum_separation),
        ("maximum_separation", &mut filter.maximum_separation),
        ("skip_first", &mut filter.skip_first),
        ("skip_last", &mut filter.skip_last),
    ];
    for (name, slot) in fields {
        if let Some(raw) = query.get(name) {
            match raw.parse::<f64>() {
                Ok(value) if value.is_finite() && value >= 0.0 => *slot = value,
                _ => errors.push(FieldError::query(
                    name,
                    format!("Input should be a non-negative number of minutes, got {raw:?}"),
                    "float_parsing",
                )),
            }
        }
    }
    if errors.is_empty() && filter.maximum_separation < filter.minimum_separation {
        errors.push(FieldError::query(
            "maximum_separation",
            "Must not be less than minimum_separation",
            "value_error",
        ));
    }
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(errors)
    }
}

impl ResultPresenter for AdbreaksPresenter {
    fn validate(&self, query: &QueryParams) -> Result<(), Vec<FieldError>> {
        parse_filter(query).map(|_| ())
    }

    fn present(&self, data: &Value, query: &QueryParams) -> Result<Value, Vec<FieldError>> {
        let filter = parse_filter(query)?;
        let stored: AdbreaksData = serde_json::from_value(data.clone()).map_err(|e| {
            vec![FieldError::new(
                vec!["data".into()],
                format!("the stored adbreaks result cannot be read: {e}"),
                "internal",
            )]
        })?;
        let groups = filter_adbreaks(&stored, &filter);
        Ok(json!({"adbreak": groups, "duration_secs": stored.duration_secs}))
    }
}
