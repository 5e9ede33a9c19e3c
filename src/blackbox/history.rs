//! Recent `/probe` results, as blackbox_exporter keeps them: the `/` page lists them and
//! `/logs?id=N` shows one probe's debug output.
//!
//! What is kept (blackbox 0.23, checked against Debian's build): every `/probe` that ran (not
//! the 400s) gets the next id, counting from 0. The last `--history.limit` probes (default 100)
//! are kept; a failed probe that falls out of them moves to a second list of at most
//! `--history.limit` failures, so that recent failures stay debuggable under a stream of
//! successes. At most twice the limit are kept; 0 keeps nothing (and spares `/probe` its log).
//!
//! - `/` — HTML: links to the other endpoints and the "Recent Probes" table (Module, Target,
//!   Result, Debug link), newest first; the kept failures, older than every probe in the window,
//!   come last. Module and target are HTML-escaped.
//! - `/logs?id=N` — the probe's debug output (the log, the metrics, the module with secrets
//!   hidden), as `/probe?debug=true` shows it; 404 `Probe id not found` when it is not kept.
//! - `/logs?target=T` (and `&module=M`), upstream's (0.25+) — the newest kept probe of that
//!   target (upstream returns the oldest); 404 `Probe target not found`.
//!   Both `id` and `target`, or neither, is a 400 as upstream answers; an `id` that is not a
//!   number is 400 `Invalid probe id` (0.23 answers 500).
//!
//! An entry keeps the probe's [`Output`] and its [`Module`]; the debug text is rendered only
//! when `/logs` asks for it. The lock is held to push, evict or copy out `Arc`s, never to render.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

use super::config::Module;
use crate::probers::Output;

/// `--history.limit`'s default, as blackbox's.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// The largest `--history.limit` accepted (each kept probe holds a few kilobytes).
pub const MAX_HISTORY_LIMIT: usize = 100_000;

/// One kept probe.
#[derive(Debug)]
pub struct Entry {
    /// Its id (`/logs?id=`).
    pub id: i64,
    /// The module's name.
    pub module: String,
    /// The `target` parameter (shown through [`crate::redact::url`]).
    pub target: String,
    /// Whether it succeeded.
    pub success: bool,
    out: Output,
    config: Arc<Module>,
}

impl Entry {
    /// The debug output, as `/probe?debug=true` answered (or would have).
    pub fn debug_output(&self) -> String {
        debug_text(&self.out, &self.config)
    }
}

#[derive(Debug, Default)]
struct Inner {
    next_id: i64,
    /// The last `limit` probes, oldest first.
    recent: VecDeque<Arc<Entry>>,
    /// Failures that fell out of `recent`, oldest first, at most `limit`.
    failures: VecDeque<Arc<Entry>>,
}

/// The recent-probe history (see the module doc).
#[derive(Debug)]
pub struct History {
    limit: AtomicUsize,
    inner: Mutex<Inner>,
}

impl Default for History {
    fn default() -> Self {
        History::new(DEFAULT_HISTORY_LIMIT)
    }
}

impl History {
    /// A history keeping `limit` probes (and up to `limit` older failures).
    pub fn new(limit: usize) -> History {
        History {
            limit: AtomicUsize::new(limit.min(MAX_HISTORY_LIMIT)),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Sets `--history.limit` (capped at [`MAX_HISTORY_LIMIT`]); takes effect at the next probe.
    pub fn set_limit(&self, limit: usize) {
        self.limit
            .store(limit.min(MAX_HISTORY_LIMIT), Ordering::Relaxed);
    }

    /// `--history.limit`.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether probes are kept at all (then `/probe` keeps each probe's log).
    pub fn enabled(&self) -> bool {
        self.limit() > 0
    }

    /// Keeps a probe; its id, or `None` when the history is off.
    pub fn add(
        &self,
        config: Arc<Module>,
        target: String,
        success: bool,
        out: Output,
    ) -> Option<i64> {
        let limit = self.limit();
        if limit == 0 {
            return None;
        }
        let mut evicted = Vec::new();
        let id = {
            let mut inner = self.inner.lock().expect("history lock poisoned");
            let id = inner.next_id;
            inner.next_id += 1;
            inner.recent.push_back(Arc::new(Entry {
                id,
                module: config.name.clone(),
                target,
                success,
                out,
                config,
            }));
            while inner.recent.len() > limit {
                let old = inner.recent.pop_front().expect("longer than the limit");
                if old.success {
                    evicted.push(old);
                } else {
                    inner.failures.push_back(old);
                }
            }
            while inner.failures.len() > limit {
                evicted.extend(inner.failures.pop_front());
            }
            id
        };
        // Entries are freed outside the lock.
        drop(evicted);
        Some(id)
    }

    /// Every kept probe, newest first.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        let inner = self.inner.lock().expect("history lock poisoned");
        inner
            .recent
            .iter()
            .rev()
            .chain(inner.failures.iter().rev())
            .cloned()
            .collect()
    }

    /// The kept probe with this id.
    pub fn get(&self, id: i64) -> Option<Arc<Entry>> {
        let inner = self.inner.lock().expect("history lock poisoned");
        let by_id = |e: &&Arc<Entry>| e.id == id;
        inner
            .recent
            .iter()
            .find(by_id)
            .or_else(|| inner.failures.iter().find(by_id))
            .cloned()
    }

    /// The newest kept probe of `target` (with `module`, when given).
    pub fn newest(&self, target: &str, module: Option<&str>) -> Option<Arc<Entry>> {
        let inner = self.inner.lock().expect("history lock poisoned");
        let wanted = |e: &&Arc<Entry>| e.target == target && module.is_none_or(|m| e.module == m);
        inner
            .recent
            .iter()
            .rev()
            .find(wanted)
            .or_else(|| inner.failures.iter().rev().find(wanted))
            .cloned()
    }
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

/// Escapes text for HTML element content and quoted attributes (as Go's `html.EscapeString`).
pub fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `GET /`: the endpoints and the recent probes. Links are relative, as blackbox's, so the page
/// works behind a path prefix.
pub fn landing_page(history: &History) -> Response<Body> {
    let entries = history.list();
    let mut html = String::with_capacity(1024 + entries.len() * 160);
    html.push_str(
        "<html>\n<head><meta charset=\"utf-8\"><title>watchfire</title></head>\n<body>\n\
         <h1>watchfire</h1>\n\
         <p>blackbox_exporter's <code>probe?target=T&amp;module=M</code> is served here \
         (add <code>&amp;debug=true</code> for the probe's log).</p>\n\
         <p><a href=\"metrics\">Metrics</a></p>\n\
         <p><a href=\"config\">Configuration</a></p>\n\
         <p><a href=\"api/v1/targets\">Targets</a> (JSON)</p>\n\
         <p><a href=\"-/healthy\">Healthy</a> · <a href=\"-/ready\">Ready</a></p>\n\
         <h2>Recent Probes</h2>\n",
    );
    if !history.enabled() {
        html.push_str("<p>No probes are kept (<code>--history.limit=0</code>).</p>\n");
    }
    html.push_str(
        "<table border='1'><tr><th>Module</th><th>Target</th><th>Result</th><th>Debug</th></tr>\n",
    );
    for e in &entries {
        html.push_str("<tr><td>");
        escape_html(&e.module, &mut html);
        html.push_str("</td><td>");
        escape_html(&crate::redact::url(&e.target), &mut html);
        html.push_str("</td><td>");
        html.push_str(if e.success {
            "Success"
        } else {
            "<strong>Failure</strong>"
        });
        let _ = writeln!(
            html,
            "</td><td><a href='logs?id={}'>Logs</a></td></tr>",
            e.id
        );
    }
    html.push_str("</table>\n</body>\n</html>\n");
    respond(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// `GET /logs?id=N` or `/logs?target=T[&module=M]`: one kept probe's debug output.
pub fn logs(history: &History, query: Option<&str>) -> Response<Body> {
    let (mut id, mut target, mut module) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        // The first value of each, as Go's `Values.Get`.
        let slot = match k.as_ref() {
            "id" => &mut id,
            "target" => &mut target,
            "module" => &mut module,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    let id = id.filter(|s| !s.is_empty());
    let target = target.filter(|s| !s.is_empty());
    let entry = match (id, target) {
        (Some(_), Some(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "Probe id and target can't be defined at the same time\n",
            )
        }
        (None, None) => {
            return text(
                StatusCode::BAD_REQUEST,
                "Probe id or target must be defined as http query parameters\n",
            )
        }
        (Some(id), None) => {
            let Ok(id) = id.trim().parse::<i64>() else {
                return text(StatusCode::BAD_REQUEST, "Invalid probe id\n");
            };
            match history.get(id) {
                Some(e) => e,
                None => return text(StatusCode::NOT_FOUND, "Probe id not found\n"),
            }
        }
        (None, Some(t)) => {
            let module = module.as_deref().filter(|m| !m.is_empty());
            match history.newest(&t, module) {
                Some(e) => e,
                None => return text(StatusCode::NOT_FOUND, "Probe target not found\n"),
            }
        }
    };
    text(StatusCode::OK, entry.debug_output())
}

/// The debug output of a probe, in blackbox's layout: its log, its metrics and the module's
/// configuration (secrets hidden).
pub fn debug_text(out: &Output, module: &Module) -> String {
    use std::fmt::Write as _;
    let mut body = String::with_capacity(4096);
    body.push_str("Logs for the probe:\n");
    for l in out.log_lines() {
        let _ = writeln!(body, "{l}");
    }
    body.push_str("\n\n\nMetrics that would have been returned:\n");
    out.render(&mut body);
    body.push_str("\n\n\nModule configuration:\n");
    body.push_str(&module.to_yaml());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str) -> Arc<Module> {
        let yaml = format!("modules:\n  {name}:\n    prober: tcp\n");
        let c = crate::config::load_str("blackbox.yml", &yaml).expect("module loads");
        c.modules.get(name).expect("the module").clone()
    }

    fn add(h: &History, m: &Arc<Module>, target: &str, ok: bool) -> i64 {
        let mut out = Output::new();
        out.log(format!("probing {target}"));
        h.add(m.clone(), target.to_string(), ok, out)
            .expect("history is on")
    }

    fn ids(h: &History) -> Vec<i64> {
        h.list().iter().map(|e| e.id).collect()
    }

    async fn body(r: Response<Body>) -> (StatusCode, String) {
        use http_body_util::BodyExt as _;
        let status = r.status();
        let b = r.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8(b.to_vec()).expect("UTF-8"))
    }

    #[test]
    fn keeps_the_last_limit_and_older_failures_newest_first() {
        let h = History::new(3);
        let m = module("tcp_connect");
        // As Debian's exporter did with --history.limit=3: two failures, four successes.
        for ok in [false, false, true, true, true, true] {
            add(&h, &m, "t", ok);
        }
        assert_eq!(
            ids(&h),
            [5, 4, 3, 1, 0],
            "success 2 fell out, failures stay"
        );
        // Five more failures: the window moves, at most 3 older failures are kept.
        for _ in 0..5 {
            add(&h, &m, "t", false);
        }
        assert_eq!(ids(&h), [10, 9, 8, 7, 6, 1]);
        assert!(h.get(0).is_none() && h.get(2).is_none());
        assert_eq!(h.get(6).map(|e| e.id), Some(6));
        assert_eq!(h.get(-1).map(|e| e.id), None);
    }

    #[test]
    fn limit_zero_keeps_nothing_and_a_lower_limit_applies_at_the_next_probe() {
        let h = History::new(0);
        let m = module("tcp_connect");
        assert!(!h.enabled());
        assert_eq!(h.add(m.clone(), "t".into(), true, Output::new()), None);
        assert!(h.list().is_empty());
        h.set_limit(4);
        for _ in 0..4 {
            add(&h, &m, "t", true);
        }
        h.set_limit(2);
        add(&h, &m, "t", true);
        assert_eq!(ids(&h), [4, 3]);
        h.set_limit(usize::MAX);
        assert_eq!(h.limit(), MAX_HISTORY_LIMIT);
    }

    #[test]
    fn newest_finds_by_target_and_module() {
        let h = History::new(10);
        let (a, b) = (module("a"), module("b"));
        add(&h, &a, "x", true);
        add(&h, &b, "x", false);
        add(&h, &a, "y", true);
        assert_eq!(h.newest("x", None).map(|e| e.id), Some(1));
        assert_eq!(h.newest("x", Some("a")).map(|e| e.id), Some(0));
        assert!(h.newest("x", Some("c")).is_none() && h.newest("z", None).is_none());
    }

    #[tokio::test]
    async fn the_page_escapes_module_and_target_and_links_the_logs() {
        let h = History::new(10);
        let m = module("tcp_connect");
        add(&h, &m, "<script>alert('x')</script>&\"", false);
        add(&h, &m, "ok:1", true);
        let (status, page) = body(landing_page(&h)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains(
                "<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&#34;</td><td><strong>Failure</strong></td><td><a href='logs?id=0'>Logs</a>"
            ),
            "{page}"
        );
        assert!(!page.contains("<script>"), "{page}");
        let newer = page.find("ok:1").expect("second probe listed");
        let older = page.find("&lt;script").expect("first probe listed");
        assert!(newer < older, "newest first:\n{page}");
        for link in ["href=\"metrics\"", "href=\"config\""] {
            assert!(page.contains(link), "{page}");
        }
    }

    #[tokio::test]
    async fn logs_answers_like_the_exporter() {
        let h = History::new(10);
        let m = module("tcp_connect");
        add(&h, &m, "a:1", false);
        add(&h, &m, "a:1", true);
        let (s, b) = body(logs(&h, Some("id=0"))).await;
        assert_eq!(s, StatusCode::OK);
        assert!(b.starts_with("Logs for the probe:\n"), "{b}");
        assert!(
            b.contains("probing a:1") && b.contains("Module configuration:\nprober: tcp"),
            "{b}"
        );
        for (q, status, msg) in [
            (Some("id=7"), StatusCode::NOT_FOUND, "Probe id not found"),
            (Some("id=-1"), StatusCode::NOT_FOUND, "Probe id not found"),
            (Some("id=x"), StatusCode::BAD_REQUEST, "Invalid probe id"),
            (None, StatusCode::BAD_REQUEST, "must be defined"),
            (
                Some("id=&target="),
                StatusCode::BAD_REQUEST,
                "must be defined",
            ),
            (
                Some("id=1&target=a:1"),
                StatusCode::BAD_REQUEST,
                "same time",
            ),
            (
                Some("target=b:1"),
                StatusCode::NOT_FOUND,
                "Probe target not found",
            ),
            (
                Some("target=a:1&module=nope"),
                StatusCode::NOT_FOUND,
                "Probe target not found",
            ),
        ] {
            let (s, b) = body(logs(&h, q)).await;
            assert!(s == status && b.contains(msg), "{q:?}: {s} {b}");
        }
        let (s, by_target) = body(logs(&h, Some("target=a%3A1&module=tcp_connect"))).await;
        assert_eq!(s, StatusCode::OK);
        let (_, newest) = body(logs(&h, Some("id=1"))).await;
        assert_eq!(by_target, newest, "the newest probe of the target");
    }
}
