//! Identifiers and small value types, each validated at construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that failed validation: which field, the offending value, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}")]
pub struct ValidationError {
    /// The field or identifier kind that was being validated (e.g. `product`).
    pub field: &'static str,
    /// The rejected value, truncated to 300 characters.
    pub value: String,
    /// What rule the value broke.
    pub reason: String,
}

impl ValidationError {
    /// Builds an error for `field` holding `value` that broke `reason`.
    pub fn new(field: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let value: String = value.chars().take(300).collect();
        Self {
            field,
            value,
            reason: reason.into(),
        }
    }
}

/// Declares a validated string newtype with serde support that re-validates on deserialize.
macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $field:literal, $check:path) => {
        validated_string!($(#[$doc])* $name, $field, $check, $check);
    };
    ($(#[$doc:meta])* $name:ident, $field:literal, $check:path, $stored:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
                let value = value.into();
                $check(&value).map_err(|reason| ValidationError::new($field, &value, reason))?;
                Ok(Self(value))
            }

            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // Stored values are read by the rule they were written under, which may be
                // looser than today's rule for new values: a record never becomes unreadable.
                let raw = String::deserialize(deserializer)?;
                $stored(&raw)
                    .map_err(|reason| ValidationError::new($field, &raw, reason))
                    .map_err(serde::de::Error::custom)?;
                Ok(Self(raw))
            }
        }
    };
}

fn check_length(value: &str, max: usize) -> Result<(), String> {
    let len = value.chars().count();
    if len == 0 {
        return Err("must not be empty".into());
    }
    if len > max {
        return Err(format!("must be at most {max} characters, got {len}"));
    }
    Ok(())
}

fn check_tenant(value: &str) -> Result<(), String> {
    check_length(value, 64)?;
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(c) => Err(format!(
            "character {c:?} is not allowed (use [A-Za-z0-9_-])"
        )),
        None => Ok(()),
    }
}

/// Characters that reorder how text displays: an id holding one can look like another id.
const BIDI_CONTROLS: [char; 12] = [
    '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

fn check_inventory(value: &str) -> Result<(), String> {
    check_stored_inventory(value)?;
    if value.chars().all(char::is_whitespace) {
        return Err("must not be only whitespace".into());
    }
    match value.chars().find(|c| BIDI_CONTROLS.contains(c)) {
        Some(c) => Err(format!(
            "bidirectional control character U+{:04X} is not allowed",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// The rule inventory ids were stored under before whitespace-only ids and bidirectional
/// controls were refused.
fn check_stored_inventory(value: &str) -> Result<(), String> {
    check_length(value, 256)?;
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("control character {c:?} is not allowed")),
        None => Ok(()),
    }
}

fn check_product(value: &str) -> Result<(), String> {
    check_length(value, 64)?;
    match value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        Some(c) => Err(format!("character {c:?} is not allowed (use [a-z0-9_])")),
        None => Ok(()),
    }
}

fn check_version(value: &str) -> Result<(), String> {
    check_length(value, 64)?;
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "character {c:?} is not allowed (use [0-9A-Za-z._-])"
        )),
        None => Ok(()),
    }
}

fn check_worker(value: &str) -> Result<(), String> {
    check_length(value, 128)?;
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("control character {c:?} is not allowed")),
        None => Ok(()),
    }
}

validated_string!(
    /// A tenant: the owner of catalog items, tasks and results (1-64 chars of `[A-Za-z0-9_-]`).
    TenantId,
    "tenant_id",
    check_tenant
);
validated_string!(
    /// The customer's own id of a catalog item: 1-256 characters, no control characters.
    InventoryId,
    "inventory_id",
    check_inventory,
    check_stored_inventory
);
validated_string!(
    /// An analysis product name such as `adbreaks`: `[a-z0-9_]{1,64}`.
    ProductName,
    "product",
    check_product
);
validated_string!(
    /// A product version such as `1.0.1`: 1-64 characters of `[0-9A-Za-z._-]`.
    Version,
    "version",
    check_version
);
validated_string!(
    /// The identity of a worker holding leases (a runner instance), 1-128 chars, no control characters.
    WorkerId,
    "worker_id",
    check_worker
);

/// A task's unique, time-ordered identifier (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(uuid::Uuid);

impl TaskId {
    /// A fresh id; ids made later in the same process sort after earlier ones.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// Parses the canonical hyphenated form, accepting only UUIDv7.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let uuid = uuid::Uuid::parse_str(value)
            .map_err(|e| ValidationError::new("task_id", value, e.to_string()))?;
        if uuid.get_version_num() != 7 {
            return Err(ValidationError::new(
                "task_id",
                value,
                "must be a version-7 UUID",
            ));
        }
        Ok(Self(uuid))
    }

    /// The 16 bytes of the id, which sort in creation order.
    pub fn to_bytes(self) -> [u8; 16] {
        *self.0.as_bytes()
    }

    /// Rebuilds an id from [`TaskId::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How urgently a task should run. Claims take `High` first; the default is `Low`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Claimed before everything else.
    High,
    /// Claimed after `High`.
    Medium,
    /// Claimed last; the default.
    #[default]
    Low,
}

impl Priority {
    /// All priorities, most urgent first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }

    /// 0 for `High`, 1 for `Medium`, 2 for `Low`: the sort rank in queues.
    pub fn rank(self) -> u8 {
        match self {
            Priority::High => 0,
            Priority::Medium => 1,
            Priority::Low => 2,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Priority::High),
            "medium" => Ok(Priority::Medium),
            "low" => Ok(Priority::Low),
            other => Err(ValidationError::new(
                "priority",
                other,
                "must be one of high, medium, low",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_inventory_ids_refuse_blank_and_bidi_but_stored_ones_read_back() {
        for bad in ["   ", "\t", "movie\u{202e}4pm.exe", "\u{2066}x"] {
            let err = InventoryId::new(bad).expect_err(bad);
            assert_eq!(err.field, "inventory_id");
        }
        assert!(InventoryId::new(" movie 1 ").is_ok());
        let stored: InventoryId = serde_json::from_str(r#""a\u202eb""#).expect("stored id reads");
        assert_eq!(stored.as_str(), "a\u{202e}b");
        assert!(serde_json::from_str::<InventoryId>("\"\"").is_err());
    }

    #[test]
    fn product_names_follow_the_pattern() {
        assert!(ProductName::new("adbreaks").is_ok());
        assert!(ProductName::new("content_summary2").is_ok());
        let err = ProductName::new("AdBreaks").unwrap_err();
        assert_eq!(err.field, "product");
        assert!(err.to_string().contains("'A'"), "{err}");
        assert!(ProductName::new("").is_err());
        assert!(ProductName::new("a".repeat(65)).is_err());
        assert!(ProductName::new("a".repeat(64)).is_ok());
    }

    #[test]
    fn versions_and_inventory_ids_are_checked() {
        assert!(Version::new("1.0.1").is_ok());
        assert!(Version::new("v2_beta-3").is_ok());
        assert!(Version::new("1.0 1").is_err());
        assert!(Version::new("").is_err());
        assert!(InventoryId::new("movie 42 / ünïcode").is_ok());
        assert!(InventoryId::new("bad\nid").is_err());
        assert!(InventoryId::new("x".repeat(257)).is_err());
        assert!(InventoryId::new("x".repeat(256)).is_ok());
        assert!(TenantId::new("acme-1").is_ok());
        assert!(TenantId::new("acme corp").is_err());
    }

    #[test]
    fn deserializing_revalidates() {
        let err = serde_json::from_str::<ProductName>("\"Bad!\"").unwrap_err();
        assert!(err.to_string().contains("invalid product"), "{err}");
        let ok: Version = serde_json::from_str("\"1.2\"").unwrap();
        assert_eq!(ok.as_str(), "1.2");
    }

    #[test]
    fn task_ids_are_time_ordered_and_round_trip() {
        let ids: Vec<TaskId> = (0..1000).map(|_| TaskId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let parsed = TaskId::parse(&ids[3].to_string()).unwrap();
        assert_eq!(parsed, ids[3]);
        assert_eq!(TaskId::from_bytes(ids[5].to_bytes()), ids[5]);
        assert!(TaskId::parse("not-a-uuid").is_err());
        assert!(TaskId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").is_err());
    }

    #[test]
    fn priority_parses_and_orders() {
        assert_eq!(Priority::default(), Priority::Low);
        assert!(Priority::High < Priority::Low);
        assert_eq!("medium".parse::<Priority>().unwrap(), Priority::Medium);
        assert!("urgent".parse::<Priority>().is_err());
    }
}
