use super::*;

fn sparse_facts() -> Facts {
    super::sparse("gw")
}

fn over(receiver: Option<&str>, kind: Kind, part: Part, source: &str) -> Override {
    Override {
        receiver: receiver.map(str::to_string),
        kind,
        part,
        source: source.into(),
    }
}

#[test]
fn every_default_renders_with_full_and_sparse_facts_without_none() {
    let t = Templates::default();
    assert!(t.check(&["a"]).is_empty());
    for facts in [Templates::sample("gw"), sparse_facts()] {
        for kind in Kind::ALL {
            let (title, text) = t.render("a", kind, &facts).expect("renders");
            assert!(
                !title.is_empty() && !title.contains('\n'),
                "{kind:?}: {title}"
            );
            assert!(!text.trim().is_empty(), "{kind:?}");
            for bad in ["None", "null", "{{", "{%"] {
                assert!(
                    !title.contains(bad) && !text.contains(bad),
                    "{kind:?}: {title}\n{text}"
                );
            }
            // minijinja writes an absent value as `none`; the defaults say "none yet" only.
            let words = format!("{title} {}", text.replace("none yet", ""));
            let none = words
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == "none");
            assert!(!none, "{kind:?}: {title}\n{text}");
            assert!(!text.contains("\n\n\n"), "{kind:?}:\n{text}");
        }
    }
}

#[test]
fn the_declaration_says_what_the_runbook_asks() {
    let (title, text) = Templates::default()
        .render("a", Kind::Declared, &Templates::sample("inference-gateway"))
        .expect("renders");
    assert_eq!(
        title,
        "[P0] MAJOR INCIDENT: inference-gateway is down (100 % of probes failing)"
    );
    for want in [
        "Service: inference-gateway",
        "Severity: P0",
        "Incident commander: Jane Doe",
        "Started: 2026-01-01 10:00:00 UTC",
        "Status: investigating",
        "Impact: 100 % of probes failing",
        "Reason: connection_refused (connect: connection refused)",
        "- Traffic moved to inference-gateway-backup at 10:00:04 UTC",
        "War room: https://meet.example/p0",
        "Next update: 10:15:00 UTC",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
}

#[test]
fn resolved_and_update_carry_the_figures_and_status_page_no_internals() {
    let t = Templates::default();
    let f = Templates::sample("gw");
    let (_, text) = t.render("a", Kind::Resolved, &f).expect("renders");
    for want in [
        "Duration: 30m",
        "Root cause: a memory leak",
        "Resolution: rolled back",
        "failed proxied requests: 1234",
        "affected share: 100 %",
        "error budget consumed: 28.9 %",
        "Verification: PASS",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    let (_, text) = t.render("a", Kind::Update, &f).expect("renders");
    assert!(
        text.contains("estimated failed user requests: 9375"),
        "{text}"
    );
    let (_, text) = t.render("a", Kind::StatusPage, &f).expect("renders");
    assert!(text.starts_with("We are investigating"), "{text}");
    for internal in [
        "connection_refused",
        "Traffic moved",
        "Jane",
        "P0",
        "probes",
    ] {
        assert!(!text.contains(internal), "{internal}: {text}");
    }
}

#[test]
fn a_receivers_override_wins_over_the_global_one_which_wins_over_the_default() {
    let t = Templates::build(vec![
        over(None, Kind::Update, Part::Text, "global {{ service }}"),
        over(
            Some("oncall"),
            Kind::Update,
            Part::Text,
            "mine {{ service }}",
        ),
        over(Some("oncall"), Kind::Note, Part::Title, "T {{ status }}"),
    ])
    .expect("compiles");
    let f = Templates::sample("gw");
    assert_eq!(t.render("oncall", Kind::Update, &f).unwrap().1, "mine gw");
    assert_eq!(t.render("other", Kind::Update, &f).unwrap().1, "global gw");
    let (title, text) = t.render("oncall", Kind::Note, &f).unwrap();
    assert_eq!(title, "T investigating");
    assert!(text.contains("Rolling back"), "{text}");
    assert_eq!(t.origin("other", Kind::Note, Part::Title), Origin::Default);
    assert_eq!(
        t.origin("oncall", Kind::Update, Part::Text),
        Origin::Override(1)
    );
}

#[test]
fn an_undefined_variable_fails_the_check_with_the_template_and_line() {
    let t = Templates::build(vec![over(
        Some("oncall"),
        Kind::Update,
        Part::Text,
        "ok {{ service }}\nImpact: {{ servce }}",
    )])
    .expect("compiles");
    let failed = t.check(&["oncall", "other"]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (origin, e) = &failed[0];
    assert_eq!(*origin, Origin::Override(0));
    assert_eq!(e.name, "oncall/update.text");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("undefined"), "{}", e.message);
}

#[test]
fn a_template_failing_only_on_missing_facts_is_caught() {
    let t = Templates::build(vec![over(
        None,
        Kind::Resolved,
        Part::Text,
        "{{ root_cause | upper }}",
    )])
    .expect("compiles");
    let failed = t.check(&[]);
    // `upper` of an absent fact renders `NONE`: not an error, but a template that indexes into
    // one is.
    assert!(failed.is_empty(), "{failed:?}");
    let t = Templates::build(vec![over(
        None,
        Kind::Resolved,
        Part::Text,
        "{{ reason[0:3] }} {{ actions[0] }}",
    )])
    .expect("compiles");
    let failed = t.check(&[]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1.name, "templates/resolved.text");
}

#[test]
fn syntax_errors_are_reported_per_override_at_build() {
    let errs = Templates::build(vec![
        over(None, Kind::Declared, Part::Title, "fine"),
        over(Some("x"), Kind::Test, Part::Text, "line one\n{% if %}"),
    ])
    .expect_err("does not compile");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, 1);
    assert_eq!(errs[0].1.name, "x/test.text");
    assert_eq!(errs[0].1.line, Some(2));
}

#[test]
fn a_template_that_does_not_end_runs_out_of_fuel() {
    let src = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
    let t = Templates::build(vec![over(None, Kind::Test, Part::Text, src)]).expect("compiles");
    let e = t
        .render("a", Kind::Test, &Templates::sample("gw"))
        .expect_err("stops");
    assert!(e.message.contains("fuel"), "{}", e.message);
}

#[test]
fn long_output_is_cut_with_a_marker_and_titles_are_one_line() {
    let src = "{% for a in range(3000) %}0123456789{% endfor %}";
    let t = Templates::build(vec![
        over(None, Kind::Test, Part::Text, src),
        over(None, Kind::Test, Part::Title, "a\n  b\n"),
    ])
    .expect("compiles");
    let (title, text) = t
        .render("a", Kind::Test, &Templates::sample("gw"))
        .expect("renders");
    assert_eq!(title, "a b");
    assert!(text.len() <= MAX_OUTPUT, "{}", text.len());
    assert!(text.ends_with(CUT_MARKER));
    assert_eq!(pct(12.345), "12.3");
    assert_eq!(pct(100.0), "100");
}
