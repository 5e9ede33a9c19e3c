//! The demo's notification receiver: a webhook receiver served inside the demo process on a
//! free loopback port, which hands each message it gets to the timeline. It reads the webhook
//! schema's `kind`, `message.title` and, for the line under it, the figures of `facts` (the
//! actions taken and the failing share while open; duration, failed requests and error budget
//! once resolved) or else the first line of `message.text`. It answers `200` at once and
//! never blocks the sender: a message the timeline has no room for is counted, not waited for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::notify::Facts;

/// The largest message body read, bytes.
const MAX_BODY: usize = 256 * 1024;
/// Messages waiting for the timeline, at most.
const QUEUE: usize = 64;

/// One message as the timeline shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// `declared`, `update`, `resolved`, ...
    pub kind: String,
    /// The message's title.
    pub title: String,
    /// What the timeline shows under the title: the figures, or the text's first line.
    pub detail: String,
}

impl Note {
    /// The note of a webhook body (schema version 1); none for a body that is not one.
    pub fn of(body: &[u8]) -> Option<Note> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let kind = v.get("kind")?.as_str()?.to_string();
        let facts = Facts::deserialize(&v["facts"]).ok();
        let text = s(&v["message"]["text"]);
        let first_line = text.lines().next().unwrap_or("").trim().to_string();
        Some(Note {
            detail: facts.and_then(|f| figures(&kind, &f)).unwrap_or(first_line),
            title: s(&v["message"]["title"]),
            kind,
        })
    }
}

/// The facts worth a line on the timeline for a message of `kind`.
fn figures(kind: &str, f: &Facts) -> Option<String> {
    let mut parts = Vec::new();
    match kind {
        "declared" | "update" | "escalated" => {
            parts.push(format!("{:.0} % of probes failing", f.failing_percent));
            parts.push(format!("{} failed probes", f.failed_probes));
            parts.extend(f.actions.iter().cloned());
        }
        "resolved" => {
            if let Some(d) = &f.duration {
                parts.push(format!("duration {d}"));
            }
            parts.push(format!("{} failed probes", f.failed_probes));
            if let Some(n) = f.failed_requests {
                parts.push(format!("{n} failed proxied requests"));
            }
            if let Some(n) = f.estimated_failed_requests {
                parts.push(format!("~{n} failed user requests (estimated)"));
            }
            if let Some(b) = f.budget_consumed_percent {
                parts.push(format!("error budget consumed {b:.2} %"));
            }
        }
        _ => return None,
    }
    Some(parts.join("; "))
}

/// The receiver: where it listens, and what it received.
pub struct Inbox {
    /// Its address (the webhook URL is `http://{addr}/hook`).
    pub addr: SocketAddr,
    /// Messages, in the order they arrived.
    pub notes: mpsc::Receiver<Note>,
    /// Messages received in all.
    pub received: Arc<AtomicU64>,
}

impl Inbox {
    /// The webhook URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Binds a free loopback port and serves until `cancel`.
    pub async fn start(cancel: CancellationToken) -> std::io::Result<Inbox> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, notes) = mpsc::channel(QUEUE);
        let received = Arc::new(AtomicU64::new(0));
        let count = received.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = cancel.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                };
                let (tx, count) = (tx.clone(), count.clone());
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (tx, count) = (tx.clone(), count.clone());
                    async move {
                        let body = Limited::new(req.into_body(), MAX_BODY).collect().await;
                        if let Some(n) = body.ok().and_then(|b| Note::of(&b.to_bytes())) {
                            count.fetch_add(1, Ordering::Relaxed);
                            let _ = tx.try_send(n);
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::new(),
                        )))
                    }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                let stop = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
        Ok(Inbox {
            addr,
            notes,
            received,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_body_gives_kind_title_and_figures() {
        let body = br#"{"version": "1", "kind": "declared",
            "message": {"title": "P0 MAJOR INCIDENT: gw is down", "text": "Service: gw\nStatus: investigating"}}"#;
        let n = Note::of(body).expect("a note");
        assert_eq!(
            (n.kind.as_str(), n.detail.as_str()),
            ("declared", "Service: gw")
        );
        let mut facts = Facts {
            failing_percent: 50.0,
            failed_probes: 7,
            actions: vec!["traffic moved to http://b at 10:00:03 UTC".into()],
            ..Facts::default()
        };
        let body = |kind: &str, f: &Facts| {
            serde_json::json!({"kind": kind, "message": {"title": "t", "text": "x"}, "facts": f})
                .to_string()
        };
        let n = Note::of(body("update", &facts).as_bytes()).expect("a note");
        assert_eq!(
            n.detail,
            "50 % of probes failing; 7 failed probes; traffic moved to http://b at 10:00:03 UTC"
        );
        facts.duration = Some("16s".into());
        facts.failed_requests = Some(0);
        facts.budget_consumed_percent = Some(0.62);
        let n = Note::of(body("resolved", &facts).as_bytes()).expect("a note");
        assert_eq!(
            n.detail,
            "duration 16s; 7 failed probes; 0 failed proxied requests; error budget consumed 0.62 %"
        );
        assert_eq!(Note::of(b"not json"), None);
        assert_eq!(Note::of(br#"{"message": {}}"#), None);
    }
}
