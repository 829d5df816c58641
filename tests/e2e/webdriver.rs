//! Headless Chromium driven through chromedriver with plain W3C WebDriver calls (JSON over
//! HTTP to a chromedriver this process starts on a free loopback port).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key of an element reference in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Enter key, for [`Browser::type_into`].
pub(crate) const ENTER: &str = "\u{E007}";

/// The browser and its driver: `PROJSYNC_CHROMIUM` and `PROJSYNC_CHROMEDRIVER` (which
/// `scripts/chromium` prints and `scripts/test` exports), else `chromium` and
/// `chromedriver` on `PATH`. Locally, a test without them is skipped with a notice; with
/// `CI=true` it fails.
pub(crate) fn chromium() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, name: &str| match std::env::var_os(var) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        _ => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        }),
    };
    match (
        find("PROJSYNC_CHROMIUM", "chromium"),
        find("PROJSYNC_CHROMEDRIVER", "chromedriver"),
    ) {
        (Some(browser), Some(driver)) => Some((browser, driver)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "chromium or chromedriver is missing but CI=true: the browser test must run in CI (scripts/test installs them with scripts/chromium)"
        ),
        _ => {
            eprintln!(
                "chromium or chromedriver is missing: this browser test is skipped (run scripts/chromium, or set PROJSYNC_CHROMIUM and PROJSYNC_CHROMEDRIVER)"
            );
            None
        }
    }
}

/// An element of the page.
#[derive(Debug, Clone)]
pub(crate) struct Element(String);

/// A headless Chromium session; the browser and the driver end when it is dropped.
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    http: reqwest::Client,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium with a fresh
    /// profile and a `width`×`height` window. Chromium's own network traffic (updates,
    /// sync, QUIC) is off: it talks to the page's server only.
    pub(crate) async fn start(chromium: &Path, chromedriver: &Path, size: (u32, u32)) -> Self {
        // Everything that may fail comes before the driver starts, so that nothing outlives
        // a failed start.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let profile = tempfile::tempdir().expect("a profile directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", chromedriver.display()));
        let mut browser = Self {
            driver,
            port,
            http,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = browser
                .http
                .get(browser.url("/status"))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(body) = status
                && body.await.is_ok_and(|b| b["value"]["ready"] == true)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver is not ready after 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={},{}", size.0, size.1),
            format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let session = browser
            .call(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                }}})),
            )
            .await;
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {session}"))
            .to_owned();
        browser
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test with its
    /// message.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}"));
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("chromedriver {method} {path} answered no JSON: {e}"));
        assert!(
            status.is_success(),
            "chromedriver {method} {path}: {status} {}",
            body["value"]
        );
        body["value"].clone()
    }

    async fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    /// Opens `url`.
    pub(crate) async fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The element that `css` selects (the first one).
    pub(crate) async fn find(&self, css: &str) -> Element {
        let found = self
            .session_call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        Element(
            found[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element for `{css}`: {found}"))
                .to_owned(),
        )
    }

    /// Clicks `element`, as a user's pointer does.
    pub(crate) async fn click(&self, element: &Element) {
        self.session_call("POST", &format!("/element/{}/click", element.0), None)
            .await;
    }

    /// Focuses `element` and types `text` into it, key by key ([`ENTER`] presses Enter).
    pub(crate) async fn type_into(&self, element: &Element, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Empties an input.
    pub(crate) async fn clear(&self, element: &Element) {
        self.session_call("POST", &format!("/element/{}/clear", element.0), None)
            .await;
    }

    /// Runs `body` (a function body, `return …;`) in the page; what it returned.
    pub(crate) async fn script(&self, body: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": []})),
        )
        .await
    }

    /// Polls `body` until `done` holds for what it returns, for at most `timeout`; the
    /// value that satisfied it. Fails the test with the last value otherwise.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        body: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.script(body).await;
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {timeout:?}; the page shows {value:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Emulates a phone's screen: `width` CSS pixels wide, the page's viewport meta tag
    /// applied, through the DevTools protocol.
    pub(crate) async fn emulate_phone(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": true},
            })),
        )
        .await;
    }

    /// Saves a PNG of the viewport to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.session_call("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 text"))
            .expect("a base64 screenshot");
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Ends the session (Chromium quits).
    pub(crate) async fn close(mut self) {
        let path = format!("/session/{}", self.session);
        self.call("DELETE", &path, None).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test: end the session without async (so Chromium quits), then the driver.
        if !self.session.is_empty()
            && let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.session, self.port
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
