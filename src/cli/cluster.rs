//! The cluster flags of `watchfire run`: `--cluster` (the PostgreSQL URL), `--cluster.id`,
//! `--cluster.replication`, `--cluster.lease` and `--location`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::cluster::{ClusterOptions, DEFAULT_LOCATION, MIN_LEASE};

/// Several instances as one prober.
#[derive(Clone, Args)]
pub struct ClusterArgs {
    /// Join a cluster whose membership is kept in this PostgreSQL database
    /// (`postgres://user:password@host:5432/db`, the store's database): probe only the targets
    /// this member owns. Also read from WATCHFIRE_CLUSTER_URL, which keeps the password off the
    /// command line.
    #[arg(
        long = "cluster",
        value_name = "URL",
        env = "WATCHFIRE_CLUSTER_URL",
        hide_env_values = true
    )]
    pub cluster: Option<String>,
    /// This member's name, unique among the live members (default: the hostname and the first
    /// listen port, `host:9115`).
    #[arg(long = "cluster.id", value_name = "NAME", requires = "cluster")]
    pub cluster_id: Option<String>,
    /// Members that probe each target: 1 shards only; 2 probes each target from two members,
    /// so a member's death leaves none unprobed.
    #[arg(long = "cluster.replication", value_name = "N", default_value_t = crate::cluster::DEFAULT_REPLICATION,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub cluster_replication: usize,
    /// A member whose last heartbeat is older than this (database clock) is no longer a member
    /// and its targets move; heartbeats every third of it. At least 1s.
    #[arg(long = "cluster.lease", value_name = "DURATION", default_value = "10s", value_parser = parse_lease)]
    pub cluster_lease: Duration,
    /// Where this instance probes from (a label of its own, shown in `/api/v1/cluster`).
    #[arg(long = "location", value_name = "NAME", default_value = DEFAULT_LOCATION, value_parser = parse_location)]
    pub location: String,
}

impl std::fmt::Debug for ClusterArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterArgs")
            .field("cluster", &self.cluster.as_deref().map(crate::redact::url))
            .field("cluster_id", &self.cluster_id)
            .field("cluster_replication", &self.cluster_replication)
            .field("cluster_lease", &self.cluster_lease)
            .field("location", &self.location)
            .finish()
    }
}

/// `--cluster.lease`: a duration of at least [`MIN_LEASE`].
pub fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d < MIN_LEASE {
        return Err(format!("`{s}` is shorter than the least lease, 1s"));
    }
    Ok(d)
}

/// `--location`: 1-64 letters, digits, `.`, `_`, `-`.
fn parse_location(s: &str) -> Result<String, String> {
    if crate::config::quorum::valid_location(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a location name (1-64 letters, digits, `.`, `_`, `-`)"
        ))
    }
}

impl ClusterArgs {
    /// The cluster options, when `--cluster` is given; `listen` is the first listen address
    /// (the default id's port).
    pub fn options(&self, listen: SocketAddr) -> Option<ClusterOptions> {
        let url = self.cluster.clone()?;
        Some(ClusterOptions {
            url,
            id: self
                .cluster_id
                .clone()
                .unwrap_or_else(|| default_id(listen.port())),
            replication: self.cluster_replication,
            lease: self.cluster_lease,
            location: self.location.clone(),
        })
    }
}

/// `HOSTNAME:PORT`: the kernel's hostname (or `$HOSTNAME`, or `watchfire`) and `port`.
pub fn default_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "watchfire".to_string());
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_id_is_the_host_and_the_port() {
        let id = default_id(9115);
        assert!(id.ends_with(":9115") && id.len() > 5, "{id}");
    }

    #[test]
    fn a_lease_under_a_second_is_refused() {
        assert!(parse_lease("500ms").unwrap_err().contains("1s"));
        assert_eq!(parse_lease("3s").unwrap(), Duration::from_secs(3));
    }
}
