//! `http_sd:` and `template:`: an HTTP SD endpoint served by the test itself adds, changes and
//! removes targets of a running watchfire; garbage, a non-200, a wrong Content-Type, an
//! oversized body, a hang and groups that make no valid targets keep the last good targets and
//! are counted by reason; credentials come from files and are never shown; templates turn
//! Prometheus meta labels into targets for file_sd and HTTP SD alike; bad sections are config
//! errors naming file, line and field.

mod common;
#[path = "common/runtime.rs"]
mod started;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use started::{config_file, names, start, OPTS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use watchfire::config;
use watchfire::runtime::Runtime;

const WAIT: Duration = Duration::from_secs(10);

/// What the test's endpoint answers.
#[derive(Debug, Clone)]
enum Answer {
    /// 200, `application/json`, this body.
    Json(String),
    /// 200 with this Content-Type and body.
    Typed(&'static str, String),
    /// This status, a JSON body.
    Status(u16),
    /// Accepts the request and never answers.
    Hang,
}

/// An HTTP SD endpoint on 127.0.0.1:0: answers what [`Endpoint::set`] last said, and keeps
/// each request's head.
struct Endpoint {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    heads: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
}

impl Endpoint {
    async fn start(answer: Answer) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (a, h, s) = (answer.clone(), heads.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    c = listener.accept() => c.unwrap(),
                };
                let (a, h, s) = (a.clone(), h.clone(), s.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    h.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    let answer = a.lock().unwrap().clone();
                    let (status, ct, body) = match answer {
                        Answer::Json(b) => (200, "application/json", b),
                        Answer::Typed(ct, b) => (200, ct, b),
                        Answer::Status(code) => (code, "application/json", "[]".into()),
                        Answer::Hang => {
                            s.cancelled().await;
                            return;
                        }
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                });
            }
        });
        Endpoint {
            addr,
            answer,
            heads,
            stop,
        }
    }

    fn set(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One group: its targets and labels.
type G<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

/// An HTTP SD answer: one group per `(targets, labels)`.
fn groups(gs: &[G<'_>]) -> String {
    let v: Vec<serde_json::Value> = gs
        .iter()
        .map(|(t, l)| {
            let labels: BTreeMap<&str, &str> = l.iter().copied().collect();
            serde_json::json!({"targets": t, "labels": labels})
        })
        .collect();
    serde_json::to_string(&v).unwrap()
}

fn metrics(rt: &Runtime) -> String {
    let mut out = String::new();
    watchfire::metrics::render(rt, &mut watchfire::expo::Writer::new(&mut out));
    out
}

fn failures(rt: &Runtime, url: &str, reason: &str) -> f64 {
    let series = format!(
        "watchfire_sd_refresh_failures_total{{sd=\"http\",url=\"{url}\",reason=\"{reason}\"}}"
    );
    common::sample(&metrics(rt), &series).unwrap_or(0.0)
}

async fn wait_names(rt: &Runtime, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let what = format!("targets {want:?}");
    eventually(WAIT, &what, || async { (names(rt) == want).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_adds_changes_and_removes_targets() {
    let ep = Endpoint::start(Answer::Json(groups(&[(
        &["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"],
        &[("team", "web")],
    )])))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        &format!(
            "targets:\n  - name: configured\n    url: http://127.0.0.1:9/c\n\
             http_sd:\n  - url: {}\n    refresh_interval: 100ms\n    interval: 1s\n    labels: {{ source: inventory }}\n",
            ep.url("/sd")
        ),
    );
    let (rt, cancel) = start(&path).await;
    // Discovered targets are ordinary targets, beside the configured one.
    wait_names(
        &rt,
        &["configured", "http://127.0.0.1:9/a", "http://127.0.0.1:9/b"],
    )
    .await;
    let a = rt.target("http://127.0.0.1:9/a").unwrap();
    let labels: Vec<(&str, &str)> = a
        .spec
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(labels, [("source", "inventory"), ("team", "web")]);
    assert_eq!(a.spec.interval, Duration::from_secs(1));

    // Changed: b's label, c added in a second group, a gone.
    ep.set(Answer::Json(groups(&[
        (&["http://127.0.0.1:9/b"], &[("team", "ops")]),
        (&["http://127.0.0.1:9/d"], &[]),
    ])));
    wait_names(
        &rt,
        &["configured", "http://127.0.0.1:9/b", "http://127.0.0.1:9/d"],
    )
    .await;
    let b = rt.target("http://127.0.0.1:9/b").unwrap();
    assert_eq!(b.spec.labels["team"], "ops");

    // An unchanged answer reloads nothing: the running set stays the same object.
    let before = rt.targets();
    let reloads = rt.reload_status().successes;
    let asked = ep.heads.lock().unwrap().len();
    eventually(WAIT, "two more requests", || async {
        (ep.heads.lock().unwrap().len() >= asked + 2).then_some(())
    })
    .await;
    assert!(Arc::ptr_eq(&before, &rt.targets()));
    assert_eq!(rt.reload_status().successes, reloads);

    // Removed: an empty list leaves the configured target only.
    ep.set(Answer::Json("[]".into()));
    wait_names(&rt, &["configured"]).await;
    let m = metrics(&rt);
    let url = ep.url("/sd");
    assert_eq!(
        common::sample(
            &m,
            &format!("watchfire_sd_targets{{sd=\"http\",url=\"{url}\"}}")
        ),
        Some(0.0)
    );
    let last = common::sample(
        &m,
        &format!(
            "watchfire_sd_last_refresh_success_timestamp_seconds{{sd=\"http\",url=\"{url}\"}}"
        ),
    )
    .unwrap();
    assert!(last > 1.0e9, "{last}");
    // Prometheus' header is sent.
    let head = ep.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        head.contains("x-prometheus-refresh-interval-seconds: 0.1"),
        "{head}"
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_keep_the_last_good_targets_and_are_counted_by_reason() {
    let good = groups(&[(&["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], &[])]);
    let ep = Endpoint::start(Answer::Json(good.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let url = ep.url("/sd");
    let path = config_file(
        dir.path(),
        &format!(
            "http_sd:\n  - url: {url}\n    refresh_interval: 100ms\n    refresh_timeout: 100ms\n    max_body: 1KiB\n    interval: 1s\n"
        ),
    );
    let (rt, cancel) = start(&path).await;
    wait_names(&rt, &["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]).await;
    let kept = rt.targets();
    let oversized = groups(&[(&[&format!("http://127.0.0.1:9/{}", "x".repeat(2000))], &[])]);
    let cases: Vec<(&str, Answer)> = vec![
        (
            "parse",
            Answer::Json("[{\"targets\": [\"http://127.0".into()),
        ),
        ("parse", Answer::Json("{\"not\": \"a list\"}".into())),
        ("status", Answer::Status(500)),
        ("status", Answer::Status(404)),
        ("content_type", Answer::Typed("text/html", good.clone())),
        ("too_large", Answer::Json(oversized)),
        ("timeout", Answer::Hang),
        ("invalid", Answer::Json(groups(&[(&["ftp://x/"], &[])]))),
        (
            "invalid",
            Answer::Json(groups(&[(&["http://127.0.0.1:9/a"], &[("job", "x")])])),
        ),
        (
            "invalid",
            Answer::Json(groups(&[(
                &["http://127.0.0.1:9/a", "http://127.0.0.1:9/a"],
                &[],
            )])),
        ),
    ];
    for (reason, answer) in cases {
        let n = failures(&rt, &url, reason);
        let what = format!("a failure counted as {reason} for {answer:?}");
        ep.set(answer);
        eventually(WAIT, &what, || async {
            (failures(&rt, &url, reason) > n).then_some(())
        })
        .await;
        assert!(
            Arc::ptr_eq(&kept, &rt.targets()),
            "{reason}: the last good targets stay"
        );
        let m = metrics(&rt);
        let series = format!("watchfire_sd_targets{{sd=\"http\",url=\"{url}\"}}");
        assert_eq!(common::sample(&m, &series), Some(2.0), "{reason}");
    }
    // A good answer again applies.
    ep.set(Answer::Json(groups(&[(&["http://127.0.0.1:9/z"], &[])])));
    wait_names(&rt, &["http://127.0.0.1:9/z"]).await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_at_start_starts_with_no_discovered_targets() {
    // A port nothing listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/sd");
    let path = config_file(
        dir.path(),
        &format!(
            "targets:\n  - name: configured\n    url: http://127.0.0.1:9/c\n\
             http_sd:\n  - url: {url}\n    refresh_interval: 100ms\n"
        ),
    );
    let (rt, cancel) = start(&path).await;
    assert_eq!(names(&rt), ["configured"]);
    eventually(WAIT, "a connect failure counted", || async {
        (failures(&rt, &url, "connect") >= 2.0).then_some(())
    })
    .await;
    let m = metrics(&rt);
    let series =
        format!("watchfire_sd_last_refresh_success_timestamp_seconds{{sd=\"http\",url=\"{url}\"}}");
    assert_eq!(common::sample(&m, &series), Some(0.0));
    assert_eq!(names(&rt), ["configured"]);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_read_from_files_and_never_shown() {
    let ep = Endpoint::start(Answer::Json(groups(&[(&["http://127.0.0.1:9/a"], &[])]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cr3t-token\n").unwrap();
    std::fs::write(dir.path().join("password"), "pa55word\n").unwrap();
    let url = ep.url("/sd?access_token=q5ecret");
    let path = config_file(
        dir.path(),
        &format!(
            "http_sd:\n  - url: \"{url}\"\n    refresh_interval: 100ms\n    bearer_token_file: token\n\
             \n  - url: \"{}\"\n    refresh_interval: 100ms\n    basic_auth: {{ username: sd, password_file: password }}\n",
            ep.url("/other")
        ),
    );
    let (rt, cancel) = start(&path).await;
    eventually(WAIT, "both endpoints asked", || async {
        let heads = ep.heads.lock().unwrap().join("\n").to_ascii_lowercase();
        (heads.contains("get /sd?") && heads.contains("get /other")).then_some(())
    })
    .await;
    let heads = ep.heads.lock().unwrap().join("\n");
    assert!(
        heads
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cr3t-token\r\n"),
        "{heads}"
    );
    // base64("sd:pa55word")
    assert!(heads.contains("c2Q6cGE1NXdvcmQ="), "{heads}");
    // Neither the metrics nor the config's Debug show the secrets.
    let m = metrics(&rt);
    assert!(m.contains("access_token=<secret>"), "{m}");
    let shown = format!("{m}\n{:?}", rt.config());
    for secret in ["q5ecret", "s3cr3t-token", "pa55word"] {
        assert!(!shown.contains(secret), "{secret} shown");
    }
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_turns_meta_labels_into_targets() {
    let answer = groups(&[
        (
            &["10.0.0.7:8443", "10.0.0.8:8443"],
            &[
                ("__meta_service", "api"),
                ("__scheme__", "https"),
                ("__metrics_path__", "/healthz"),
                ("__meta_interval", "20s"),
                ("team", "web"),
            ],
        ),
        (
            &["db.internal:5432"],
            &[("__meta_service", "db"), ("__meta_module", "tcp_connect")],
        ),
    ]);
    let ep = Endpoint::start(Answer::Json(answer)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        &format!(
            r#"modules:
  tcp_connect:
    prober: tcp
http_sd:
  - url: {}
    refresh_interval: 100ms
    interval: 1m
    template:
      name: "{{{{ __meta_service }}}}/{{{{ __address__ }}}}"
      url: >-
        {{% if __meta_module is defined %}}{{{{ __address__ }}}}{{% else %}}{{{{ __scheme__ | default('http') }}}}://{{{{ __address__ }}}}{{{{ __metrics_path__ | default('/health') }}}}{{% endif %}}
      module: "{{{{ __meta_module | default('') }}}}"
      interval: "{{{{ __meta_interval | default('1m') }}}}"
      labels:
        service: "{{{{ __meta_service }}}}"
        team: "{{{{ team | default('') }}}}"
"#,
            ep.url("/sd")
        ),
    );
    let (rt, cancel) = start(&path).await;
    wait_names(
        &rt,
        &[
            "api/10.0.0.7:8443",
            "api/10.0.0.8:8443",
            "db/db.internal:5432",
        ],
    )
    .await;
    let api = rt.target("api/10.0.0.7:8443").unwrap();
    assert_eq!(api.spec.target_text(), "https://10.0.0.7:8443/healthz");
    assert_eq!(api.spec.module(), None);
    assert_eq!(api.spec.interval, Duration::from_secs(20));
    assert_eq!(api.spec.labels["service"], "api");
    assert_eq!(api.spec.labels["team"], "web");
    let db = rt.target("db/db.internal:5432").unwrap();
    assert_eq!(db.spec.module(), Some("tcp_connect"));
    assert_eq!(db.spec.target_text(), "db.internal:5432");
    assert_eq!(db.spec.interval, Duration::from_secs(60));
    assert!(
        !db.spec.labels.contains_key("team"),
        "an empty label is dropped"
    );
    cancel.cancel();
}

#[test]
fn a_file_sd_template_reads_meta_labels_and_a_failing_one_names_the_group() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.json"),
        r#"[{"targets": ["10.1.0.1:8080"], "labels": {"__meta_dc": "eu", "__meta_path": "/ping"}},
            {"targets": ["10.1.0.2:8080"], "labels": {"__meta_dc": "us"}}]"#,
    )
    .unwrap();
    let path = config_file(
        dir.path(),
        "file_sd:\n  - files: [t.json]\n    template:\n      name: \"{{ __meta_dc }}-{{ __address__ }}\"\n      url: \"http://{{ __address__ }}{{ __meta_path | default('/') }}\"\n      labels: { dc: \"{{ __meta_dc }}\" }\n",
    );
    let c = config::load_with(&path, OPTS).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(&str, &str, &str)> = c
        .targets
        .iter()
        .map(|t| (t.name.as_str(), t.target_text(), t.labels["dc"].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("eu-10.1.0.1:8080", "http://10.1.0.1:8080/ping", "eu"),
            ("us-10.1.0.2:8080", "http://10.1.0.2:8080/", "us"),
        ]
    );
    // A label the template needs is missing from the second group.
    std::fs::write(
        dir.path().join("t.json"),
        r#"[{"targets": ["10.1.0.1:8080"], "labels": {"__meta_dc": "eu"}}, {"targets": ["10.1.0.2:8080"]}]"#,
    )
    .unwrap();
    let e = config::load_with(&path, OPTS).unwrap_err().to_string();
    assert!(
        e.contains("t.json: [1].targets[0]: template.name: undefined value"),
        "{e}"
    );
}

#[test]
fn bad_http_sd_sections_are_errors_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "http_sd:\n  - refresh_interval: 1m\n",
            "watchfire.yaml:2:5: http_sd[0].url: missing",
        ),
        (
            "http_sd:\n  - url: ftp://x/\n",
            "http_sd[0].url: `ftp://x/` is not an http:// or https:// URL",
        ),
        (
            "http_sd:\n  - url: http://x/\n    refresh_interval: 10ms\n",
            "watchfire.yaml:3:23: http_sd[0].refresh_interval: must be at least 100ms",
        ),
        (
            "http_sd:\n  - url: http://x/\n    refresh_interval: 1s\n    refresh_timeout: 2s\n",
            "http_sd[0].refresh_timeout: must be longer than 0 and at most refresh_interval",
        ),
        (
            "http_sd:\n  - url: http://x/\n    bearer_token_file: nope\n",
            "http_sd[0].bearer_token_file: cannot read",
        ),
        (
            "http_sd:\n  - url: http://x/\n    template:\n      name: \"{{ oops\"\n",
            "watchfire.yaml:4:13: http_sd[0].template.name: not a valid template",
        ),
        (
            "http_sd:\n  - url: http://x/\n    module: nope\n",
            "http_sd[0].module: no module named `nope`",
        ),
        (
            "http_sd:\n  - url: http://x/\n    wat: 1\n",
            "http_sd[0].wat: unknown key `wat`",
        ),
        (
            "http_sd:\n  - url: http://x/\n  - url: http://x/\n    interval: 1m\n",
            "watchfire.yaml:3:5: http_sd[1].url: the endpoint http://x/ is already asked at",
        ),
    ];
    for (text, want) in cases {
        let path = config_file(dir.path(), text);
        let e = config::load_with(&path, OPTS).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}:\n{e}");
    }
    // A URL's secret is not repeated in the error.
    let path = config_file(
        dir.path(),
        "http_sd:\n  - url: ftp://u:hunter2@x/?token=abc\n",
    );
    let e = config::load_with(&path, OPTS).unwrap_err().to_string();
    assert!(!e.contains("hunter2") && !e.contains("abc"), "{e}");
    // An http_sd section alone is a config (it may discover targets later).
    let path = config_file(dir.path(), "http_sd:\n  - url: http://127.0.0.1:9/\n");
    let c = config::load_with(&path, OPTS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((c.targets.len(), c.http_sd.len()), (0, 1));
}
