//! Process resources: the open-file limit raised at start, and how many probes it lets run
//! at once.
//!
//! Every probe holds a socket, so a prober with many targets (or a failover proxy under load)
//! runs into the soft `RLIMIT_NOFILE` long before the hard one: distributions ship soft 1024
//! (or less) under a hard limit of 4096 to 1M. watchfire raises the soft limit to the hard one
//! at start, as Prometheus and most servers do, and bounds probes in flight by what is left.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use tracing::{debug, info, warn};

/// File descriptors kept for everything but probes (listeners, scrapes, `/probe` and proxy
/// connections, config files, logs): a quarter of the limit, at least this many.
pub const MIN_FD_RESERVE: u64 = 32;

/// File descriptors one probe may hold at once (a connection, and a second socket for the
/// kinds that open one, such as DNS over TCP after a truncated UDP answer).
pub const FDS_PER_PROBE: u64 = 2;

/// The open-file limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit found at start.
    pub before: u64,
    /// Soft limit now (the hard limit when raising it worked).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The current soft and hard `RLIMIT_NOFILE` (`u64::MAX` for unlimited).
pub fn nofile() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    Ok((unlimited(soft), unlimited(hard)))
}

fn unlimited(v: u64) -> u64 {
    if v == RLIM_INFINITY {
        u64::MAX
    } else {
        v
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs the result (once, at start). A
/// failure is logged and otherwise ignored: watchfire runs with the limit it has.
pub fn raise_nofile() -> Option<NofileLimit> {
    let (before, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    let mut limit = NofileLimit {
        before: unlimited(before),
        soft: unlimited(before),
        hard: unlimited(hard),
    };
    if before >= hard {
        debug!(
            soft = limit.soft,
            hard = limit.hard,
            "open-file limit already at its hard limit"
        );
        return Some(limit);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            limit.soft = limit.hard;
            info!(
                from = limit.before,
                to = limit.soft,
                "open-file limit raised to the hard limit"
            );
        }
        Err(e) => warn!(
            soft = limit.before,
            hard = limit.hard,
            error = %e,
            "cannot raise the open-file limit; running with the soft limit"
        ),
    }
    Some(limit)
}

/// Probes that may be in flight at once with `nofile` open files allowed: `max_concurrency`, or
/// fewer when the files left after the reserve (a quarter, at least [`MIN_FD_RESERVE`]) cannot
/// hold that many probes at [`FDS_PER_PROBE`] each. At least 1.
pub fn probe_cap(max_concurrency: usize, nofile: u64) -> usize {
    let reserve = (nofile / 4).max(MIN_FD_RESERVE);
    let fit = nofile.saturating_sub(reserve) / FDS_PER_PROBE;
    let fit = usize::try_from(fit).unwrap_or(usize::MAX);
    max_concurrency.min(fit).max(1)
}

/// `max_concurrency` capped by what the current open-file limit can hold ([`probe_cap`]),
/// logged with the limit.
pub fn probe_bound(max_concurrency: usize) -> usize {
    let Ok((soft, hard)) = nofile() else {
        return max_concurrency;
    };
    let cap = probe_cap(max_concurrency, soft);
    if cap < max_concurrency {
        warn!(
            open_files = soft,
            hard_limit = hard,
            max_concurrency,
            probes_in_flight = cap,
            "the open-file limit bounds probes in flight below --max-concurrency"
        );
    } else {
        info!(
            open_files = soft,
            hard_limit = hard,
            probes_in_flight = cap,
            "probes in flight bounded by --max-concurrency"
        );
    }
    cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_cap_leaves_a_reserve_and_never_exceeds_the_flag() {
        assert_eq!(probe_cap(4096, 256), 96, "(256 - 64) / 2");
        assert_eq!(probe_cap(4096, 1024), 384);
        assert_eq!(probe_cap(4096, 1 << 20), 4096);
        assert_eq!(probe_cap(4096, u64::MAX), 4096);
        assert_eq!(probe_cap(4096, 10), 1, "at least one");
        assert_eq!(probe_cap(50, 256), 50);
    }

    #[test]
    fn raising_keeps_the_soft_limit_at_most_the_hard_one() {
        let l = raise_nofile().expect("getrlimit works here");
        assert!(l.soft <= l.hard && l.before <= l.soft, "{l:?}");
        assert_eq!(nofile().expect("getrlimit").0, l.soft);
    }
}
