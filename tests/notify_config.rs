//! The `notify:` section: the issue's examples load as written; every bad receiver, route,
//! duration and template is an error naming its file, line and field; secrets never appear in
//! an error or in `Debug`.

use std::time::Duration;

use watchfire::config::{load, load_str, Config};
use watchfire::notify::config::{ReceiverKind, DEFAULT_PAGERDUTY_URL};
use watchfire::notify::{message::Templates, Kind};

/// The issue's full example, with secrets that must never be shown.
const FULL: &str = r#"notify:
  update_every: 5m
  severity: P0
  commander: "Jane Doe"
  war_room: "https://meet.example/p0"
  status_page: "https://status.example"
  delivery: { backoff: 1s, max_backoff: 60s, give_up_after: 1h, timeout: 10s, keep: 7d }
  escalation:
    - { after: 5m, who: "service owner + SRE lead", receivers: [oncall] }
  templates:
    declared: { title: "DOWN {{ service }}", text: "{{ service }} since {{ started_text }}" }
  receivers:
    - name: oncall
      webhook: { url: "http://127.0.0.1:9000/hook?token=WEBHOOKTOKEN", secret: "HMACSECRET", headers: { X-Token: "HEADERSECRET" } }
      templates: { update: { text: "{{ elapsed }}: {{ status }}" } }
    - name: am
      alertmanager: { url: "http://127.0.0.1:9093", resend: 1m }
    - name: chat
      slack: { url: "https://hooks.slack.com/services/T0/B0/SLACKSECRET" }
    - name: pd
      pagerduty: { routing_key: "ROUTINGSECRET", url: "https://events.pagerduty.com/v2/enqueue" }
    - name: script
      exec: { argv: ["/usr/local/bin/page", "--fast"], env: { TOKEN: "ENVSECRET" }, timeout: 10s }
  routes:
    - receivers: [oncall, am]
    - match: { component: inference-gateway, severity: P0 }
      receivers: [pd]
      wait: 0s
"#;

const SECRETS: [&str; 6] = [
    "WEBHOOKTOKEN",
    "HMACSECRET",
    "HEADERSECRET",
    "SLACKSECRET",
    "ROUTINGSECRET",
    "ENVSECRET",
];

/// Loads `text`, which must fail, and returns every error as text (one per line).
fn errors(text: &str) -> String {
    match load_str("notify.yaml", text) {
        Ok(_) => panic!("loaded but should have failed:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn loads(text: &str) -> Config {
    load_str("notify.yaml", text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_issues_full_example_loads_as_written() {
    let c = loads(FULL).notify;
    assert_eq!(c.update_every, Duration::from_secs(300));
    assert_eq!(c.commander.as_deref(), Some("Jane Doe"));
    assert_eq!(c.status_page.as_deref(), Some("https://status.example"));
    assert_eq!(c.delivery.keep, Duration::from_secs(7 * 86_400));
    let kinds: Vec<_> = c.receivers.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["webhook", "alertmanager", "slack", "pagerduty", "exec"]
    );
    assert_eq!(c.escalation.len(), 1);
    assert_eq!(c.escalation[0].receivers, ["oncall"]);
    assert_eq!(c.routes[1].matchers["component"], "inference-gateway");
    assert_eq!(c.routes[1].wait, Duration::ZERO);
    let ReceiverKind::Webhook(w) = &c.receivers[0].kind else {
        panic!("webhook")
    };
    assert_eq!(
        w.secret.as_ref().map(|s| s.expose().as_str()),
        Some("HMACSECRET")
    );
    assert_eq!(w.headers["X-Token"].expose(), "HEADERSECRET");
    let f = Templates::sample("gw");
    let (title, text) = c
        .templates
        .render("am", Kind::Declared, &f)
        .expect("renders");
    assert_eq!(
        (title.as_str(), text.as_str()),
        ("DOWN gw", "gw since 2026-01-01 10:00:00 UTC")
    );
    let (_, text) = c
        .templates
        .render("oncall", Kind::Update, &f)
        .expect("renders");
    assert_eq!(text, "12m 30s: investigating");
    let (_, text) = c.templates.render("am", Kind::Update, &f).expect("renders");
    assert!(text.starts_with("INCIDENT UPDATE"), "{text}");
}

#[test]
fn the_issues_short_example_gets_the_defaults_and_the_runbooks_tiers() {
    let c = loads(
        "notify:\n  update_every: 5m\n  receivers:\n    - name: oncall\n      webhook: { url: \"http://127.0.0.1:9000/hook\" }\n    - name: am\n      alertmanager: { url: \"http://127.0.0.1:9093\" }\n  routes:\n    - receivers: [oncall, am]\n",
    )
    .notify;
    let tiers: Vec<_> = c
        .escalation
        .iter()
        .map(|t| (t.after.as_secs() / 60, t.who.as_str()))
        .collect();
    assert_eq!(
        tiers,
        [
            (5, "service owner + SRE lead"),
            (15, "engineering manager + platform lead"),
            (30, "executives")
        ]
    );
    assert_eq!(c.severity, "P0");
    let ReceiverKind::Alertmanager(a) = &c.receivers[1].kind else {
        panic!("alertmanager")
    };
    assert_eq!(a.resend, Duration::from_secs(60));
    assert!(c.routes[0].matchers.is_empty());
    let off = loads("notify:\n  escalation: []\n").notify;
    assert!(off.escalation.is_empty());
    let pd = loads("notify:\n  receivers:\n    - name: pd\n      pagerduty: { routing_key: k }\n")
        .notify;
    let ReceiverKind::PagerDuty(p) = &pd.receivers[0].kind else {
        panic!("pagerduty")
    };
    assert_eq!(p.url, DEFAULT_PAGERDUTY_URL);
}

#[test]
fn a_bad_receiver_url_names_file_line_and_field_without_the_url() {
    let e = errors(
        "notify:\n  receivers:\n    - name: a\n      webhook: { url: \"ftp://h/SECRETPATH\" }\n    - name: b\n      slack: { url: \"not a url SECRETWORD\" }\n    - name: c\n      alertmanager: { url: \"http://\" }\n",
    );
    assert!(
        e.contains("notify.yaml:4:") && e.contains("notify.receivers[0].webhook.url"),
        "{e}"
    );
    assert!(e.contains("must be an http:// or https:// URL"), "{e}");
    assert!(
        e.contains("notify.yaml:6:") && e.contains("notify.receivers[1].slack.url"),
        "{e}"
    );
    assert!(e.contains("notify.receivers[2].alertmanager.url"), "{e}");
    assert!(
        !e.contains("SECRETPATH") && !e.contains("SECRETWORD"),
        "{e}"
    );
}

#[test]
fn a_route_naming_an_unknown_receiver_names_the_route_and_the_name() {
    let e = errors(
        "notify:\n  receivers:\n    - name: a\n      webhook: { url: \"http://h/\" }\n  routes:\n    - receivers: [a]\n    - receivers: [a, nope]\n    - receivers: [status-page]\n  escalation:\n    - { after: 5m, who: x, receivers: [ghost] }\n",
    );
    assert!(
        e.contains("notify.yaml:7:")
            && e.contains("notify.routes[1].receivers[1]")
            && e.contains("no receiver named `nope`"),
        "{e}"
    );
    assert!(
        e.contains("notify.routes[2].receivers[0]") && e.contains("built in"),
        "{e}"
    );
    assert!(
        e.contains("notify.escalation[0].receivers[0]") && e.contains("`ghost`"),
        "{e}"
    );
}

#[test]
fn a_receiver_has_exactly_one_kind_and_a_unique_unreserved_name() {
    let e = errors(
        "notify:\n  receivers:\n    - name: a\n      webhook: { url: \"http://h/\" }\n      slack: { url: \"https://h/\" }\n    - name: b\n    - name: a\n      exec: { argv: [x] }\n    - name: status-page\n      exec: { argv: [x] }\n    - name: \"bad name\"\n      exec: { argv: [] }\n",
    );
    assert!(
        e.contains("notify.yaml:3:")
            && e.contains(
                "notify.receivers[0]: a receiver has exactly one kind, not slack and webhook"
            ),
        "{e}"
    );
    assert!(
        e.contains("notify.receivers[1]: a receiver needs one of"),
        "{e}"
    );
    assert!(
        e.contains("notify.receivers[2].name: duplicate receiver name `a`"),
        "{e}"
    );
    assert!(
        e.contains("notify.receivers[3].name") && e.contains("built in"),
        "{e}"
    );
    assert!(
        e.contains("notify.receivers[4].name") && e.contains("`bad name` is not a receiver name"),
        "{e}"
    );
    assert!(e.contains("notify.receivers[4].exec.argv"), "{e}");
}

#[test]
fn durations_must_parse_and_be_positive() {
    let e = errors(
        "notify:\n  update_every: 0s\n  delivery: { backoff: soon, max_backoff: 10s, timeout: 5s }\n  receivers:\n    - name: a\n      alertmanager: { url: \"http://h\", resend: -1m }\n  routes:\n    - receivers: [a]\n      wait: 0s\n",
    );
    assert!(
        e.contains("notify.update_every: must be longer than 0"),
        "{e}"
    );
    assert!(
        e.contains("notify.delivery.backoff") && e.contains("`soon` is not a duration"),
        "{e}"
    );
    assert!(e.contains("notify.receivers[0].alertmanager.resend"), "{e}");
    assert!(!e.contains("routes[0].wait"), "a zero wait is allowed: {e}");
}

#[test]
fn a_template_with_an_undefined_variable_names_file_line_and_template() {
    let e = errors(
        "notify:\n  receivers:\n    - name: oncall\n      webhook: { url: \"http://h/\" }\n      templates:\n        update:\n          text: |\n            Status: {{ status }}\n            Impact: {{ failing_percnt }}\n",
    );
    assert!(
        // The line where the template begins (a block scalar's first line).
        e.contains("notify.yaml:8:") && e.contains("notify.receivers[0].templates.update.text"),
        "{e}"
    );
    assert!(e.contains("template `oncall/update.text`"), "{e}");
    assert!(
        e.contains("line 2 of the template") && e.contains("undefined"),
        "{e}"
    );
    assert!(e.contains("failing_percnt"), "{e}");
    let e = errors("notify:\n  templates:\n    resolved: { title: \"{% if %}\" }\n");
    assert!(
        e.contains("notify.yaml:3:")
            && e.contains("notify.templates.resolved.title")
            && e.contains("does not compile"),
        "{e}"
    );
    let e = errors("notify:\n  templates:\n    paged: { text: x }\n");
    assert!(e.contains("paged"), "an unknown kind is refused: {e}");
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    // Every receiver is broken somewhere else so that each is reported.
    let broken = FULL
        .replace("resend: 1m", "resend: nope")
        .replace("routes:\n", "routes:\n    - receivers: [ghost]\n")
        .replace("/usr/local/bin/page", "")
        .replace("update_every: 5m", "update_every: never")
        .replace("hooks.slack.com", "")
        .replace("X-Token", "Bad Header")
        .replace("url: \"https://events", "url: \"gopher://events");
    let e = errors(&broken);
    assert!(e.lines().count() >= 5, "{e}");
    for s in SECRETS {
        assert!(!e.contains(s), "{s} in:\n{e}");
    }
    let c = loads(FULL);
    let debug = format!("{:?}", c.notify);
    for s in SECRETS {
        assert!(!debug.contains(s), "{s} in Debug");
    }
    assert!(debug.contains("<secret>"));
}

#[test]
fn a_second_notify_section_is_an_error_naming_the_first() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let write = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, "notify:\n  update_every: 1m\n").expect("write");
        p
    };
    write("a.yaml");
    write("b.yaml");
    let e = load(dir.path()).expect_err("refused").to_string();
    assert!(
        e.contains("b.yaml:2:") && e.contains("notify is already set at"),
        "{e}"
    );
    assert!(
        e.contains(&format!("{}:2", dir.path().join("a.yaml").display())),
        "{e}"
    );
}

#[test]
fn the_shipped_example_loads_once_copied_to_a_yaml_file() {
    let text = std::fs::read_to_string("probes/notify.yaml.example").expect("the example");
    let c = loads(&text).notify;
    assert_eq!(c.receivers.len(), 2);
    assert_eq!(c.routes[0].receivers, ["oncall", "am"]);
    assert_eq!(c.escalation.len(), 3, "the runbook's tiers");
}
