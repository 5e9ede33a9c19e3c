//! Local resource errors: the errors that say watchfire itself is short of something (file
//! descriptors, socket buffers, ephemeral ports, memory), not that the target failed. They are
//! recognised by the OS error number of the [`io::Error`] found by walking `source()`, never by
//! the message.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use nix::errno::Errno;

/// What watchfire ran out of. The set is closed: each value is a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocalCause {
    /// The process's file descriptor limit (`EMFILE`, "Too many open files").
    FileDescriptors,
    /// The system-wide file table (`ENFILE`).
    SystemFileDescriptors,
    /// Kernel socket buffers (`ENOBUFS`).
    Buffers,
    /// No local port left for an outgoing connection (`EADDRNOTAVAIL` on connect).
    EphemeralPorts,
    /// Memory (`ENOMEM`).
    Memory,
}

impl LocalCause {
    /// Every cause, in label order.
    pub const ALL: [LocalCause; 5] = [
        LocalCause::FileDescriptors,
        LocalCause::SystemFileDescriptors,
        LocalCause::Buffers,
        LocalCause::EphemeralPorts,
        LocalCause::Memory,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalCause::FileDescriptors => "fd_limit",
            LocalCause::SystemFileDescriptors => "system_fd_limit",
            LocalCause::Buffers => "socket_buffers",
            LocalCause::EphemeralPorts => "ephemeral_ports",
            LocalCause::Memory => "memory",
        }
    }

    /// Index into per-cause counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LocalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The local cause of one I/O error, from its OS error number (or `OutOfMemory` kind).
pub fn io_local_cause(e: &io::Error) -> Option<LocalCause> {
    if e.kind() == io::ErrorKind::OutOfMemory {
        return Some(LocalCause::Memory);
    }
    let errno = Errno::from_raw(e.raw_os_error()?);
    Some(match errno {
        Errno::EMFILE => LocalCause::FileDescriptors,
        Errno::ENFILE => LocalCause::SystemFileDescriptors,
        Errno::ENOBUFS => LocalCause::Buffers,
        Errno::EADDRNOTAVAIL => LocalCause::EphemeralPorts,
        Errno::ENOMEM => LocalCause::Memory,
        _ => return None,
    })
}

/// The local cause of `e`: the first [`io::Error`] found by walking its `source()` chain (an
/// `io::Error`'s own inner error included) that names one.
pub fn local_cause(e: &(dyn StdError + 'static)) -> Option<LocalCause> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(c) = io_local_cause(io) {
                return Some(c);
            }
            // A custom io::Error's `source()` skips the error it wraps: look at it too.
            if let Some(c) = io.get_ref().and_then(|inner| local_cause(inner)) {
                return Some(c);
            }
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_numbers_name_the_local_cause() {
        let cases = [
            (Errno::EMFILE, LocalCause::FileDescriptors),
            (Errno::ENFILE, LocalCause::SystemFileDescriptors),
            (Errno::ENOBUFS, LocalCause::Buffers),
            (Errno::EADDRNOTAVAIL, LocalCause::EphemeralPorts),
            (Errno::ENOMEM, LocalCause::Memory),
        ];
        for (errno, cause) in cases {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert_eq!(io_local_cause(&e), Some(cause), "{errno}");
        }
        let refused = io::Error::from_raw_os_error(Errno::ECONNREFUSED as i32);
        assert_eq!(io_local_cause(&refused), None);
        assert_eq!(
            io_local_cause(&io::Error::other("Too many open files")),
            None
        );
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_cause_is_found_under_wrappers() {
        let e = Wrapper(io::Error::from_raw_os_error(Errno::EMFILE as i32));
        assert_eq!(local_cause(&e), Some(LocalCause::FileDescriptors));
        let inner = io::Error::other(io::Error::from_raw_os_error(Errno::ENOBUFS as i32));
        assert_eq!(local_cause(&inner), Some(LocalCause::Buffers));
    }
}
