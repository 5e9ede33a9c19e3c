//! The `quorum:` settings: global and per target or failover group, inherited and overridden,
//! and every mistake (k > n, an unknown or repeated location, k = 0, two global sections)
//! reported with its file, line and field.

use std::path::Path;

use watchfire::config::{load, load_str};
use watchfire::diag::ConfigError;

fn errors(name: &str, text: &str) -> Vec<ConfigError> {
    match load_str(name, text) {
        Ok(_) => panic!("{name} should not load"),
        Err(e) => e.0,
    }
}

#[track_caller]
fn only(errs: &[ConfigError], line: u64, field: &str, fragment: &str) {
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!((e.line, e.field.as_str()), (line, field), "{e}");
    assert!(
        e.message.contains(fragment),
        "{e} should contain {fragment:?}"
    );
    assert!(e.to_string().starts_with(&format!("q.yaml:{line}:")), "{e}");
}

#[test]
fn global_and_per_target_and_per_group_settings_load() {
    let c = load_str(
        "q.yaml",
        r#"
quorum:
  locations: [eu, us, ap]
  k: 2
targets:
  - name: health
    url: http://127.0.0.1:8000/health
    quorum: { locations: [eu, us], k: 1 }
  - name: predict
    url: http://127.0.0.1:8000/predict
failover:
  - name: gw
    instances: [http://127.0.0.1:8000, http://127.0.0.1:8001]
    quorum: { k: 3 }
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let q = &c.quorum;
    assert_eq!(q.global.k, Some(2));
    let known = Vec::new();
    let h = q.effective("health", &known);
    assert_eq!(
        (h.locations.to_vec(), h.k),
        (vec!["eu".to_string(), "us".into()], 1)
    );
    let p = q.effective("predict", &known);
    assert_eq!((p.locations.len(), p.k), (3, 2));
    assert_eq!(q.effective("gw/0", &known).k, 3);
    assert_eq!(q.effective("gw/1", &known).k, 3);
}

#[test]
fn without_a_quorum_section_k_defaults_from_the_locations_seen() {
    let c = load_str(
        "q.yaml",
        "targets: [{ name: t, url: 'http://127.0.0.1:1/' }]\n",
    )
    .unwrap();
    let seen: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(c.quorum.effective("t", &seen[..3]).k, 2);
    assert_eq!(c.quorum.effective("t", &seen).k, 3);
}

#[test]
fn a_global_k_above_the_locations_is_an_error_naming_quorum_k() {
    let errs = errors("q.yaml", "quorum:\n  locations: [a, b]\n  k: 3\n");
    only(&errs, 3, "quorum.k", "more than the 2 location(s)");
}

#[test]
fn a_targets_k_above_its_locations_is_an_error_naming_the_target() {
    let text = r#"
quorum: { locations: [a, b, c] }
targets:
  - name: t
    url: http://127.0.0.1:1/
    quorum:
      locations: [a, b]
      k: 3
"#;
    only(
        &errors("q.yaml", text),
        8,
        "targets[0].quorum.k",
        "more than the 2 location(s)",
    );
}

#[test]
fn an_inherited_k_above_a_targets_locations_says_where_it_comes_from() {
    let text = r#"
quorum: { locations: [a, b, c], k: 3 }
targets:
  - name: t
    url: http://127.0.0.1:1/
    quorum: { locations: [a] }
"#;
    only(
        &errors("q.yaml", text),
        6,
        "targets[0].quorum.k",
        "inherited from quorum.k",
    );
}

#[test]
fn a_location_missing_from_the_global_list_is_an_error_naming_it() {
    let text = r#"
targets:
  - name: t
    url: http://127.0.0.1:1/
    quorum:
      locations: [a, mars]
quorum: { locations: [a, b, c] }
"#;
    only(
        &errors("q.yaml", text),
        6,
        "targets[0].quorum.locations[1]",
        "`mars` is not one of",
    );
}

#[test]
fn k_zero_a_repeated_location_and_a_bad_name_are_errors() {
    only(
        &errors("q.yaml", "quorum:\n  k: 0\n"),
        2,
        "quorum.k",
        "at least 1",
    );
    only(
        &errors("q.yaml", "quorum:\n  locations: [a, a]\n"),
        2,
        "quorum.locations[1]",
        "listed twice",
    );
    only(
        &errors("q.yaml", "quorum:\n  locations: ['a b']\n"),
        2,
        "quorum.locations[0]",
        "not a location name",
    );
    only(
        &errors("q.yaml", "quorum:\n  quorum: 2\n"),
        2,
        "quorum.quorum",
        "unknown key",
    );
}

#[test]
fn two_files_setting_the_global_section_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "quorum: { k: 1 }\n").unwrap();
    std::fs::write(dir.path().join("b.yaml"), "quorum: { k: 2 }\n").unwrap();
    let errs = load(dir.path()).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, Path::new(&dir.path().join("b.yaml")));
    assert_eq!(errs[0].field, "quorum");
    assert!(errs[0].message.contains("already set at"), "{}", errs[0]);
}
