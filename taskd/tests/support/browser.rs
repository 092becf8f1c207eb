#![allow(dead_code, clippy::unwrap_used)]
//! Debian's Chromium, headless, driven over WebDriver by `chromedriver` on a free port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A browser session; chromedriver (and its Chromium) is killed when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, at 1280x800.
    pub async fn start() -> Self {
        for tool in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: scripts/install-test-deps.sh installs chromium and chromium-driver"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,800".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let client = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits (up to `secs`) until `css`'s text is `expected`.
    pub async fn wait_text(&self, css: &str, expected: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let now = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} shows {now:?}, not {expected:?}, after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The status of a same-origin `fetch` of `url` (with the session's cookie) from the page.
    pub async fn fetch_status(&self, method: &str, url: &str, body: &str) -> u16 {
        let script = r#"
            const [method, url, body, done] = arguments;
            const init = {method, redirect: "manual"};
            if (method === "POST") {
                init.body = body;
                init.headers = {"content-type": "application/x-www-form-urlencoded"};
            }
            fetch(url, init).then((r) => { if (r.body) { r.body.cancel(); } done(r.status); }, (e) => done(String(e)));
        "#;
        let status = self
            .client
            .execute_async(script, vec![json!(method), json!(url), json!(body)])
            .await
            .unwrap();
        let status = status
            .as_u64()
            .unwrap_or_else(|| panic!("{method} {url}: {status}"));
        u16::try_from(status).unwrap()
    }

    /// Writes screenshots of the page at 1280x800 and at a phone's 390x844 to
    /// `target/console-screenshots/NAME-{desktop,phone}.png`, checking at each width that the
    /// page itself does not scroll sideways.
    pub async fn screenshots(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (suffix, width, height) in [("desktop", 1280, 800), ("phone", 390, 844)] {
            self.set_viewport(width, height).await;
            let overflow = self
                .eval("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
                .await;
            assert!(
                overflow.as_i64().unwrap_or(0) <= 0,
                "{name} scrolls sideways by {overflow} px at {width}x{height}"
            );
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{suffix}.png")), png).unwrap();
        }
        self.set_viewport(1280, 800).await;
    }

    /// Sizes the window so that the page's viewport is `width` x `height`.
    async fn set_viewport(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
        let inner = self
            .eval("return [window.innerWidth, window.innerHeight];")
            .await;
        let inner = |i: usize| u32::try_from(inner[i].as_u64().unwrap()).unwrap();
        let (w, h) = (
            width + width.saturating_sub(inner(0)),
            height + height.saturating_sub(inner(1)),
        );
        self.client.set_window_size(w, h).await.unwrap();
    }
}
