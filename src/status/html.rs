//! `/status` and `/status/incidents/ID` as HTML: server-rendered (maud escapes every value),
//! inline CSS and no script, so the page works without JavaScript and loads nothing else.
//! Light and dark follow `prefers-color-scheme`; text colours keep a contrast of at least
//! 4.5:1 on their background in both. Each day's bar is focusable and labelled; its figures
//! show on hover and on focus from its label (CSS only).

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::model::{day_start, Bar, ComponentView, Day, IncidentView, State, View, DAY_MS};
use super::{badge::percent, rfc3339};
use crate::store::model::Window;
use crate::store::Millis;

const CSS: &str = include_str!("status.css");

/// The class of a state's text and dot.
fn state_class(s: State) -> &'static str {
    match s {
        State::Unknown => "s-unknown",
        State::Operational => "s-ok",
        State::Maintenance => "s-maint",
        State::Degraded => "s-minor",
        State::Partial => "s-partial",
        State::Major => "s-major",
    }
}

fn bar_class(b: Bar) -> &'static str {
    match b {
        Bar::NoData => "b n",
        Bar::Operational => "b o",
        Bar::Minor => "b m",
        Bar::Major => "b x",
        Bar::Maintenance => "b w",
    }
}

/// `YYYY-MM-DD` of a UTC time.
fn date(t: Millis) -> String {
    rfc3339(t)[..10].to_string()
}

/// `YYYY-MM-DD HH:MM UTC`.
fn when(t: Millis) -> String {
    let s = rfc3339(t);
    format!("{} {} UTC", &s[..10], &s[11..16])
}

/// A duration for people: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn duration(ms: i64) -> String {
    let mut out = String::new();
    push_duration(&mut out, ms);
    out
}

/// [`duration`], written into `out`.
fn push_duration(out: &mut String, ms: i64) {
    use std::fmt::Write as _;
    let s = ms.max(0) / 1000;
    let _ = match s {
        0 => {
            out.push_str("0 s");
            Ok(())
        }
        s if s < 60 => write!(out, "{s} s"),
        s if s < 3600 => write!(out, "{} min", s / 60),
        s if s < 86_400 => write!(out, "{} h {} min", s / 3600, s % 3600 / 60),
        s => write!(out, "{} d {} h", s / 86_400, s % 86_400 / 3600),
    };
}

/// A day's bar's label: its date (`day`, the same for every component, formatted once per
/// page) and figures, written straight into the page (a page of 1,000 components has 90,000
/// of them). It holds only the date, digits and fixed words: nothing to escape.
struct BarLabel<'a> {
    day: &'a str,
    d: &'a Day,
}

impl maud::Render for BarLabel<'_> {
    fn render_to(&self, out: &mut String) {
        use std::fmt::Write as _;
        let d = self.d;
        out.push_str(self.day);
        if !d.data {
            out.push_str(": no data");
            return;
        }
        out.push_str(": ");
        match d.uptime() {
            Some(u) if u >= 1.0 => out.push_str("100%"),
            Some(u) => out.push_str(&percent(u)),
            None => out.push('–'),
        }
        out.push_str(" up, ");
        push_duration(out, d.down_ms);
        out.push_str(" down");
        if d.failures > 0 {
            let _ = write!(out, ", {} of {} probes failed", d.failures, d.probes);
        }
        if d.maintenance_ms > 0 {
            out.push_str(", ");
            push_duration(out, d.maintenance_ms);
            out.push_str(" maintenance");
        }
    }
}

/// The document around `body`; `root` is the relative path from the page to the server's root
/// (so links work under a route prefix).
fn page(v: &View, title: &str, root: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) }
                link rel="alternate" type="application/atom+xml" title="Incidents and maintenance" href={ (root) "status/feed.atom" };
                style { (PreEscaped(CSS)) }
            }
            body {
                main {
                    (body)
                }
                footer {
                    p {
                        "Times are UTC. Updated " time datetime=(rfc3339(v.now)) { (when(v.now)) } ". "
                        a href={ (root) "status/feed.atom" } { "Atom feed" } " · "
                        a href={ (root) "api/v2/summary.json" } { "JSON" }
                    }
                }
            }
        }
    }
    .into_string()
}

/// `/status`.
pub fn status_page(v: &View) -> String {
    let indicator = v.indicator();
    let in_progress: Vec<&Window> = v
        .windows
        .iter()
        .filter(|w| w.start <= v.now && v.now < w.end)
        .collect();
    let upcoming: Vec<&Window> = v.windows.iter().filter(|w| w.start > v.now).collect();
    let active: Vec<&IncidentView> = v.active_incidents().collect();
    let first = super::model::first_day(v.now);
    let dates: Vec<String> = (0..super::model::DAYS as i64)
        .map(|i| date(first + i * DAY_MS))
        .collect();
    let body = html! {
        header {
            h1 { (v.page.title) }
            @if let Some(d) = &v.page.description { p.desc { (d) } }
        }
        section #overall class={"overall " (state_class(v.state.max(overall_floor(v))))} role="status" {
            (indicator.description)
        }
        @for w in &in_progress {
            section.maint-banner aria-label="Maintenance in progress" {
                strong { "Maintenance in progress: " (w.name) }
                " until " time datetime=(rfc3339(w.end)) { (when(w.end)) }
                (covers(w))
            }
        }
        @if !active.is_empty() {
            section #incidents aria-labelledby="h-incidents" {
                h2 #h-incidents { "Active incidents" }
                @for i in &active { (incident_card(i, "")) }
            }
        }
        section #components aria-labelledby="h-components" {
            h2 #h-components { "Components" }
            p.legend aria-hidden="true" {
                span { "90 days ago" } span { "Today" }
            }
            @for (gi, g) in v.groups.iter().enumerate() {
                section.group aria-label=(g.name) {
                    (component(g, 2, &dates))
                    @for c in v.components.iter().filter(|c| c.group == Some(gi)) {
                        (component(c, 3, &dates))
                    }
                }
            }
            @for c in v.components.iter().filter(|c| c.group.is_none()) {
                (component(c, 3, &dates))
            }
            (legend())
        }
        @if !v.locations.is_empty() {
            (locations(v))
        }
        @if !upcoming.is_empty() {
            section #maintenance aria-labelledby="h-maintenance" {
                h2 #h-maintenance { "Scheduled maintenance" }
                ul.plain {
                    @for w in &upcoming {
                        li {
                            strong { (w.name) } " "
                            time datetime=(rfc3339(w.start)) { (when(w.start)) }
                            " – " time datetime=(rfc3339(w.end)) { (when(w.end)) }
                            (covers(w))
                        }
                    }
                }
            }
        }
        (past_incidents(v))
    };
    page(v, &v.page.title, "", body)
}

/// Cluster mode's locations: each one's state and what it sees down. A degraded location's
/// views are left out of the quorum; a stale one has not reported within the lease.
fn locations(v: &View) -> Markup {
    html! {
        section #locations aria-labelledby="h-locations" {
            h2 #h-locations { "Locations" }
            table.locations {
                thead { tr { th { "Location" } th { "State" } th { "Targets seen down" } } }
                tbody {
                    @for l in &v.locations {
                        tr class={"location " (l.state)} {
                            td { (l.name) }
                            td { (match l.state {
                                "ok" => "Operational",
                                "degraded" => "Degraded: its views are left out",
                                _ => "Not reporting",
                            }) }
                            td { (l.down) " of " (l.targets) }
                        }
                    }
                }
            }
        }
    }
}

/// Open incidents' impact counts in the overall banner as it does in the indicator.
fn overall_floor(v: &View) -> State {
    match v.indicator().indicator {
        "critical" => State::Major,
        "major" => State::Partial,
        "minor" => State::Degraded,
        _ => State::Unknown,
    }
}

fn covers(w: &Window) -> Markup {
    html! {
        @if w.components.is_empty() { " (all components)" }
        @else { " (" (w.components.join(", ")) ")" }
    }
}

fn component(c: &ComponentView, level: u8, dates: &[String]) -> Markup {
    let up = c
        .uptime
        .map(|u| format!("{} uptime", percent(u)))
        .unwrap_or_else(|| "no data".into());
    let heading = html! {
        span.name { (c.name) }
        span class={"state " (state_class(c.state))} { (c.state.label()) }
    };
    html! {
        div.component data-component=(c.name) {
            div.head {
                @if level == 2 { h3.grp { (heading) } } @else { h3 { (heading) } }
            }
            @if let Some(d) = &c.description { p.cdesc { (d) } }
            ol.bars aria-label={ "Last 90 days of " (c.name) } {
                @for (d, day) in c.days.iter().zip(dates) {
                    li class=(bar_class(d.bar())) tabindex="0" aria-label=(BarLabel { day, d }) {}
                }
            }
            p.uptime { (up) " over 90 days" }
        }
    }
}

fn legend() -> Markup {
    html! {
        ul.key aria-label="Bar colours" {
            li { span class="b o" aria-hidden="true" {} "No downtime" }
            li { span class="b m" aria-hidden="true" {} "Minor (under 30 min down)" }
            li { span class="b x" aria-hidden="true" {} "Major (30 min down or more)" }
            li { span class="b w" aria-hidden="true" {} "Maintenance" }
            li { span class="b n" aria-hidden="true" {} "No data" }
        }
    }
}

/// An incident with its timeline, its title linking to its page (`root` as in [`page`]).
fn incident_card(i: &IncidentView, root: &str) -> Markup {
    let inc = &i.incident;
    html! {
        article.incident data-incident=(inc.id) {
            h3 {
                a href={ (root) "status/incidents/" (inc.id) } { (inc.title) }
            }
            p.meta {
                span class={"pill impact-" (inc.impact.as_str())} { (inc.impact.as_str()) " impact" }
                " " span.pill { (inc.status.as_str()) }
                @if !i.components.is_empty() { " · " (i.components.join(", ")) }
                @if inc.in_maintenance { " · during maintenance" }
            }
            (timeline(i))
        }
    }
}

fn timeline(i: &IncidentView) -> Markup {
    html! {
        ol.timeline aria-label="Timeline" {
            @for u in &i.updates {
                li {
                    strong { (u.status.as_str()) } " — " (u.message)
                    br;
                    small {
                        time datetime=(rfc3339(u.at)) { (when(u.at)) }
                        @if u.automatic { " · automatic" }
                    }
                }
            }
            li {
                small { "Started " time datetime=(rfc3339(i.incident.started)) { (when(i.incident.started)) } }
            }
        }
    }
}

fn past_incidents(v: &View) -> Markup {
    let today = day_start(v.now);
    html! {
        section #past aria-labelledby="h-past" {
            h2 #h-past { "Past incidents" }
            @for n in 0..super::model::PAST_DAYS as i64 {
                @let start = today - n * DAY_MS;
                @let day: Vec<&IncidentView> = v.incidents.iter()
                    .filter(|i| i.incident.resolved.is_some() && day_start(i.incident.started) == start)
                    .collect();
                div.day {
                    h3 { time datetime=(date(start)) { (date(start)) } }
                    @if day.is_empty() { p.none { "No incidents reported." } }
                    @for i in day { (incident_card(i, "")) }
                }
            }
        }
    }
}

/// `/status/incidents/ID`: one incident with its timeline and figures.
pub fn incident_page(v: &View, i: &IncidentView) -> String {
    let inc = &i.incident;
    let end = inc.resolved.unwrap_or(v.now);
    let figures = inc
        .figures
        .as_deref()
        .map(|f| serde_json::from_str::<serde_json::Value>(f).unwrap_or(f.into()));
    let body = html! {
        p { a href="../../status" { "← " (v.page.title) } }
        header { h1 { (inc.title) } }
        dl.facts {
            dt { "Status" } dd { (inc.status.as_str()) }
            dt { "Impact" } dd { (inc.impact.as_str()) }
            dt { "Components" } dd { (i.components.join(", ")) }
            dt { "Targets" } dd { (inc.targets.join(", ")) }
            dt { "Started" } dd { time datetime=(rfc3339(inc.started)) { (when(inc.started)) } }
            @if let Some(r) = inc.resolved {
                dt { "Resolved" } dd { time datetime=(rfc3339(r)) { (when(r)) } }
            }
            dt { "Duration" } dd { (duration(end - inc.started)) @if inc.resolved.is_none() { " so far" } }
            @if inc.in_maintenance { dt { "Maintenance" } dd { "began inside a maintenance window" } }
        }
        @if let Some(f) = figures {
            section aria-labelledby="h-figures" {
                h2 #h-figures { "Figures" }
                @match f {
                    serde_json::Value::Object(m) => {
                        dl.facts {
                            @for (k, val) in &m {
                                dt { (k.replace('_', " ")) }
                                dd { @match val { serde_json::Value::String(s) => (s), other => (other.to_string()) } }
                            }
                        }
                    }
                    other => { p { (other.to_string()) } }
                }
            }
        }
        section aria-labelledby="h-timeline" {
            h2 #h-timeline { "Timeline" }
            (timeline(i))
        }
    };
    let title = format!("{} — {}", inc.title, v.page.title);
    page(v, &title, "../../", body)
}
