//! Container memory from cgroups, exported under cAdvisor's names so the runbook's memory
//! alerts (`container_memory_usage_bytes / container_spec_memory_limit_bytes > 0.85`) work on
//! watchfire's `/metrics` unchanged.
//!
//! - [`config`] — the `memory:` section: watches by cgroup path, PID or Docker container.
//! - [`resolve`] — finding a watch's cgroup directory (v1 or v2; `/proc/PID/cgroup`; Docker's
//!   scopes and names).
//! - [`cgroup`] — reading one directory's memory files into a [`cgroup::Sample`], or a
//!   [`cgroup::Failure`] with a reason from a fixed set.
//!
//! # When files are read
//!
//! A small reader task reads every watch once per [`READ_INTERVAL`] (1 s) on the blocking pool
//! and keeps the last result; `/metrics` only formats what was read. Not at scrape time,
//! because:
//! - a scrape never waits on the filesystem: a Docker name lookup is a directory scan plus one
//!   JSON file per container, and a wedged mount would otherwise hang `/metrics` and every
//!   alert with it;
//! - changes (gone, back, unreadable) are noticed and logged once, when they happen, not once
//!   per scrape, and not only while someone scrapes;
//! - it costs a few small-file reads per container per second (microseconds), and 1 s of
//!   staleness is far below any scrape interval or alert `for:` — cAdvisor works the same way.
//!
//! Rounds never overlap (the task awaits each one), so a slow filesystem delays readings
//! rather than piling up threads. A reload replaces the watches at once; a watch that did not
//! change keeps its state, so it is not logged again.
//!
//! # What is exported
//!
//! Per watch, label `container`: [`USAGE`], [`WORKING_SET`], [`LIMIT`] (0 when unlimited, as
//! cAdvisor), [`RSS`], [`CACHE`] and [`OOM_EVENTS`] (only where the kernel reports OOM kills);
//! these appear only while the last read succeeded — a container that is gone has no usage
//! series, never a zero. [`WATCH_UP`] (1 read, 0 not) and [`WATCH_STATUS`] (`ok` or the
//! [`cgroup::Problem`]) say why.

pub mod cgroup;
pub mod config;
pub mod resolve;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::expo::{catalog, Family, Writer};

pub use cgroup::{Failure, Problem, Sample};
pub use config::{check_section, RawWatch, Roots, Source, Watch};

/// How often every watch is read.
pub const READ_INTERVAL: Duration = Duration::from_secs(1);

/// cAdvisor: current usage including page cache.
pub const USAGE: &str = catalog::MEMORY_USAGE.name;
/// cAdvisor: usage minus inactive file pages.
pub const WORKING_SET: &str = catalog::MEMORY_WORKING_SET.name;
/// cAdvisor: the memory limit, 0 when unlimited.
pub const LIMIT: &str = catalog::MEMORY_LIMIT.name;
/// cAdvisor: anonymous memory.
pub const RSS: &str = catalog::MEMORY_RSS.name;
/// cAdvisor: page cache.
pub const CACHE: &str = catalog::MEMORY_CACHE.name;
/// cAdvisor: OOM kills (counter).
pub const OOM_EVENTS: &str = catalog::MEMORY_OOM_EVENTS.name;
/// watchfire: whether the last read of a watch succeeded.
pub const WATCH_UP: &str = catalog::MEMORY_WATCH_UP.name;
/// watchfire: the state of a watch, `ok` or why it could not be read.
pub const WATCH_STATUS: &str = catalog::MEMORY_WATCH_STATUS.name;

/// Every metric name this module exports.
pub const METRIC_NAMES: [&str; 8] = [
    USAGE,
    WORKING_SET,
    LIMIT,
    RSS,
    CACHE,
    OOM_EVENTS,
    WATCH_UP,
    WATCH_STATUS,
];

/// One watch and what was last read for it.
#[derive(Debug, Clone)]
struct Slot {
    watch: Arc<Watch>,
    /// `None` until the first read.
    last: Option<Result<Sample, Failure>>,
    /// Docker: the directory found last time.
    cached: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct State {
    slots: Vec<Slot>,
    /// Bumped by every apply, so a round started before it does not overwrite it.
    generation: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    wake: Notify,
    started: AtomicBool,
    cancel: CancellationToken,
}

/// The live set of memory watches and their last readings.
#[derive(Debug, Clone)]
pub struct Memory {
    inner: Arc<Inner>,
}

impl Memory {
    /// An empty set; the reader starts with the first non-empty [`Memory::apply`] and stops
    /// when `cancel` fires.
    pub fn new(cancel: CancellationToken) -> Memory {
        Memory {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                started: AtomicBool::new(false),
                cancel,
            }),
        }
    }

    /// Replaces the watches (config load or reload) and reads them at once. Unchanged watches
    /// keep their last reading. Must be called within a tokio runtime.
    pub fn apply(&self, watches: &[Watch]) {
        {
            let mut st = self.inner.state.lock().expect("memory state lock poisoned");
            let old = std::mem::take(&mut st.slots);
            st.slots = watches
                .iter()
                .map(|w| {
                    old.iter()
                        .find(|s| s.watch.same_watch(w))
                        .map(|s| Slot {
                            watch: Arc::new(w.clone()),
                            ..s.clone()
                        })
                        .unwrap_or_else(|| Slot {
                            watch: Arc::new(w.clone()),
                            last: None,
                            cached: None,
                        })
                })
                .collect();
            st.generation += 1;
        }
        if !watches.is_empty() && !self.inner.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(reader(self.inner.clone()));
        }
        self.inner.wake.notify_one();
    }

    /// Names of the watches and their last result (`None` before the first read).
    pub fn readings(&self) -> Vec<(String, Option<Result<Sample, Failure>>)> {
        let st = self.inner.state.lock().expect("memory state lock poisoned");
        st.slots
            .iter()
            .map(|s| (s.watch.name.clone(), s.last.clone()))
            .collect()
    }

    /// Appends the memory families to a `/metrics` body.
    pub fn render(&self, w: &mut Writer<'_>) {
        render(&self.readings(), w);
    }
}

/// Reads every watch each [`READ_INTERVAL`], and at once after an apply.
async fn reader(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(READ_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tick.tick() => {}
            _ = inner.wake.notified() => {}
        }
        let (generation, jobs) = {
            let st = inner.state.lock().expect("memory state lock poisoned");
            (st.generation, st.slots.clone())
        };
        if jobs.is_empty() {
            continue;
        }
        let read = tokio::task::spawn_blocking(move || {
            jobs.into_iter()
                .map(|mut slot| {
                    let result = read_watch(&slot.watch, &mut slot.cached);
                    (slot, result)
                })
                .collect::<Vec<_>>()
        });
        let results = tokio::select! {
            _ = inner.cancel.cancelled() => break,
            r = read => match r {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "memory reader failed");
                    continue;
                }
            },
        };
        let mut st = inner.state.lock().expect("memory state lock poisoned");
        if st.generation != generation {
            // A reload replaced the watches meanwhile; its wake-up reads them again.
            continue;
        }
        for (slot, (done, result)) in st.slots.iter_mut().zip(results) {
            log_change(&done.watch, slot.last.as_ref(), &result);
            slot.cached = done.cached;
            slot.last = Some(result);
        }
    }
}

/// Reads one watch; Docker watches retry once after their remembered cgroup vanished (the
/// container was recreated under a new ID).
pub fn read_watch(w: &Watch, cached: &mut Option<PathBuf>) -> Result<Sample, Failure> {
    for attempt in 0..2 {
        let dir = match resolve::locate(w, cached.as_deref()) {
            Ok(d) => d,
            Err(f) => {
                *cached = None;
                return Err(f);
            }
        };
        match cgroup::read(&dir) {
            Ok(s) => {
                if matches!(w.source, Source::Docker(_)) {
                    *cached = Some(dir);
                }
                return Ok(s);
            }
            Err(f) if f.problem == Problem::Gone && cached.is_some() && attempt == 0 => {
                *cached = None;
            }
            Err(f) => return Err(f),
        }
    }
    unreachable!("the second attempt returns")
}

/// Logs a watch's change of state (once, not on every read).
fn log_change(w: &Watch, before: Option<&Result<Sample, Failure>>, now: &Result<Sample, Failure>) {
    match (before, now) {
        (Some(Ok(_)), Ok(_)) => {}
        (Some(Err(a)), Err(b)) if a.problem == b.problem => {}
        (None, Ok(s)) => info!(
            container = %w.name,
            source = %w.source,
            dir = %s.dir.display(),
            "watching container memory"
        ),
        (Some(Err(_)), Ok(s)) => info!(
            container = %w.name,
            source = %w.source,
            dir = %s.dir.display(),
            "container memory readable again"
        ),
        (_, Err(f)) => warn!(
            container = %w.name,
            source = %w.source,
            reason = f.problem.as_str(),
            detail = %f.detail,
            "cannot read container memory"
        ),
    }
}

/// Renders readings in the text format. Writes nothing when there are no watches.
pub fn render(readings: &[(String, Option<Result<Sample, Failure>>)], w: &mut Writer<'_>) {
    if readings.is_empty() {
        return;
    }
    let ok: Vec<(&str, &Sample)> = readings
        .iter()
        .filter_map(|(n, r)| match r {
            Some(Ok(s)) => Some((n.as_str(), s)),
            _ => None,
        })
        .collect();
    type Get = fn(&Sample) -> Option<u64>;
    let families: [(&Family, Get); 6] = [
        (&catalog::MEMORY_USAGE, |s| Some(s.usage)),
        (&catalog::MEMORY_WORKING_SET, |s| Some(s.working_set)),
        (&catalog::MEMORY_LIMIT, |s| Some(s.limit.unwrap_or(0))),
        (&catalog::MEMORY_RSS, |s| s.rss),
        (&catalog::MEMORY_CACHE, |s| s.cache),
        (&catalog::MEMORY_OOM_EVENTS, |s| s.oom_kills),
    ];
    for (f, get) in families {
        w.header(f);
        for (n, s) in &ok {
            if let Some(v) = get(s) {
                w.sample(f, &[("container", n)], v);
            }
        }
    }
    let up = &catalog::MEMORY_WATCH_UP;
    w.header(up);
    for (n, r) in readings {
        if let Some(r) = r {
            w.sample(up, &[("container", n)], r.is_ok());
        }
    }
    let status = &catalog::MEMORY_WATCH_STATUS;
    w.header(status);
    for (n, r) in readings {
        let Some(r) = r else { continue };
        let current = r.as_ref().err().map(|f| f.problem);
        w.sample(
            status,
            &[("container", n), ("status", "ok")],
            current.is_none(),
        );
        for p in Problem::ALL {
            let labels = [("container", n.as_str()), ("status", p.as_str())];
            w.sample(status, &labels, current == Some(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn v2(dir: &Path, current: u64, max: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("memory.current"), format!("{current}\n")).unwrap();
        fs::write(dir.join("memory.max"), format!("{max}\n")).unwrap();
        fs::write(
            dir.join("memory.stat"),
            "anon 100\nfile 50\ninactive_file 20\n",
        )
        .unwrap();
        fs::write(dir.join("memory.events"), "oom 0\noom_kill 0\n").unwrap();
    }

    fn sample_value(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn fixture_v1_and_v2_trees_render_cadvisor_series() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup");
        let mut readings = Vec::new();
        for (name, dir) in [("gw-v2", "v2/gateway"), ("gw-v1", "v1/memory/gateway")] {
            let w = Watch::new(name, Source::Cgroup(root.join(dir)));
            readings.push((name.to_string(), Some(read_watch(&w, &mut None))));
        }
        let mut out = String::new();
        render(&readings, &mut crate::expo::Writer::new(&mut out));
        let v = |s: &str| sample_value(&out, s).unwrap_or_else(|| panic!("{s} in\n{out}"));
        assert_eq!(
            v("container_memory_usage_bytes{container=\"gw-v2\"}"),
            943718400
        );
        assert_eq!(
            v("container_spec_memory_limit_bytes{container=\"gw-v2\"}"),
            1073741824
        );
        assert_eq!(
            v("container_memory_working_set_bytes{container=\"gw-v2\"}"),
            943718400 - 104857600
        );
        assert_eq!(v("container_oom_events_total{container=\"gw-v2\"}"), 2);
        assert_eq!(
            v("container_memory_usage_bytes{container=\"gw-v1\"}"),
            524288000
        );
        assert_eq!(
            v("container_spec_memory_limit_bytes{container=\"gw-v1\"}"),
            0
        );
        assert_eq!(v("container_oom_events_total{container=\"gw-v1\"}"), 1);
        assert_eq!(v("watchfire_memory_watch_up{container=\"gw-v1\"}"), 1);
        assert_eq!(
            v("watchfire_memory_watch_status{container=\"gw-v2\",status=\"ok\"}"),
            1
        );
    }

    #[test]
    fn a_gone_container_has_no_usage_series_only_its_status() {
        let t = tempfile::tempdir().unwrap();
        let w = Watch::new("gw", Source::Cgroup(t.path().join("gone")));
        let readings = vec![("gw".to_string(), Some(read_watch(&w, &mut None)))];
        let mut out = String::new();
        render(&readings, &mut crate::expo::Writer::new(&mut out));
        assert!(!out.contains("container_memory_usage_bytes{"), "{out}");
        assert!(!out.contains("container_spec_memory_limit_bytes{"), "{out}");
        assert_eq!(
            sample_value(&out, "watchfire_memory_watch_up{container=\"gw\"}"),
            Some(0)
        );
        assert_eq!(
            sample_value(
                &out,
                "watchfire_memory_watch_status{container=\"gw\",status=\"gone\"}"
            ),
            Some(1)
        );
        assert_eq!(
            sample_value(
                &out,
                "watchfire_memory_watch_status{container=\"gw\",status=\"ok\"}"
            ),
            Some(0)
        );
    }

    #[test]
    fn no_watches_render_nothing() {
        let mut out = String::new();
        render(&[], &mut crate::expo::Writer::new(&mut out));
        assert!(out.is_empty());
    }

    /// This machine's own cgroup of the test process, read-only: found through
    /// /proc/self/cgroup like any PID, with usage > 0 and a consistent working set.
    #[test]
    fn reads_this_process_s_real_cgroup() {
        let w = Watch::new("self", Source::Pid(std::process::id()));
        let dir = resolve::locate(&w, None).expect("this process's memory cgroup is found");
        let s = read_watch(&w, &mut None).expect("this process's memory cgroup is readable");
        assert_eq!(s.dir, dir);
        assert!(s.usage > 0, "a running test process uses memory: {s:?}");
        assert!(s.working_set <= s.usage, "{s:?}");
        if let Some(l) = s.limit {
            assert!(l > 0 && l <= cgroup::UNLIMITED_ABOVE, "{s:?}");
        }
        let by_path = Watch::new("self", Source::Cgroup(dir.clone()));
        let again = read_watch(&by_path, &mut None).expect("the same cgroup by path");
        assert_eq!((again.version, again.limit), (s.version, s.limit));
    }

    #[test]
    fn a_pid_that_exits_goes_from_readable_to_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let w = Watch::new("child", Source::Pid(child.id()));
        assert!(read_watch(&w, &mut None).is_ok());
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
        let f = read_watch(&w, &mut None).unwrap_err();
        assert_eq!(f.problem, Problem::Gone, "{f}");
    }

    /// The watches come from the config: a reload replaces them, and `/metrics` follows.
    #[tokio::test]
    async fn a_reload_replaces_the_watches() {
        let t = tempfile::tempdir().unwrap();
        v2(&t.path().join("a"), 10, "100");
        v2(&t.path().join("b"), 20, "max");
        let cfg = t.path().join("watchfire.yaml");
        let yaml = |name: &str| {
            format!(
                "memory:\n  - name: {name}\n    cgroup: {}\n",
                t.path().join(name).display()
            )
        };
        fs::write(&cfg, yaml("a")).unwrap();
        let cancel = CancellationToken::new();
        let config = crate::config::load(&cfg).unwrap();
        let opts = crate::runtime::RuntimeOptions {
            precise_timer: false,
            ..Default::default()
        };
        let rt = crate::runtime::Runtime::start(config, Some(cfg.clone()), opts, cancel.clone())
            .await
            .unwrap();
        let rendered = |rt: &crate::runtime::Runtime| {
            let mut out = String::new();
            rt.memory().render(&mut crate::expo::Writer::new(&mut out));
            out
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while sample_value(
            &rendered(&rt),
            "container_memory_usage_bytes{container=\"a\"}",
        ) != Some(10)
        {
            assert!(tokio::time::Instant::now() < deadline, "{}", rendered(&rt));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fs::write(&cfg, yaml("b")).unwrap();
        rt.reload().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while sample_value(
            &rendered(&rt),
            "container_memory_usage_bytes{container=\"b\"}",
        ) != Some(20)
        {
            assert!(tokio::time::Instant::now() < deadline, "{}", rendered(&rt));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let out = rendered(&rt);
        assert!(!out.contains("container=\"a\""), "{out}");
        assert_eq!(
            sample_value(&out, "container_spec_memory_limit_bytes{container=\"b\"}"),
            Some(0)
        );
        cancel.cancel();
    }

    #[tokio::test]
    async fn reader_follows_apply_disappearance_and_return() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("gw");
        v2(&dir, 900, "1000");
        let cancel = CancellationToken::new();
        let mem = Memory::new(cancel.clone());
        let w = Watch::new("gw", Source::Cgroup(dir.clone()));
        mem.apply(std::slice::from_ref(&w));
        let wait = |want: fn(&Option<Result<Sample, Failure>>) -> bool| {
            let mem = mem.clone();
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                loop {
                    if want(&mem.readings()[0].1) {
                        return;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{:?}",
                        mem.readings()
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        wait(|r| matches!(r, Some(Ok(s)) if s.usage == 900)).await;
        fs::remove_dir_all(&dir).unwrap();
        wait(|r| matches!(r, Some(Err(f)) if f.problem == Problem::Gone)).await;
        v2(&dir, 950, "1000");
        wait(|r| matches!(r, Some(Ok(s)) if s.usage == 950)).await;
        // A reload that drops the watch drops its series at once.
        mem.apply(&[]);
        let mut out = String::new();
        mem.render(&mut crate::expo::Writer::new(&mut out));
        assert!(out.is_empty(), "{out}");
        cancel.cancel();
    }
}
