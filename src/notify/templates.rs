//! The template engine behind [`Templates`]: the defaults (the `defaults` module) and the
//! config's overrides compiled once into one minijinja environment, rendered with strict
//! undefined values, bounded work (fuel) and bounded output.
//!
//! Precedence, per kind and per part (title, text) separately: the receiver's override, then
//! the override for every receiver (`notify.templates`), then the default.

use std::collections::HashMap;
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use super::message::{Facts, TemplateError};
use super::Kind;

/// Work one rendering may do (minijinja fuel: about one unit per instruction). The defaults
/// use a few hundred; a template that loops without end stops here.
pub const FUEL: u64 = 200_000;

/// Longest rendered text, in bytes; longer output is cut at a character boundary and ends
/// with [`CUT_MARKER`].
pub const MAX_OUTPUT: usize = 16 * 1024;

/// What ends a text that was cut.
pub const CUT_MARKER: &str = "\n[... cut: the message was longer than 16 KB]";

/// Longest title, in bytes (titles are one line).
pub const MAX_TITLE: usize = 1024;

/// The two parts of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// One line: the title, the Slack fallback, the PagerDuty summary.
    Title,
    /// The body.
    Text,
}

impl Part {
    /// `title` or `text`, as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Title => "title",
            Part::Text => "text",
        }
    }
}

/// One template written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The receiver it is for; none for every receiver (`notify.templates`).
    pub receiver: Option<String>,
    /// The kind of message.
    pub kind: Kind,
    /// Title or text.
    pub part: Part,
    /// The template.
    pub source: String,
}

/// Which template a (receiver, kind, part) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The override at this index of the list [`Templates::build`] was given.
    Override(usize),
}

/// The templates in force: the defaults, with the config's overrides per receiver and kind.
/// Cheap to clone (the compiled environment is shared).
#[derive(Debug, Clone)]
pub struct Templates {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    env: Environment<'static>,
    /// (receiver or none, kind, part) → index into `overrides`.
    chosen: HashMap<(Option<String>, Kind, Part), usize>,
    overrides: Vec<Override>,
}

impl Default for Templates {
    /// The defaults only.
    fn default() -> Self {
        Templates::build(Vec::new()).expect("the default templates compile")
    }
}

/// The environment's name of a template (never shown: [`display_name`] is).
fn env_name(origin: Origin, kind: Kind, part: Part) -> String {
    match origin {
        Origin::Default => format!("d/{}.{}", kind.as_str(), part.as_str()),
        Origin::Override(i) => format!("o{i}/{}.{}", kind.as_str(), part.as_str()),
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_filter("pct", pct);
    env
}

/// A percentage with at most one decimal, without a trailing `.0`.
fn pct(v: f64) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    let s = format!("{:.1}", (v * 10.0).round() / 10.0);
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

impl Templates {
    /// The defaults with `overrides` (later ones win over earlier ones for the same receiver,
    /// kind and part), or every override that does not compile, by index.
    pub fn build(overrides: Vec<Override>) -> Result<Templates, Vec<(usize, TemplateError)>> {
        let mut env = environment();
        for kind in Kind::ALL {
            let (title, text) = super::defaults::template(kind);
            for (part, src) in [(Part::Title, title), (Part::Text, text)] {
                let name = env_name(Origin::Default, kind, part);
                if let Err(e) = env.add_template_owned(name, src) {
                    panic!(
                        "the default {} template of {kind:?} compiles: {e}",
                        part.as_str()
                    );
                }
            }
        }
        let mut errors = Vec::new();
        let mut chosen = HashMap::new();
        for (i, o) in overrides.iter().enumerate() {
            let name = env_name(Origin::Override(i), o.kind, o.part);
            match env.add_template_owned(name, o.source.clone()) {
                Ok(()) => {
                    chosen.insert((o.receiver.clone(), o.kind, o.part), i);
                }
                Err(e) => errors.push((i, error(&display_name(o), &o.source, &e))),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Templates {
            inner: Arc::new(Inner {
                env,
                chosen,
                overrides,
            }),
        })
    }

    /// The template `receiver` uses for `kind`'s `part`.
    pub fn origin(&self, receiver: &str, kind: Kind, part: Part) -> Origin {
        let c = &self.inner.chosen;
        c.get(&(Some(receiver.to_string()), kind, part))
            .or_else(|| c.get(&(None, kind, part)))
            .map_or(Origin::Default, |i| Origin::Override(*i))
    }

    /// Renders `kind` for `receiver` from `facts`: (title, text). The title is one line; both
    /// are bounded in size.
    pub fn render(
        &self,
        receiver: &str,
        kind: Kind,
        facts: &Facts,
    ) -> Result<(String, String), TemplateError> {
        let title = self.render_part(receiver, kind, Part::Title, facts)?;
        let text = self.render_part(receiver, kind, Part::Text, facts)?;
        let text = text.trim_end().to_string();
        Ok((one_line(&title), cut(text, MAX_OUTPUT, CUT_MARKER)))
    }

    /// Renders one part with the template `receiver` uses for it.
    pub fn render_part(
        &self,
        receiver: &str,
        kind: Kind,
        part: Part,
        facts: &Facts,
    ) -> Result<String, TemplateError> {
        let origin = self.origin(receiver, kind, part);
        let name = env_name(origin, kind, part);
        let t = self
            .inner
            .env
            .get_template(&name)
            .expect("every chosen template was added");
        t.render(facts).map_err(|e| {
            let (shown, source) = match origin {
                Origin::Default => {
                    let (title, text) = super::defaults::template(kind);
                    let src = if part == Part::Title { title } else { text };
                    (format!("default/{}.{}", kind.as_str(), part.as_str()), src)
                }
                Origin::Override(i) => {
                    let o = &self.inner.overrides[i];
                    (display_name(o), o.source.as_str())
                }
            };
            error(&shown, source, &e)
        })
    }

    /// Renders every kind for each of `receivers` (and for a receiver without overrides) with
    /// [`Templates::sample`] facts and with sparse facts (every optional fact absent), and
    /// returns each template that failed, once, with its first error.
    pub fn check(&self, receivers: &[&str]) -> Vec<(Origin, TemplateError)> {
        let mut failed: Vec<(Origin, TemplateError)> = Vec::new();
        let full = Templates::sample("inference-gateway");
        let sparse = sparse("inference-gateway");
        // A name no receiver has: the templates for every receiver.
        let everyone = "\u{0}";
        for r in receivers.iter().copied().chain([everyone]) {
            for kind in Kind::ALL {
                for part in [Part::Title, Part::Text] {
                    let origin = self.origin(r, kind, part);
                    if failed
                        .iter()
                        .any(|(o, _)| *o == origin && o != &Origin::Default)
                    {
                        continue;
                    }
                    for facts in [&full, &sparse] {
                        if let Err(e) = self.render_part(r, kind, part, facts) {
                            failed.push((origin, e));
                            break;
                        }
                    }
                }
            }
        }
        failed
    }

    /// Sample facts for `check` and `notify test`: a P0 outage of `service` with every field
    /// filled.
    pub fn sample(service: &str) -> Facts {
        let started = 1_767_261_600_000; // 2026-01-01 10:00:00 UTC
        Facts {
            id: 42,
            service: service.to_string(),
            title: format!("{service} is down"),
            severity: "P0".into(),
            status: "investigating".into(),
            impact: "major".into(),
            labels: [
                ("component".to_string(), service.to_string()),
                ("severity".to_string(), "P0".to_string()),
            ]
            .into(),
            started,
            started_text: "2026-01-01 10:00:00 UTC".into(),
            now: started + 750_000,
            elapsed: "12m 30s".into(),
            targets: vec![format!("{service}-health"), format!("{service}-predict")],
            reason: Some("connection_refused".into()),
            detail: Some("connect: connection refused".into()),
            failing_percent: 100.0,
            failed_probes: 150,
            failed_requests: Some(1_234),
            estimated_failed_requests: Some(9_375),
            affected_percent: Some(100.0),
            budget_consumed_percent: Some(28.9),
            actions: vec![format!(
                "Traffic moved to {service}-backup at 10:00:04 UTC (active_down)"
            )],
            commander: Some("Jane Doe".into()),
            war_room: Some("https://meet.example/p0".into()),
            status_page: Some("https://status.example".into()),
            next_update: Some("10:15:00 UTC".into()),
            tier: Some("tier 2: service owner + SRE lead".into()),
            acknowledged: Some("at 10:03:10 UTC".into()),
            note: Some("Rolling back the 09:55 deploy.".into()),
            root_cause: Some("a memory leak in the model cache (OOM kill, exit 137)".into()),
            resolution: Some("rolled back to the previous release".into()),
            resolved: Some(started + 1_800_000),
            duration: Some("30m".into()),
            verify: Some("PASS: health 200, predict 200, error rate 0.0 % for 10m".into()),
            in_maintenance: false,
        }
    }
}

/// Facts with every optional fact absent and every list empty.
fn sparse(service: &str) -> Facts {
    let full = Templates::sample(service);
    Facts {
        id: full.id,
        service: full.service,
        title: full.title,
        severity: full.severity,
        status: full.status,
        impact: full.impact,
        started: full.started,
        started_text: full.started_text,
        now: full.now,
        elapsed: full.elapsed,
        ..Facts::default()
    }
}

/// How an override is named in errors: `oncall/update.text`, or `templates/update.text` for
/// every receiver's.
fn display_name(o: &Override) -> String {
    let scope = o.receiver.as_deref().unwrap_or("templates");
    format!("{scope}/{}.{}", o.kind.as_str(), o.part.as_str())
}

/// A template error from minijinja's: the kind and detail, the line, and the text it is
/// about (`` `servce` ``) when minijinja says where.
fn error(name: &str, source: &str, e: &minijinja::Error) -> TemplateError {
    let mut message = e.kind().to_string();
    if let Some(d) = e.detail() {
        message.push_str(": ");
        message.push_str(d);
    }
    if let Some(r) = e.range() {
        if let Some(s) = source.get(r).filter(|s| !s.is_empty() && s.len() <= 80) {
            message.push_str(&format!(" (at `{s}`)"));
        }
    }
    TemplateError {
        name: name.to_string(),
        line: e.line(),
        message,
    }
}

/// `s` on one line (line breaks become spaces), trimmed and bounded.
fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(joined, MAX_TITLE, " ...")
}

/// `s` cut to at most `max` bytes (at a character boundary) with `marker` appended when cut.
fn cut(mut s: String, max: usize, marker: &str) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(marker.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(marker);
    s
}

#[cfg(test)]
#[path = "templates_tests.rs"]
mod tests;
