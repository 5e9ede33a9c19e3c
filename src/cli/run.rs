//! `watchfire run`: load the config, open the store, start the runtime and serve until told to
//! stop; reloads on SIGHUP, `/-/reload` and (with `--auto-reload`) on a changed config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{storage, RunArgs};
use crate::config;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::server::{self, AppState};

/// `watchfire run`.
pub(super) async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let load = config::LoadOptions {
        allow_empty: a.allow_empty_config,
    };
    // Taken before the load: a change made while the config loads is then seen by the first
    // check, never missed.
    let fingerprint = if a.auto_reload {
        let p = a.config.clone();
        tokio::task::spawn_blocking(move || config::fingerprint(&p))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let file_sd = Arc::<std::sync::Mutex<config::FileSdCache>>::default();
    let loaded = crate::runtime::load_blocking_cached(a.config.clone(), load, file_sd.clone());
    let config = match loaded.await {
        Ok(c) => c,
        Err(e) => return Ok(refuse(&e, "the config")),
    };
    let serve_opts = match serve_options(&a) {
        Ok(o) => o,
        Err(e) => return Ok(refuse(&e, "the web config")),
    };
    let listeners = match listeners(&a) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let cancel = CancellationToken::new();
    crate::shutdown::on_terminate(cancel.clone()).context("installing signal handlers")?;
    let first = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .context("reading the listen address")?;
    let cluster = match join_cluster(&a, first, cancel.clone()).await {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = match open_store(&a).await {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let leadership = match leadership(&a, first, &cancel).await {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    if let Some(l) = &leadership {
        fence_outbox(&a, &store, l);
    }
    let observations = match &a.cluster.cluster {
        Some(url) => match crate::cluster::observe::connect(url).await {
            Ok(conn) => Some((url.clone(), conn)),
            Err(e) => {
                eprintln!("watchfire: {e}; refusing to start in cluster mode (--cluster)");
                return Ok(ExitCode::from(1));
            }
        },
        None => None,
    };
    let opts = RuntimeOptions {
        max_concurrency: a.max_concurrency,
        min_wake_gap: a.min_wake_gap,
        wake_lead: a.wake_lead,
        web: a.web_config_file.is_some().then(|| serve_opts.web.clone()),
        store,
        file_sd,
        leadership: leadership.clone(),
        cluster: cluster.clone(),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::start(config, Some(a.config.clone()), opts, cancel.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    start_duties(&runtime, &a, observations, leadership, fingerprint, &cancel).await?;
    serve(&runtime, listeners, serve_opts, &a, &cancel).await?;
    if let Some(c) = &cluster {
        c.leave().await;
    }
    if !runtime.drain(Duration::from_secs(5)).await {
        tracing::warn!("probes still running after the 5 s grace period; exiting anyway");
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Serves the API, `/metrics`, `/probe` and the pages on `listeners` until `cancel`.
async fn serve(
    runtime: &Arc<Runtime>,
    listeners: Vec<tokio::net::TcpListener>,
    serve_opts: server::ServeOptions,
    a: &RunArgs,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()
        .context("reading the listen address")?;
    // `addr` is the first listener (tools read it); `addrs` lists every one.
    let addr = addrs[0];
    let all = addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    info!(%addr, addrs = %all, tls = serve_opts.web.current().tls(), route_prefix = %serve_opts.route_prefix, targets = runtime.targets().len(), modules = runtime.config().modules.len(), config = %a.config.display(), "watchfire is running");
    runtime.set_exposure(addrs.clone(), !serve_opts.web.current().users().is_empty());
    let state = Arc::new(AppState {
        runtime: runtime.clone(),
        registry: crate::metrics::process_registry(),
    });
    let c = cancel.clone();
    server::serve_with(
        listeners,
        state,
        serve_opts,
        async move { c.cancelled().await },
    )
    .await
    .context("serving")
}

/// What runs beside the started runtime: the `/probe` settings from the flags, the quorum's
/// shared observations (`--cluster`), the incident feed (under the leadership when there is
/// one), reloads on SIGHUP and, with `--auto-reload`, on a changed config (`fingerprint`: the
/// config's when it was loaded).
async fn start_duties(
    runtime: &Arc<Runtime>,
    a: &RunArgs,
    observations: Option<(String, sqlx::PgConnection)>,
    leadership: Option<Arc<crate::runtime::leader::Leadership>>,
    fingerprint: Option<u64>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    runtime.blackbox().set_timeout_offset(a.timeout_offset);
    runtime.blackbox().set_log_level(a.log_prober);
    runtime.blackbox().history().set_limit(a.history_limit);
    runtime.set_allow_empty_config(a.allow_empty_config);
    if let Some((url, conn)) = observations {
        let (location, lease) = (&a.cluster.location, a.cluster.cluster_lease);
        info!(%location, ?lease, "cluster mode: sharing observations for the quorum across locations");
        crate::runtime::quorum::start(runtime, url, conn, location.clone(), lease, cancel.clone());
    }
    if let Some(l) = leadership {
        use crate::runtime::leader;
        tokio::spawn(leader::follow(runtime.clone(), l.clone(), cancel.clone()));
        tokio::spawn(leader::incidents_while_leading(
            runtime.clone(),
            l,
            cancel.clone(),
        ));
    } else if let Err(e) = crate::runtime::incidents::start(runtime.clone(), cancel.clone()).await {
        tracing::warn!(error = %e, "incidents are not recorded: the store failed");
    }
    crate::shutdown::reload_on_hup(runtime.clone(), cancel.clone())
        .context("installing SIGHUP handler")?;
    if a.auto_reload {
        reload_on_change(
            runtime.clone(),
            a.config.clone(),
            fingerprint,
            a.auto_reload_interval,
            cancel.clone(),
        );
    }
    Ok(())
}

/// The server's options from `run`'s flags; `Err` when the web config file does not load.
fn serve_options(a: &RunArgs) -> Result<server::ServeOptions, crate::web::WebConfigError> {
    let web = match &a.web_config_file {
        Some(path) => crate::web::WebSource::load(path)?,
        None => crate::web::WebSource::none(),
    };
    let external = a.web_external_url.as_ref();
    Ok(server::ServeOptions {
        limits: server::admission::Limits {
            max_connections: a.web_max_connections,
            max_probes: a.web_max_probes,
            max_requests: a.web_max_requests,
            max_management: a.web_max_management,
            header_timeout: a.web_header_timeout,
        },
        web: Arc::new(web),
        route_prefix: server::route_prefix(a.web_route_prefix.as_deref(), external),
        external_authority: external.and_then(|u| {
            let host = u.host_str()?;
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            })
        }),
        reload_endpoint: !a.web_disable_reload,
        failover_api: !a.web_disable_failover_api,
    })
}

pub(super) async fn runtime_load(
    path: &std::path::Path,
) -> Result<config::Config, crate::diag::ConfigErrors> {
    crate::runtime::load_blocking(path.to_path_buf()).await
}

/// `--config.enable-auto-reload`: every `every`, the config's content is fingerprinted; when it
/// changed, the config is reloaded as on SIGHUP (a config with errors keeps the running one and
/// counts as a failed reload). An unchanged config is not reloaded; `loaded` is the fingerprint
/// taken before the running config was loaded.
fn reload_on_change(
    runtime: Arc<Runtime>,
    path: PathBuf,
    loaded: Option<u64>,
    every: Duration,
    cancel: CancellationToken,
) {
    let fingerprint = move || {
        let p = path.clone();
        async move {
            tokio::task::spawn_blocking(move || config::fingerprint(&p))
                .await
                .ok()
                .flatten()
        }
    };
    tokio::spawn(async move {
        let mut last = loaded;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = fingerprint().await;
            if now == last {
                continue;
            }
            last = now;
            info!("the config changed on disk, reloading");
            if let Err(e) = runtime.reload().await {
                tracing::warn!(error = %e, "automatic reload failed; the running config is unchanged");
            }
        }
    });
}

/// The listeners `run` serves on: the sockets systemd passed (`--web.systemd-socket`) or those
/// bound on `--web.listen-address`; the exit code when there are none to serve on.
fn listeners(a: &RunArgs) -> Result<Vec<tokio::net::TcpListener>, ExitCode> {
    if a.web_systemd_socket {
        return server::activation::listeners().map_err(|e| {
            eprintln!("watchfire: {e}");
            ExitCode::from(1)
        });
    }
    a.listen
        .iter()
        .map(|addr| {
            server::bind(*addr).map_err(|e| {
                eprintln!("watchfire: cannot listen on {addr} (--web.listen-address): {e}");
                ExitCode::from(2)
            })
        })
        .collect()
}

/// Joins the cluster `--cluster` names (none without it). A URL that is malformed or a
/// database that does not answer, or a live member with the same id, refuses the start.
async fn join_cluster(
    a: &RunArgs,
    listen: SocketAddr,
    cancel: CancellationToken,
) -> Result<Option<Arc<crate::cluster::Cluster>>, ExitCode> {
    let Some(opts) = a.cluster.options(listen) else {
        return Ok(None);
    };
    crate::cluster::Cluster::start(opts, listen.to_string(), cancel)
        .await
        .map(Some)
        .map_err(|e| {
            eprintln!("watchfire: {e}");
            eprintln!("watchfire: cannot join the cluster; nothing started");
            ExitCode::from(1)
        })
}

/// The store `--storage.*` names (the `data` directory by default; with `--cluster` and no
/// `--storage.*` flag, the cluster's database, so a target's new owner resumes its state).
/// One that cannot be opened is the operator's to fix: its error says what and where, and
/// nothing starts.
async fn open_store(a: &RunArgs) -> Result<crate::store::Store, ExitCode> {
    let mut storage = a.storage.clone();
    let unset =
        storage.storage_path.is_none() && storage.storage_url.is_none() && !storage.storage_memory;
    match &a.cluster.cluster {
        Some(url) if unset => storage.storage_url = Some(url.clone()),
        Some(_) if storage.storage_url.is_none() => tracing::warn!(
            "--cluster with a store other than PostgreSQL: a target that moves to another member starts unknown there (give --storage.url the cluster's database to carry its state over)"
        ),
        _ => {}
    }
    let opts = storage.options(Some(storage::DEFAULT_PATH));
    crate::store::Store::open(&opts).await.map_err(|e| {
        eprintln!("watchfire: cannot open the store: {e}");
        ExitCode::from(1)
    })
}

/// This member's leases with `--cluster` (none without it): a database that cannot be
/// reached refuses the start.
async fn leadership(
    a: &RunArgs,
    listen: SocketAddr,
    cancel: &CancellationToken,
) -> Result<Option<Arc<crate::runtime::leader::Leadership>>, ExitCode> {
    let Some(opts) = a.cluster.options(listen) else {
        return Ok(None);
    };
    let l = crate::runtime::leader::Leadership::connect(&opts, cancel.clone())
        .await
        .map_err(|e| {
            eprintln!("watchfire: cannot join the cluster (--cluster): {e}");
            ExitCode::from(1)
        })?;
    info!(member = %l.id(), lease = ?opts.lease, "cluster mode: failover and notifications decided by lease holders");
    Ok(Some(l))
}

/// Fences the outbox by the `notify` lease when the store is the cluster's database, where the
/// leases are; with another store it cannot be, and that is said.
fn fence_outbox(a: &RunArgs, store: &crate::store::Store, l: &crate::runtime::leader::Leadership) {
    let s = &a.storage;
    let url = a.cluster.cluster.as_ref();
    let shared = !s.storage_memory
        && s.storage_path.is_none()
        && s.storage_url.as_ref().is_none_or(|u| Some(u) == url);
    if shared {
        l.fence_outbox(store);
    } else {
        tracing::warn!("--cluster with a store other than the cluster's database: the outbox's writes are not fenced by the notify lease");
    }
}

/// Prints `errors` and that `what` has them, and gives the exit code of a refused start.
fn refuse(errors: &dyn std::fmt::Display, what: &str) -> ExitCode {
    eprintln!("{errors}");
    eprintln!("watchfire: {what} has errors; nothing started");
    ExitCode::from(1)
}
