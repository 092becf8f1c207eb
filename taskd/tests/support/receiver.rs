//! A webhook receiver on loopback: records every request per path and answers as each path
//! is told (fail the first N with 500, hang the first N, or accept).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `Webhook-Id` header.
    pub id: String,
    /// The `Webhook-Timestamp` header.
    pub timestamp: i64,
    /// The `Webhook-Signature` header.
    pub signature: String,
    /// The `Webhook-Event` header.
    pub event: String,
    /// The raw body.
    pub body: Bytes,
    /// The body as JSON.
    pub json: Value,
}

/// How a path answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Answer 500 to this many first requests.
    pub fail_first: usize,
    /// Never answer this many first requests (after the failures).
    pub hang_first: usize,
    /// Answer 500 to every request.
    pub always_fail: bool,
}

#[derive(Default)]
struct Book {
    behaviour: HashMap<String, Behaviour>,
    received: HashMap<String, Vec<Received>>,
}

/// The receiver; dropped with the test's runtime.
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    book: Arc<Mutex<Book>>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Self {
        let book = Arc::new(Mutex::new(Book::default()));
        let app = Router::new()
            .route("/hook/{name}", axum::routing::post(receive))
            .with_state(book.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, book }
    }

    /// The URL of path `name`, answering as `behaviour` says.
    pub fn hook(&self, name: &str, behaviour: Behaviour) -> String {
        self.book
            .lock()
            .unwrap()
            .behaviour
            .insert(name.to_owned(), behaviour);
        format!("{}/hook/{name}", self.base)
    }

    /// Changes how `name` answers from now on.
    pub fn set(&self, name: &str, behaviour: Behaviour) {
        self.hook(name, behaviour);
    }

    /// Every request `name` received so far.
    pub fn received(&self, name: &str) -> Vec<Received> {
        self.book
            .lock()
            .unwrap()
            .received
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `done` holds for `name`'s requests (polling), or panics after `limit`.
    pub async fn wait_for(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.received(name);
            if done(&got) {
                return got;
            }
            assert!(
                started.elapsed() < limit,
                "{name}: {what} not seen within {limit:?}; got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn receive(
    State(book): State<Arc<Mutex<Book>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (seen, behaviour) = {
        let mut book = book.lock().unwrap();
        let received = Received {
            id: header(&headers, "webhook-id"),
            timestamp: header(&headers, "webhook-timestamp").parse().unwrap_or(0),
            signature: header(&headers, "webhook-signature"),
            event: header(&headers, "webhook-event"),
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
            body,
        };
        let list = book.received.entry(name.clone()).or_default();
        list.push(received);
        let seen = list.len();
        (seen, book.behaviour.get(&name).copied().unwrap_or_default())
    };
    if behaviour.always_fail || seen <= behaviour.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if seen <= behaviour.fail_first + behaviour.hang_first {
        // Never answers: the sender's timeout ends the attempt and drops the connection.
        std::future::pending::<()>().await;
    }
    StatusCode::NO_CONTENT
}
