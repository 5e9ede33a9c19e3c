//! The status page in a real browser: headless Chromium driven by chromedriver over WebDriver
//! (plain HTTP and JSON), on a served runtime whose store holds 90 days of history, an open
//! incident with its timeline and a maintenance window in progress. Asserts the DOM (90 bars
//! per component, the incident and its timeline, the maintenance banner, a bar's figures on
//! focus), then the same page in dark mode, and saves screenshots under `target/`
//! (`cargo test --features e2e --test e2e_status`; `.ci/run` installs `chromium` and
//! `chromium-driver`). A missing browser or driver fails the test loudly.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/served.rs"]
mod served;
#[path = "common/status_fixture.rs"]
mod status_fixture;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use served::Served;
use status_fixture::{fill, OPEN_TITLE, WINDOW, YAML};
use watchfire::server::ServeOptions;
use watchfire::store::now_millis;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        for p in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(p).exists(),
                "{p} is missing: the browser test needs `apt-get install chromium chromium-driver`"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        };
        common::eventually(Duration::from_secs(20), "chromedriver ready", || async {
            let r = d.http.get(format!("{}/status", d.base)).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("WebDriver request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("WebDriver JSON");
        assert!(status.is_success(), "WebDriver {path}: {status} {v}");
        v["value"].clone()
    }
}

/// A browser session, ended on `end`.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl<'d> Session<'d> {
    async fn new(driver: &'d Driver, profile: &Path) -> Session<'d> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1600",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = driver
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        let id = v["sessionId"].as_str().expect("session id").to_string();
        Session { driver, id }
    }

    async fn go(&self, url: &str) {
        let path = format!("/session/{}/url", self.id);
        self.driver
            .call(reqwest::Method::POST, &path, Some(json!({ "url": url })))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.id);
        let body = json!({ "script": script, "args": [] });
        self.driver
            .call(reqwest::Method::POST, &path, Some(body))
            .await
    }

    async fn dark(&self, on: bool) {
        let path = format!("/session/{}/goog/cdp/execute", self.id);
        let value = if on { "dark" } else { "light" };
        let body = json!({"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": value}]
        }});
        self.driver
            .call(reqwest::Method::POST, &path, Some(body))
            .await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let path = format!("/session/{}/screenshot", self.id);
        let v = self.driver.call(reqwest::Method::GET, &path, None).await;
        let png = base64_decode(v.as_str().expect("base64 PNG"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e_status");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let file = dir.join(name);
        std::fs::write(&file, png).expect("write screenshot");
        file
    }

    async fn end(self) {
        let path = format!("/session/{}", self.id);
        self.driver.call(reqwest::Method::DELETE, &path, None).await;
    }
}

/// Standard base64 (what WebDriver's screenshot answers).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().fold(0u32, |acc, &c| (acc << 6) | val(c)) << (6 * (4 - chunk.len()));
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}

/// What the page shows, read in the browser.
const READ_DOM: &str = r#"
const comps = Array.from(document.querySelectorAll('.component'));
const bar = document.querySelector('.component .bars .b');
bar.focus();
const tip = getComputedStyle(bar, '::after').content;
const rect = bar.getBoundingClientRect();
const incident = Array.from(document.querySelectorAll('#incidents article.incident'));
const body = getComputedStyle(document.body);
return {
  components: comps.map(c => c.dataset.component),
  bars: comps.map(c => c.querySelectorAll('ol.bars > li[tabindex="0"][aria-label]').length),
  overall: document.querySelector('#overall').textContent.trim(),
  banner: Array.from(document.querySelectorAll('.maint-banner')).map(b => b.textContent),
  incidents: incident.map(a => a.querySelector('h3').textContent.trim()),
  timeline: incident.map(a => a.querySelectorAll('.timeline li').length),
  focused: document.activeElement === bar,
  tip: tip,
  bar_width: rect.width,
  bar_height: rect.height,
  background: body.backgroundColor,
  color: body.color,
  scripts: document.scripts.length,
  scroll_width: document.documentElement.scrollWidth,
  client_width: document.documentElement.clientWidth,
};
"#;

/// Relative luminance contrast of two `rgb(r, g, b)` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let lum = |s: &str| -> f64 {
        let n: Vec<f64> = s
            .trim_start_matches("rgba(")
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .take(3)
            .map(|x| x.trim().parse::<f64>().expect("colour component") / 255.0)
            .map(|c| {
                if c <= 0.03928 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            })
            .collect();
        0.2126 * n[0] + 0.7152 * n[1] + 0.0722 * n[2]
    };
    let (x, y) = (lum(a), lum(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

fn check_page(v: &Value) {
    assert_eq!(
        v["components"],
        json!(["Backend", "API", "Database"]),
        "{v}"
    );
    assert_eq!(v["bars"], json!([90, 90, 90]), "{v}");
    assert!(
        v["incidents"][0]
            .as_str()
            .unwrap_or("")
            .contains(OPEN_TITLE),
        "{v}"
    );
    assert_eq!(v["timeline"][0], 3, "two updates and the start: {v}");
    assert!(
        v["banner"][0].as_str().unwrap_or("").contains(WINDOW),
        "{v}"
    );
    assert_eq!(v["focused"], true, "{v}");
    assert!(
        v["tip"].as_str().unwrap_or("").contains("no data")
            || v["tip"].as_str().unwrap_or("").contains("up,"),
        "the focused bar shows its figures: {v}"
    );
    assert!(v["bar_width"].as_f64().unwrap_or(0.0) >= 1.0, "{v}");
    assert!(v["bar_height"].as_f64().unwrap_or(0.0) >= 20.0, "{v}");
    assert_eq!(v["scripts"], 0, "no JavaScript: {v}");
    assert!(
        v["scroll_width"].as_f64() <= v["client_width"].as_f64(),
        "no horizontal scroll: {v}"
    );
    let c = contrast(
        v["color"].as_str().unwrap(),
        v["background"].as_str().unwrap(),
    );
    assert!(c >= 4.5, "text contrast {c:.1} < 4.5: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium_light_and_dark() {
    let srv = Served::start(YAML, ServeOptions::default(), 1).await;
    fill(&srv.runtime, now_millis()).await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let s = Session::new(&driver, profile.path()).await;
    s.go(&format!("http://{}/status", srv.addr())).await;
    let light = s.js(READ_DOM).await;
    check_page(&light);
    assert_eq!(light["background"], "rgb(255, 255, 255)", "{light}");
    let shot = s.screenshot("status-light.png").await;
    println!("screenshot: {}", shot.display());

    s.dark(true).await;
    s.go(&format!("http://{}/status", srv.addr())).await;
    let dark = s.js(READ_DOM).await;
    check_page(&dark);
    assert_eq!(dark["background"], "rgb(13, 17, 23)", "{dark}");
    let shot = s.screenshot("status-dark.png").await;
    println!("screenshot: {}", shot.display());

    // The incident's own page, and a narrow screen.
    s.go(&format!("http://{}/status", srv.addr())).await;
    let href = s
        .js("document.querySelector('#incidents h3 a').click(); return location.pathname;")
        .await;
    assert!(href.as_str().is_some());
    let title = common::eventually(Duration::from_secs(10), "incident page", || async {
        let t = s
            .js("return document.querySelector('h1') && document.querySelector('h1').textContent")
            .await;
        t.as_str()
            .filter(|t| t.contains(OPEN_TITLE))
            .map(str::to_string)
    })
    .await;
    assert!(title.contains(OPEN_TITLE));
    s.end().await;
    drop(driver);
    srv.stop().await;
}
