//! Every metric family watchfire's `/metrics` can expose (apart from the `process_*` families,
//! which the `prometheus` crate's process collector writes), with its type and help text, and
//! the names of the families a blackbox `/probe` answer can hold.
//!
//! Writers use these constants; nothing else spells a metric name.

use super::{Family, Type};

const fn family(name: &'static str, kind: Type, help: &'static str) -> Family {
    Family { name, kind, help }
}

// Per target (label `target` plus the target's labels).

/// Last probe succeeded (0/1).
pub const PROBE_SUCCESS: Family = family(
    "watchfire_probe_success",
    Type::Gauge,
    "Whether the last probe succeeded (1) or failed (0).",
);
/// Health after the fall/rise thresholds (0/1; absent while unknown).
pub const TARGET_UP: Family = family(
    "watchfire_target_up",
    Type::Gauge,
    "Target health after the down_after/up_after thresholds: 1 up, 0 down; absent until decided.",
);
/// Health as an enum gauge (`state` = unknown|up|down).
pub const TARGET_STATE: Family = family(
    "watchfire_target_state",
    Type::Gauge,
    "Target health as an enum: 1 for the current state.",
);
/// Probes by result (`success` or the failure reason).
pub const PROBES_TOTAL: Family = family(
    "watchfire_probes_total",
    Type::Counter,
    "Probes run, by result: success or the failure reason.",
);
/// Ticks skipped because the previous probe still ran.
pub const PROBES_SKIPPED: Family = family(
    "watchfire_probes_skipped_total",
    Type::Counter,
    "Scheduled ticks skipped because the previous probe of the target was still running.",
);
/// State transitions by destination state.
pub const TRANSITIONS: Family = family(
    "watchfire_target_transitions_total",
    Type::Counter,
    "Changes of target health, by the state changed to.",
);
/// Probe duration histogram (from the actual start).
pub const PROBE_DURATION: Family = family(
    "watchfire_probe_duration_seconds",
    Type::Histogram,
    "Probe duration measured from the actual start, seconds.",
);
/// Schedule lag histogram (actual − planned start).
pub const SCHEDULE_LAG: Family = family(
    "watchfire_probe_schedule_lag_seconds",
    Type::Histogram,
    "Actual start minus planned start of each probe, seconds.",
);
/// HDR quantiles of the latency from the actual send.
pub const PROBE_LATENCY: Family = family(
    "watchfire_probe_latency_seconds",
    Type::Summary,
    "Probe latency quantiles from the actual send (HDR histogram, 2 significant figures, since the target was loaded).",
);
/// HDR quantiles of the latency from the planned start (coordinated-omission corrected).
pub const PROBE_LATENCY_PLANNED: Family = family(
    "watchfire_probe_latency_from_planned_seconds",
    Type::Summary,
    "Probe latency quantiles from the planned start: corrected for coordinated omission, includes the prober's own delay.",
);
/// Last probe's duration.
pub const LAST_DURATION: Family = family(
    "watchfire_probe_last_duration_seconds",
    Type::Gauge,
    "Duration of the last probe, seconds.",
);
/// Last probe's phases.
pub const LAST_PHASE: Family = family(
    "watchfire_probe_last_phase_seconds",
    Type::Gauge,
    "Phases of the last probe, seconds.",
);
/// Last probe's HTTP status (0 when none).
pub const LAST_STATUS: Family = family(
    "watchfire_probe_last_status_code",
    Type::Gauge,
    "HTTP status of the last probe (0 when no answer).",
);
/// Last probe's body size.
pub const LAST_BODY_BYTES: Family = family(
    "watchfire_probe_last_body_bytes",
    Type::Gauge,
    "Body bytes read by the last probe.",
);
/// When the last probe ended.
pub const LAST_TIMESTAMP: Family = family(
    "watchfire_probe_last_timestamp_seconds",
    Type::Gauge,
    "When the last probe ended, seconds since the epoch.",
);
/// When the target last changed state.
pub const LAST_TRANSITION: Family = family(
    "watchfire_target_last_transition_timestamp_seconds",
    Type::Gauge,
    "When the target last changed health, seconds since the epoch.",
);

// Process-wide.

/// Scheduled targets.
pub const TARGETS: Family = family("watchfire_targets", Type::Gauge, "Targets scheduled.");
/// Probes running now.
pub const IN_FLIGHT: Family = family(
    "watchfire_probes_in_flight",
    Type::Gauge,
    "Probes running now.",
);
/// The bound on probes in flight.
pub const MAX_IN_FLIGHT: Family = family(
    "watchfire_probes_max_in_flight",
    Type::Gauge,
    "Bound on probes in flight: --max-concurrency, or less when the open-file limit cannot hold that many.",
);
/// Probes watchfire itself could not run.
pub const LOCAL_ERRORS: Family = family(
    "watchfire_probe_local_errors_total",
    Type::Counter,
    "Scheduled probes that failed for a reason of watchfire's own (out of file descriptors, socket buffers, ephemeral ports or memory); they count toward no target's health.",
);
/// Whether the last config reload worked.
pub const RELOAD_OK: Family = family(
    "watchfire_config_last_reload_successful",
    Type::Gauge,
    "Whether the last configuration reload attempt was successful.",
);
/// When the config was last loaded successfully.
pub const RELOAD_TIME: Family = family(
    "watchfire_config_last_reload_success_timestamp_seconds",
    Type::Gauge,
    "Timestamp of the last successful configuration load.",
);
/// Reload attempts by result.
pub const RELOADS: Family = family(
    "watchfire_config_reloads_total",
    Type::Counter,
    "Configuration reload attempts by result.",
);
/// Targets of each HTTP SD endpoint's last good answer (labels `sd`, `url`).
pub const SD_TARGETS: Family = family(
    "watchfire_sd_targets",
    Type::Gauge,
    "Targets made of each discovery endpoint's last good answer (sd: the kind; url: the endpoint, secrets hidden).",
);
/// Failed refreshes of each HTTP SD endpoint (labels `sd`, `url`, `reason`).
pub const SD_REFRESH_FAILURES: Family = family(
    "watchfire_sd_refresh_failures_total",
    Type::Counter,
    "Failed refreshes of each discovery endpoint, by reason; its last good targets stay.",
);
/// When each HTTP SD endpoint last answered well (labels `sd`, `url`).
pub const SD_LAST_SUCCESS: Family = family(
    "watchfire_sd_last_refresh_success_timestamp_seconds",
    Type::Gauge,
    "When each discovery endpoint last gave a good answer, Unix seconds; 0 before the first.",
);
/// Schedule lag of each probe thread (label `thread`).
pub const LAG: Family = family(
    "watchfire_schedule_lag_seconds",
    Type::Histogram,
    "Schedule lag (actual minus planned start) of every probe since start, by probe thread, seconds.",
);
/// Ticks skipped over every target.
pub const TICKS_SKIPPED: Family = family(
    "watchfire_ticks_skipped_total",
    Type::Counter,
    "Scheduled ticks skipped because the target's previous probe was still running, over every target.",
);

// Fleet aggregates (the labels of `metrics.aggregate_by`).

/// Probes by result, summed over the targets of each label set.
pub const AGG_PROBES: Family = family(
    "watchfire_aggregate_probes_total",
    Type::Counter,
    "Probes run by the targets of each aggregate_by label set, by result: success or the failure reason.",
);
/// The duration histogram, merged over the targets of each label set.
pub const AGG_DURATION: Family = family(
    "watchfire_aggregate_probe_duration_seconds",
    Type::Histogram,
    "Probe duration measured from the actual start, over the targets of each aggregate_by label set, seconds.",
);
/// Targets by health, per label set.
pub const AGG_TARGETS: Family = family(
    "watchfire_aggregate_targets",
    Type::Gauge,
    "Targets of each aggregate_by label set by health after the thresholds: up, down or unknown (not decided yet).",
);
/// Build information.
pub const BUILD_INFO: Family = family("watchfire_build_info", Type::Gauge, "Build information.");

// Failover groups (label `group`).

/// The instance receiving traffic.
pub const FAILOVER_ACTIVE: Family = family(
    "watchfire_failover_active",
    Type::Gauge,
    "1 for the instance of each failover group receiving traffic.",
);
/// Whether any instance can take traffic.
pub const FAILOVER_AVAILABLE: Family = family(
    "watchfire_failover_available",
    Type::Gauge,
    "1 when some instance of the group can take traffic, 0 when the proxy answers 503.",
);
/// Whether traffic is on the first instance.
pub const FAILOVER_PRIMARY_ACTIVE: Family = family(
    "watchfire_failover_primary_active",
    Type::Gauge,
    "1 when traffic is on the group's first instance.",
);
/// Switches of the active instance.
pub const FAILOVER_TRANSITIONS: Family = family(
    "watchfire_failover_transitions_total",
    Type::Counter,
    "Times traffic moved from one instance (or none) to another.",
);
/// Switches in the dampening window.
pub const FAILOVER_SWITCHES_IN_WINDOW: Family = family(
    "watchfire_failover_switches_in_window",
    Type::Gauge,
    "Switches of the group within its dampening window; each beyond the first doubles the hold before a failback.",
);
/// The hold a failback needs now.
pub const FAILOVER_FAILBACK_HOLD: Family = family(
    "watchfire_failover_failback_hold_seconds",
    Type::Gauge,
    "Time a better instance must stay up before traffic fails back to it now: hold, doubled by each recent switch, at most max_hold.",
);
/// Requests the proxy could not deliver, by instance.
pub const FAILOVER_PASSIVE_FAILURES: Family = family(
    "watchfire_failover_passive_failures_total",
    Type::Counter,
    "Requests the proxy could not deliver to an instance (each takes it down at once).",
);
/// Hook runs by hook and result.
pub const FAILOVER_HOOK_RUNS: Family = family(
    "watchfire_failover_hook_runs_total",
    Type::Counter,
    "Hook runs by hook and result.",
);
/// Each hook's last duration.
pub const FAILOVER_HOOK_LAST_DURATION: Family = family(
    "watchfire_failover_hook_last_duration_seconds",
    Type::Gauge,
    "Duration of each hook's last run.",
);
/// Proxied requests by instance and status code.
pub const PROXY_REQUESTS: Family = family(
    "watchfire_proxy_requests_total",
    Type::Counter,
    "Requests through the failover proxy by instance (`none`: answered by the proxy) and status code.",
);
/// Requests resent to another instance.
pub const PROXY_RETRIES: Family = family(
    "watchfire_proxy_retries_total",
    Type::Counter,
    "Requests resent to another instance: `connect` (nothing was sent) or `replay` (idempotent, may have been sent).",
);
/// Requests being forwarded now.
pub const PROXY_IN_FLIGHT: Family = family(
    "watchfire_proxy_in_flight",
    Type::Gauge,
    "Requests being forwarded now.",
);
/// Time to the instance's response head.
pub const PROXY_REQUEST_DURATION: Family = family(
    "watchfire_proxy_request_duration_seconds",
    Type::Histogram,
    "Time from the request to the instance's response head, through the proxy.",
);

// Container memory (label `container`), under cAdvisor's names.

/// cAdvisor: current usage including page cache.
pub const MEMORY_USAGE: Family = family(
    "container_memory_usage_bytes",
    Type::Gauge,
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
);
/// cAdvisor: usage minus inactive file pages.
pub const MEMORY_WORKING_SET: Family = family(
    "container_memory_working_set_bytes",
    Type::Gauge,
    "Current working set in bytes (usage minus inactive file cache).",
);
/// cAdvisor: the memory limit, 0 when unlimited.
pub const MEMORY_LIMIT: Family = family(
    "container_spec_memory_limit_bytes",
    Type::Gauge,
    "Memory limit for the container in bytes, 0 when unlimited.",
);
/// cAdvisor: anonymous memory.
pub const MEMORY_RSS: Family = family(
    "container_memory_rss",
    Type::Gauge,
    "Size of RSS (anonymous memory) in bytes.",
);
/// cAdvisor: page cache.
pub const MEMORY_CACHE: Family = family(
    "container_memory_cache",
    Type::Gauge,
    "Number of bytes of page cache memory.",
);
/// cAdvisor: OOM kills.
pub const MEMORY_OOM_EVENTS: Family = family(
    "container_oom_events_total",
    Type::Counter,
    "Count of out of memory kills observed for the container (while its cgroup exists).",
);
/// Whether the last read of a memory watch succeeded.
pub const MEMORY_WATCH_UP: Family = family(
    "watchfire_memory_watch_up",
    Type::Gauge,
    "Whether the container's memory was read (1) or is gone or unreadable (0); see watchfire_memory_watch_status.",
);
/// The state of a memory watch, `ok` or why it could not be read.
pub const MEMORY_WATCH_STATUS: Family = family(
    "watchfire_memory_watch_status",
    Type::Gauge,
    "State of a memory watch: 1 for the current status (ok, or why it cannot be read).",
);

// The blackbox endpoint.

/// `/probe` requests naming an unknown module (blackbox_exporter's name and help).
pub const BLACKBOX_MODULE_UNKNOWN: Family = family(
    "blackbox_module_unknown_total",
    Type::Counter,
    "Count of unknown modules requested by probes",
);

/// `/probe` requests the probe guard refused.
pub const PROBE_GUARD_REFUSALS: Family = family(
    "watchfire_probe_guard_refusals_total",
    Type::Counter,
    "/probe requests refused by the probe guard (probe_guard:), each answered as a failed probe with reason policy",
);

/// `/probe` requests whose deadline passed before they could start.
pub const PROBE_LATE: Family = family(
    "watchfire_probe_requests_late_total",
    Type::Counter,
    "/probe requests answered 503 without probing because their deadline (counted from when the request reached the machine) passed while they waited to be served",
);

/// Requests watchfire's own server answered 503 at once (label `class`).
pub const SERVER_REJECTED: Family = family(
    "watchfire_server_requests_rejected_total",
    Type::Counter,
    "Requests to watchfire's own server answered 503 at once because their class (management, probe, other) was at its in-flight limit.",
);
/// Connections watchfire's own server closed at its connection cap (label `reason`).
pub const SERVER_CONNECTIONS_CLOSED: Family = family(
    "watchfire_server_connections_closed_total",
    Type::Counter,
    "Connections watchfire's own server closed at --web.max-connections: idle (the longest idle one, to make room) or over_capacity (a new one, every open one being busy).",
);

/// Whether the store writes to its configured backend (label `backend`).
pub const STORE_UP: Family = family(
    "watchfire_store_up",
    Type::Gauge,
    "Whether the store writes to its configured backend (1) or has degraded to memory (0), by backend: memory, sqlite or postgres.",
);
/// Writes the store applied.
pub const STORE_WRITES: Family = family(
    "watchfire_store_writes_total",
    Type::Counter,
    "Writes (states, transitions, minute rollups) the store applied, to its backend or to memory while degraded.",
);
/// Writes dropped because the store's queue was full.
pub const STORE_DROPPED: Family = family(
    "watchfire_store_dropped_writes_total",
    Type::Counter,
    "Writes dropped because the store's queue was full.",
);
/// Batches the configured backend failed to apply.
pub const STORE_WRITE_ERRORS: Family = family(
    "watchfire_store_write_errors_total",
    Type::Counter,
    "Batches of writes the store's configured backend failed to apply (the first failure degrades the store to memory).",
);
/// Writes queued, not yet applied.
pub const STORE_QUEUE: Family = family(
    "watchfire_store_queue",
    Type::Gauge,
    "Writes queued for the store, not yet applied.",
);
/// Time to apply one batch of writes.
pub const STORE_BATCH: Family = family(
    "watchfire_store_batch_seconds",
    Type::Histogram,
    "Time the store took to apply one batch of writes (one transaction), seconds.",
);

// Incident notifications (label `receiver`).

/// Messages delivered, by receiver and kind.
pub const NOTIFY_SENT: Family = family(
    "watchfire_notify_sent_total",
    Type::Counter,
    "Incident messages delivered, by receiver and message kind (declared, update, escalated, acknowledged, note, status_page, resolved, test).",
);
/// Messages given up, by receiver.
pub const NOTIFY_FAILED: Family = family(
    "watchfire_notify_failed_total",
    Type::Counter,
    "Incident messages given up, by receiver: rejected for good (a 4xx, a bad routing key) or not delivered within delivery.give_up_after.",
);
/// Failed attempts that will be retried, by receiver.
pub const NOTIFY_RETRIES: Family = family(
    "watchfire_notify_retries_total",
    Type::Counter,
    "Failed delivery attempts that will be retried (refused, timed out, 5xx, 429), by receiver.",
);
/// Messages waiting to be delivered, by receiver.
pub const NOTIFY_QUEUE: Family = family(
    "watchfire_notify_queue",
    Type::Gauge,
    "Incident messages in the outbox not delivered yet (first try or retry pending), by receiver.",
);
/// Time from a message being due to its delivery, by receiver.
pub const NOTIFY_DELIVERY: Family = family(
    "watchfire_notify_delivery_seconds",
    Type::Histogram,
    "Time from an incident message being due to its delivery, retries included, by receiver, seconds.",
);
/// PagerDuty V3 webhook requests, by receiver and result.
pub const NOTIFY_INBOUND: Family = family(
    "watchfire_notify_inbound_total",
    Type::Counter,
    "PagerDuty webhook requests to /api/v1/notify/pagerduty/RECEIVER, by receiver and result (acknowledged, recorded, ignored, unsigned, bad_signature, bad_request, too_large, unknown_incident, resolved_incident, error).",
);

// Cluster leases (one voice per decision).
/// 1 while this member holds the lease.
pub const CLUSTER_LEADER: Family = family(
    "watchfire_cluster_leader",
    Type::Gauge,
    "1 while this member holds the lease (and may decide for it), 0 otherwise.",
);
/// The lease's epoch (fencing token) this member last held.
pub const CLUSTER_LEASE_EPOCH: Family = family(
    "watchfire_cluster_lease_epoch",
    Type::Gauge,
    "The lease's epoch (fencing token) this member last held; it grows on every change of holder.",
);
/// Times this member stopped leading.
pub const CLUSTER_LEASE_LOST: Family = family(
    "watchfire_cluster_lease_lost_total",
    Type::Counter,
    "Times this member stopped leading a lease it held (not renewed in time, or taken over).",
);
/// Writes the database refused because this member's epoch of the lease was stale.
pub const CLUSTER_FENCED_WRITES: Family = family(
    "watchfire_cluster_fenced_writes_total",
    Type::Counter,
    "Writes made in a lease's name (outbox rows, failover decisions) that the database refused: the lease had moved to another member or run out.",
);
/// Configured targets no live member probes, per location (rendered by the notify lease holder).
pub const CLUSTER_UNOWNED_TARGETS: Family = family(
    "watchfire_cluster_unowned_targets",
    Type::Gauge,
    "Targets of the config that no live member of a location probes (a location with no live member), by location; rendered only by the holder of the notify lease.",
);

// Cluster membership and sharding (`--cluster`).

/// Live members of the cluster, as this member last read them.
pub const CLUSTER_MEMBERS: Family = family(
    "watchfire_cluster_members",
    Type::Gauge,
    "Live members of the cluster (heartbeat younger than their lease), as this member last read them from the database.",
);
/// Targets this member probes.
pub const CLUSTER_OWNED_TARGETS: Family = family(
    "watchfire_cluster_owned_targets",
    Type::Gauge,
    "Targets this member probes: those the rendezvous hash gives it, and every failover instance's target.",
);
/// Heartbeats that did not reach the database.
pub const CLUSTER_HEARTBEAT_FAILURES: Family = family(
    "watchfire_cluster_heartbeat_failures_total",
    Type::Counter,
    "Heartbeats that failed to reach the cluster database (the member keeps probing what it owned and retries).",
);
/// Re-plans after a change of membership.
pub const CLUSTER_REBALANCES: Family = family(
    "watchfire_cluster_rebalances_total",
    Type::Counter,
    "Times this member re-planned its targets after the cluster's membership changed.",
);
/// Whether the last heartbeat reached the database.
pub const CLUSTER_DATABASE_UP: Family = family(
    "watchfire_cluster_database_up",
    Type::Gauge,
    "Whether this member's last heartbeat reached the cluster database (1) or failed (0).",
);
/// Quorum verdict per target in cluster mode (0/1; absent while undecided).
pub const QUORUM_UP: Family = family(
    "watchfire_quorum_up",
    Type::Gauge,
    "The quorum's verdict on a target across locations: 1 up, 0 down (k of n locations see it down); absent while undecided.",
);
/// Locations whose counted view of a target is down.
pub const QUORUM_DOWN_LOCATIONS: Family = family(
    "watchfire_quorum_down_locations",
    Type::Gauge,
    "Locations (not stale, not degraded) that see a target down.",
);
/// A location that sees most of its targets down alone (0/1).
pub const LOCATION_DEGRADED: Family = family(
    "watchfire_location_degraded",
    Type::Gauge,
    "1 for a location that sees most of its targets down while the other locations see them up: its views are left out of the quorum.",
);
/// A location without a row newer than the lease (0/1).
pub const LOCATION_STALE: Family = family(
    "watchfire_location_stale",
    Type::Gauge,
    "1 for a location with no member whose heartbeat is within the lease: its views count as unknown.",
);
/// Whether the last exchange of observations with PostgreSQL worked (0/1).
pub const QUORUM_DATABASE_UP: Family = family(
    "watchfire_quorum_database_up",
    Type::Gauge,
    "Whether this member's last write and read of cluster_observations worked (1) or failed (0).",
);
/// Observation rows written by this member.
pub const QUORUM_ROWS_WRITTEN: Family = family(
    "watchfire_quorum_rows_written_total",
    Type::Counter,
    "Rows of cluster_observations this member inserted or updated (changed views, and rewrites after its heartbeat lapsed).",
);

/// Every family above, in the order `/metrics` writes them.
pub const ALL: &[Family] = &[
    CLUSTER_MEMBERS,
    CLUSTER_OWNED_TARGETS,
    CLUSTER_HEARTBEAT_FAILURES,
    CLUSTER_REBALANCES,
    CLUSTER_DATABASE_UP,
    PROBE_SUCCESS,
    TARGET_UP,
    TARGET_STATE,
    PROBES_TOTAL,
    PROBES_SKIPPED,
    TRANSITIONS,
    PROBE_DURATION,
    SCHEDULE_LAG,
    PROBE_LATENCY,
    PROBE_LATENCY_PLANNED,
    LAST_DURATION,
    LAST_PHASE,
    LAST_STATUS,
    LAST_BODY_BYTES,
    LAST_TIMESTAMP,
    LAST_TRANSITION,
    TARGETS,
    IN_FLIGHT,
    MAX_IN_FLIGHT,
    LOCAL_ERRORS,
    RELOAD_OK,
    RELOAD_TIME,
    RELOADS,
    SD_TARGETS,
    SD_REFRESH_FAILURES,
    SD_LAST_SUCCESS,
    LAG,
    TICKS_SKIPPED,
    AGG_PROBES,
    AGG_DURATION,
    AGG_TARGETS,
    FAILOVER_ACTIVE,
    FAILOVER_AVAILABLE,
    FAILOVER_PRIMARY_ACTIVE,
    FAILOVER_TRANSITIONS,
    FAILOVER_SWITCHES_IN_WINDOW,
    FAILOVER_FAILBACK_HOLD,
    FAILOVER_PASSIVE_FAILURES,
    FAILOVER_HOOK_RUNS,
    FAILOVER_HOOK_LAST_DURATION,
    PROXY_REQUESTS,
    PROXY_RETRIES,
    PROXY_IN_FLIGHT,
    PROXY_REQUEST_DURATION,
    BUILD_INFO,
    MEMORY_USAGE,
    MEMORY_WORKING_SET,
    MEMORY_LIMIT,
    MEMORY_RSS,
    MEMORY_CACHE,
    MEMORY_OOM_EVENTS,
    MEMORY_WATCH_UP,
    MEMORY_WATCH_STATUS,
    BLACKBOX_MODULE_UNKNOWN,
    PROBE_GUARD_REFUSALS,
    PROBE_LATE,
    SERVER_REJECTED,
    SERVER_CONNECTIONS_CLOSED,
    STORE_UP,
    STORE_WRITES,
    STORE_DROPPED,
    STORE_WRITE_ERRORS,
    STORE_QUEUE,
    STORE_BATCH,
    NOTIFY_SENT,
    NOTIFY_FAILED,
    NOTIFY_RETRIES,
    NOTIFY_QUEUE,
    NOTIFY_DELIVERY,
    NOTIFY_INBOUND,
    CLUSTER_LEADER,
    CLUSTER_LEASE_EPOCH,
    CLUSTER_LEASE_LOST,
    CLUSTER_FENCED_WRITES,
    CLUSTER_UNOWNED_TARGETS,
    QUORUM_UP,
    QUORUM_DOWN_LOCATIONS,
    LOCATION_DEGRADED,
    LOCATION_STALE,
    QUORUM_DATABASE_UP,
    QUORUM_ROWS_WRITTEN,
];

/// The families a blackbox `/probe` answer can hold, by name (blackbox_exporter's names).
pub const PROBE_FAMILIES: &[&str] = &[
    "probe_dns_additional_rrs",
    "probe_dns_answer_rrs",
    "probe_dns_authority_rrs",
    "probe_dns_duration_seconds",
    "probe_dns_lookup_time_seconds",
    "probe_dns_query_succeeded",
    "probe_dns_serial",
    "probe_duration_seconds",
    "probe_expect_info",
    "probe_failed_due_to_cel",
    "probe_failed_due_to_regex",
    "probe_grpc_duration_seconds",
    "probe_grpc_healthcheck_response",
    "probe_grpc_ssl",
    "probe_grpc_status_code",
    "probe_http_content_length",
    "probe_http_duration_seconds",
    "probe_http_last_modified_timestamp_seconds",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_http_status_code",
    "probe_http_uncompressed_body_length",
    "probe_http_version",
    "probe_icmp_duration_seconds",
    "probe_icmp_reply_hop_limit",
    "probe_ip_addr_hash",
    "probe_ip_protocol",
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_ssl_last_chain_info",
    "probe_success",
    "probe_tls_cipher_info",
    "probe_tls_version_info",
    "probe_websocket_connection_upgraded",
    "probe_websocket_duration_seconds",
    "probe_websocket_failed_due_to_regex",
    "probe_websocket_status_code",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn valid(name: &str) -> bool {
        let mut b = name.bytes();
        b.next().is_some_and(|c| c.is_ascii_lowercase())
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    }

    #[test]
    fn names_are_unique_and_well_formed_and_help_is_one_line() {
        let mut seen = BTreeSet::new();
        for f in ALL {
            assert!(valid(f.name), "{}", f.name);
            assert!(seen.insert(f.name), "{} twice", f.name);
            assert!(!f.help.is_empty() && !f.help.contains('\n'), "{}", f.name);
            assert_eq!(
                f.name.ends_with("_total"),
                f.kind == Type::Counter,
                "{}: counters, and only counters, end in _total",
                f.name
            );
        }
        let probe: BTreeSet<&str> = PROBE_FAMILIES.iter().copied().collect();
        assert_eq!(probe.len(), PROBE_FAMILIES.len());
        assert!(probe.iter().all(|n| valid(n) && n.starts_with("probe_")));
    }
}
