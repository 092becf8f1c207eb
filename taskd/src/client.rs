//! The HTTP client of the client subcommands.

use serde_json::Value;

use crate::error::TaskdError;

/// A client of one service with one API key.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the service at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// A request to `path` with the key in the header.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> (String, reqwest::RequestBuilder) {
        let url = format!("{}{path}", self.base);
        let builder = self
            .http
            .request(method, &url)
            .header("X-API-Key", &self.key);
        (url, builder)
    }

    /// Sends and returns the JSON answer; an error status becomes [`TaskdError::Api`].
    pub async fn send(
        &self,
        url: &str,
        builder: reqwest::RequestBuilder,
    ) -> Result<Value, TaskdError> {
        let response = builder.send().await.map_err(|source| TaskdError::Http {
            url: url.to_owned(),
            source,
        })?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|source| TaskdError::Http {
            url: url.to_owned(),
            source,
        })?;
        if status.is_success() {
            return Ok(body);
        }
        let detail = match &body["detail"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Err(TaskdError::Api {
            status: status.as_u16(),
            detail,
        })
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Result<Value, TaskdError> {
        let (url, builder) = self.request(reqwest::Method::GET, path);
        self.send(&url, builder).await
    }

    /// `method` `path` with a JSON body.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, TaskdError> {
        let (url, builder) = self.request(method, path);
        self.send(&url, builder.json(body)).await
    }

    /// Opens the event stream of a task.
    pub async fn events(&self, task_id: &str) -> Result<EventStream, TaskdError> {
        let (url, builder) = self.request(reqwest::Method::GET, &format!("/task/{task_id}/events"));
        let response = builder.send().await.map_err(|source| TaskdError::Http {
            url: url.clone(),
            source,
        })?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or_default();
            return Err(TaskdError::Api {
                status,
                detail: body["detail"].to_string(),
            });
        }
        Ok(EventStream {
            url,
            response,
            buffer: String::new(),
        })
    }
}

/// Server-sent events of one task, as task bodies.
#[derive(Debug)]
pub struct EventStream {
    url: String,
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// The next task body, or None when the stream ended.
    pub async fn next(&mut self) -> Result<Option<Value>, TaskdError> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return serde_json::from_str(&data)
                    .map(Some)
                    .map_err(|e| TaskdError::Api {
                        status: 200,
                        detail: format!("unreadable event: {e}"),
                    });
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|source| TaskdError::Http {
                    url: self.url.clone(),
                    source,
                })?;
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return Ok(None),
            }
        }
    }
}
