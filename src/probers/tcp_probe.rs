//! One probe of the `tcp` prober: split the target, resolve, connect (from
//! `source_ip_address` when set), then the `query_response` dialogue of `tcp_dialogue` — all
//! under the probe's deadline. The options and facts are in `tcp`.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tcp::{split_host_port, Facts, TcpModule};
use super::tcp_dialogue::{converse, open, Script};
use super::{lookup, Ctx, Log};
use crate::net::{self, SocketOptions};
use crate::probe::{Fail, Reason};

/// Runs one TCP probe, filling in `facts` as it goes.
pub async fn probe(
    module: &TcpModule,
    ctx: &Ctx,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    if module.expects_bytes() {
        facts.failed_due_to_bytes = Some(false);
    }
    let fail = |log: &mut Log, f: Fail| {
        plog!(log, Error, "{}", f.detail);
        Err(f)
    };
    let (host, port) = match split_host_port(&ctx.target) {
        Ok(hp) => hp,
        Err(e) => {
            let f = Fail::new(
                Reason::Setup,
                format!("error splitting target address and port: {e}"),
            );
            return fail(log, f);
        }
    };
    let port_number = port.parse::<u16>().ok();
    let ip = lookup(
        &host,
        port_number,
        module.preferred_ip_protocol,
        module.ip_protocol_fallback,
        ctx,
        &mut facts.resolved,
        log,
    )
    .await?;
    facts.phases.resolve = facts.resolved.lookup.unwrap_or_default();
    let Some(port) = port_number else {
        return fail(
            log,
            Fail::new(Reason::Setup, format!("invalid port `{port}`")),
        );
    };
    let addr = SocketAddr::new(ip, port);
    // `hostname` names the TLS server when `tls_config.server_name` does not (upstream 0.24+).
    let tls_host = ctx.hostname.as_deref().unwrap_or(&host);
    let dialogue = run(module, tls_host, addr, facts, log);
    let result = match tokio::time::timeout_at(ctx.deadline, dialogue).await {
        Ok(r) => r,
        Err(_) => Err(Fail::new(
            if facts.connected {
                Reason::Timeout
            } else {
                Reason::ConnectTimeout
            },
            "timeout: the probe's deadline passed",
        )),
    };
    match result {
        Ok(()) => Ok(()),
        Err(f) => fail(log, f),
    }
}

/// Connects to `addr` and runs the dialogue; `host` is the TLS server name when
/// `tls_config.server_name` is not set.
async fn run(
    module: &TcpModule,
    host: &str,
    addr: SocketAddr,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    let started = Instant::now();
    let stream = connect(addr, module.source_ip_address.as_deref(), log).await?;
    facts.phases.connect = started.elapsed();
    facts.connected = true;
    plog!(log, Debug, "successfully dialed");
    let script = Script {
        steps: &module.query_response,
        tls: module.tls,
        tls_config: &module.tls_config,
        host,
    };
    let conn = open(&script, stream, facts, log).await?;
    converse(&script, conn, facts, log).await
}

/// Opens the connection (from `source` when set). A socket that cannot be created or bound is
/// [`Reason::Setup`]; a failed connect is what its error says, else [`Reason::Connect`].
async fn connect(addr: SocketAddr, source: Option<&str>, log: &mut Log) -> Result<TcpStream, Fail> {
    let source = match source {
        None => None,
        Some(src) => {
            let ip: IpAddr = src.parse().map_err(|_| {
                Fail::new(
                    Reason::Setup,
                    format!("error parsing source ip address: {src}"),
                )
            })?;
            plog!(log, Debug, "using local address {ip}");
            Some(ip)
        }
    };
    let opts = SocketOptions {
        source,
        ..SocketOptions::default()
    };
    net::connect(addr, opts, || format!("error dialing TCP {addr}")).await
}
