//! The web console in a real browser: Debian's Chromium, headless, driven over WebDriver,
//! against a real `taskd serve`. Screenshots of every page, at 1280x800 and at a phone's
//! 390x844, go to `target/console-screenshots/`.
//!
//! A task that hangs: its asset is a FIFO nobody writes to, so its first step blocks until
//! it is cancelled. With the product's concurrency at 1, a hanging task keeps every other
//! task pending, so the tests decide when tasks run.
#![allow(clippy::unwrap_used)]

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use browser::Browser;
use serde_json::{Value, json};
use support::Daemon;

const KEY_A: &str = "alpha-console-key-1";
const KEY_B: &str = "bravo-console-key-2";

fn config() -> String {
    format!(
        r#"
[[api_keys]]
key = "{KEY_A}"
tenant = "tenant-a"

[[api_keys]]
key = "{KEY_B}"
tenant = "tenant-b"

[products.adbreaks]
concurrency = 1

[console]
session_hours = 1
"#
    )
}

/// The Task API, as a tenant.
struct Api {
    http: reqwest::Client,
    base: String,
    key: &'static str,
    media: std::path::PathBuf,
}

impl Api {
    fn new(daemon: &Daemon, key: &'static str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: daemon.url(""),
            key,
            media: daemon.root().join("media"),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("x-api-key", self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    /// Ingests `id` with the media file `file` and creates a task for it: the task's id.
    async fn task(&self, id: &str, file: &str, version: &str) -> String {
        let url = format!("file://{}", self.media.join(file).display());
        let item = json!({"id": id, "type": "standalone", "title": format!("Title of {id}"), "asset_url": url});
        self.send(reqwest::Method::PUT, "/catalog/v1/item", Some(item))
            .await;
        let task = json!({"inventory_id": id, "product": "adbreaks", "version": version});
        let created = self.send(reqwest::Method::POST, "/task", Some(task)).await;
        created["task_id"].as_str().unwrap().to_owned()
    }

    async fn status(&self, task: &str) -> String {
        let task = self
            .send(reqwest::Method::GET, &format!("/task/{task}"), None)
            .await;
        task["status"].as_str().unwrap().to_owned()
    }

    async fn wait_status(&self, task: &str, expected: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let now = self.status(task).await;
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {task} is {now}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A tiny video of `seconds` with black, silent gaps at `gaps` (seconds): adbreak candidates.
fn encode_with_gaps(out: &Path, seconds: u32, gaps: &[(u32, u32)]) {
    let enable = gaps
        .iter()
        .map(|(a, b)| format!("between(t,{a},{b})"))
        .collect::<Vec<_>>()
        .join("+");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=64x36:rate=2:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=330:sample_rate=16000:duration={seconds}"
        ))
        .arg("-vf")
        .arg(format!(
            "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='{enable}'"
        ))
        .arg("-af")
        .arg(format!("volume=enable='{enable}':volume=0"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-ac",
            "1",
        ])
        .arg(out)
        .status()
        .expect("ffmpeg is needed (scripts/install-test-deps.sh installs it)");
    assert!(status.success(), "ffmpeg could not make {}", out.display());
}

fn fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Signs in with `key` through the form and checks the key shows nowhere afterwards.
async fn sign_in(browser: &Browser, daemon: &Daemon, key: &str) {
    browser.goto(&daemon.url("/ui")).await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(
        url.path(),
        "/ui/sign-in",
        "no session: sent to the sign-in page"
    );
    browser.screenshots("sign-in").await;
    let field = browser
        .client
        .find(fantoccini::Locator::Css("#key"))
        .await
        .unwrap();
    field.send_keys("not-a-key").await.unwrap();
    browser.click("form button[type=submit]").await;
    browser
        .wait_text(
            "#sign-in-error",
            "That key is not valid. Check it and try again.",
            10,
        )
        .await;
    let field = browser
        .client
        .find(fantoccini::Locator::Css("#key"))
        .await
        .unwrap();
    field.send_keys(key).await.unwrap();
    browser.click("main form button[type=submit]").await;
    browser.wait_text("h1", "Overview", 10).await;
    no_key_shown(browser, key).await;
}

async fn no_key_shown(browser: &Browser, key: &str) {
    let url = browser.client.current_url().await.unwrap();
    let source = browser.client.source().await.unwrap();
    for secret in [key, KEY_A, KEY_B] {
        assert!(
            !url.as_str().contains(secret),
            "the key is in the URL {url}"
        );
        assert!(!source.contains(secret), "the key is in the page {url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_watches_cancels_and_bulk_cancels_tasks_live() {
    let daemon = Daemon::start(&config());
    let media = daemon.root().join("media");
    encode_with_gaps(&media.join("good.mp4"), 20, &[(5, 8), (13, 16)]);
    fifo(&media.join("hang.mp4"));
    let api = Api::new(&daemon, KEY_A);
    // The hanging task holds the product's only slot; everything after it waits.
    let hang = api.task("hang", "hang.mp4", "1").await;
    api.wait_status(&hang, "processing", 30).await;
    let good = api.task("good", "good.mp4", "1").await;
    let mut bulk = Vec::new();
    for n in 0..3 {
        bulk.push(api.task(&format!("extra-{n}"), "good.mp4", "bulk").await);
    }

    let browser = Browser::start().await;
    sign_in(&browser, &daemon, KEY_A).await;
    browser.screenshots("overview").await;
    assert_eq!(
        browser
            .eval("return document.querySelector('#counts').dataset.total;")
            .await,
        json!("5")
    );

    // The good task's page, pending behind the hanging one; a marker shows it is never reloaded.
    browser
        .goto(&daemon.url(&format!("/ui/tasks/{good}")))
        .await;
    browser
        .wait_text("[data-field=status]", "pending", 10)
        .await;
    browser
        .eval("window.__notReloaded = true; return null;")
        .await;
    let main_window = browser.client.window().await.unwrap();

    // A second tab: the list, filtered, then the bulk cancel of version "bulk".
    let tab = browser.client.new_window(true).await.unwrap();
    browser.client.switch_to_window(tab.handle).await.unwrap();
    browser.goto(&daemon.url("/ui/tasks")).await;
    assert_eq!(
        browser
            .client
            .find_all(fantoccini::Locator::Css("tbody tr"))
            .await
            .unwrap()
            .len(),
        5
    );
    browser.screenshots("tasks").await;
    browser.goto(&daemon.url("/ui/tasks?version=bulk")).await;
    assert_eq!(
        browser
            .client
            .find_all(fantoccini::Locator::Css("tbody tr"))
            .await
            .unwrap()
            .len(),
        3
    );
    browser.click(".bulk button").await;
    browser.wait_text("h1", "Cancel matching tasks", 10).await;
    assert_eq!(
        browser
            .eval("return document.querySelector('#bulk-count').dataset.count;")
            .await,
        json!("3")
    );
    assert!(
        browser
            .text("#bulk-count")
            .await
            .starts_with("3 pending or processing tasks match")
    );
    browser.screenshots("bulk-confirm").await;
    for task in &bulk {
        assert_eq!(
            api.status(task).await,
            "pending",
            "nothing is cancelled before the confirmation"
        );
    }
    browser.click("main form button.danger").await;
    browser.wait_text("h1", "Tasks cancelled", 10).await;
    assert_eq!(
        browser
            .eval("return document.querySelector('#bulk-cancelled').dataset.count;")
            .await,
        json!("3")
    );
    browser.screenshots("bulk-done").await;
    for task in &bulk {
        assert_eq!(api.status(task).await, "cancelled");
    }
    assert_eq!(
        api.status(&good).await,
        "pending",
        "the bulk cancel kept to its filter"
    );

    // The hanging task, cancelled from its page; the page follows it to cancelled.
    browser
        .goto(&daemon.url(&format!("/ui/tasks/{hang}")))
        .await;
    browser
        .wait_text("[data-field=status]", "processing", 10)
        .await;
    browser.wait_text("[data-field=step]", "s3_check", 10).await;
    browser.screenshots("task-processing").await;
    browser.click("#cancel button").await;
    browser
        .wait_text("[data-field=status]", "cancelled", 30)
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelector('#cancel').hidden;")
            .await,
        json!(true)
    );
    assert_eq!(api.status(&hang).await, "cancelled");
    browser.screenshots("task-cancelled").await;

    // Back on the first tab: the good task ran once the slot freed, and the page showed it.
    browser.client.switch_to_window(main_window).await.unwrap();
    browser.wait_text("[data-field=status]", "done", 90).await;
    assert_eq!(
        browser.eval("return window.__notReloaded === true;").await,
        json!(true)
    );
    let events: Vec<String> = {
        let mut texts = Vec::new();
        for entry in browser
            .client
            .find_all(fantoccini::Locator::Css("#timeline li"))
            .await
            .unwrap()
        {
            texts.push(entry.text().await.unwrap());
        }
        texts
    };
    assert!(events.len() >= 3, "{events:?}");
    assert!(events.last().unwrap().contains("→ done"), "{events:?}");
    browser.screenshots("task-done").await;

    // The asset: its item, its tasks by product and version, its adbreaks timeline.
    browser.click("dd a[href^='/ui/assets/']").await;
    browser.wait_text("h1", "Asset good", 10).await;
    assert!(browser.text("main").await.contains("Title of good"));
    assert_eq!(
        browser
            .client
            .find_all(fantoccini::Locator::Css("figure.breaks svg"))
            .await
            .unwrap()
            .len(),
        1
    );
    browser.screenshots("asset").await;

    browser.goto(&daemon.url("/ui")).await;
    browser.screenshots("overview-after").await;
    no_key_shown(&browser, KEY_A).await;
    browser.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_sees_nothing_and_forged_posts_are_refused() {
    let daemon = Daemon::start(&config());
    let media = daemon.root().join("media");
    fifo(&media.join("hang.mp4"));
    let alpha = Api::new(&daemon, KEY_A);
    let bravo = Api::new(&daemon, KEY_B);
    let secret_task = alpha.task("alpha-secret-movie", "hang.mp4", "1").await;
    alpha.wait_status(&secret_task, "processing", 30).await;
    let own = bravo.task("bravo-movie", "hang.mp4", "1").await;

    let browser = Browser::start().await;
    sign_in(&browser, &daemon, KEY_B).await;
    assert_eq!(
        browser
            .eval("return document.querySelector('#counts').dataset.total;")
            .await,
        json!("1"),
        "tenant B's counts hold its own task only"
    );
    browser.goto(&daemon.url("/ui/tasks")).await;
    let source = browser.client.source().await.unwrap();
    assert!(source.contains(&own));
    assert!(!source.contains(&secret_task) && !source.contains("alpha-secret-movie"));
    browser
        .goto(&daemon.url("/ui/tasks?status=processing"))
        .await;
    assert!(browser.text("main").await.contains("No tasks match"));
    browser.screenshots("tasks-empty").await;
    for path in [
        format!("/ui/tasks/{secret_task}"),
        format!("/ui/tasks/{secret_task}/events"),
        "/ui/assets/alpha-secret-movie".to_owned(),
    ] {
        assert_eq!(browser.fetch_status("GET", &path, "").await, 404, "{path}");
    }
    browser
        .goto(&daemon.url(&format!("/ui/tasks/{secret_task}")))
        .await;
    assert!(browser.text("h1").await.starts_with("404"));
    browser.screenshots("not-found").await;

    // Forged POSTs: no token, a wrong token, tenant A's task with B's token.
    browser.goto(&daemon.url(&format!("/ui/tasks/{own}"))).await;
    let token = browser
        .eval("return document.querySelector('input[name=csrf]').value;")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let cancel_own = format!("/ui/tasks/{own}/cancel");
    assert_eq!(browser.fetch_status("POST", &cancel_own, "").await, 403);
    assert_eq!(
        browser
            .fetch_status("POST", &cancel_own, "csrf=0123abcd")
            .await,
        403
    );
    let cancel_secret = format!("/ui/tasks/{secret_task}/cancel");
    assert_eq!(
        browser
            .fetch_status("POST", &cancel_secret, &format!("csrf={token}"))
            .await,
        404
    );
    assert_eq!(
        browser
            .fetch_status("POST", "/ui/tasks/cancel/confirm", "")
            .await,
        403
    );

    // A foreign Origin, or a browser that says cross-site, with the right cookie and token.
    let cookie = browser
        .client
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "taskd_console")
        .unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let post = |headers: &[(&str, &str)]| {
        let mut request = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(daemon.url(&cancel_own))
            .header("cookie", format!("taskd_console={}", cookie.value()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={token}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    assert_eq!(
        post(&[("origin", "http://evil.example")])
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(&[("sec-fetch-site", "cross-site")])
            .await
            .unwrap()
            .status(),
        403
    );
    // A real cross-site form in the browser, from a page of another origin.
    let form = format!(
        "data:text/html,<form method=post action='{}'><input name=csrf value='{token}'></form><script>document.forms[0].submit()</script>",
        daemon.url(&cancel_own)
    );
    browser.goto(&form).await;
    browser.wait_text("h1", "403 Forbidden", 10).await;
    assert_eq!(
        bravo.status(&own).await,
        "pending",
        "no forged POST changed anything"
    );
    assert_eq!(alpha.status(&secret_task).await, "processing");

    // The same request, same-origin and with the token, is accepted.
    let accepted = post(&[("origin", &daemon.url(""))]).await.unwrap();
    assert_eq!(accepted.status(), 303);
    bravo.wait_status(&own, "cancelled", 10).await;

    // Signing out ends the session: the console sends the browser back to the sign-in page.
    browser.goto(&daemon.url("/ui/tasks")).await;
    browser.click("header form button").await;
    browser.wait_text("h1", "Sign in", 10).await;
    browser.goto(&daemon.url("/ui/tasks")).await;
    assert_eq!(
        browser.client.current_url().await.unwrap().path(),
        "/ui/sign-in"
    );
    browser.client.clone().close().await.unwrap();
}
