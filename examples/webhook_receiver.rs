//! A small webhook receiver: checks each delivery's signature with `task_webhooks::verify`,
//! answers 401 to a bad signature or to a timestamp more than 5 minutes from its clock (a
//! replay of an old delivery), acknowledges a delivery id it has already seen without acting
//! on it again (deliveries come at least once), and prints the events.
//!
//! As a server, with the secret `POST /webhooks` returned (point the subscription at
//! `http://ADDR/hooks`):
//!
//! `cargo run --example webhook_receiver -- --listen 127.0.0.1:9000 --secret whsec_...`
//!
//! Without arguments it runs the demo: the receiver on a free loopback port, an embedded
//! engine whose webhook dispatcher may call loopback (`UrlPolicy { allow_private: true }`),
//! a subscription pointing at the receiver, one adbreaks task run to its end and its event
//! received and verified; then a forged signature and an old timestamp refused, and a repeated
//! delivery dropped. Needs ffmpeg for the demo.
//!
//! `cargo run --example webhook_receiver`

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use support::{Engine, Error, Product, make_clip};
use task_api::bodies::{ItemBody, NewTaskBody};
use task_api::webhooks::{NewWebhookBody, WebhookPayload};
use task_webhooks::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, UrlPolicy, sign, verify};
use tokio::sync::mpsc;

/// How far a delivery's timestamp may be from the receiver's clock.
const TOLERANCE_SECS: i64 = 5 * 60;

/// The receiver's state.
struct Receiver {
    /// The subscription's signing secret.
    secret: String,
    /// Delivery ids already handled.
    seen: Mutex<HashSet<String>>,
    /// Where verified, new events go (besides stdout).
    events: mpsc::UnboundedSender<WebhookPayload>,
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// `POST /hooks`: one delivery.
async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (
        header(TIMESTAMP_HEADER).and_then(|t| t.parse::<i64>().ok()),
        header(SIGNATURE_HEADER),
    ) else {
        return (StatusCode::UNAUTHORIZED, "unsigned request".into());
    };
    // The signature covers the timestamp, so an old delivery cannot be replayed with a new one.
    if let Err(e) = verify(
        &receiver.secret,
        timestamp,
        signature,
        &body,
        unix_now(),
        TOLERANCE_SECS,
    ) {
        println!("refused a delivery: {e}");
        return (StatusCode::UNAUTHORIZED, e.to_string());
    }
    let payload: WebhookPayload = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a delivery: {e}")),
    };
    if header(ID_HEADER) != Some(payload.delivery_id.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            "Webhook-Id differs from the body".into(),
        );
    }
    let new = receiver
        .seen
        .lock()
        .map(|mut seen| seen.insert(payload.delivery_id.clone()))
        .unwrap_or(false);
    if !new {
        // Acknowledged, so the sender stops, but not acted on twice.
        println!("dropped delivery {} (seen before)", payload.delivery_id);
        return (StatusCode::OK, "duplicate".into());
    }
    let task = &payload.task;
    println!(
        "{} {}: task {} ({} {} on {}) is {}{}",
        payload.occurred_at,
        payload.event,
        task.task_id,
        task.product,
        task.version,
        task.inventory_id,
        task.status,
        task.error_code
            .as_ref()
            .map(|code| format!(" ({code})"))
            .unwrap_or_default()
    );
    let _ = receiver.events.send(payload);
    (StatusCode::NO_CONTENT, String::new())
}

/// Serves the receiver on `listener` until the process ends; verified new events are also
/// sent to the returned channel.
fn start(
    listener: tokio::net::TcpListener,
    secret: String,
) -> (
    tokio::task::JoinHandle<std::io::Result<()>>,
    mpsc::UnboundedReceiver<WebhookPayload>,
) {
    let (events, received) = mpsc::unbounded_channel();
    let state = Arc::new(Receiver {
        secret,
        seen: Mutex::default(),
        events,
    });
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state(state);
    (
        tokio::spawn(axum::serve(listener, app).into_future()),
        received,
    )
}

/// What the demo saw.
#[derive(Debug)]
struct Demo {
    /// The events the receiver accepted.
    events: Vec<WebhookPayload>,
    /// The task the demo ran.
    task_id: String,
    /// The answer to the delivery signed with another secret.
    forged: StatusCode,
    /// The answer to the delivery signed 10 minutes ago.
    stale: StatusCode,
    /// The answer to the same delivery sent again, freshly signed.
    repeated: StatusCode,
}

async fn demo() -> Result<Demo, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let policy = UrlPolicy {
        allow_private: true,
    };
    let engine = Engine::start(vec![Product::adbreaks(1)?], policy).await?;
    let client = &engine.client;
    let subscription = client.create_webhook(&NewWebhookBody::new(&url)).await?;
    println!(
        "webhook {} sends {:?} to {url}",
        subscription.webhook.id, subscription.webhook.events
    );
    let (server, mut received) = start(listener, subscription.secret.clone());

    make_clip(&engine.media.join("clip.mp4"), 3.0, -20.0)?;
    let item = ItemBody::new("clip", "standalone", "Clip", &engine.file_url("clip.mp4"));
    client.put_item(&item).await?;
    let (task, _) = client
        .create_task(&NewTaskBody::new("clip", "adbreaks", "1.0"))
        .await?;
    let task = client
        .wait_until_finished(&task.task_id, Duration::from_secs(60))
        .await?;
    println!("task {} ended {}", task.task_id, task.status);
    let event = tokio::time::timeout(Duration::from_secs(60), received.recv())
        .await
        .map_err(|_| "no delivery within a minute")?
        .ok_or("the receiver stopped")?;

    // Requests a forger or a replayer could send, with the body of the real delivery.
    let body = serde_json::to_vec(&event)?;
    let http = reqwest::Client::new();
    let send = |timestamp: i64, signature: String| {
        http.post(&url)
            .header(ID_HEADER, event.delivery_id.as_str())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
    };
    let now = unix_now();
    let forged = send(now, sign("whsec_not_the_secret", now, &body)).await?;
    let old = now - 600;
    let stale = send(old, sign(&subscription.secret, old, &body)).await?;
    let repeated = send(now, sign(&subscription.secret, now, &body)).await?;
    println!(
        "forged signature: {}, signed 10 minutes ago: {}, the same delivery again: {}",
        forged.status(),
        stale.status(),
        repeated.status()
    );

    engine.stop().await?;
    server.abort();
    let mut events = vec![event];
    while let Ok(more) = received.try_recv() {
        events.push(more);
    }
    Ok(Demo {
        events,
        task_id: task.task_id,
        forged: forged.status(),
        stale: stale.status(),
        repeated: repeated.status(),
    })
}

/// `--listen ADDR --secret SECRET`, or None for the demo.
fn arguments() -> Result<Option<(SocketAddr, String)>, Error> {
    let usage = "usage: webhook_receiver [--listen 127.0.0.1:9000 --secret whsec_...]";
    let mut args = std::env::args().skip(1);
    let (mut listen, mut secret) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = Some(args.next().ok_or(usage)?.parse()?),
            "--secret" => secret = Some(args.next().ok_or(usage)?),
            _ => return Err(format!("unknown argument {arg:?}; {usage}").into()),
        }
    }
    match (listen, secret) {
        (None, None) => Ok(None),
        (Some(listen), Some(secret)) => Ok(Some((listen, secret))),
        _ => Err(usage.into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    match arguments()? {
        Some((listen, secret)) => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            println!("receiving webhooks on http://{listen}/hooks");
            let (server, _events) = start(listener, secret);
            server.await??;
        }
        None => {
            let demo = demo().await?;
            let events: Vec<&str> = demo.events.iter().map(|e| e.event.as_str()).collect();
            println!(
                "demo: task {} gave {events:?}; forged {}, stale {}, repeated {}",
                demo.task_id,
                demo.forged.as_u16(),
                demo.stale.as_u16(),
                demo.repeated.as_u16()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_verified_and_forgeries_and_replays_refused() {
        let demo = demo()
            .await
            .unwrap_or_else(|err| panic!("webhook_receiver failed: {err}"));
        let event = &demo.events[0];
        assert_eq!(event.event, "task.done");
        assert_eq!(event.task.task_id, demo.task_id);
        assert_eq!(event.task.status, "done");
        assert_eq!(demo.events.len(), 1, "one event, once: {:?}", demo.events);
        assert_eq!(demo.forged, StatusCode::UNAUTHORIZED);
        assert_eq!(demo.stale, StatusCode::UNAUTHORIZED);
        assert_eq!(demo.repeated, StatusCode::OK);
    }
}
