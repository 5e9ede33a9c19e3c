//! `template:` of a discovery section: how a discovered group's labels become a target's name,
//! what it probes, its module, interval and labels.
//!
//! Each field is a minijinja expression (the engine of the incident messages), compiled once
//! when the config loads and rendered once per discovered target over that target's labels:
//! the group's labels as discovered (Prometheus' `__meta_*`, `__scheme__`, `__metrics_path__`
//! and the rest, `__`-prefixed ones included) and `__address__`, the listed string itself.
//!
//! ```yaml
//! template:
//!   name: "{{ __meta_service }}-health"
//!   url: "{{ __scheme__ | default('http') }}://{{ __address__ }}{{ __metrics_path__ | default('/health') }}"
//!   labels: { team: "{{ team | default('none') }}" }
//! ```
//!
//! Rendering is strict: a label that is not there is an error naming the field and the group
//! (write `{{ x | default('...') }}` for an optional one). The output is trimmed; an empty label
//! value drops the label (as in Prometheus); an empty `module` means the native HTTP prober.
//! Rendering is bounded ([`FUEL`]) and every output is at most [`super::sd::MAX_TARGET_LEN`]
//! bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_saphyr::Spanned;

use crate::diag::Diagnostics;

use super::fields::MAX_TARGET_LEN;
pub use super::raw::RawTemplate;

/// Work one field's rendering may do (minijinja fuel: about one unit per instruction); a
/// template that loops without end stops here.
pub const FUEL: u64 = 20_000;

/// A compiled `template:`. Two templates are equal when their sources are.
#[derive(Debug, Clone)]
pub struct Template {
    env: Arc<Environment<'static>>,
    /// (environment name, source), for equality and to know which fields are set.
    sources: Vec<(String, String)>,
    /// `url` or `target`: how the probed field was written, for messages.
    probe_field: &'static str,
}

impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        self.sources == other.sources
    }
}

/// What a template made of one discovered target; `None` where the template is silent.
#[derive(Debug, Default, PartialEq)]
pub struct Rendered {
    /// The name.
    pub name: Option<String>,
    /// What is probed.
    pub probe: Option<String>,
    /// The module; `Some("")` for the native HTTP prober.
    pub module: Option<String>,
    /// The interval.
    pub interval: Option<Duration>,
    /// Labels: an empty value removes the label.
    pub labels: Vec<(String, String)>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

impl Template {
    /// Compiles `t`; every syntax error and bad label name is recorded with its field
    /// (`{field}.template.url`) and line.
    pub(super) fn check(
        diag: &mut Diagnostics,
        t: &Spanned<RawTemplate>,
        field: &str,
    ) -> Option<Template> {
        let before = diag.count();
        let r = &t.value;
        let field = format!("{field}.template");
        let probe_field = match (&r.url, &r.target) {
            (Some(_), Some(tg)) => {
                let msg = "set `url` or `target`, not both (they are one setting)";
                diag.error(tg, format!("{field}.target"), msg);
                "url"
            }
            (None, Some(_)) => "target",
            _ => "url",
        };
        let probe = r.url.as_ref().or(r.target.as_ref());
        let mut fields: Vec<(String, &Spanned<String>)> = Vec::new();
        let named = [
            ("name", r.name.as_ref()),
            ("probe", probe),
            ("module", r.module.as_ref()),
            ("interval", r.interval.as_ref()),
        ];
        for (k, v) in named {
            if let Some(v) = v {
                fields.push((k.to_string(), v));
            }
        }
        // Label names are checked as any label's (valid, not reserved).
        super::fields::labels(diag, &r.labels, &format!("{field}.labels"));
        for (k, v) in &r.labels {
            fields.push((format!("labels.{k}"), v));
        }
        let mut env = environment();
        let mut sources = Vec::new();
        for (name, v) in fields {
            let shown = shown_field(&name, probe_field);
            if let Err(e) = env.add_template_owned(name.clone(), v.value.clone()) {
                let msg = format!("not a valid template: {}", describe(&e, &v.value));
                diag.error(v, format!("{field}.{shown}"), msg);
                continue;
            }
            sources.push((name, v.value.clone()));
        }
        if diag.count() > before {
            return None;
        }
        Some(Template {
            env: Arc::new(env),
            sources,
            probe_field,
        })
    }

    /// Renders every field set over `labels` (a group's labels as discovered) and
    /// `__address__` = `address`. An error names the field (`template.url: ...`).
    pub fn render(
        &self,
        labels: &BTreeMap<String, String>,
        address: &str,
    ) -> Result<Rendered, String> {
        let mut ctx: BTreeMap<&str, &str> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ctx.insert("__address__", address);
        let ctx = minijinja::Value::from_serialize(&ctx);
        let mut out = Rendered::default();
        for (name, source) in &self.sources {
            let shown = shown_field(name, self.probe_field);
            let text = self
                .env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| format!("template.{shown}: {}", describe(&e, source)))?;
            let text = text.trim();
            if text.len() > MAX_TARGET_LEN {
                return Err(format!(
                    "template.{shown}: the output is {} bytes long, more than {MAX_TARGET_LEN}",
                    text.len()
                ));
            }
            let text = text.to_string();
            match name.as_str() {
                "name" => out.name = Some(text),
                "probe" => out.probe = Some(text),
                "module" => out.module = Some(text),
                "interval" => {
                    let d = super::fields::parse_duration(&text)
                        .map_err(|e| format!("template.interval: {e}"))?;
                    out.interval = Some(d);
                }
                _ => {
                    let k = name.strip_prefix("labels.").unwrap_or(name);
                    out.labels.push((k.to_string(), text));
                }
            }
        }
        Ok(out)
    }
}

/// How a template's environment name is written in the config.
fn shown_field<'a>(name: &'a str, probe_field: &'a str) -> &'a str {
    if name == "probe" {
        probe_field
    } else {
        name
    }
}

/// A minijinja error as one line: its kind and detail, and the text it is about when
/// minijinja says where.
fn describe(e: &minijinja::Error, source: &str) -> String {
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
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_saphyr::Location;

    fn spanned(s: &str) -> Spanned<String> {
        Spanned::new(s.to_string(), Location::UNKNOWN, Location::UNKNOWN)
    }

    fn compile(t: RawTemplate) -> Result<Template, String> {
        let mut diag = Diagnostics::new("w.yaml");
        let t = Spanned::new(t, Location::UNKNOWN, Location::UNKNOWN);
        Template::check(&mut diag, &t, "http_sd[0]").ok_or_else(|| {
            let e: Vec<String> = diag.into_errors().iter().map(|e| e.to_string()).collect();
            e.join("\n")
        })
    }

    fn raw() -> RawTemplate {
        RawTemplate {
            name: None,
            url: None,
            target: None,
            module: None,
            interval: None,
            labels: BTreeMap::new(),
        }
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_prometheus_meta_labels_with_defaults() {
        let mut r = raw();
        r.name = Some(spanned("{{ __meta_service }}-health"));
        r.url = Some(spanned(
            "{{ __scheme__ | default('http') }}://{{ __address__ }}{{ __metrics_path__ | default('/health') }}",
        ));
        r.interval = Some(spanned("{{ __meta_interval | default('30s') }}"));
        r.labels
            .insert("team".into(), spanned("{{ team | default('') }}"));
        r.labels
            .insert("svc".into(), spanned(" {{ __meta_service }} "));
        let t = compile(r).unwrap();
        let got = t
            .render(
                &labels(&[("__meta_service", "api"), ("__scheme__", "https")]),
                "10.0.0.7:8443",
            )
            .unwrap();
        assert_eq!(got.name.as_deref(), Some("api-health"));
        assert_eq!(got.probe.as_deref(), Some("https://10.0.0.7:8443/health"));
        assert_eq!(got.interval, Some(Duration::from_secs(30)));
        assert_eq!(
            got.labels,
            [kv("svc", "api"), kv("team", "")],
            "trimmed; an empty value is kept here and dropped by the caller"
        );
        assert_eq!(got.module, None);
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn a_missing_label_is_an_error_naming_the_field() {
        let mut r = raw();
        r.target = Some(spanned("{{ __meta_host }}:{{ port }}"));
        let t = compile(r).unwrap();
        let e = t
            .render(&labels(&[("__meta_host", "db")]), "x")
            .unwrap_err();
        assert!(e.starts_with("template.target: undefined value"), "{e}");
        let mut r = raw();
        r.interval = Some(spanned("{{ __meta_i }}"));
        let e = compile(r)
            .unwrap()
            .render(&labels(&[("__meta_i", "often")]), "x")
            .unwrap_err();
        assert!(
            e.contains("template.interval") && e.contains("not a duration"),
            "{e}"
        );
    }

    #[test]
    fn bad_templates_are_config_errors_naming_the_field() {
        let mut r = raw();
        r.url = Some(spanned("http://{{ __address__ "));
        let e = compile(r).unwrap_err();
        assert!(
            e.contains("http_sd[0].template.url") && e.contains("not a valid template"),
            "{e}"
        );
        let mut r = raw();
        r.url = Some(spanned("a"));
        r.target = Some(spanned("b"));
        let e = compile(r).unwrap_err();
        assert!(e.contains("template.target: set `url` or `target`"), "{e}");
        let mut r = raw();
        r.labels.insert("job".into(), spanned("x"));
        r.labels.insert("1bad".into(), spanned("x"));
        let e = compile(r).unwrap_err();
        assert!(
            e.contains("template.labels.job") && e.contains("reserved"),
            "{e}"
        );
        assert!(e.contains("template.labels.1bad"), "{e}");
    }

    #[test]
    fn rendering_is_bounded() {
        let mut r = raw();
        r.name = Some(spanned("{% for i in range(1000000) %}x{% endfor %}"));
        let e = compile(r)
            .unwrap()
            .render(&BTreeMap::new(), "a")
            .unwrap_err();
        assert!(e.starts_with("template.name:"), "{e}");
    }

    #[test]
    fn equal_sources_are_equal_templates() {
        let mut a = raw();
        a.name = Some(spanned("{{ __address__ }}"));
        let mut b = raw();
        b.name = Some(spanned("{{ __address__ }}"));
        let mut c = raw();
        c.name = Some(spanned("{{ __address__ }}-x"));
        let (a, b, c) = (
            compile(a).unwrap(),
            compile(b).unwrap(),
            compile(c).unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
