//! `--web.systemd-socket`: the listeners systemd (or any socket activator) opened and passed
//! on, as exporter-toolkit takes them: `LISTEN_PID` must be this process's id and `LISTEN_FDS`
//! the number of sockets, found at fd 3 onwards; each must be a listening TCP socket. The
//! file descriptors are taken over by the `listenfd` crate, so no `unsafe` lives here.

use std::io;

use tokio::net::TcpListener;

/// Why the passed-on listeners cannot be used; each message names the variable or the fd.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_PID` or `LISTEN_FDS` is not set.
    #[error("--web.systemd-socket: {0} is not set: start watchfire from a systemd socket unit (or a socket activator) or drop the flag")]
    Missing(&'static str),
    /// A variable is not a number of the right kind.
    #[error("--web.systemd-socket: {var}=`{value}` is not a positive number")]
    NotANumber {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The sockets were passed to another process.
    #[error("--web.systemd-socket: LISTEN_PID={pid} names another process (this one is {ours}): the sockets are not ours")]
    NotOurs {
        /// `LISTEN_PID`.
        pid: u32,
        /// This process's id.
        ours: u32,
    },
    /// A passed fd is not a listening TCP socket.
    #[error("--web.systemd-socket: fd {fd} is not a listening TCP socket: {source}")]
    NotTcp {
        /// The file descriptor.
        fd: usize,
        /// What the check found.
        source: io::Error,
    },
}

/// The first fd the activation protocol passes.
pub const FIRST_FD: usize = 3;

/// Checks `LISTEN_PID` and `LISTEN_FDS` (given as read from the environment) against this
/// process's id: how many sockets were passed.
pub fn check_env(
    pid: Option<&str>,
    fds: Option<&str>,
    ours: u32,
) -> Result<usize, ActivationError> {
    let pid = pid.ok_or(ActivationError::Missing("LISTEN_PID"))?;
    let fds = fds.ok_or(ActivationError::Missing("LISTEN_FDS"))?;
    let pid: u32 =
        pid.trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ActivationError::NotANumber {
                var: "LISTEN_PID",
                value: pid.to_string(),
            })?;
    if pid != ours {
        return Err(ActivationError::NotOurs { pid, ours });
    }
    fds.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ActivationError::NotANumber {
            var: "LISTEN_FDS",
            value: fds.to_string(),
        })
}

/// The listeners passed to this process, in fd order, ready for [`super::serve_with`]. Must run
/// inside a tokio runtime.
pub fn listeners() -> Result<Vec<TcpListener>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let count = check_env(pid.as_deref(), fds.as_deref(), std::process::id())?;
    let mut passed = listenfd::ListenFd::from_env();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let fd = FIRST_FD + i;
        let not_tcp = |source| ActivationError::NotTcp { fd, source };
        let std = passed
            .take_tcp_listener(i)
            .map_err(not_tcp)?
            .ok_or_else(|| not_tcp(io::Error::other("the activator did not pass it")))?;
        std.set_nonblocking(true).map_err(not_tcp)?;
        out.push(TcpListener::from_std(std).map_err(not_tcp)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_must_name_this_process_and_some_sockets() {
        assert_eq!(check_env(Some("42"), Some("2"), 42).unwrap(), 2);
        let e = |pid, fds| check_env(pid, fds, 42).unwrap_err().to_string();
        assert!(e(None, Some("1")).contains("LISTEN_PID is not set"));
        assert!(e(Some("42"), None).contains("LISTEN_FDS is not set"));
        assert!(e(Some("7"), Some("1")).contains("LISTEN_PID=7 names another process"));
        assert!(e(Some("x"), Some("1")).contains("LISTEN_PID=`x`"));
        assert!(e(Some("42"), Some("0")).contains("LISTEN_FDS=`0`"));
        assert!(e(Some("42"), Some("-1")).contains("LISTEN_FDS=`-1`"));
    }
}
