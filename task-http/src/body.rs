//! Reading request input: JSON bodies, query strings and path parameters, into typed values or
//! into the 422 errors that name each offending field.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::{Map, Value};
use task_core::ids::ValidationError;

use crate::config::QueryParams;
use crate::error::{ApiError, FieldError, LocItem};

/// A request body parsed as JSON (any JSON value; an empty body reads as `{}`); size-limited
/// by the router's body limit.
#[derive(Debug)]
pub(crate) struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(usize::MAX, |l| l.0);
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let read_timeout = req
            .extensions()
            .get::<BodyReadTimeout>()
            .map_or(std::time::Duration::MAX, |t| t.0);
        let read = tokio::time::timeout(read_timeout, Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::RequestTimeout(read_timeout.as_secs()))?;
        let bytes = read.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::field(FieldError::new(
                    vec!["body".into()],
                    rejection.body_text(),
                    "body_read",
                ))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Object(Map::new())));
        }
        if !content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType(
                content_type.unwrap_or_else(|| "none".to_owned()),
            ));
        }
        crate::strict_json::parse(&bytes).map(JsonBody).map_err(|e| {
            ApiError::field(FieldError::new(
                vec!["body".into()],
                if e.to_string().starts_with("recursion limit exceeded") {
                    format!(
                        "JSON decode error: the body nests deeper than the 128 levels this service reads ({e})"
                    )
                } else {
                    format!("JSON decode error: {e}")
                },
                "json_invalid",
            ))
        })
    }
}

/// `application/json` or a `+json` type such as `application/merge-patch+json`, any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Path parameters; a parameter that cannot be decoded is a 422 naming the path.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|e| {
                ApiError::field(FieldError::new(
                    vec!["path".into()],
                    e.body_text(),
                    "path_invalid",
                ))
            })
    }
}

/// The configured body read timeout, put in request extensions for [`JsonBody`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyReadTimeout(pub std::time::Duration);

/// The configured body limit, put in request extensions so errors can name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub usize);

/// The decoded query string, every parameter as a string (a repeated one keeps the last).
#[derive(Debug, Default)]
pub(crate) struct RawQuery(pub QueryParams);

impl<S: Send + Sync> FromRequestParts<S> for RawQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Query(params) =
            Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|e| {
                ApiError::field(FieldError::new(
                    vec!["query".into()],
                    e.body_text(),
                    "query_invalid",
                ))
            })?;
        Ok(RawQuery(params.into_iter().collect()))
    }
}

impl RawQuery {
    /// Parses optional parameter `name` with `parse`, recording an error in `errors`.
    pub fn get<T>(
        &self,
        name: &str,
        errors: &mut Vec<FieldError>,
        parse: impl FnOnce(&str) -> Result<T, (String, &'static str)>,
    ) -> Option<T> {
        let raw = self.0.get(name)?;
        match parse(raw) {
            Ok(value) => Some(value),
            Err((msg, kind)) => {
                errors.push(FieldError::query(name, msg, kind));
                None
            }
        }
    }
}

/// Parses a boolean the way query strings spell it.
pub(crate) fn parse_bool(raw: &str) -> Result<bool, (String, &'static str)> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err((
            format!("Input should be a valid boolean, unable to interpret {raw:?}"),
            "bool_parsing",
        )),
    }
}

/// Parses an integer in `min..=max`.
pub(crate) fn parse_int(raw: &str, min: u64, max: u64) -> Result<u64, (String, &'static str)> {
    let value: u64 = raw.parse().map_err(|_| {
        (
            format!("Input should be a valid integer, unable to parse {raw:?}"),
            "int_parsing",
        )
    })?;
    if value < min || value > max {
        return Err((
            format!("Input should be between {min} and {max}, got {value}"),
            "value_error",
        ));
    }
    Ok(value)
}

/// Parses a validated id from a path parameter.
pub(crate) fn path_param<T: FromStr<Err = ValidationError>>(
    name: &str,
    raw: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match raw.parse() {
        Ok(value) => Some(value),
        Err(e) => {
            errors.push(FieldError::path(name, e.to_string(), "value_error"));
            None
        }
    }
}

/// Turns collected errors into a 422, or passes.
pub(crate) fn check(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Reads the fields of a JSON object, collecting an error for each bad one.
pub(crate) struct Fields<'a, 'e> {
    map: &'a Map<String, Value>,
    loc: Vec<LocItem>,
    errors: &'e mut Vec<FieldError>,
}

impl<'a, 'e> Fields<'a, 'e> {
    /// The object at `loc`, or an error if `value` is not an object.
    pub fn of(
        value: &'a Value,
        loc: Vec<LocItem>,
        errors: &'e mut Vec<FieldError>,
    ) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self { map, loc, errors }),
            other => {
                errors.push(FieldError::new(
                    loc,
                    format!("Input should be an object, got {}", kind_of(other)),
                    "model_type",
                ));
                None
            }
        }
    }

    fn at(&self, name: &str) -> Vec<LocItem> {
        let mut loc = self.loc.clone();
        loc.push(name.into());
        loc
    }

    /// Records an error at field `name`.
    pub fn error(&mut self, name: &str, msg: impl Into<String>, kind: &str) {
        let loc = self.at(name);
        self.errors.push(FieldError::new(loc, msg, kind));
    }

    /// Whether the body has a field `name`, null included.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The raw value of `name`, if present and not null.
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A string field; `None` (with an error if required) when absent or not a string.
    pub fn string(&mut self, name: &str, required: bool) -> Option<&'a str> {
        match self.raw(name) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                let msg = format!("Input should be a valid string, got {}", kind_of(other));
                self.error(name, msg, "string_type");
                None
            }
            None => {
                if required {
                    self.error(name, "Field required", "missing");
                }
                None
            }
        }
    }

    /// A string field parsed into a validated type.
    pub fn parse<T: FromStr<Err = ValidationError>>(
        &mut self,
        name: &str,
        required: bool,
    ) -> Option<T> {
        let raw = self.string(name, required)?;
        match raw.parse() {
            Ok(value) => Some(value),
            Err(e) => {
                self.error(name, e.to_string(), "value_error");
                None
            }
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, name: &str) -> Option<Vec<String>> {
        match self.raw(name)? {
            Value::Array(values) => {
                let mut out = Vec::with_capacity(values.len());
                for (i, value) in values.iter().enumerate() {
                    match value {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            let mut loc = self.at(name);
                            loc.push(i.into());
                            let msg =
                                format!("Input should be a valid string, got {}", kind_of(other));
                            self.errors.push(FieldError::new(loc, msg, "string_type"));
                        }
                    }
                }
                Some(out)
            }
            other => {
                let msg = format!("Input should be a valid list, got {}", kind_of(other));
                self.error(name, msg, "list_type");
                None
            }
        }
    }

    /// Refuses every field not in `allowed`.
    pub fn deny_unknown(&mut self, allowed: &[&str]) {
        let unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        for name in unknown {
            let msg = format!(
                "Extra inputs are not permitted (allowed: {})",
                allowed.join(", ")
            );
            self.error(name, msg, "extra_forbidden");
        }
    }

    /// The fields not in `known`, kept as given.
    pub fn rest(&self, known: &[&str]) -> Map<String, Value> {
        self.map
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A short name of a JSON value's type, for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
