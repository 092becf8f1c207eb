//! The task list's filter as the pages carry it (query string and hidden form fields), and
//! its translation to the store's [`TaskFilter`].

use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use task_core::ids::{InventoryId, Priority, ProductName, Version};
use task_core::store::TaskFilter;
use task_core::task::Status;
use task_core::time::Timestamp;

use crate::error::ConsoleError;

/// The filter fields; empty strings mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct FilterForm {
    pub status: String,
    pub product: String,
    pub version: String,
    pub priority: String,
    pub inventory_id: String,
    /// Created at or after, `YYYY-MM-DDTHH:MM[:SS]` in UTC.
    pub from: String,
    /// Created before, same form.
    pub before: String,
}

fn given(raw: &str) -> Option<&str> {
    Some(raw.trim()).filter(|s| !s.is_empty())
}

fn invalid(field: &'static str, reason: impl ToString) -> ConsoleError {
    ConsoleError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

/// A time as the browser's `datetime-local` input sends it, read as UTC.
fn parse_time(field: &'static str, raw: &str) -> Result<Timestamp, ConsoleError> {
    let text = if raw.len() == 16 {
        format!("{raw}:00")
    } else {
        raw.to_owned()
    };
    let at = humantime::parse_rfc3339_weak(&text).map_err(|e| {
        invalid(
            field,
            format!("{raw:?} is not a time like 2025-01-31T12:00: {e}"),
        )
    })?;
    let millis = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| invalid(field, format!("{raw:?} is before 1970")))?
        .as_millis();
    Ok(Timestamp::from_millis(
        u64::try_from(millis).unwrap_or(u64::MAX),
    ))
}

impl FilterForm {
    /// The store's filter, or which field is malformed.
    pub fn to_filter(&self) -> Result<TaskFilter, ConsoleError> {
        Ok(TaskFilter {
            status: given(&self.status)
                .map(|s| s.parse::<Status>().map_err(|e| invalid("status", e)))
                .transpose()?,
            product: given(&self.product)
                .map(|s| ProductName::new(s).map_err(|e| invalid("product", e)))
                .transpose()?,
            version: given(&self.version)
                .map(|s| Version::new(s).map_err(|e| invalid("version", e)))
                .transpose()?,
            priority: given(&self.priority)
                .map(|s| s.parse::<Priority>().map_err(|e| invalid("priority", e)))
                .transpose()?,
            inventory_id: given(&self.inventory_id)
                .map(|s| InventoryId::new(s).map_err(|e| invalid("inventory_id", e)))
                .transpose()?,
            created_from: given(&self.from)
                .map(|s| parse_time("from", s))
                .transpose()?,
            created_before: given(&self.before)
                .map(|s| parse_time("before", s))
                .transpose()?,
        })
    }

    /// The filter as a query string (without `?`), for links.
    pub fn query(&self) -> String {
        self.pairs()
            .into_iter()
            .map(|(name, value)| format!("{name}={}", task_api::views::encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The filter as hidden fields of a form.
    pub fn hidden_fields(&self) -> Markup {
        html! {
            @for (name, value) in self.pairs() {
                input type="hidden" name=(name) value=(value);
            }
        }
    }

    /// The non-empty fields, by name.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("status", &self.status),
            ("product", &self.product),
            ("version", &self.version),
            ("priority", &self.priority),
            ("inventory_id", &self.inventory_id),
            ("from", &self.from),
            ("before", &self.before),
        ]
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| (name, value.as_str()))
        .collect()
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fields_map_onto_the_store_filter() {
        let form = FilterForm {
            status: "pending".into(),
            priority: "high".into(),
            inventory_id: "movie 1".into(),
            from: "2025-01-31T12:00".into(),
            ..FilterForm::default()
        };
        let filter = form.to_filter().unwrap();
        assert_eq!(filter.status, Some(Status::Pending));
        assert_eq!(filter.priority, Some(Priority::High));
        assert_eq!(
            filter.created_from,
            Some(Timestamp::from_millis(1_738_324_800_000))
        );
        assert_eq!(
            form.query(),
            "status=pending&priority=high&inventory_id=movie%201&from=2025-01-31T12%3A00"
        );
        let bad = FilterForm {
            status: "sleeping".into(),
            ..FilterForm::default()
        };
        assert!(matches!(
            bad.to_filter(),
            Err(ConsoleError::Invalid {
                field: "status",
                ..
            })
        ));
        assert!(FilterForm::default().is_empty());
    }
}
