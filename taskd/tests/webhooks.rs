//! Webhooks end to end: a real `taskd` (sled) delivering to a real receiver on loopback
//! (allowed by the test's config), through the typed client: signatures, retries of a
//! failing and of a hanging receiver, tenant isolation, a delivery given up then re-sent,
//! refused private addresses, and a SIGKILL between a task's change and its delivery.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::receiver::{Behaviour, Received, Receiver};
use support::{Daemon, encode};
use task_api::bodies::{ItemBody, NewTaskBody};
use task_api::webhooks::NewWebhookBody;
use task_client::{Client, ClientError, DeliveryQuery};

const ACME: &str = "key-acme-webhooks";
const OTHER: &str = "key-other-webhooks";
const LIMIT: Duration = Duration::from_secs(60);

/// A config with two tenants and `webhooks` as the `[webhooks]` table's body.
fn config(webhooks: &str) -> String {
    format!(
        "[[api_keys]]\nkey = \"{ACME}\"\ntenant = \"acme\"\n\n[[api_keys]]\nkey = \"{OTHER}\"\n\
         tenant = \"other\"\n\n[products.adbreaks]\nmin_duration_secs = 1\n\n[webhooks]\n{webhooks}"
    )
}

const FAST: &str = "allow_private_addresses = true\ntimeout_secs = 1\nfirst_retry_secs = 0.2\n\
                    max_retry_secs = 0.5\n";

/// Makes a 2 s clip and ingests items `clip` (it) and `missing` (a file that does not exist).
async fn ingest(client: &Client, root: &Path) {
    let media = root.join("media");
    std::fs::create_dir_all(&media).unwrap();
    encode(&media.join("clip.mp4"), 2);
    let media = media.canonicalize().unwrap();
    for (id, file) in [("clip", "clip.mp4"), ("missing", "missing.mp4")] {
        let url = format!("file://{}", media.join(file).display());
        client
            .put_item(&ItemBody::new(id, "standalone", id, &url))
            .await
            .unwrap();
    }
}

/// Creates a task on `item` and waits for its end; its id and status.
async fn run(client: &Client, item: &str) -> (String, String) {
    let (task, _) = client
        .create_task(&NewTaskBody::new(item, "adbreaks", "1.0"))
        .await
        .unwrap();
    let done = client
        .wait_until_finished(&task.task_id, LIMIT)
        .await
        .unwrap();
    (task.task_id, done.status)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// Checks a request as the README's receiver does: signature, age, and the id header.
fn check_signed(secret: &str, got: &Received) {
    task_webhooks::verify(
        secret,
        got.timestamp,
        &got.signature,
        &got.body,
        unix_now(),
        300,
    )
    .unwrap_or_else(|e| panic!("{e}: {got:?}"));
    assert_eq!(got.json["delivery_id"], got.id.as_str());
    assert_eq!(got.json["event"], got.event.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_and_kept_to_their_tenant() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_in(&config(FAST), dir.path());
    let acme = Client::new(&daemon.url(""), ACME).unwrap();
    let other = Client::new(&daemon.url(""), OTHER).unwrap();
    ingest(&acme, dir.path()).await;

    let ends = NewWebhookBody::new(&receiver.hook("ends", Behaviour::default()))
        .with_events(&["task.done", "task.failed"]);
    let ends = acme.create_webhook(&ends).await.unwrap();
    assert!(ends.secret.starts_with("whsec_"), "{ends:?}");
    let flaky_url = receiver.hook(
        "flaky",
        Behaviour {
            fail_first: 3,
            ..Behaviour::default()
        },
    );
    let flaky = acme
        .create_webhook(&NewWebhookBody::new(&flaky_url))
        .await
        .unwrap();
    let slow_url = receiver.hook(
        "slow",
        Behaviour {
            hang_first: 1,
            ..Behaviour::default()
        },
    );
    let slow = acme
        .create_webhook(&NewWebhookBody::new(&slow_url))
        .await
        .unwrap();
    let spy_url = receiver.hook("spy", Behaviour::default());
    let spy = other
        .create_webhook(&NewWebhookBody::new(&spy_url).with_events(&["task.status_changed"]))
        .await
        .unwrap();

    let (done_id, status) = run(&acme, "clip").await;
    assert_eq!(status, "done");
    let (failed_id, status) = run(&acme, "missing").await;
    assert_eq!(status, "failed");

    let got = receiver
        .wait_for("ends", LIMIT, "two deliveries", |r| r.len() >= 2)
        .await;
    for request in &got {
        check_signed(&ends.secret, request);
    }
    let seen: Vec<(String, String, String)> = got
        .iter()
        .map(|r| {
            (
                r.json["task"]["task_id"].as_str().unwrap().to_owned(),
                r.event.clone(),
                r.json["task"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        seen.contains(&(done_id.clone(), "task.done".into(), "done".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(failed_id.clone(), "task.failed".into(), "failed".into())),
        "{seen:?}"
    );
    let failed_view = got.iter().find(|r| r.event == "task.failed").unwrap();
    assert_eq!(failed_view.json["task"]["error_code"], "asset_not_found");

    // The receiver that fails three times gets each delivery again, with the same id.
    let got = receiver
        .wait_for("flaky", LIMIT, "both deliveries acknowledged", |r| {
            r.len() >= 5
        })
        .await;
    assert!(
        got[..3]
            .iter()
            .all(|r| r.id == got[0].id || r.id == got[1].id)
    );
    // The last answer may arrive before its outcome is recorded: wait for the record.
    let started = std::time::Instant::now();
    let page = loop {
        let page = acme
            .deliveries(&flaky.webhook.id, &DeliveryQuery::default())
            .await
            .unwrap();
        if page.deliveries.iter().all(|d| d.state == "delivered") {
            break page;
        }
        assert!(started.elapsed() < LIMIT, "never all delivered: {page:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempts: u32 = page.deliveries.iter().map(|d| d.attempts).sum();
    assert_eq!(page.deliveries.len(), 2, "{page:?}");
    assert!(
        page.deliveries.iter().all(|d| d.state == "delivered"),
        "{page:?}"
    );
    assert_eq!(attempts, 5, "three failures then two successes: {page:?}");

    // The receiver that hangs once: the attempt times out and the same delivery comes again.
    let got = receiver
        .wait_for("slow", LIMIT, "a retry after the timeout", |r| r.len() >= 3)
        .await;
    assert_eq!(
        got.iter().filter(|r| r.id == got[0].id).count(),
        2,
        "{got:?}"
    );
    for request in &got {
        check_signed(&slow.secret, request);
    }

    // The other tenant hears nothing of acme's tasks and cannot see acme's subscriptions.
    assert!(receiver.received("spy").is_empty());
    assert_eq!(other.list_webhooks().await.unwrap().len(), 1);
    for refused in [
        other
            .deliveries(&flaky.webhook.id, &DeliveryQuery::default())
            .await
            .err(),
        other.get_webhook(&ends.webhook.id).await.err(),
        other
            .resend_delivery(&flaky.webhook.id, &page.deliveries[0].id)
            .await
            .err(),
    ] {
        assert!(
            matches!(refused, Some(ClientError::Api { status: 404, .. })),
            "{refused:?}"
        );
    }
    // Its own task's every change reaches its own receiver, and none of acme's.
    let clip = acme.get_item("standalone", "clip").await.unwrap();
    other
        .put_item(&ItemBody::new(
            "clip",
            "standalone",
            "clip",
            &clip.asset_url,
        ))
        .await
        .unwrap();
    let (other_id, status) = run(&other, "clip").await;
    assert_eq!(status, "done");
    let got = receiver
        .wait_for("spy", LIMIT, "pending, processing, done", |r| r.len() >= 3)
        .await;
    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert!(
        events.iter().all(|e| *e == "task.status_changed"),
        "{events:?}"
    );
    assert!(got.len() >= 3, "{events:?}");
    for request in &got {
        check_signed(&spy.secret, request);
        assert_eq!(request.json["task"]["task_id"], other_id.as_str());
    }
    assert_eq!(
        receiver.received("ends").len(),
        2,
        "acme's receiver got nothing of other's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_given_up_is_listed_and_can_be_resent() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A retry window of about a second: the dead receiver is given up on quickly.
    let settings = format!("{FAST}retry_hours = 0.0003\n");
    let daemon = Daemon::start_in(&config(&settings), dir.path());
    let acme = Client::new(&daemon.url(""), ACME).unwrap();
    ingest(&acme, dir.path()).await;
    let dead = Behaviour {
        always_fail: true,
        ..Behaviour::default()
    };
    let hook = acme
        .create_webhook(&NewWebhookBody::new(&receiver.hook("dead", dead)))
        .await
        .unwrap();
    let (task_id, _) = run(&acme, "missing").await;
    let failed = DeliveryQuery {
        state: Some("failed".into()),
        ..DeliveryQuery::default()
    };
    let started = std::time::Instant::now();
    let given_up = loop {
        let page = acme.deliveries(&hook.webhook.id, &failed).await.unwrap();
        if let Some(delivery) = page.deliveries.into_iter().next() {
            break delivery;
        }
        assert!(started.elapsed() < LIMIT, "never given up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(given_up.task_id, task_id);
    assert!(given_up.attempts >= 2, "{given_up:?}");
    let error = given_up.last_error.clone().unwrap();
    assert!(
        error.contains("HTTP 500") && error.contains("gave up after"),
        "{error}"
    );
    let sent = receiver.received("dead").len();
    assert_eq!(sent, given_up.attempts as usize);

    receiver.set("dead", Behaviour::default());
    let resent = acme
        .resend_delivery(&hook.webhook.id, &given_up.id)
        .await
        .unwrap();
    assert_eq!(resent.state, "pending");
    let twice = acme.resend_delivery(&hook.webhook.id, &given_up.id).await;
    assert!(
        matches!(twice, Err(ClientError::Api { status: 409, .. })) || twice.is_ok(),
        "pending (409) or already delivered and re-sent: {twice:?}"
    );
    let got = receiver
        .wait_for("dead", LIMIT, "the re-sent delivery", |r| r.len() > sent)
        .await;
    assert_eq!(got[sent].id, given_up.id, "the same delivery id");
    check_signed(&hook.secret, &got[sent]);
    acme.delete_webhook(&hook.webhook.id).await.unwrap();
    assert!(acme.list_webhooks().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_with_a_clear_422() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_in(&config(""), dir.path());
    let acme = Client::new(&daemon.url(""), ACME).unwrap();
    for (url, says) in [
        ("http://127.0.0.1:9/hook", "resolves to 127.0.0.1"),
        ("http://10.1.2.3/hook", "resolves to 10.1.2.3"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://localhost/hook", "loopback, private"),
        ("ftp://example.com/hook", "scheme must be http or https"),
    ] {
        let refused = acme.create_webhook(&NewWebhookBody::new(url)).await;
        let Err(ClientError::Api {
            status: 422,
            detail,
            ..
        }) = refused
        else {
            panic!("{url}: {refused:?}");
        };
        let text = format!("{detail:?}");
        assert!(text.contains(says), "{url}: {text}");
    }
    let unknown = acme
        .create_webhook(
            &NewWebhookBody::new("https://example.com/h").with_events(&["task.exploded"]),
        )
        .await;
    assert!(
        matches!(unknown, Err(ClientError::Api { status: 422, .. })),
        "{unknown:?}"
    );
    assert!(acme.list_webhooks().await.unwrap().is_empty());
}

/// SIGKILL after a task's change and before its delivery: the change and its delivery were
/// one write, so the delivery goes out after the restart, with the id it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_the_change_and_the_send_loses_nothing() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let quiet = format!("{FAST}dispatch = false\n");
    let mut daemon = Daemon::start_in(&config(&quiet), dir.path());
    let acme = Client::new(&daemon.url(""), ACME).unwrap();
    ingest(&acme, dir.path()).await;
    let hook = acme
        .create_webhook(&NewWebhookBody::new(
            &receiver.hook("after", Behaviour::default()),
        ))
        .await
        .unwrap();
    let (task_id, status) = run(&acme, "clip").await;
    assert_eq!(status, "done");
    let pending = acme
        .deliveries(&hook.webhook.id, &DeliveryQuery::default())
        .await
        .unwrap();
    assert_eq!(pending.deliveries.len(), 1, "{pending:?}");
    assert_eq!(pending.deliveries[0].state, "pending");
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(receiver.received("after").is_empty());

    let daemon = Daemon::start_in(&config(FAST), dir.path());
    let acme = Client::new(&daemon.url(""), ACME).unwrap();
    let got = receiver
        .wait_for("after", LIMIT, "the delivery after the restart", |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(
        got[0].id, pending.deliveries[0].id,
        "exactly the same delivery id"
    );
    assert_eq!(got[0].json["task"]["task_id"], task_id.as_str());
    check_signed(&hook.secret, &got[0]);
    let started = std::time::Instant::now();
    loop {
        let page = acme
            .deliveries(&hook.webhook.id, &DeliveryQuery::default())
            .await
            .unwrap();
        if page.deliveries[0].state == "delivered" {
            assert_eq!(page.deliveries.len(), 1);
            break;
        }
        assert!(started.elapsed() < LIMIT, "{page:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
