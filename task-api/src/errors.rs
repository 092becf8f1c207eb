//! The bodies of the API's error answers: `{"detail": "..."}`, or for a 422 the list of invalid
//! inputs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One element of a `loc`: a name or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LocItem {
    /// A field or parameter name, or `body`/`query`/`path`.
    Name(String),
    /// An index in a list.
    Index(usize),
}

impl From<&str> for LocItem {
    fn from(name: &str) -> Self {
        LocItem::Name(name.to_owned())
    }
}

impl From<usize> for LocItem {
    fn from(index: usize) -> Self {
        LocItem::Index(index)
    }
}

/// One invalid input: where it is, what is wrong, and a machine-readable kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Where the input is: `["body", "product"]`, `["query", "page_size"]`, `["path", "task_id"]`.
    pub loc: Vec<LocItem>,
    /// What is wrong, for a human.
    pub msg: String,
    /// The kind of error (`missing`, `value_error`, `extra_forbidden`...).
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    /// An error at `loc`.
    pub fn new(loc: Vec<LocItem>, msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }

    /// An error in query parameter `name`.
    pub fn query(name: &str, msg: impl Into<String>, kind: &str) -> Self {
        Self::new(vec!["query".into(), name.into()], msg, kind)
    }

    /// An error in path parameter `name`.
    pub fn path(name: &str, msg: impl Into<String>, kind: &str) -> Self {
        Self::new(vec!["path".into(), name.into()], msg, kind)
    }
}

/// The body of a 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidationErrorBody {
    /// Every invalid input found.
    pub detail: Vec<FieldError>,
}

/// The body of every other error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageBody {
    /// What went wrong.
    pub detail: String,
}
