//! The `unix` prober (blackbox_exporter 0.28): connect to a unix domain socket, optionally over
//! TLS, then the same `query_response` dialogue as the tcp prober (`tcp_dialogue`). The target is
//! the socket's absolute path, as it is (`/run/app.sock`): no scheme, no port.
//!
//! Families: none when the connection (with its `tls: true` handshake) could not be made; after
//! it, `probe_failed_due_to_regex` and `probe_failed_due_to_bytes`, the TLS families when a
//! handshake was made, and `probe_expect_info` for matched steps with `labels`.
//!
//! Phases ([`Phases`]): `resolve` stays 0 (a path is not resolved); `connect` the socket's
//! connect; `tls`, `processing` and `transfer` as for tcp.
//!
//! Failures: a target that is not an absolute path, a TLS handshake wanted without
//! `tls_config.server_name` (a path is no server name) nor `insecure_skip_verify`, and TLS
//! settings that cannot be used are [`Reason::Setup`]; a socket nobody listens on
//! [`Reason::Refused`]; a path that does not exist or may not be connected to
//! [`Reason::Connect`]; the deadline before the connection is up [`Reason::ConnectTimeout`],
//! after it [`Reason::Timeout`]; the handshake [`Reason::Tls`]; a lost connection
//! [`Reason::Reset`]; an `expect` no line matched or `expect_bytes` that differ
//! [`Reason::ExpectMismatch`].

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::tcp::{self, compile_steps, QueryResponse};
use super::tcp_dialogue::{converse, open, Script};
use super::{Ctx, Log, Output, TlsConfig, View};
use crate::diag::FieldError;
use crate::net::classify;
use crate::probe::{Fail, Phases, Reason};

/// The TLS server name used when `tls_config.server_name` is not set and the certificate is not
/// verified: an address, so that no SNI is sent (a socket path is no host name).
const UNVERIFIED_SERVER: &str = "127.0.0.1";

/// blackbox's `unix:` module options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnixModule {
    /// The dialogue (as the tcp prober's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_response: Vec<QueryResponse>,
    /// Connect with TLS.
    pub tls: bool,
    /// TLS settings (for `tls` and `starttls`); `server_name` names the server to verify.
    pub tls_config: TlsConfig,
}

impl UnixModule {
    /// The load-time step: checks the steps as the tcp prober does and keeps each `expect`
    /// compiled. Errors start with the field (`unix.query_response[0].expect: ...`).
    pub fn compile(&mut self) -> Result<(), FieldError> {
        compile_steps("unix", &mut self.query_response)
    }

    /// Whether the dialogue makes a TLS handshake (`tls: true` or a `starttls` step).
    fn uses_tls(&self) -> bool {
        self.tls || self.query_response.iter().any(|q| q.starttls)
    }

    /// The TLS server name when `tls_config.server_name` is not set, or why there is none.
    fn tls_host(&self) -> Result<&'static str, Fail> {
        let named = self
            .tls_config
            .server_name
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        if named || self.tls_config.insecure_skip_verify || !self.uses_tls() {
            return Ok(UNVERIFIED_SERVER);
        }
        Err(Fail::new(
            Reason::Setup,
            "a TLS handshake with a unix socket needs tls_config.server_name (or \
             insecure_skip_verify): a socket path is not a server name",
        ))
    }
}

/// What one unix probe found, filled in as it goes.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The dialogue's facts, kept as the tcp prober keeps them (`resolved` stays empty).
    pub dialogue: tcp::Facts,
    /// The connection, with its `tls: true` handshake, was made: from then on the dialogue's
    /// families are reported.
    pub dialed: bool,
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        if self.dialed {
            self.dialogue.render(out);
        }
    }

    fn phases(&self) -> Phases {
        self.dialogue.phases
    }
}

/// Runs one unix probe, filling in `facts` as it goes.
pub async fn probe(
    module: &UnixModule,
    ctx: &Ctx,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    // Upstream reports both after connecting, whatever the steps.
    facts.dialogue.failed_due_to_bytes = Some(false);
    let dialogue = run(module, &ctx.target, facts, log);
    let result = match tokio::time::timeout_at(ctx.deadline, dialogue).await {
        Ok(r) => r,
        Err(_) => Err(Fail::new(
            if facts.dialogue.connected {
                Reason::Timeout
            } else {
                Reason::ConnectTimeout
            },
            "timeout: the probe's deadline passed",
        )),
    };
    if let Err(f) = &result {
        plog!(log, Error, "{}", f.detail);
    }
    result
}

/// Connects to the socket at `target` and runs the dialogue.
async fn run(
    module: &UnixModule,
    target: &str,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    let path = Path::new(target);
    if !path.is_absolute() {
        return Err(Fail::new(
            Reason::Setup,
            format!("the unix prober's target must be an absolute socket path, not `{target}`"),
        ));
    }
    let host = module.tls_host()?;
    plog!(log, Debug, "dialing unix socket {target}");
    let started = Instant::now();
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| connect_failure(target, &e))?;
    facts.dialogue.phases.connect = started.elapsed();
    facts.dialogue.connected = true;
    let script = Script {
        steps: &module.query_response,
        tls: module.tls,
        tls_config: &module.tls_config,
        host,
    };
    let conn = open(&script, stream, &mut facts.dialogue, log).await?;
    facts.dialed = true;
    plog!(log, Debug, "successfully dialed");
    converse(&script, conn, &mut facts.dialogue, log).await
}

/// The failure of a connect to `path`, by its error kind: nothing listening is
/// [`Reason::Refused`]; no such path, or no permission, is [`Reason::Connect`] naming the path.
fn connect_failure(path: &str, e: &io::Error) -> Fail {
    let detail = match e.kind() {
        io::ErrorKind::NotFound => format!("no unix socket at {path}: {e}"),
        io::ErrorKind::PermissionDenied => {
            format!("permission denied connecting to unix socket {path}: {e}")
        }
        _ => format!("error dialing unix socket {path}: {e}"),
    };
    Fail::new(classify(e).unwrap_or(Reason::Connect), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_names_the_unix_field() {
        let mut m: UnixModule =
            serde_saphyr::from_str("{query_response: [{expect: '('}]}").expect("parses");
        let e = m.compile().unwrap_err();
        assert_eq!(e.field, "unix.query_response[0].expect");
        assert!(e.message.starts_with("invalid regexp"), "{e}");
    }

    #[test]
    fn tls_without_a_server_name_needs_insecure_skip_verify() {
        let mut m = UnixModule {
            tls: true,
            ..Default::default()
        };
        assert_eq!(m.tls_host().unwrap_err().reason, Reason::Setup);
        m.tls_config.insecure_skip_verify = true;
        assert!(m.tls_host().is_ok());
        m.tls_config.insecure_skip_verify = false;
        m.tls_config.server_name = Some("app.local".into());
        assert!(m.tls_host().is_ok());
        assert!(UnixModule::default().tls_host().is_ok());
    }

    #[test]
    fn connect_failures_follow_the_error_kind() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_failure("/s", &refused).reason, Reason::Refused);
        let missing = io::Error::from(io::ErrorKind::NotFound);
        let f = connect_failure("/run/x.sock", &missing);
        assert_eq!(f.reason, Reason::Connect);
        assert!(f.detail.contains("/run/x.sock"), "{}", f.detail);
    }

    #[test]
    fn nothing_is_rendered_before_the_connection() {
        let mut out = Output::new();
        Facts::default().render(&mut out);
        assert!(out.names().is_empty());
        let mut facts = Facts {
            dialed: true,
            ..Default::default()
        };
        facts.dialogue.failed_due_to_bytes = Some(false);
        facts.render(&mut out);
        assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
        assert_eq!(out.value("probe_failed_due_to_bytes"), Some(0.0));
    }
}
