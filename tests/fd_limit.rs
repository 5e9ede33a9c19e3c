//! watchfire's own file-descriptor exhaustion is not blamed on its targets: under a low
//! open-file limit, probes that cannot get a socket fail with reason `prober`, counted, and no
//! healthy target goes down; a low soft limit is raised to the hard one at start.
//!
//! One test function: it changes this process's `RLIMIT_NOFILE`, which every thread shares, so
//! nothing else may run in this test binary at the same time.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::eventually;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio_util::sync::CancellationToken;
use watchfire::config;
use watchfire::probe::Reason;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::state::Health;

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");

/// A child process, killed on drop.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Sets this process's soft open-file limit (the hard one unchanged) and returns the old soft.
fn set_soft(soft: u64) -> u64 {
    let (old, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard).expect("setrlimit");
    old
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_is_watchfires_own_and_the_soft_limit_is_raised() {
    a_low_soft_limit_is_raised_to_the_hard_one_at_start();
    no_healthy_target_goes_down_when_watchfire_runs_out_of_fds().await;
}

/// `watchfire run` started with a soft limit of 256 under a higher hard limit.
fn a_low_soft_limit_is_raised_to_the_hard_one_at_start() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard > 256,
        "this test needs a hard open-file limit above 256 ({hard})"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("watchfire.yaml");
    let target = "targets:\n  - name: t\n    url: http://127.0.0.1:9/health\n    interval: 1s\n";
    std::fs::write(&path, target).expect("write config");
    // The child inherits the soft limit of the moment it is spawned.
    let old = set_soft(256);
    let spawned = Command::new(BIN)
        .args(["run", "--storage.memory", "--config"])
        .arg(&path)
        .args(["--listen", &free_addr().to_string(), "--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    set_soft(old);
    let mut kid = Kid(spawned.expect("watchfire run starts"));
    let stderr = kid.0.stderr.take().expect("stderr piped");
    let mut raised = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("open-file limit raised") {
            raised = Some(line);
            break;
        }
    }
    let raised = raised.expect("the raise is logged");
    assert!(raised.contains("\"from\":256"), "{raised}");
    let want = if hard == u64::MAX {
        "unlimited".to_string()
    } else {
        hard.to_string()
    };
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", kid.0.id())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let soft = line.split_whitespace().nth(3).expect("soft column");
    assert_eq!(soft, want, "{line}");
}

/// 50 healthy targets probed in-process while every descriptor this process may open is taken.
async fn no_healthy_target_goes_down_when_watchfire_runs_out_of_fds() {
    // The targets' server is another process: its sockets are not this process's to run out of.
    let server = free_addr();
    let _sim = Kid(Command::new(BIN)
        .args(["sim", "--listen", &server.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sim starts"));
    eventually(Duration::from_secs(10), "sim listening", || async move {
        tokio::net::TcpStream::connect(server)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let mut yaml = String::from("targets:\n");
    for k in 0..50 {
        yaml.push_str(&format!(
            "  - name: t{k}\n    url: http://{server}/health\n    interval: 250ms\n    timeout: 200ms\n    down_after: 3\n    up_after: 1\n"
        ));
    }
    let cfg = config::load_str("fd.yaml", &yaml).expect("config");
    let cancel = CancellationToken::new();
    let rt = Runtime::start(cfg, None, RuntimeOptions::default(), cancel.clone())
        .await
        .expect("runtime");
    eventually(Duration::from_secs(10), "every target up", || async {
        rt.targets()
            .iter()
            .all(|t| t.stats.lock().unwrap().state.health == Health::Up)
            .then_some(())
    })
    .await;
    // Take every descriptor left under a limit of what is open now + 64, until 300 probes (six
    // per target, twice `down_after`) have met EMFILE.
    let old = set_soft(open_fds() + 64);
    let mut hog = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => break e,
        }
    };
    assert_eq!(
        exhausted.raw_os_error(),
        Some(nix::errno::Errno::EMFILE as i32)
    );
    let before = rt.local_errors();
    // A descriptor a finished probe gives back is taken again at once: otherwise the sockets
    // open at the moment of hogging would serve every later probe and none meet the limit.
    let hog = std::cell::RefCell::new(hog);
    let met = common::poll_until(Duration::from_secs(20), || async {
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hog.borrow_mut().push(f);
        }
        (rt.local_errors() >= before + 300).then_some(())
    })
    .await;
    if met.is_none() {
        let (mut probes, mut failures, mut skipped) = (0, Vec::<u64>::new(), 0);
        for t in rt.targets().iter() {
            let s = t.stats.lock().unwrap();
            probes += s.probes();
            skipped += s.skipped;
            failures.resize(s.failures.len(), 0);
            for (i, f) in s.failures.iter().enumerate() {
                failures[i] += f;
            }
        }
        panic!(
            "20 s and only {} probes met the limit; probes {probes}, skipped {skipped}, failures by reason index {failures:?}, in flight {}",
            rt.local_errors() - before,
            rt.in_flight()
        );
    }
    drop(hog);
    set_soft(old);
    let local = rt.local_errors();
    let mut down = Vec::new();
    let mut prober = 0;
    let mut reasons = std::collections::BTreeMap::new();
    for t in rt.targets().iter() {
        let s = t.stats.lock().unwrap();
        prober += s.failures[Reason::Prober.index()];
        for r in Reason::ALL {
            *reasons.entry(r.as_str()).or_insert(0u64) += s.failures[r.index()];
        }
        if s.transitions_down > 0 || s.state.health != Health::Up {
            down.push((
                t.spec.name.clone(),
                s.last.reason.map(|r| r.as_str()),
                s.last.detail.clone(),
            ));
        }
    }
    println!(
        "fd exhaustion: {local} probes failed with reason `prober`; targets marked down: {}",
        down.len()
    );
    assert!(
        down.is_empty(),
        "healthy targets marked down: {down:?}; failures by reason {reasons:?}"
    );
    assert!(prober >= 300, "{prober} probes recorded under `prober`");
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
}
