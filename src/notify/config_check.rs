//! Checks `notify:` as written ([`RawNotify`]) into a [`NotifyConfig`], reporting every
//! problem with its file, line and field (`notify.receivers[1].pagerduty.routing_key`):
//! [`check_section`], called by the config loader for each file's `notify:`. This file imports
//! the shapes of [`super::config`]; that one imports nothing from here.
//!
//! Secret values (Slack and webhook URLs, routing keys, webhook secrets, header values, exec
//! environment values) are never quoted in a message: a problem with one says what is wrong,
//! not what was written.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Pos};
use crate::redact::Secret;

use super::config::*;
use super::templates::{Origin, Override, Part, Templates};

/// Checks `raw` into `out`, reporting every problem with its file, line and field; `at` is
/// where a `notify:` section was set already (file, line): a second one is an error.
pub fn check_section(
    diag: &mut Diagnostics,
    raw: &Spanned<RawNotify>,
    at: &mut Option<(PathBuf, u64)>,
    out: &mut NotifyConfig,
) {
    if let Some((f, l)) = at {
        let msg = format!("notify is already set at {}:{l}", f.display());
        diag.error(raw, "notify", msg);
        return;
    }
    *at = Some((diag.file().to_path_buf(), raw.referenced.line()));
    *out = check(diag, raw);
}

/// Checks the section (the caller made sure it is the only one).
fn check(diag: &mut Diagnostics, raw: &Spanned<RawNotify>) -> NotifyConfig {
    let r = &raw.value;
    let mut out = NotifyConfig {
        escalation: runbook_tiers(),
        ..NotifyConfig::default()
    };
    if let Some(d) = &r.update_every {
        out.update_every =
            duration(diag, d, "notify.update_every", false).unwrap_or(out.update_every);
    }
    if let Some(s) = &r.severity {
        match s.value.trim() {
            "" => diag.error(s, "notify.severity", "must not be empty (such as P0)"),
            v => out.severity = v.to_string(),
        }
    }
    out.commander = r.commander.as_ref().map(|c| c.value.trim().to_string());
    out.war_room = r
        .war_room
        .as_ref()
        .filter(|u| http_url(diag, *u, &u.value, "notify.war_room", false))
        .map(|u| u.value.clone());
    out.status_page = r
        .status_page
        .as_ref()
        .filter(|u| http_url(diag, *u, &u.value, "notify.status_page", false))
        .map(|u| u.value.trim_end_matches('/').to_string());
    if let Some(d) = &r.delivery {
        out.delivery = delivery(diag, &d.value);
    }
    let mut overrides = Vec::new();
    if let Some(t) = &r.templates {
        collect_templates(&t.value, None, "notify.templates", &mut overrides);
    }
    let mut names = HashSet::new();
    for (i, rr) in r.receivers.iter().enumerate() {
        let field = format!("notify.receivers[{i}]");
        let name = receiver_name(diag, rr, &field, &mut names);
        if let (Some(t), Some(n)) = (&rr.value.templates, &name) {
            let f = format!("{field}.templates");
            collect_templates(&t.value, Some(n), &f, &mut overrides);
        }
        if let (Some(kind), Some(name)) = (receiver_kind(diag, rr, &field), name) {
            out.receivers.push(Receiver { name, kind });
        }
    }
    for (i, rr) in r.routes.iter().enumerate() {
        if let Some(route) = route(diag, &rr.value, rr.into(), i, &names) {
            out.routes.push(route);
        }
    }
    if let Some(tiers) = &r.escalation {
        out.escalation = tiers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| tier(diag, t, i, &names))
            .collect();
        for w in out.escalation.windows(2) {
            if w[1].after <= w[0].after {
                let at = tiers.first().map_or(Pos::from(raw), Pos::from);
                let msg = "tiers must be listed by increasing `after`";
                diag.error(at, "notify.escalation", msg);
                break;
            }
        }
    }
    if let Some(t) = templates(diag, overrides, &out.receivers, raw.into()) {
        out.templates = t;
    }
    out
}

/// A template written in the config, with where.
struct Written {
    template: Override,
    at: Pos,
    field: String,
}

fn collect_templates(
    raw: &RawTemplates,
    receiver: Option<&str>,
    prefix: &str,
    out: &mut Vec<Written>,
) {
    for (kind, t) in raw.entries() {
        for (part, src) in [(Part::Title, &t.value.title), (Part::Text, &t.value.text)] {
            let Some(src) = src else { continue };
            out.push(Written {
                template: Override {
                    receiver: receiver.map(str::to_string),
                    kind,
                    part,
                    source: src.value.clone(),
                },
                at: src.into(),
                field: format!("{prefix}.{}.{}", kind.as_str(), part.as_str()),
            });
        }
    }
}

/// Compiles the templates and renders every kind for every receiver with sample facts; each
/// template that fails is an error at its key.
fn templates(
    diag: &mut Diagnostics,
    written: Vec<Written>,
    receivers: &[Receiver],
    section: Pos,
) -> Option<Templates> {
    let list: Vec<Override> = written.iter().map(|w| w.template.clone()).collect();
    let report =
        |diag: &mut Diagnostics, origin: Origin, what: &str, e: &super::message::TemplateError| {
            let line = e
                .line
                .map(|l| format!("line {l} of the template: "))
                .unwrap_or_default();
            let msg = format!("template `{}` {what}: {line}{}", e.name, e.message);
            match origin {
                Origin::Override(i) => diag.error(written[i].at, written[i].field.clone(), msg),
                Origin::Default => diag.error(section, "notify", msg),
            }
        };
    let t = match Templates::build(list) {
        Ok(t) => t,
        Err(errors) => {
            for (i, e) in errors {
                report(diag, Origin::Override(i), "does not compile", &e);
            }
            return None;
        }
    };
    let names: Vec<&str> = receivers.iter().map(|r| r.name.as_str()).collect();
    let failed = t.check(&names);
    for (origin, e) in &failed {
        report(diag, *origin, "fails on sample facts", e);
    }
    failed.is_empty().then_some(t)
}

fn delivery(diag: &mut Diagnostics, d: &RawDelivery) -> Delivery {
    let mut out = Delivery::default();
    let fields: [(&Option<Spanned<String>>, &str, &mut Duration); 5] = [
        (&d.backoff, "backoff", &mut out.backoff),
        (&d.max_backoff, "max_backoff", &mut out.max_backoff),
        (&d.give_up_after, "give_up_after", &mut out.give_up_after),
        (&d.timeout, "timeout", &mut out.timeout),
        (&d.keep, "keep", &mut out.keep),
    ];
    for (raw, name, slot) in fields {
        if let Some(v) = raw {
            let field = format!("notify.delivery.{name}");
            if let Some(d) = duration(diag, v, &field, false) {
                *slot = d;
            }
        }
    }
    if out.max_backoff < out.backoff {
        let at = d.max_backoff.as_ref().or(d.backoff.as_ref());
        let msg = "must be at least `backoff`";
        diag.error(
            at.map_or(Pos::default(), Pos::from),
            "notify.delivery.max_backoff",
            msg,
        );
    }
    out
}

/// A receiver's name: valid, not reserved, unique; recorded in `names`.
fn receiver_name(
    diag: &mut Diagnostics,
    r: &Spanned<RawReceiver>,
    field: &str,
    names: &mut HashSet<String>,
) -> Option<String> {
    let field = format!("{field}.name");
    let Some(n) = &r.value.name else {
        diag.error(r, field, "every receiver needs a `name`");
        return None;
    };
    let v = n.value.as_str();
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        let msg = format!("`{v}` is not a receiver name: 1 to 64 letters, digits, `_`, `.` or `-`");
        diag.error(n, field, msg);
        return None;
    }
    if v == STATUS_PAGE_RECEIVER {
        let msg = format!(
            "`{STATUS_PAGE_RECEIVER}` is built in (it writes status_page messages into the \
             incident's timeline): choose another name"
        );
        diag.error(n, field, msg);
        return None;
    }
    if !names.insert(v.to_string()) {
        diag.error(n, field, format!("duplicate receiver name `{v}`"));
        return None;
    }
    Some(v.to_string())
}

/// The receiver's one kind, checked.
fn receiver_kind(
    diag: &mut Diagnostics,
    r: &Spanned<RawReceiver>,
    field: &str,
) -> Option<ReceiverKind> {
    let v = &r.value;
    let set: Vec<&str> = [
        ("slack", v.slack.is_some()),
        ("pagerduty", v.pagerduty.is_some()),
        ("alertmanager", v.alertmanager.is_some()),
        ("webhook", v.webhook.is_some()),
        ("exec", v.exec.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    if set.len() != 1 {
        let msg = if set.is_empty() {
            "a receiver needs one of `slack`, `pagerduty`, `alertmanager`, `webhook` or `exec`"
                .to_string()
        } else {
            format!("a receiver has exactly one kind, not {}", set.join(" and "))
        };
        diag.error(r, field, msg);
        return None;
    }
    let before = diag.count();
    let kind = if let Some(s) = &v.slack {
        let f = format!("{field}.slack.url");
        let url = secret_url(diag, s.into(), &s.value.url, &f)?;
        ReceiverKind::Slack(SlackConfig { url })
    } else if let Some(p) = &v.pagerduty {
        pagerduty(diag, p, &format!("{field}.pagerduty"))?
    } else if let Some(a) = &v.alertmanager {
        let f = format!("{field}.alertmanager");
        let url = required(diag, a.into(), &a.value.url, &format!("{f}.url"))
            .filter(|u| http_url(diag, *u, &u.value, &format!("{f}.url"), false));
        let resend = match &a.value.resend {
            Some(d) => duration(diag, d, &format!("{f}.resend"), false),
            None => Some(DEFAULT_RESEND),
        };
        ReceiverKind::Alertmanager(AlertmanagerConfig {
            url: url?.value.trim_end_matches('/').to_string(),
            resend: resend?,
        })
    } else if let Some(w) = &v.webhook {
        webhook(diag, w, &format!("{field}.webhook"))?
    } else {
        let e = v.exec.as_ref().expect("one kind is set");
        exec(diag, e, &format!("{field}.exec"))?
    };
    (diag.count() == before).then_some(kind)
}

fn pagerduty(diag: &mut Diagnostics, p: &Spanned<RawPagerDuty>, f: &str) -> Option<ReceiverKind> {
    let key = required(
        diag,
        p.into(),
        &p.value.routing_key,
        &format!("{f}.routing_key"),
    );
    if let Some(k) = key {
        if k.value.expose().trim().is_empty() {
            diag.error(k, format!("{f}.routing_key"), "must not be empty");
        }
    }
    let url = match &p.value.url {
        Some(u) if http_url(diag, u, &u.value, &format!("{f}.url"), false) => u.value.clone(),
        Some(_) => return None,
        None => DEFAULT_PAGERDUTY_URL.to_string(),
    };
    let webhook_secret = pagerduty_webhook_secret(diag, p, f);
    Some(ReceiverKind::PagerDuty(PagerDutyConfig {
        routing_key: key?.value.clone(),
        url,
        webhook_secret,
    }))
}

/// `webhook_secret`, or the first line of `webhook_secret_file` (read now, so a reload reads
/// a rotated secret; a relative path is from the config file's directory). Both set, an
/// empty secret or a file that cannot be read is an error naming the field.
fn pagerduty_webhook_secret(
    diag: &mut Diagnostics,
    p: &Spanned<RawPagerDuty>,
    f: &str,
) -> Option<Secret<String>> {
    let v = &p.value;
    match (&v.webhook_secret, &v.webhook_secret_file) {
        (Some(_), Some(file)) => {
            let msg = "set webhook_secret or webhook_secret_file, not both";
            diag.error(file, format!("{f}.webhook_secret_file"), msg);
            None
        }
        (Some(s), None) if s.value.expose().trim().is_empty() => {
            diag.error(s, format!("{f}.webhook_secret"), "must not be empty");
            None
        }
        (Some(s), None) => Some(Secret::new(s.value.expose().trim().to_string())),
        (None, Some(file)) => {
            let field = format!("{f}.webhook_secret_file");
            let base = diag
                .file()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let path = base.join(&file.value);
            match std::fs::read_to_string(&path) {
                Ok(text) => match text.lines().next().map(str::trim) {
                    Some(line) if !line.is_empty() => Some(Secret::new(line.to_string())),
                    _ => {
                        let msg = format!("{} holds no secret (empty)", path.display());
                        diag.error(file, field, msg);
                        None
                    }
                },
                Err(e) => {
                    diag.error(file, field, format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        }
        (None, None) => None,
    }
}

fn webhook(diag: &mut Diagnostics, w: &Spanned<RawWebhook>, f: &str) -> Option<ReceiverKind> {
    let url = secret_url(diag, w.into(), &w.value.url, &format!("{f}.url"));
    if let Some(s) = &w.value.secret {
        if s.value.expose().is_empty() {
            diag.error(s, format!("{f}.secret"), "must not be empty");
        }
    }
    let mut headers = BTreeMap::new();
    for (name, value) in &w.value.headers {
        let field = format!("{f}.headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            diag.error(value, field, format!("`{name}` is not a header name"));
        } else if http::HeaderValue::from_str(value.value.expose()).is_err() {
            let msg = "the value is not a valid header value (control characters?)";
            diag.error(value, field, msg);
        } else {
            headers.insert(name.clone(), value.value.clone());
        }
    }
    Some(ReceiverKind::Webhook(WebhookConfig {
        url: url?,
        secret: w.value.secret.as_ref().map(|s| s.value.clone()),
        headers,
    }))
}

fn exec(diag: &mut Diagnostics, e: &Spanned<RawExec>, f: &str) -> Option<ReceiverKind> {
    let v = &e.value;
    match v.argv.first() {
        None => diag.error(e, format!("{f}.argv"), "needs at least the program to run"),
        Some(p) if p.value.trim().is_empty() => {
            diag.error(p, format!("{f}.argv[0]"), "the program must not be empty")
        }
        Some(_) => {}
    }
    for (name, value) in &v.env {
        if name.is_empty() || name.contains(['=', '\0']) {
            let msg = format!("`{name}` is not an environment variable name");
            diag.error(value, format!("{f}.env"), msg);
        } else if value.value.expose().contains('\0') {
            diag.error(
                value,
                format!("{f}.env.{name}"),
                "the value holds a NUL byte",
            );
        }
    }
    let timeout = match &v.timeout {
        Some(d) => duration(diag, d, &format!("{f}.timeout"), false)?,
        None => DEFAULT_EXEC_TIMEOUT,
    };
    Some(ReceiverKind::Exec(ExecConfig {
        argv: v.argv.iter().map(|a| a.value.clone()).collect(),
        env: v
            .env
            .iter()
            .map(|(k, s)| (k.clone(), s.value.clone()))
            .collect(),
        timeout,
    }))
}

fn route(
    diag: &mut Diagnostics,
    r: &RawRoute,
    at: Pos,
    i: usize,
    names: &HashSet<String>,
) -> Option<Route> {
    let field = format!("notify.routes[{i}]");
    if r.receivers.is_empty() {
        diag.error(
            at,
            format!("{field}.receivers"),
            "a route needs at least one receiver",
        );
    }
    let before = diag.count();
    let receivers = receiver_refs(diag, &r.receivers, &field, names);
    let wait = match &r.wait {
        Some(w) => duration(diag, w, &format!("{field}.wait"), true),
        None => Some(Duration::ZERO),
    };
    let route = Route {
        matchers: r
            .matchers
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect(),
        receivers,
        wait: wait?,
    };
    (diag.count() == before && !route.receivers.is_empty()).then_some(route)
}

fn tier(
    diag: &mut Diagnostics,
    t: &Spanned<RawTier>,
    i: usize,
    names: &HashSet<String>,
) -> Option<Tier> {
    let field = format!("notify.escalation[{i}]");
    let after = required(diag, t.into(), &t.value.after, &format!("{field}.after"))
        .and_then(|a| duration(diag, a, &format!("{field}.after"), false));
    let who = required(diag, t.into(), &t.value.who, &format!("{field}.who"));
    let receivers = receiver_refs(diag, &t.value.receivers, &field, names);
    Some(Tier {
        after: after?,
        who: who?.value.trim().to_string(),
        receivers,
    })
}

/// Receiver names a route or tier lists, each checked against the receivers.
fn receiver_refs(
    diag: &mut Diagnostics,
    refs: &[Spanned<String>],
    field: &str,
    names: &HashSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (j, n) in refs.iter().enumerate() {
        let f = format!("{field}.receivers[{j}]");
        if n.value == STATUS_PAGE_RECEIVER {
            let msg = format!(
                "`{STATUS_PAGE_RECEIVER}` is built in: status_page messages go to it on their own"
            );
            diag.error(n, f, msg);
        } else if !names.contains(&n.value) {
            let msg = format!("no receiver named `{}` under `notify.receivers`", n.value);
            diag.error(n, f, msg);
        } else if !out.contains(&n.value) {
            out.push(n.value.clone());
        }
    }
    out
}

/// `value` of a required key, or an error at `parent`.
fn required<'a, T>(
    diag: &mut Diagnostics,
    parent: Pos,
    value: &'a Option<Spanned<T>>,
    field: &str,
) -> Option<&'a Spanned<T>> {
    if value.is_none() {
        diag.error(parent, field, "is required");
    }
    value.as_ref()
}

/// A URL held as a secret: required, http or https; never quoted.
fn secret_url(
    diag: &mut Diagnostics,
    parent: Pos,
    value: &Option<Spanned<Secret<String>>>,
    field: &str,
) -> Option<Secret<String>> {
    let u = required(diag, parent, value, field)?;
    http_url(diag, u, u.value.expose(), field, true).then(|| u.value.clone())
}

/// Whether `value` is an http or https URL; an error at `at` when not (quoting the value
/// unless it is `secret`).
fn http_url(
    diag: &mut Diagnostics,
    at: impl Into<Pos>,
    value: &str,
    field: &str,
    secret: bool,
) -> bool {
    let (shown, hidden) = if secret {
        (String::new(), " (the value is not shown: it is a secret)")
    } else {
        (format!("`{value}` "), "")
    };
    match url::Url::parse(value.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => true,
        Ok(_) => {
            let msg = format!("{shown}must be an http:// or https:// URL with a host{hidden}");
            diag.error(at, field, msg);
            false
        }
        Err(e) => {
            diag.error(at, field, format!("{shown}is not a URL: {e}{hidden}"));
            false
        }
    }
}

/// A humantime duration, positive (or zero when `zero_ok`).
fn duration(
    diag: &mut Diagnostics,
    d: &Spanned<String>,
    field: &str,
    zero_ok: bool,
) -> Option<Duration> {
    match humantime::parse_duration(d.value.trim()) {
        Ok(v) if zero_ok || !v.is_zero() => Some(v),
        Ok(_) => {
            diag.error(d, field, "must be longer than 0");
            None
        }
        Err(e) => {
            let msg = format!("`{}` is not a duration (such as 5m): {e}", d.value);
            diag.error(d, field, msg);
            None
        }
    }
}
