//! Checking `failover:` groups: instances, their health check, thresholds, policy, proxy, hooks.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Origin};

use super::fields::{body, duration, expect, method, positive, timing, valid_name, Defaults};
use super::raw::{RawCheck, RawFailoverGroup, RawHooks, RawProxy};
use super::{
    Check, Dampening, ExecHook, Expect, FailoverGroup, Hooks, HttpCheck, Instance, ProbeUrl,
    ProxyConfig, TargetSpec, Uncompared, WebhookHook, DEFAULT_BODY_LIMIT, DEFAULT_DOWN_AFTER,
    DEFAULT_UP_AFTER,
};

/// Default minimum time up before failback.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(5);
/// Default minimum time between voluntary switches.
pub const DEFAULT_MIN_SWITCH_INTERVAL: Duration = Duration::from_secs(2);
/// Default window in which switches lengthen the hold before a failback.
pub const DEFAULT_DAMPENING_WINDOW: Duration = Duration::from_secs(300);
/// Default longest hold that dampening makes.
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_secs(300);
/// Default bound on requests in flight through a proxy.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default bound on connecting to an instance.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default bound on an instance's response head.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `Retry-After` when no instance is up.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Default bound on an exec hook.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one webhook attempt.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default webhook retries.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 3;

/// Checks one group; returns it with the health-check targets of its instances.
pub(super) fn check_group(
    diag: &mut Diagnostics,
    d: &Defaults,
    g: &Spanned<RawFailoverGroup>,
    field: &str,
) -> Option<(FailoverGroup, Vec<TargetSpec>)> {
    let before = diag.count();
    let r = &g.value;
    let name = group_name(diag, g, field);
    if r.instances.is_empty() {
        diag.error(
            g,
            format!("{field}.instances"),
            "a failover group needs instances: base URLs, primary first, then backups",
        );
    }
    let hc = health_check(diag, g, field);
    let p = policy(diag, r, field);
    let proxy = r
        .proxy
        .as_ref()
        .and_then(|p| proxy(diag, &p.value, &format!("{field}.proxy")));
    let hooks = r
        .hooks
        .as_ref()
        .map(|h| hooks(diag, &h.value, &format!("{field}.hooks")))
        .unwrap_or_default();

    let mut instances = Vec::new();
    let mut checks = Vec::new();
    let mut seen = HashSet::new();
    for (i, inst) in r.instances.iter().enumerate() {
        let ifield = format!("{field}.instances[{i}]");
        let Some((base, parsed)) = instance_base(diag, inst, &ifield, proxy.is_some(), &mut seen)
        else {
            continue;
        };
        let path = &hc.path;
        let url = match ProbeUrl::parse(&format!("{base}{path}")) {
            Ok(u) => u,
            Err(m) => {
                diag.error(inst, ifield, format!("`{}{path}`: {m}", inst.value));
                continue;
            }
        };
        let target = format!("{name}/{i}");
        instances.push(Instance {
            base: base.to_string(),
            authority: format!("{}:{}", parsed.host, parsed.port),
            host: parsed.host,
            port: parsed.port,
            target: target.clone(),
        });
        checks.push(TargetSpec {
            name: target,
            check: Check::Http(std::sync::Arc::new(HttpCheck {
                url,
                method: hc.method.clone(),
                headers: hc.headers.clone(),
                body: hc.body.clone(),
                expect: hc.expect.clone(),
                keep_alive: false,
                body_limit: d.body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
                tls: d.tls.clone().unwrap_or_default(),
            })),
            interval: hc.interval,
            timeout: hc.timeout,
            jitter: Duration::ZERO,
            labels: BTreeMap::from([
                ("group".to_string(), name.clone()),
                ("instance_url".to_string(), base.to_string()),
            ]),
            down_after: p.down_after,
            up_after: p.up_after,
            origin: Uncompared(Origin {
                file: diag.file().to_path_buf(),
                line: inst.referenced.line(),
            }),
        });
    }
    if diag.count() > before {
        return None;
    }
    Some((
        FailoverGroup {
            name,
            instances,
            auto_failback: p.auto_failback,
            hold: p.hold,
            min_switch_interval: p.min_switch_interval,
            dampening: p.dampening,
            proxy,
            hooks,
        },
        checks,
    ))
}

/// A group's thresholds and switching policy.
struct Policy {
    down_after: u32,
    up_after: u32,
    auto_failback: bool,
    hold: Duration,
    min_switch_interval: Duration,
    dampening: Dampening,
}

fn policy(diag: &mut Diagnostics, r: &RawFailoverGroup, field: &str) -> Policy {
    let down_after = r
        .down_after
        .as_ref()
        .and_then(|v| positive(diag, v, &format!("{field}.down_after")))
        .unwrap_or(DEFAULT_DOWN_AFTER);
    let up_after = r
        .up_after
        .as_ref()
        .and_then(|v| positive(diag, v, &format!("{field}.up_after")))
        .unwrap_or(DEFAULT_UP_AFTER);
    let auto_failback = match &r.failback {
        None => true,
        Some(f) if f.value == "auto" => true,
        Some(f) if f.value == "manual" => false,
        Some(f) => {
            let msg = format!("`{}`: use `auto` or `manual`", f.value);
            diag.error(f, format!("{field}.failback"), msg);
            true
        }
    };
    let hold = duration(diag, &r.hold, &format!("{field}.hold")).unwrap_or(DEFAULT_HOLD);
    let min_switch_interval = duration(
        diag,
        &r.min_switch_interval,
        &format!("{field}.min_switch_interval"),
    )
    .unwrap_or(DEFAULT_MIN_SWITCH_INTERVAL);
    Policy {
        down_after,
        up_after,
        auto_failback,
        hold,
        min_switch_interval,
        dampening: dampening(diag, r, hold, field),
    }
}

/// `dampening:` of a group whose base hold is `hold`.
fn dampening(
    diag: &mut Diagnostics,
    r: &RawFailoverGroup,
    hold: Duration,
    field: &str,
) -> Dampening {
    let mut d = Dampening {
        window: DEFAULT_DAMPENING_WINDOW,
        max_hold: DEFAULT_MAX_HOLD.max(hold),
    };
    let Some(raw) = &r.dampening else {
        return d;
    };
    let raw = &raw.value;
    if let Some(w) = duration(diag, &raw.window, &format!("{field}.dampening.window")) {
        d.window = w;
    }
    if let Some(m) = duration(diag, &raw.max_hold, &format!("{field}.dampening.max_hold")) {
        if m < hold {
            let at = raw.max_hold.as_ref().expect("parsed from it");
            let msg = format!(
                "`{}` is shorter than the group's `hold` ({}): dampening only lengthens the hold",
                at.value,
                humantime::format_duration(hold)
            );
            diag.error(at, format!("{field}.dampening.max_hold"), msg);
        }
        d.max_hold = m.max(hold);
    }
    d
}

/// The group's name; empty (with a problem recorded) when missing or unusable.
fn group_name(diag: &mut Diagnostics, g: &Spanned<RawFailoverGroup>, field: &str) -> String {
    match &g.value.name {
        Some(n) if valid_name(&n.value) && !n.value.contains('/') => n.value.clone(),
        Some(n) => {
            let msg = format!(
                "`{}` is not a usable group name: letters, digits, `-`, `_`, `.`",
                n.value
            );
            diag.error(n, format!("{field}.name"), msg);
            String::new()
        }
        None => {
            diag.error(
                g,
                format!("{field}.name"),
                "missing: every failover group needs a name",
            );
            String::new()
        }
    }
}

/// The health check every instance of a group shares (`check:`), with its defaults.
struct HealthCheck {
    path: String,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    interval: Duration,
    timeout: Duration,
    expect: Expect,
}

fn health_check(diag: &mut Diagnostics, g: &Spanned<RawFailoverGroup>, field: &str) -> HealthCheck {
    let empty = RawCheck::default();
    let check = g.value.check.as_ref().map(|c| &c.value).unwrap_or(&empty);
    let path = check
        .path
        .as_ref()
        .map(|p| p.value.clone())
        .unwrap_or_else(|| "/health".into());
    if let Some(p) = check.path.as_ref().filter(|p| !p.value.starts_with('/')) {
        diag.error(p, format!("{field}.check.path"), "must start with `/`");
    }
    let method = method(diag, &check.method, &format!("{field}.check.method"));
    let mut headers = HeaderMap::new();
    let body = body(
        diag,
        &check.body,
        &check.body_json,
        &format!("{field}.check"),
        &mut headers,
    );
    let (interval, timeout, _) = timing(
        diag,
        &Defaults::default(),
        &check.interval,
        &check.timeout,
        &None,
        g,
        &format!("{field}.check"),
    );
    let expect = expect(diag, &check.expect, &format!("{field}.check.expect"));
    HealthCheck {
        path,
        method,
        headers,
        body,
        interval,
        timeout,
        expect,
    }
}

/// One instance's base URL (without a trailing slash) and its parse, or `None` with a problem
/// recorded: not a URL, a path, https behind the proxy (`plain_only`), or seen before.
fn instance_base<'a>(
    diag: &mut Diagnostics,
    inst: &'a Spanned<String>,
    ifield: &str,
    plain_only: bool,
    seen: &mut HashSet<String>,
) -> Option<(&'a str, ProbeUrl)> {
    let base = inst.value.trim_end_matches('/');
    let parsed = match ProbeUrl::parse(base) {
        Ok(u) => u,
        Err(m) => {
            diag.error(inst, ifield, format!("`{}`: {m}", inst.value));
            return None;
        }
    };
    let problem = if parsed.path_and_query != "/" {
        format!(
            "`{}`: an instance is a base URL (scheme, host, port) without a path",
            inst.value
        )
    } else if plain_only && parsed.tls {
        "the failover proxy forwards plain HTTP: use an http:// instance".to_string()
    } else if !seen.insert(format!("{}:{}", parsed.host, parsed.port)) {
        format!(
            "duplicate instance `{}:{}`: each instance may appear once",
            parsed.host, parsed.port
        )
    } else {
        return Some((base, parsed));
    };
    diag.error(inst, ifield, problem);
    None
}

fn proxy(diag: &mut Diagnostics, p: &RawProxy, field: &str) -> Option<ProxyConfig> {
    let listen = match p.listen.value.parse::<std::net::SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let msg = format!("`{}` is not an address like 127.0.0.1:8080", p.listen.value);
            diag.error(&p.listen, format!("{field}.listen"), msg);
            None
        }
    };
    let max_in_flight = match &p.max_in_flight {
        Some(v) if v.value == 0 => {
            diag.error(v, format!("{field}.max_in_flight"), "must be at least 1");
            DEFAULT_MAX_IN_FLIGHT
        }
        Some(v) => v.value,
        None => DEFAULT_MAX_IN_FLIGHT,
    };
    let connect_timeout = duration(
        diag,
        &p.connect_timeout,
        &format!("{field}.connect_timeout"),
    )
    .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let timeout =
        duration(diag, &p.timeout, &format!("{field}.timeout")).unwrap_or(DEFAULT_PROXY_TIMEOUT);
    let retry_after = duration(diag, &p.retry_after, &format!("{field}.retry_after"))
        .unwrap_or(DEFAULT_RETRY_AFTER);
    let preserve_host = match &p.host {
        None => true,
        Some(h) if h.value == "preserve" => true,
        Some(h) if h.value == "instance" => false,
        Some(h) => {
            let msg = format!("`{}`: use `preserve` or `instance`", h.value);
            diag.error(h, format!("{field}.host"), msg);
            true
        }
    };
    Some(ProxyConfig {
        listen: listen?,
        max_in_flight,
        connect_timeout,
        timeout,
        preserve_host,
        retry_after,
        web_config: p.web_config.as_ref().is_some_and(|w| w.value),
    })
}

fn hooks(diag: &mut Diagnostics, h: &RawHooks, field: &str) -> Hooks {
    let exec = h.exec.as_ref().and_then(|e| {
        let f = format!("{field}.exec.command");
        let Some(program) = e.value.command.first() else {
            diag.error(
                e,
                f,
                "empty: give the program and its arguments, e.g. [docker-compose, up, -d, backup]",
            );
            return None;
        };
        if let Err(m) = find_program(diag.file(), &program.value) {
            diag.error(program, f, m);
            return None;
        }
        let timeout = duration(diag, &e.value.timeout, &format!("{field}.exec.timeout"))
            .unwrap_or(DEFAULT_EXEC_TIMEOUT);
        let mut command: Vec<String> = e.value.command.iter().map(|c| c.value.clone()).collect();
        if program.value.contains('/') {
            // Relative paths are relative to the config file, like every other path in it.
            let p = super::fields::resolve_relative(diag.file(), Path::new(&program.value));
            command[0] = p.display().to_string();
        }
        Some(ExecHook { command, timeout })
    });
    let webhook = h.webhook.as_ref().and_then(|w| {
        let url = &w.value.url;
        match url::Url::parse(&url.value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                let msg = format!(
                    "`{}` is not an http:// or https:// URL",
                    crate::redact::origin(&url.value)
                );
                diag.error(url, format!("{field}.webhook.url"), msg);
                return None;
            }
        }
        let timeout = duration(diag, &w.value.timeout, &format!("{field}.webhook.timeout"))
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
        Some(WebhookHook {
            url: crate::redact::Secret::new(url.value.clone()),
            timeout,
            retries: w
                .value
                .retries
                .as_ref()
                .map(|r| r.value)
                .unwrap_or(DEFAULT_WEBHOOK_RETRIES),
        })
    });
    Hooks { exec, webhook }
}

/// Checks that a hook's program can be run: a path that exists, or a name found on `PATH`.
fn find_program(config_file: &Path, program: &str) -> Result<(), String> {
    if program.contains('/') {
        let p = super::fields::resolve_relative(config_file, Path::new(program));
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("`{}` is not a file", p.display())),
            Err(e) => Err(format!("cannot run `{}`: {e}", p.display())),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join(program).is_file()) {
        Ok(())
    } else {
        Err(format!("`{program}` is not on PATH"))
    }
}
