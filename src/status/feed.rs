//! `/status/feed.atom`: the incidents and maintenance windows of the page as an Atom feed
//! (RFC 4287), newest first. Entry ids are URNs, stable whatever URL the page is served at;
//! links are absolute when `status_page.url` is set.

use std::fmt::Write as _;

use super::badge::xml_escape;
use super::model::{window_status, View};
use super::rfc3339;

/// The feed's document.
pub fn atom(v: &View) -> String {
    let base = v.page.url.as_deref().unwrap_or("");
    let updated = v
        .incidents
        .iter()
        .map(|i| {
            i.updates
                .first()
                .map(|u| u.at)
                .unwrap_or(i.incident.started)
        })
        .chain(v.windows.iter().map(|w| w.start.min(v.now)))
        .max()
        .unwrap_or(v.now);
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    let _ = writeln!(out, "<title>{}</title>", xml_escape(&v.page.title));
    let _ = writeln!(out, "<id>urn:watchfire:status</id>");
    let _ = writeln!(out, "<updated>{}</updated>", rfc3339(updated));
    let _ = writeln!(out, "<author><name>watchfire</name></author>");
    let _ = writeln!(
        out,
        "<link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
        xml_escape(&format!("{base}/status"))
    );
    for i in &v.incidents {
        let inc = &i.incident;
        let last = i.updates.first().map(|u| u.at).unwrap_or(inc.started);
        let mut text = format!(
            "{} ({} impact), started {}",
            inc.status.as_str(),
            inc.impact.as_str(),
            rfc3339(inc.started)
        );
        if let Some(r) = inc.resolved {
            let _ = write!(text, ", resolved {}", rfc3339(r));
        }
        for u in &i.updates {
            let _ = write!(
                text,
                "\n{} {}: {}",
                rfc3339(u.at),
                u.status.as_str(),
                u.message
            );
        }
        entry(
            &mut out,
            &format!("urn:watchfire:incident:{}", inc.id),
            &inc.title,
            last,
            &format!("{base}/status/incidents/{}", inc.id),
            &text,
        );
    }
    for w in &v.windows {
        let text = format!(
            "Maintenance {} from {} to {}",
            window_status(w, v.now).replace('_', " "),
            rfc3339(w.start),
            rfc3339(w.end)
        );
        entry(
            &mut out,
            &format!("urn:watchfire:maintenance:{}", super::api::window_id(w)),
            &format!("Maintenance: {}", w.name),
            w.start.min(v.now),
            &format!("{base}/status"),
            &text,
        );
    }
    out.push_str("</feed>\n");
    out
}

fn entry(out: &mut String, id: &str, title: &str, updated: i64, link: &str, text: &str) {
    let _ = writeln!(
        out,
        "<entry>\n<id>{}</id>\n<title>{}</title>\n<updated>{}</updated>\n\
         <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n\
         <content type=\"text\">{}</content>\n</entry>",
        xml_escape(id),
        xml_escape(title),
        rfc3339(updated),
        xml_escape(link),
        xml_escape(text),
    );
}
