use std::time::Duration;

use reqwest::StatusCode;
use task_core::prelude::*;

use crate::common::{KEY_A, Server, SseReader};

#[tokio::test]
async fn events_stream_every_change_until_done() {
    let s = Server::with_runner().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "semantic", "1").await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    let resp = s
        .http
        .get(s.url(&format!("/task/{id}/events")))
        .header("X-API-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut events = SseReader::new(resp);
    let first = events.next().await.unwrap();
    assert_eq!(first.event, "task");
    assert_eq!(first.data["task_id"], id.as_str());
    assert!(first.data["status"] == "pending" || first.data["status"] == "processing");
    // The gated analysis waits for us: the stream must still be open while it runs.
    s.wait_for(&id, |t| t.current_step() == Some(Step::Analyze))
        .await;
    s.probes.gate.add_permits(1);
    let mut seen = vec![first];
    while let Some(event) = events.next().await {
        seen.push(event);
    }
    let last = seen.last().unwrap();
    assert_eq!(last.data["status"], "done", "{seen:?}");
    assert!(last.data["_links"]["result"].is_object());
    let ids: Vec<u64> = seen.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(
        seen.iter().any(|e| e.data["step"] == "analyze"),
        "the analyze step was streamed: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|e| e.data["status"] == "done").count(),
        1
    );
}

#[tokio::test]
async fn events_of_an_ended_task_send_it_once_and_close() {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "adbreaks", "1").await;
    let id = task["task_id"].as_str().unwrap();
    s.delete(&format!("/task/{id}")).await;
    let resp = s
        .http
        .get(s.url(&format!("/task/{id}/events")))
        .header("X-API-Key", KEY_A)
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    assert_eq!(events.next().await.unwrap().data["status"], "cancelled");
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn long_poll_answers_on_the_transition_to_done() {
    let s = Server::with_runner().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "semantic", "1").await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    s.wait_for(&id, |t| t.current_step() == Some(Step::Analyze))
        .await;
    // Nothing changes while the gate is shut: the wait times out with the task as it is.
    let (status, body) = s
        .get(&format!("/task/{id}?wait=0.2&status=processing"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "processing");
    assert_eq!(body["step"], "analyze");
    let poll = {
        let http = s.http.clone();
        let url = s.url(&format!("/task/{id}?wait=30&status=processing"));
        tokio::spawn(async move {
            let resp = http
                .get(url)
                .header("X-API-Key", KEY_A)
                .send()
                .await
                .unwrap();
            resp.json::<serde_json::Value>().await.unwrap()
        })
    };
    s.probes.gate.add_permits(1);
    let body = poll.await.unwrap();
    assert_eq!(body["status"], "done", "{body}");
    // Without `status`, the wait is for a change from the current status; a done task answers at once.
    let (_, body) = s.get(&format!("/task/{id}?wait=30&status=pending")).await;
    assert_eq!(body["status"], "done");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "adbreaks", "1").await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    let events = s
        .http
        .get(s.url(&format!("/task/{id}/events")))
        .header("X-API-Key", KEY_A)
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(events);
    assert_eq!(events.next().await.unwrap().data["status"], "pending");
    let mut changes = s.store.subscribe();
    // The event stream is in flight (its first event arrived); shutting down must end it
    // cleanly (a clean end of the chunked body, which the reader checks) rather than cut it.
    s.api.drain();
    s.stop.cancel();
    assert!(events.next().await.is_none(), "the event stream ended");
    tokio::time::timeout(Duration::from_secs(10), s.served.take().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.http.get(s.url("/healthz")).send().await.is_err(),
        "no longer accepting"
    );
    assert!(changes.try_recv().is_err(), "shutdown wrote nothing");
}
