//! A typed async client of the media task engine's Task API (`taskd`, or the `task-http` router
//! mounted in your own service), over reqwest.
//!
//! Requests and answers are the types the server serialises ([`task_api`]); an error answer is
//! a [`ClientError::Api`] with the contract's status and `detail`. Idempotent calls (GET, PUT,
//! DELETE) are retried on connection errors, up to three times with a doubling pause; a POST
//! is not (a create of the same key returns the active task anyway, so the caller may retry).
//!
//! ```no_run
//! use std::time::Duration;
//! use task_client::Client;
//! use task_client::api::bodies::{ItemBody, NewTaskBody};
//!
//! # async fn run() -> Result<(), task_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:8080", "secret-key")?;
//! client.put_item(&ItemBody::new("movie-42", "standalone", "Movie", "s3://media/movie-42.mp4")).await?;
//! let (task, _created) = client.create_task(&NewTaskBody::new("movie-42", "adbreaks", "1.0.1")).await?;
//! let done = client.wait_until_finished(&task.task_id, Duration::from_secs(3600)).await?;
//! println!("{} ended {} {:?}", done.task_id, done.status, done.error_code);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod error;
mod events;
mod query;
mod webhooks;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use task_api::bodies::{ItemBody, NewTaskBody, PriorityBody};
use task_api::errors::{FieldError, MessageBody};
use task_api::views::{
    BatchView, CatalogItemView, CatalogPage, DeletedItemView, HealthView, HistoryView,
    ItemTasksView, ResultView, TaskView, encode,
};

pub use error::{ClientError, Detail};
pub use events::TaskEvents;
pub use query::ItemQuery;
/// The wire types, re-exported.
pub use task_api as api;
pub use webhooks::DeliveryQuery;

/// How many times an idempotent call is retried after a connection error.
const RETRIES: u32 = 3;
/// The pause before the first retry; it doubles each time.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest wait one long-poll asks for (the service caps it too).
const LONG_POLL_SECS: f64 = 55.0;

/// A client of one service with one API key. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

/// The version and the product's filters of [`Client::results`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultQuery {
    /// The product version (default: the latest result).
    pub version: Option<String>,
    /// Other query parameters of the product (adbreaks: `minimum_separation`, ...).
    pub filters: Vec<(String, String)>,
}

impl Client {
    /// A client of the service at `base` (e.g. `http://127.0.0.1:8080`) with `api_key`.
    pub fn new(base: &str, api_key: &str) -> Result<Self, ClientError> {
        Self::with_http(base, api_key, reqwest::Client::new())
    }

    /// The same with a reqwest client of your own (timeouts, proxies, TLS roots).
    pub fn with_http(
        base: &str,
        api_key: &str,
        http: reqwest::Client,
    ) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidBaseUrl {
            url: base.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = reqwest::Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("only http and https are supported"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment"));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: api_key.to_owned(),
            http,
        })
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<HealthView, ClientError> {
        self.call(reqwest::Method::GET, "/healthz", None::<&()>)
            .await
            .map(|(view, _)| view)
    }

    /// `GET /readyz`: the answer also when not ready (503), with its `reason`.
    pub async fn ready(&self) -> Result<HealthView, ClientError> {
        let response = self
            .send(reqwest::Method::GET, "/readyz", None::<&()>)
            .await?;
        if response.status().as_u16() != 503 {
            let response = self
                .check(reqwest::Method::GET, "/readyz", response)
                .await?;
            return read(reqwest::Method::GET, response)
                .await
                .map(|(view, _)| view);
        }
        read(reqwest::Method::GET, response)
            .await
            .map(|(view, _)| view)
    }

    /// `PUT /catalog/v1/item`: the item, and whether it was created (else replaced).
    pub async fn put_item(&self, item: &ItemBody) -> Result<(CatalogItemView, bool), ClientError> {
        let (view, status) = self
            .call(reqwest::Method::PUT, "/catalog/v1/item", Some(item))
            .await?;
        Ok((view, status == 201))
    }

    /// `GET /catalog/v1/item/{type}/{inventory_id}`.
    pub async fn get_item(
        &self,
        item_type: &str,
        inventory_id: &str,
    ) -> Result<CatalogItemView, ClientError> {
        let path = format!(
            "/catalog/v1/item/{}/{}",
            encode(item_type),
            encode(inventory_id)
        );
        self.get(&path).await
    }

    /// `GET /catalog/v1/item`: one page of items (of one parent's children with
    /// [`ItemQuery::parent_id`]).
    pub async fn list_items(&self, query: &ItemQuery) -> Result<CatalogPage, ClientError> {
        self.get(&with_query("/catalog/v1/item", &query.params()))
            .await
    }

    /// `DELETE /catalog/v1/item/{type}/{inventory_id}`: soft-deletes it and cancels its tasks.
    pub async fn delete_item(
        &self,
        item_type: &str,
        inventory_id: &str,
    ) -> Result<DeletedItemView, ClientError> {
        let path = format!(
            "/catalog/v1/item/{}/{}",
            encode(item_type),
            encode(inventory_id)
        );
        self.call(reqwest::Method::DELETE, &path, None::<&()>)
            .await
            .map(|(view, _)| view)
    }

    /// `POST /task`: the task, and whether it was created (else the active task of the key).
    pub async fn create_task(&self, task: &NewTaskBody) -> Result<(TaskView, bool), ClientError> {
        let (view, status) = self
            .call(reqwest::Method::POST, "/task", Some(task))
            .await?;
        Ok((view, status == 201))
    }

    /// `POST /tasks/batch`: a result per entry. Entries are usually [`NewTaskBody`]; any
    /// serialisable value goes, and the service refuses an invalid entry alone, naming it.
    pub async fn create_tasks<T: Serialize>(&self, tasks: &[T]) -> Result<BatchView, ClientError> {
        #[derive(Serialize)]
        struct Batch<'a, T> {
            tasks: &'a [T],
        }
        self.call(
            reqwest::Method::POST,
            "/tasks/batch",
            Some(&Batch { tasks }),
        )
        .await
        .map(|(view, _)| view)
    }

    /// `GET /task/{task_id}`.
    pub async fn get_task(&self, task_id: &str) -> Result<TaskView, ClientError> {
        self.get(&format!("/task/{}", encode(task_id))).await
    }

    /// `GET /task/{task_id}?wait=...`: answers once the status is no longer `status` (default:
    /// the one it has now), or after `wait` (capped by the service) with the task as it is.
    pub async fn poll_task(
        &self,
        task_id: &str,
        wait: Duration,
        status: Option<&str>,
    ) -> Result<TaskView, ClientError> {
        let mut params = vec![("wait".to_owned(), format!("{:.3}", wait.as_secs_f64()))];
        if let Some(status) = status {
            params.push(("status".to_owned(), status.to_owned()));
        }
        let path = with_query(&format!("/task/{}", encode(task_id)), &params);
        self.get(&path).await
    }

    /// Long-polls until the task is `done`, `failed` or `cancelled`, or `timeout` passes (then
    /// the task as it is).
    pub async fn wait_until_finished(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<TaskView, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut task = self.get_task(task_id).await?;
        while !is_finished(&task.status) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let wait = left.min(Duration::from_secs_f64(LONG_POLL_SECS));
            task = self.poll_task(task_id, wait, Some(&task.status)).await?;
        }
        Ok(task)
    }

    /// `DELETE /task/{task_id}`: cancels it (or asks its running step to stop).
    pub async fn cancel_task(&self, task_id: &str) -> Result<TaskView, ClientError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/task/{}", encode(task_id)),
            None::<&()>,
        )
        .await
        .map(|(view, _)| view)
    }

    /// `GET /task/{task_id}/history`.
    pub async fn history(&self, task_id: &str) -> Result<HistoryView, ClientError> {
        self.get(&format!("/task/{}/history", encode(task_id)))
            .await
    }

    /// `GET /task/{task_id}/events`: the task at each change, until it ends.
    pub async fn events(&self, task_id: &str) -> Result<TaskEvents, ClientError> {
        let path = format!("/task/{}/events", encode(task_id));
        let url = format!("{}{path}", self.base);
        let response = self.send(reqwest::Method::GET, &path, None::<&()>).await?;
        let response = self.check(reqwest::Method::GET, &path, response).await?;
        Ok(TaskEvents::new(url, response))
    }

    /// `POST /tasks/catalog-item/{inventory_id}/product/{product}/version/{version}`: creates
    /// the task of that key (or returns the active one), with `priority` (default low).
    pub async fn create_by_key(
        &self,
        inventory_id: &str,
        product: &str,
        version: &str,
        priority: Option<&str>,
    ) -> Result<(TaskView, bool), ClientError> {
        let body = PriorityBody {
            priority: priority.map(str::to_owned),
        };
        let (view, status) = self
            .call(
                reqwest::Method::POST,
                &key_path(inventory_id, product, version),
                Some(&body),
            )
            .await?;
        Ok((view, status == 201))
    }

    /// `GET` of the same path: the latest task of that key.
    pub async fn task_by_key(
        &self,
        inventory_id: &str,
        product: &str,
        version: &str,
    ) -> Result<TaskView, ClientError> {
        self.get(&key_path(inventory_id, product, version)).await
    }

    /// `DELETE` of the same path: cancels the active task of that key.
    pub async fn cancel_by_key(
        &self,
        inventory_id: &str,
        product: &str,
        version: &str,
    ) -> Result<TaskView, ClientError> {
        self.call(
            reqwest::Method::DELETE,
            &key_path(inventory_id, product, version),
            None::<&()>,
        )
        .await
        .map(|(view, _)| view)
    }

    /// `GET /tasks/catalog-item/{inventory_id}`: every task of an item.
    pub async fn item_tasks(&self, inventory_id: &str) -> Result<ItemTasksView, ClientError> {
        self.get(&format!("/tasks/catalog-item/{}", encode(inventory_id)))
            .await
    }

    /// `GET /results/{product}/{inventory_id}`.
    pub async fn results(
        &self,
        product: &str,
        inventory_id: &str,
        query: &ResultQuery,
    ) -> Result<ResultView, ClientError> {
        let mut params = Vec::new();
        if let Some(version) = &query.version {
            params.push(("version".to_owned(), version.clone()));
        }
        params.extend(query.filters.iter().cloned());
        let path = format!("/results/{}/{}", encode(product), encode(inventory_id));
        self.get(&with_query(&path, &params)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(reqwest::Method::GET, path, None::<&()>)
            .await
            .map(|(view, _)| view)
    }

    /// Sends, checks the status and reads the JSON answer; the answer and its status.
    async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(T, u16), ClientError> {
        let response = self.send(method.clone(), path, body).await?;
        let response = self.check(method.clone(), path, response).await?;
        read(method, response).await
    }

    /// Sends the request, retrying an idempotent one on connection errors.
    async fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let idempotent = method != reqwest::Method::POST;
        let mut pause = FIRST_PAUSE;
        let mut tries = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("X-API-Key", &self.key);
            if let Some(body) = body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(response) => return Ok(response),
                Err(err)
                    if idempotent && tries < RETRIES && (err.is_connect() || err.is_request()) =>
                {
                    tries += 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(source) => {
                    return Err(ClientError::Transport {
                        method: method.to_string(),
                        url,
                        source,
                    });
                }
            }
        }
    }

    /// The response if its status is a success, else the contract's error.
    async fn check(
        &self,
        method: reqwest::Method,
        path: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let detail = if status.as_u16() == 422 {
            serde_json::from_slice::<ValidationBody>(&bytes)
                .map(|body| Detail::Invalid(body.detail))
                .ok()
        } else {
            serde_json::from_slice::<MessageBody>(&bytes)
                .map(|body| Detail::Message(body.detail))
                .ok()
        };
        // A body outside the contract (a proxy's page) is kept as text.
        let detail = detail.unwrap_or_else(|| {
            Detail::Message(String::from_utf8_lossy(&bytes).chars().take(500).collect())
        });
        Err(ClientError::Api {
            method: method.to_string(),
            path: path.to_owned(),
            status: status.as_u16(),
            detail,
        })
    }
}

/// Reads a successful answer's JSON; the answer and its status.
async fn read<T: DeserializeOwned>(
    method: reqwest::Method,
    response: reqwest::Response,
) -> Result<(T, u16), ClientError> {
    let status = response.status().as_u16();
    let url = response.url().to_string();
    let bytes = response
        .bytes()
        .await
        .map_err(|source| ClientError::Transport {
            method: method.to_string(),
            url: url.clone(),
            source,
        })?;
    let view = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        method: method.to_string(),
        url,
        reason: e.to_string(),
    })?;
    Ok((view, status))
}

/// A 422's body as read back (the server's `ValidationErrorBody`).
#[derive(serde::Deserialize)]
struct ValidationBody {
    detail: Vec<FieldError>,
}

fn is_finished(status: &str) -> bool {
    matches!(status, "done" | "failed" | "cancelled")
}

fn key_path(inventory_id: &str, product: &str, version: &str) -> String {
    format!(
        "/tasks/catalog-item/{}/product/{}/version/{}",
        encode(inventory_id),
        encode(product),
        encode(version)
    )
}

fn with_query(path: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_paths_encoded() {
        assert!(Client::new("ftp://x", "k").is_err());
        assert!(Client::new("http://x?a=1", "k").is_err());
        assert!(Client::new("not a url", "k").is_err());
        assert!(Client::new("https://tasks.example/", "k").is_ok());
        assert_eq!(
            key_path("a b/c", "adbreaks", "1.0.1"),
            "/tasks/catalog-item/a%20b%2Fc/product/adbreaks/version/1.0.1"
        );
        let params = [("version".to_owned(), "1.0&x".to_owned())];
        assert_eq!(with_query("/r", &params), "/r?version=1.0%26x");
        assert_eq!(with_query("/r", &[]), "/r");
    }
}
