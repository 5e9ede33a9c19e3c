//! Config loading: every class of bad config is reported with its file, line and field, all
//! errors of a file are listed, good configs resolve defaults, and `watchfire check` prints
//! them as `file:line:col: field: message`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::Method;
use tempfile::TempDir;
use watchfire::config::{load, load_str, Check, Config, HttpCheck, TargetSpec, DEFAULT_BODY_LIMIT};
use watchfire::diag::ConfigError;

/// Writes `text` as `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Loads `path`, which must fail, and returns every error.
fn errors(path: &Path) -> Vec<ConfigError> {
    match load(path) {
        Ok(c) => panic!(
            "{} loaded ({} targets) but should have failed",
            path.display(),
            c.targets.len()
        ),
        Err(e) => e.0,
    }
}

/// Writes `text` to a fresh `bad.yaml` and returns (path, its errors).
fn bad_file(text: &str) -> (TempDir, PathBuf, Vec<ConfigError>) {
    let dir = TempDir::new().expect("temp dir");
    let path = write(dir.path(), "bad.yaml", text);
    let errs = errors(&path);
    (dir, path, errs)
}

/// The native HTTP check of a target written with `url:` and no `module:`.
fn http(t: &TargetSpec) -> &HttpCheck {
    t.http().expect("a native HTTP check")
}

/// Loads a config that must be valid.
fn good(text: &str) -> Config {
    load_str("good.yaml", text).unwrap_or_else(|e| panic!("config should load:\n{e}"))
}

/// Asserts one error: its file, exact line, exact field, and message fragments; also that the
/// rendered error names `file:line` and the field.
#[track_caller]
fn check(e: &ConfigError, file: &Path, line: u64, field: &str, fragments: &[&str]) {
    assert_eq!(e.file, file, "file of {e}");
    assert_eq!(e.line, line, "line of {e}");
    assert_eq!(e.field, field, "field of {e}");
    for f in fragments {
        assert!(e.message.contains(f), "message of {e} should contain {f:?}");
    }
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}:{line}:", file.display())),
        "rendered error should start with file:line: {shown}"
    );
    if !field.is_empty() {
        assert!(
            shown.contains(&format!(": {field}: ")),
            "rendered error should name the field: {shown}"
        );
    }
}

/// The only error of a list.
#[track_caller]
fn only(errs: &[ConfigError]) -> &ConfigError {
    assert_eq!(errs.len(), 1, "expected exactly one error, got: {errs:#?}");
    &errs[0]
}

#[test]
fn unknown_top_level_key_names_file_line_and_key() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         tragets: []\n",
    );
    check(
        only(&errs),
        &path,
        4,
        "tragets",
        &["unknown key `tragets`", "targets"],
    );
    assert_eq!(errs[0].column, 1);
}

#[test]
fn unknown_key_in_a_target_names_the_target_path() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20 - name: web\n\
         \x20   url: http://127.0.0.1:8000/\n\
         \x20   timout: 2s\n",
    );
    let e = only(&errs);
    check(
        e,
        &path,
        6,
        "targets[1].timout",
        &["unknown key `timout`", "timeout"],
    );
    assert_eq!(e.column, 5);
}

#[test]
fn unknown_key_in_expect_names_the_expect_path() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   expect:\n\
         \x20     status: [200]\n\
         \x20     jsonn: { status: healthy }\n",
    );
    check(
        only(&errs),
        &path,
        6,
        "targets[0].expect.jsonn",
        &["unknown key `jsonn`", "json", "max_latency"],
    );
    // Flow style: the same key on one line is found by its column.
    let errs = load_str(
        "flow.yaml",
        "targets:\n  - { name: api, url: 'http://127.0.0.1:8000/', expect: { status: [200], bogus: 1 } }\n",
    )
    .expect_err("unknown key")
    .0;
    check(
        only(&errs),
        Path::new("flow.yaml"),
        2,
        "targets[0].expect.bogus",
        &["unknown key `bogus`"],
    );
}

#[test]
fn wrong_yaml_type_names_the_field() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   timeout: [2s]\n",
    );
    check(only(&errs), &path, 4, "targets[0].timeout", &[]);
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   expect:\n\
         \x20     status: [200, { a: 1 }]\n",
    );
    check(
        only(&errs),
        &path,
        5,
        "targets[0].expect.status[1]",
        &["status code", "2xx"],
    );
}

#[test]
fn duplicate_names_in_one_file_point_at_the_second_and_name_the_first() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20 - url: http://127.0.0.1:8001/health\n\
         \x20   name: api\n",
    );
    let e = only(&errs);
    check(
        e,
        &path,
        5,
        "targets[1].name",
        &[
            "duplicate name `api`",
            &format!("first defined at {}:2", path.display()),
        ],
    );
}

#[test]
fn duplicate_failover_group_and_target_names_clash() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: gw\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         failover:\n\
         \x20 - name: gw\n\
         \x20   instances: [http://127.0.0.1:8000, http://127.0.0.1:8001]\n",
    );
    check(
        only(&errs),
        &path,
        5,
        "failover[0].name",
        &["duplicate name `gw`", ":2)"],
    );
}

#[test]
fn duplicate_names_across_two_files_name_the_first_file() {
    let dir = TempDir::new().expect("temp dir");
    let first = write(
        dir.path(),
        "10-first.yaml",
        "# first file\n\
         targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n",
    );
    let second = write(
        dir.path(),
        "20-second.yaml",
        "targets:\n\
         \x20 - name: other\n\
         \x20   url: http://127.0.0.1:8000/\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8001/health\n",
    );
    let errs = errors(dir.path());
    check(
        only(&errs),
        &second,
        4,
        "targets[1].name",
        &[
            "duplicate name `api`",
            &format!("first defined at {}:3", first.display()),
        ],
    );
}

#[test]
fn timeout_not_shorter_than_interval_is_rejected() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: ok\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20 - name: equal\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   interval: 2s\n\
         \x20   timeout: 2s\n\
         \x20 - name: longer\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   timeout: 3s\n\
         \x20   interval: 1s\n",
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    check(
        &errs[0],
        &path,
        7,
        "targets[1].timeout",
        &["timeout 2s must be shorter than interval 2s"],
    );
    check(
        &errs[1],
        &path,
        10,
        "targets[2].timeout",
        &["timeout 3s must be shorter than interval 1s"],
    );
    assert_eq!(errs[1].column, 14);
}

#[test]
fn inherited_timeout_not_shorter_than_interval_points_at_the_target() {
    let (_d, path, errs) = bad_file(
        "defaults:\n\
         \x20 timeout: 5s\n\
         targets:\n\
         \x20 - name: fast\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   interval: 2s\n",
    );
    check(
        only(&errs),
        &path,
        4,
        "targets[0].timeout",
        &["timeout 5s must be shorter than interval 2s"],
    );
}

#[test]
fn bad_urls_are_rejected_with_the_reason() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: not-a-url\n\
         \x20   url: localhost:8000/health\n\
         \x20 - name: ftp\n\
         \x20   url: ftp://127.0.0.1/file\n\
         \x20 - name: spaces\n\
         \x20   url: not a url\n",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    check(
        &errs[0],
        &path,
        3,
        "targets[0].url",
        &[
            "localhost:8000/health",
            "scheme `localhost` is not supported",
        ],
    );
    check(
        &errs[1],
        &path,
        5,
        "targets[1].url",
        &["scheme `ftp` is not supported", "http or https"],
    );
    check(&errs[2], &path, 7, "targets[2].url", &["not a valid URL"]);
}

#[test]
fn bad_regex_is_rejected() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   expect:\n\
         \x20     body: \"ok(\"\n",
    );
    check(
        only(&errs),
        &path,
        5,
        "targets[0].expect.body",
        &["invalid regular expression"],
    );
    assert!(!errs[0].message.contains('\n'), "one line: {}", errs[0]);
}

#[test]
fn bad_duration_strings_are_rejected() {
    let (_d, path, errs) = bad_file(
        "defaults:\n\
         \x20 interval: often\n\
         targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   timeout: 5 parsecs\n\
         \x20   expect:\n\
         \x20     max_latency: fast\n",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    check(
        &errs[0],
        &path,
        2,
        "defaults.interval",
        &["`often` is not a duration", "500ms"],
    );
    check(
        &errs[1],
        &path,
        6,
        "targets[0].timeout",
        &["`5 parsecs` is not a duration"],
    );
    check(
        &errs[2],
        &path,
        8,
        "targets[0].expect.max_latency",
        &["`fast` is not a duration"],
    );
}

#[test]
fn bad_status_values_are_rejected() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   expect:\n\
         \x20     status:\n\
         \x20       - 200\n\
         \x20       - \"6xx\"\n\
         \x20       - 700\n\
         \x20       - \"299-200\"\n\
         \x20       - teapot\n",
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    check(
        &errs[0],
        &path,
        7,
        "targets[0].expect.status[1]",
        &["600", "100–599"],
    );
    check(
        &errs[1],
        &path,
        8,
        "targets[0].expect.status[2]",
        &["700", "100–599"],
    );
    check(
        &errs[2],
        &path,
        9,
        "targets[0].expect.status[3]",
        &["reversed"],
    );
    check(
        &errs[3],
        &path,
        10,
        "targets[0].expect.status[4]",
        &["`teapot` is not a status code"],
    );
    let errs = load_str(
        "empty.yaml",
        "targets:\n  - name: api\n    url: http://127.0.0.1/\n    expect:\n      status: []\n",
    )
    .expect_err("empty status list")
    .0;
    check(
        only(&errs),
        Path::new("empty.yaml"),
        5,
        "targets[0].expect.status",
        &["empty"],
    );
}

#[test]
fn bad_method_is_rejected() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   method: \"GE T\"\n\
         \x20 - name: api2\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   method: PO$T\n",
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    check(
        &errs[0],
        &path,
        4,
        "targets[0].method",
        &["`GE T` is not an HTTP method"],
    );
    check(
        &errs[1],
        &path,
        7,
        "targets[1].method",
        &["`PO$T` is not an HTTP method"],
    );
    // Lower case is fine and normalised.
    let c = good("targets:\n  - name: p\n    url: http://127.0.0.1/\n    method: post\n");
    assert_eq!(http(&c.targets[0]).method, Method::POST);
}

#[test]
fn reserved_and_invalid_label_names_are_rejected() {
    let (_d, path, errs) = bad_file(
        "defaults:\n\
         \x20 labels:\n\
         \x20   instance: x\n\
         targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   labels:\n\
         \x20     team: sre\n\
         \x20     target: mine\n\
         \x20     9lives: cat\n\
         \x20     __meta: x\n\
         \x20     has-dash: x\n",
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    let by_field = |f: &str| {
        errs.iter()
            .find(|e| e.field == f)
            .unwrap_or_else(|| panic!("no error for {f}: {errs:#?}"))
    };
    check(
        by_field("defaults.labels.instance"),
        &path,
        3,
        "defaults.labels.instance",
        &["label `instance` is reserved"],
    );
    check(
        by_field("targets[0].labels.target"),
        &path,
        9,
        "targets[0].labels.target",
        &["label `target` is reserved"],
    );
    check(
        by_field("targets[0].labels.9lives"),
        &path,
        10,
        "targets[0].labels.9lives",
        &["not a valid Prometheus label name"],
    );
    check(
        by_field("targets[0].labels.__meta"),
        &path,
        11,
        "targets[0].labels.__meta",
        &["not a valid Prometheus label name"],
    );
    check(
        by_field("targets[0].labels.has-dash"),
        &path,
        12,
        "targets[0].labels.has-dash",
        &["not a valid Prometheus label name"],
    );
}

#[test]
fn body_and_body_json_together_are_rejected() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: predict\n\
         \x20   url: http://127.0.0.1:8000/predict\n\
         \x20   method: POST\n\
         \x20   body_json: { data: [[1, 2]] }\n\
         \x20   body: '{\"data\": [[1, 2]]}'\n",
    );
    check(
        only(&errs),
        &path,
        6,
        "targets[0].body",
        &["either `body` or `body_json`"],
    );
}

#[test]
fn missing_name_is_rejected() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20 - url: http://127.0.0.1:8000/other\n\
         \x20   interval: 5s\n",
    );
    check(
        only(&errs),
        &path,
        4,
        "targets[1].name",
        &["missing", "name"],
    );
}

#[test]
fn missing_url_is_rejected() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   interval: 5s\n",
    );
    check(only(&errs), &path, 2, "targets[0].url", &["missing", "url"]);
}

#[test]
fn yaml_syntax_errors_report_the_line() {
    // An unclosed flow sequence: reported as such, not as a type error.
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: [http://127.0.0.1:8000/health\n",
    );
    let e = only(&errs);
    check(e, &path, 3, "", &["unclosed bracket"]);
    assert_eq!(e.column, 10);
    // Bad indentation.
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20  interval: 5s\n",
    );
    let e = only(&errs);
    assert_eq!(e.file, path);
    assert_eq!(e.line, 4, "{e}");
    assert!(!e.message.is_empty());
    // A key twice in one mapping.
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   url: http://127.0.0.1:8001/health\n",
    );
    check(only(&errs), &path, 4, "", &["duplicate", "url"]);
    // The message is ours: no repeated location, no snippet.
    for e in &errs {
        assert!(!e.message.contains("line 4"), "{e}");
        assert!(!e.message.contains('\n'), "{e}");
    }
}

#[test]
fn an_empty_directory_is_an_error() {
    let dir = TempDir::new().expect("temp dir");
    write(dir.path(), "notes.txt", "not a config");
    let errs = errors(dir.path());
    let e = only(&errs);
    assert_eq!(e.file, dir.path());
    assert_eq!(e.line, 0);
    assert!(e.message.contains("no *.yaml or *.yml file"), "{e}");
}

#[test]
fn a_nonexistent_path_is_an_error() {
    let dir = TempDir::new().expect("temp dir");
    let missing = dir.path().join("nope.yaml");
    let errs = errors(&missing);
    let e = only(&errs);
    assert_eq!(e.file, missing);
    assert_eq!(e.line, 0);
    assert!(e.message.contains("cannot open the config"), "{e}");
}

#[test]
fn several_errors_in_one_file_are_all_reported() {
    let (_d, path, errs) = bad_file(
        "defaults:\n\
         \x20 down_after: 0\n\
         targets:\n\
         \x20 - name: api\n\
         \x20   url: ftp://127.0.0.1/\n\
         \x20   timeout: soon\n\
         \x20 - name: web\n\
         \x20   url: http://127.0.0.1:8000/\n\
         \x20   method: \"G T\"\n\
         \x20   expect:\n\
         \x20     body: \"[\"\n\
         \x20     status: [\"9xx\"]\n\
         \x20 - url: http://127.0.0.1:8000/x\n\
         failover:\n\
         \x20 - name: gw\n\
         \x20   instances: []\n\
         \x20   failback: sometimes\n",
    );
    let want: &[(u64, &str)] = &[
        (2, "defaults.down_after"),
        (5, "targets[0].url"),
        (6, "targets[0].timeout"),
        (9, "targets[1].method"),
        (11, "targets[1].expect.body"),
        (12, "targets[1].expect.status[0]"),
        (13, "targets[2].name"),
        (15, "failover[0].instances"),
        (17, "failover[0].failback"),
    ];
    for (line, field) in want {
        let e = errs
            .iter()
            .find(|e| e.field == *field)
            .unwrap_or_else(|| panic!("no error for {field}: {errs:#?}"));
        check(e, &path, *line, field, &[]);
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn the_shipped_probes_directory_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes");
    let c = load(&dir).unwrap_or_else(|e| panic!("probes/ should load:\n{e}"));
    let names: Vec<&str> = c.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gateway-health",
            "gateway-predict",
            "inference-gateway/0",
            "inference-gateway/1"
        ]
    );
    assert_eq!(c.failover.len(), 1);
    let g = &c.failover[0];
    assert_eq!(g.name, "inference-gateway");
    assert_eq!(g.instances.len(), 2);
    assert_eq!(g.instances[0].target, "inference-gateway/0");
    assert_eq!(g.instances[1].authority, "127.0.0.1:8001");
    assert_eq!(
        g.proxy.as_ref().map(|p| p.listen),
        Some("127.0.0.1:8080".parse().expect("addr"))
    );
    let check1 = &c.targets[3];
    assert_eq!(http(check1).url.full, "http://127.0.0.1:8001/health");
    assert_eq!(check1.interval, Duration::from_millis(500));
    assert_eq!(check1.timeout, Duration::from_millis(300));
    let predict = &c.targets[1];
    assert_eq!(http(predict).method, Method::POST);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&http(predict).body).expect("JSON body"),
        serde_json::json!({ "data": [[1, 2, 3, 4]] })
    );
    assert_eq!(
        http(predict)
            .headers
            .get("content-type")
            .map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    assert_eq!(
        http(predict).expect.max_latency,
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        c.targets[0].labels.get("service").map(String::as_str),
        Some("inference-gateway")
    );
    assert!(c.sources.iter().all(|s| s.starts_with(&dir)));
}

#[test]
fn defaults_apply_and_target_overrides_win() {
    let c = good(
        "defaults:\n\
         \x20 interval: 30s\n\
         \x20 timeout: 3s\n\
         \x20 keep_alive: true\n\
         \x20 body_limit: 64KiB\n\
         \x20 down_after: 5\n\
         \x20 headers:\n\
         \x20   Authorization: Bearer token\n\
         \x20   X-Team: sre\n\
         \x20 labels:\n\
         \x20   team: sre\n\
         \x20   env: prod\n\
         targets:\n\
         \x20 - name: inherits\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20 - name: overrides\n\
         \x20   url: http://127.0.0.1:8000/other\n\
         \x20   interval: 10s\n\
         \x20   timeout: 1s\n\
         \x20   keep_alive: false\n\
         \x20   body_limit: 1024\n\
         \x20   down_after: 2\n\
         \x20   up_after: 4\n\
         \x20   headers:\n\
         \x20     X-Team: ml\n\
         \x20   labels:\n\
         \x20     env: staging\n",
    );
    let a = &c.targets[0];
    assert_eq!(a.name, "inherits");
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.timeout, Duration::from_secs(3));
    assert!(http(a).keep_alive);
    assert_eq!(http(a).body_limit, 64 * 1024);
    assert_eq!(a.down_after, 5);
    assert_eq!(a.up_after, watchfire::config::DEFAULT_UP_AFTER);
    assert_eq!(http(a).headers["authorization"], "Bearer token");
    assert_eq!(http(a).headers["x-team"], "sre");
    assert_eq!(a.labels.get("team").map(String::as_str), Some("sre"));
    assert_eq!(a.labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(a.origin.line, 14);
    assert_eq!(http(a).method, Method::GET);

    let b = &c.targets[1];
    assert_eq!(b.interval, Duration::from_secs(10));
    assert_eq!(b.timeout, Duration::from_secs(1));
    assert!(!http(b).keep_alive);
    assert_eq!(http(b).body_limit, 1024);
    assert_eq!(b.down_after, 2);
    assert_eq!(b.up_after, 4);
    assert_eq!(http(b).headers["x-team"], "ml");
    assert_eq!(http(b).headers.get_all("x-team").iter().count(), 1);
    assert_eq!(http(b).headers["authorization"], "Bearer token");
    assert_eq!(b.labels.get("env").map(String::as_str), Some("staging"));
    assert_eq!(b.labels.get("team").map(String::as_str), Some("sre"));

    // Without defaults: the built-in ones; the timeout stays below a short interval.
    let c = good(
        "targets:\n\
         \x20 - name: plain\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20 - name: quick\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   interval: 1s\n",
    );
    let p = &c.targets[0];
    assert_eq!(p.interval, watchfire::config::DEFAULT_INTERVAL);
    assert_eq!(p.timeout, watchfire::config::DEFAULT_TIMEOUT);
    assert_eq!(http(p).body_limit, DEFAULT_BODY_LIMIT);
    assert!(!http(p).keep_alive);
    assert!(p.labels.is_empty());
    assert_eq!(http(p).expect.status, vec![(200, 299)]);
    assert!(c.targets[1].timeout < c.targets[1].interval);
}

#[test]
fn status_classes_and_ranges_parse() {
    let c = good(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   expect:\n\
         \x20     status: [200, \"3xx\", \"400-404\", \"418\", \"5XX\"]\n",
    );
    let e = &http(&c.targets[0]).expect;
    assert_eq!(
        e.status,
        vec![(200, 200), (300, 399), (400, 404), (418, 418), (500, 599)]
    );
    for ok in [200, 301, 399, 400, 404, 418, 503] {
        assert!(e.status_ok(ok), "{ok} should be accepted");
    }
    for bad in [201, 299, 405, 417, 600] {
        assert!(!e.status_ok(bad), "{bad} should be rejected");
    }
}

#[test]
fn a_directory_of_two_files_merges_in_name_order() {
    let dir = TempDir::new().expect("temp dir");
    // Written in reverse order: the load order is by name, not creation.
    let b = write(
        dir.path(),
        "b.yml",
        "targets:\n\
         \x20 - name: b-one\n\
         \x20   url: http://127.0.0.1:8001/health\n",
    );
    let a = write(
        dir.path(),
        "a.yaml",
        "defaults:\n\
         \x20 labels:\n\
         \x20   team: a\n\
         targets:\n\
         \x20 - name: a-one\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20 - name: a-two\n\
         \x20   url: http://127.0.0.1:8000/other\n",
    );
    write(dir.path(), "c.txt", "not: [yaml");
    let c = load(dir.path()).unwrap_or_else(|e| panic!("should load:\n{e}"));
    let names: Vec<&str> = c.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a-one", "a-two", "b-one"]);
    assert_eq!(c.sources, vec![a.clone(), b.clone()]);
    // Defaults apply to their own file only.
    assert_eq!(
        c.targets[1].labels.get("team").map(String::as_str),
        Some("a")
    );
    assert!(c.targets[2].labels.is_empty());
    assert_eq!(c.targets[0].origin.file, a);
    assert_eq!(c.targets[2].origin.file, b);
    assert_eq!(c.targets[2].origin.line, 2);
}

#[test]
fn same_probe_ignores_where_a_target_is_written_and_nothing_else() {
    let one = "targets:\n\
         \x20 - name: t\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         \x20   expect: {status: [200], body: 'ok$'}\n";
    let a = good(one);
    // The same target, two lines further down: where it is written is not compared.
    let moved = good(&format!("# a comment\n# another\n{one}"));
    assert_ne!(a.targets[0].origin.line, moved.targets[0].origin.line);
    assert!(a.targets[0].same_probe(&moved.targets[0]));
    // Anything that changes the probe (here: the body regexp, compared by its source) is a
    // different probe.
    let changed = good(&one.replace("ok$", "ok"));
    assert!(!a.targets[0].same_probe(&changed.targets[0]));
    let changed = good(&format!("{one}\x20   keep_alive: true\n"));
    assert!(!a.targets[0].same_probe(&changed.targets[0]));
}

#[test]
fn cli_check_lists_every_error_and_exits_1() {
    let (_d, path, errs) = bad_file(
        "targets:\n\
         \x20 - name: api\n\
         \x20   url: ftp://127.0.0.1/\n\
         \x20   timeout: 20s\n\
         \x20 - name: api\n\
         \x20   url: http://127.0.0.1:8000/\n\
         \x20   labels:\n\
         \x20     job: x\n",
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    let out = Command::new(env!("CARGO_BIN_EXE_watchfire"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run watchfire check");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let lines: Vec<&str> = stdout.lines().collect();
    for e in &errs {
        let line = format!(
            "{}:{}:{}: {}: {}",
            path.display(),
            e.line,
            e.column,
            e.field,
            e.message
        );
        assert!(e.line > 0 && e.column > 0, "{e:?}");
        assert!(
            lines.contains(&line.as_str()),
            "stdout should list {line:?}:\n{stdout}"
        );
    }
    let expected_fields = [
        (3, "targets[0].url"),
        (4, "targets[0].timeout"),
        (5, "targets[1].name"),
        (8, "targets[1].labels.job"),
    ];
    for (line, field) in expected_fields {
        let prefix = format!("{}:{line}:", path.display());
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(&format!(": {field}: "))),
            "stdout should list {field} at line {line}:\n{stdout}"
        );
    }
    assert!(stdout.contains("4 error(s)"), "{stdout}");
}

#[test]
fn cli_check_of_the_shipped_probes_exits_0() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes");
    let out = Command::new(env!("CARGO_BIN_EXE_watchfire"))
        .arg("check")
        .arg("--config")
        .arg(&dir)
        .output()
        .expect("run watchfire check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout.contains("OK (4 targets, 1 failover groups"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// Module targets: `target:` with `module:`, any prober kind

const TCP_MODULE: &str =
    "modules:\n  tcp_connect:\n    prober: tcp\n  http_2xx:\n    prober: http\n";

/// The one error whose field is `field`.
#[track_caller]
fn error_at<'a>(errs: &'a [ConfigError], field: &str) -> &'a ConfigError {
    errs.iter()
        .find(|e| e.field == field)
        .unwrap_or_else(|| panic!("no error at {field}: {errs:#?}"))
}

#[test]
fn a_module_target_of_any_kind_loads_as_a_module_check() {
    let c = good(&format!(
        "targets:\n\
         \x20 - name: db\n\
         \x20   module: tcp_connect\n\
         \x20   target: 127.0.0.1:5432\n\
         \x20 - name: api\n\
         \x20   module: http_2xx\n\
         \x20   url: http://127.0.0.1:8000/health\n\
         {TCP_MODULE}"
    ));
    let db = &c.targets[0];
    assert_eq!(
        db.check,
        Check::Module {
            module: "tcp_connect".into(),
            target: "127.0.0.1:5432".into()
        }
    );
    assert_eq!(db.target_text(), "127.0.0.1:5432");
    assert_eq!(db.module(), Some("tcp_connect"));
    assert!(db.http().is_none());
    assert_eq!(c.targets[1].module(), Some("http_2xx"));
    assert_eq!(c.targets[1].target_text(), "http://127.0.0.1:8000/health");
}

#[test]
fn each_field_a_module_makes_meaningless_is_an_error_naming_the_field_and_the_module() {
    let (_d, path, errs) = bad_file(&format!(
        "targets:\n\
         \x20 - name: db\n\
         \x20   module: tcp_connect\n\
         \x20   target: 127.0.0.1:5432\n\
         \x20   method: POST\n\
         \x20   headers: {{ X-A: b }}\n\
         \x20   body: hello\n\
         \x20   expect: {{ status: [200] }}\n\
         \x20   keep_alive: true\n\
         \x20   tls: {{ insecure_skip_verify: true }}\n\
         \x20   body_limit: 1KiB\n\
         \x20 - name: api\n\
         \x20   module: http_2xx\n\
         \x20   url: http://127.0.0.1:8000/\n\
         \x20   body_json: {{ a: 1 }}\n\
         {TCP_MODULE}"
    ));
    let cases = [
        ("targets[0].method", 5),
        ("targets[0].headers", 6),
        ("targets[0].body", 7),
        ("targets[0].expect", 8),
        ("targets[0].keep_alive", 9),
        ("targets[0].tls", 10),
        ("targets[0].body_limit", 11),
    ];
    for (field, line) in cases {
        let key = field.rsplit('.').next().expect("a key");
        let head = format!("`{key}` has no effect with `module: tcp_connect` (prober tcp)");
        check(error_at(&errs, field), &path, line, field, &[&head]);
    }
    check(
        error_at(&errs, "targets[0].expect"),
        &path,
        8,
        "targets[0].expect",
        &["put the checks in the module"],
    );
    check(
        error_at(&errs, "targets[1].body_json"),
        &path,
        15,
        "targets[1].body_json",
        &["`body_json` has no effect with `module: http_2xx` (prober http)"],
    );
    assert_eq!(errs.len(), 8, "{errs:#?}");
}

#[test]
fn fields_inherited_from_defaults_do_not_apply_to_a_module_target() {
    let c = good(&format!(
        "defaults:\n\
         \x20 headers: {{ Authorization: Bearer x }}\n\
         \x20 keep_alive: true\n\
         \x20 body_limit: 64KiB\n\
         \x20 tls: {{ insecure_skip_verify: true }}\n\
         targets:\n\
         \x20 - name: db\n\
         \x20   module: tcp_connect\n\
         \x20   target: 127.0.0.1:5432\n\
         {TCP_MODULE}"
    ));
    assert_eq!(c.targets[0].module(), Some("tcp_connect"));
}

#[test]
fn url_and_target_rules_name_the_field_at_fault() {
    let (_d, path, errs) = bad_file(&format!(
        "targets:\n\
         \x20 - name: a\n\
         \x20   target: 127.0.0.1:5432\n\
         \x20 - name: b\n\
         \x20   module: tcp_connect\n\
         \x20   url: http://127.0.0.1:1/\n\
         \x20   target: 127.0.0.1:1\n\
         \x20 - name: c\n\
         \x20   module: tcp_connect\n\
         \x20 - name: d\n\
         \x20   module: tcp_connect\n\
         \x20   url: http://127.0.0.1:1/\n\
         \x20 - name: e\n\
         \x20   module: tcp_connect\n\
         \x20   target: http://127.0.0.1:1/\n\
         \x20 - name: f\n\
         \x20   module: nope\n\
         \x20   target: 127.0.0.1:1\n\
         {TCP_MODULE}"
    ));
    check(
        error_at(&errs, "targets[0].target"),
        &path,
        3,
        "targets[0].target",
        &["`target` needs a `module`"],
    );
    check(
        error_at(&errs, "targets[1].target"),
        &path,
        7,
        "targets[1].target",
        &["either `url`", "or `target`, not both"],
    );
    check(
        error_at(&errs, "targets[2].target"),
        &path,
        8,
        "targets[2].target",
        &["missing", "`module: tcp_connect` needs a `target`"],
    );
    check(
        error_at(&errs, "targets[3].module"),
        &path,
        11,
        "targets[3].module",
        &["tcp prober", "write what it probes as `target`"],
    );
    check(
        error_at(&errs, "targets[4].target"),
        &path,
        15,
        "targets[4].target",
        &["tcp prober of `module: tcp_connect`", "host[:port]"],
    );
    check(
        error_at(&errs, "targets[5].module"),
        &path,
        17,
        "targets[5].module",
        &["no module named `nope`"],
    );
    assert_eq!(errs.len(), 6, "{errs:#?}");
}
