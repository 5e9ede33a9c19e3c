//! Rebalancing a cluster (issue 16): the rendezvous shard of 100,000 targets over 8 members,
//! and what a member's leave or a new member's join moves.
//!
//! For each event (one of 8 members leaves; a 9th joins; at replication 1 and 2) the ownership
//! of every target is computed before and after, as every member computes it on a change of
//! membership ([`watchfire::cluster::shard::Shard`]); reported: the time to compute every
//! target's owners (median of `--runs`), the targets whose owner set changed, and that share
//! beside the ideal (`1/8` for a leave, `1/9` for a join, times `r`), and each member's share
//! (min and max against `1/n`).
//!
//! ```text
//! cargo bench --bench cluster
//! cargo bench --bench cluster -- --targets 100000 --members 8 --runs 5
//! ```

use std::time::{Duration, Instant};

use watchfire::cluster::shard::Shard;

struct Args {
    targets: usize,
    members: usize,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        targets: 100_000,
        members: 8,
        runs: 5,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--targets" => a.targets = value(),
            "--members" => a.members = value(),
            "--runs" => a.runs = value(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    a
}

/// Every target's owners (indexes into the shard's sorted ids), and the median time taken.
fn owners(shard: &Shard, targets: &[String], runs: usize) -> (Vec<Vec<String>>, Duration) {
    let mut times = Vec::new();
    let mut out = Vec::new();
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        out = targets
            .iter()
            .map(|t| {
                let mut o: Vec<String> = shard
                    .owners(t)
                    .into_iter()
                    .map(|i| shard.ids()[i].clone())
                    .collect();
                o.sort();
                o
            })
            .collect();
        times.push(start.elapsed());
    }
    times.sort();
    (out, times[times.len() / 2])
}

/// Only the ownership test each member runs for itself (`Shard::owns`), median time.
fn own_share(shard: &Shard, me: usize, targets: &[String], runs: usize) -> (usize, Duration) {
    let mut times = Vec::new();
    let mut mine = 0;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        mine = targets.iter().filter(|t| shard.owns(me, t)).count();
        times.push(start.elapsed());
    }
    times.sort();
    (mine, times[times.len() / 2])
}

fn main() {
    let a = args();
    let targets: Vec<String> = (0..a.targets).map(|i| format!("target-{i:06}")).collect();
    let ids: Vec<String> = (0..a.members + 1)
        .map(|i| format!("watchfire-{i}.watchfire:9115"))
        .collect();
    let n = a.members;
    println!(
        "{} targets, {n} members, median of {} runs",
        a.targets, a.runs
    );
    for r in [1, 2] {
        let base = Shard::new(&ids[..n], r);
        let (before, t_all) = owners(&base, &targets, a.runs);
        let (mine, t_mine) = own_share(&base, 0, &targets, a.runs);
        let counts = base.counts(targets.iter().map(String::as_str));
        let ideal = (a.targets * r) as f64 / n as f64;
        let (lo, hi) = (
            *counts.iter().min().unwrap() as f64 / ideal,
            *counts.iter().max().unwrap() as f64 / ideal,
        );
        println!(
            "r={r}: every target's owners in {t_all:.1?}; one member's own share ({mine}) in {t_mine:.1?}; shares {lo:.3}..{hi:.3} of the ideal {ideal:.0}"
        );
        for (event, shard, ideal_share) in [
            ("leave", Shard::new(&ids[1..n], r), r as f64 / n as f64),
            (
                "join",
                Shard::new(&ids[..n + 1], r),
                r as f64 / (n + 1) as f64,
            ),
        ] {
            let (after, took) = owners(&shard, &targets, a.runs);
            let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
            let share = moved as f64 / a.targets as f64;
            println!(
                "  {event}: re-plan {took:.1?}, {moved} targets changed owners = {:.2} % (ideal {:.2} %, off by {:+.1} % of it)",
                share * 100.0,
                ideal_share * 100.0,
                (share / ideal_share - 1.0) * 100.0
            );
        }
    }
}
