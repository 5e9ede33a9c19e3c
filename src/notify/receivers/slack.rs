//! Slack: a POST to an incoming webhook with `{"text", "blocks"}`. `text` is the notification
//! fallback (the title); the blocks are a `header` (the title), one or more `section`s of
//! `mrkdwn` (the body), a `section` of `fields` (service, severity, status, started, elapsed,
//! failing share) and a `context` (incident number, "sent by watchfire").
//!
//! Slack's published Block Kit limits (its reference at
//! `https://api.slack.com/reference/block-kit/blocks`), which the payload keeps to (a block over one is
//! rejected with `400 invalid_blocks`, not cut): a message holds at most 50 blocks; a header's
//! `plain_text` at most 150 characters; a section's text at most 3000 characters; a section
//! at most 10 fields of at most 2000 characters each; a context at most 10 elements. Text in
//! `mrkdwn` escapes `&`, `<` and `>` (so a title can never mention `@channel` by accident).
//!
//! Slack answers `200 ok`; `400 invalid_payload`, `403`, `404 channel_not_found`,
//! `410 channel_is_archived` are permanent; `429` comes with `Retry-After`; `5xx` is retried.

use serde_json::{json, Value};

use super::{post_json, truncate, Endpoint, SendError};
use crate::notify::config::SlackConfig;
use crate::notify::Message;

/// Most blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Most characters of a header block's text.
pub const MAX_HEADER: usize = 150;
/// Most characters of a section block's text.
pub const MAX_SECTION: usize = 3000;
/// Most fields of a section block.
pub const MAX_FIELDS: usize = 10;
/// Most characters of one field.
pub const MAX_FIELD: usize = 2000;

/// Posts `m` to the webhook of `c`.
pub async fn send(
    http: &reqwest::Client,
    name: &str,
    c: &SlackConfig,
    m: &Message,
) -> Result<(), SendError> {
    let url = c.url.expose();
    let to = Endpoint {
        kind: "slack",
        name,
        shown: crate::redact::origin(url),
        secrets: vec![url.as_str()],
    };
    let body = serde_json::to_vec(&payload(m)).expect("a JSON value serializes");
    post_json(http, &to, url, body, &[]).await
}

/// The webhook's JSON for `m`.
pub fn payload(m: &Message) -> Value {
    let title = if m.title.trim().is_empty() {
        format!("watchfire: {}", m.kind.as_str())
    } else {
        m.title.clone()
    };
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": truncate(&title, MAX_HEADER), "emoji": true },
    })];
    // Room for the body's sections: everything but the header, fields and context blocks.
    let room = MAX_BLOCKS - 3;
    let mut sections = split_mrkdwn(&m.text, MAX_SECTION);
    if sections.len() > room {
        sections.truncate(room);
        let last = sections.last_mut().expect("room is positive");
        *last = truncate(last, MAX_SECTION - 1) + "…";
    }
    for text in sections {
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } }));
    }
    blocks.push(json!({ "type": "section", "fields": fields(m) }));
    let id = if m.incident > 0 {
        format!("incident #{}", m.incident)
    } else {
        "test message".to_string()
    };
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("{id} · {} · sent by watchfire", m.kind.as_str()) }],
    }));
    json!({ "text": title, "blocks": blocks })
}

/// The fields section's entries: `*Name*` over the value, each within [`MAX_FIELD`].
fn fields(m: &Message) -> Vec<Value> {
    let f = &m.facts;
    let dash = |s: &str| {
        if s.trim().is_empty() {
            "—".to_string()
        } else {
            s.to_string()
        }
    };
    let rows = [
        ("Service", dash(&f.service)),
        ("Severity", dash(&f.severity)),
        ("Status", dash(&f.status)),
        ("Started", dash(&f.started_text)),
        ("Elapsed", dash(f.duration.as_deref().unwrap_or(&f.elapsed))),
        ("Failing", format!("{:.1} % of probes", f.failing_percent)),
    ];
    rows.iter()
        .take(MAX_FIELDS)
        .map(|(name, value)| {
            let text = format!("*{name}*\n{}", escape(value));
            json!({ "type": "mrkdwn", "text": truncate(&text, MAX_FIELD) })
        })
        .collect()
}

/// `text` escaped for `mrkdwn` and cut into pieces of at most `max` characters, at line ends
/// where a line fits, never inside an escape; blank pieces are dropped (a section's text may
/// not be empty).
pub fn split_mrkdwn(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut n = 0;
    for line in text.split_inclusive('\n') {
        let esc = escape(line);
        let len = esc.chars().count();
        if n + len <= max {
            cur.push_str(&esc);
            n += len;
            continue;
        }
        if n > 0 {
            out.push(std::mem::take(&mut cur));
            n = 0;
        }
        if len <= max {
            cur = esc;
            n = len;
            continue;
        }
        // A line longer than a section: by characters.
        for c in line.chars() {
            let e = escape_char(c);
            let l = e.chars().count();
            if n + l > max {
                out.push(std::mem::take(&mut cur));
                n = 0;
            }
            cur.push_str(&e);
            n += l;
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim_end().to_string())
        .filter(|s| !s.trim().is_empty())
        .collect()
}

/// `s` with `&`, `<` and `>` escaped as Slack's `mrkdwn` requires.
pub fn escape(s: &str) -> String {
    s.chars().map(escape_char).collect()
}

fn escape_char(c: char) -> String {
    match c {
        '&' => "&amp;".into(),
        '<' => "&lt;".into(),
        '>' => "&gt;".into(),
        c => c.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_split_at_lines_and_never_inside_an_escape() {
        let text = "a\n".repeat(10) + &"<".repeat(10);
        let parts = split_mrkdwn(&text, 12);
        assert!(parts.iter().all(|p| p.chars().count() <= 12), "{parts:?}");
        assert_eq!(parts.concat().matches("&lt;").count(), 10);
        assert!(parts.iter().all(|p| !p.ends_with('&')));
        assert!(split_mrkdwn(" \n\n", 10).is_empty());
    }

    #[test]
    fn escaping_is_slacks() {
        assert_eq!(escape("<!channel> & co"), "&lt;!channel&gt; &amp; co");
    }
}
