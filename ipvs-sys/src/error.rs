//! Typed errors: every kernel error code becomes an [`ErrorKind`] a caller can
//! match on, with a message that tells a person what to do about it.

use std::fmt;

/// A reply from the kernel that does not follow the netlink ABI.
///
/// Decoders return this for truncated, overlong or garbage input; they never
/// panic on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl DecodeError {
    /// A decode error with a description of what was wrong.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed netlink message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// What went wrong, independent of which object it happened to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object being added already exists (EEXIST).
    Exists,
    /// The virtual service does not exist (ESRCH).
    NoSuchService,
    /// The real server does not exist in that virtual service (ENOENT).
    NoSuchDestination,
    /// The scheduler or persistence engine named is not known to the kernel
    /// (ENOENT on a service command).
    UnknownScheduler,
    /// The kernel rejected an attribute or combination of attributes (EINVAL),
    /// or the request failed validation before it was sent.
    InvalidArgument,
    /// The caller lacks CAP_NET_ADMIN (EPERM/EACCES).
    PermissionDenied,
    /// IPVS (or another needed kernel feature) is not in this kernel.
    NotAvailable,
    /// The network interface does not exist (ENODEV).
    NoSuchLink,
    /// The address is not configured on that interface (EADDRNOTAVAIL).
    NoSuchAddress,
    /// The neighbour, FDB entry or route does not exist (ENOENT on a
    /// neighbour command, ESRCH on a route command).
    NoSuchEntry,
    /// The kernel does not support this kind of object (EOPNOTSUPP), e.g. a
    /// dummy link on a kernel without CONFIG_DUMMY.
    Unsupported,
    /// Another kernel error code; see [`Error::errno`].
    Kernel,
    /// A socket call failed.
    Io,
    /// A reply could not be decoded.
    Decode,
}

/// The kind of object a request was about; used to give errno values their
/// command-specific meaning (ENOENT means different things to different
/// commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    Family,
    Service,
    Destination,
    Config,
    Link,
    Address,
    Neighbour,
    Route,
}

impl ErrorKind {
    pub(crate) fn from_errno(errno: i32, subject: Subject) -> Self {
        match (errno, subject) {
            (libc::EEXIST, _) => Self::Exists,
            (libc::ESRCH, Subject::Service | Subject::Destination) => Self::NoSuchService,
            (libc::ENOENT, Subject::Destination) => Self::NoSuchDestination,
            (libc::ENOENT, Subject::Service) => Self::UnknownScheduler,
            (libc::ENOENT, Subject::Family) => Self::NotAvailable,
            (libc::ENOENT, Subject::Neighbour) | (libc::ESRCH, Subject::Route) => Self::NoSuchEntry,
            (libc::EINVAL | libc::ERANGE | libc::E2BIG, _) => Self::InvalidArgument,
            (libc::EPERM | libc::EACCES, _) => Self::PermissionDenied,
            (libc::ENODEV, _) => Self::NoSuchLink,
            (libc::EADDRNOTAVAIL, _) => Self::NoSuchAddress,
            (libc::EOPNOTSUPP | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT, _) => Self::Unsupported,
            _ => Self::Kernel,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Exists => "already exists",
            Self::NoSuchService => "no such virtual service",
            Self::NoSuchDestination => "no such real server in this virtual service",
            Self::UnknownScheduler => {
                "the kernel has no such scheduler or persistence engine \
                 (is the ip_vs_<name> module available?)"
            }
            Self::InvalidArgument => "invalid argument",
            Self::PermissionDenied => {
                "permission denied: this needs CAP_NET_ADMIN (run as root or grant the capability)"
            }
            Self::NotAvailable => {
                "IPVS is not available in this kernel: load it with `modprobe ip_vs` \
                 or use a kernel built with CONFIG_IP_VS"
            }
            Self::NoSuchLink => "no such network interface",
            Self::NoSuchAddress => "no such address on this interface",
            Self::NoSuchEntry => "no such neighbour, forwarding entry or route",
            Self::Unsupported => "not supported by this kernel",
            Self::Kernel => "kernel error",
            Self::Io => "netlink socket error",
            Self::Decode => "malformed reply from the kernel",
        }
    }
}

/// An error from an IPVS or rtnetlink operation.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: String,
    errno: Option<i32>,
    detail: Option<String>,
}

impl Error {
    /// An error of `kind` about `context` (the operation and its object).
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            errno: None,
            detail: None,
        }
    }

    pub(crate) fn from_kernel(
        errno: i32,
        subject: Subject,
        context: impl Into<String>,
        detail: Option<String>,
    ) -> Self {
        Self {
            kind: ErrorKind::from_errno(errno, subject),
            context: context.into(),
            errno: Some(errno),
            detail,
        }
    }

    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Self {
            kind: ErrorKind::Io,
            context: context.into(),
            errno: err.raw_os_error(),
            detail: Some(err.to_string()),
        }
    }

    pub(crate) fn decode(context: impl Into<String>, err: DecodeError) -> Self {
        Self {
            kind: ErrorKind::Decode,
            context: context.into(),
            errno: None,
            detail: Some(err.to_string()),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The kernel's error number, when the kernel reported one.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    /// The operation and object this error is about, e.g.
    /// `add service TCP 10.0.0.1:80`.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.kind.describe())?;
        if let Some(errno) = self.errno {
            write!(f, " (errno {errno}")?;
            if let Some(detail) = &self.detail {
                write!(f, ": {detail}")?;
            }
            write!(f, ")")?;
        } else if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enoent_means_different_things_per_subject() {
        assert_eq!(
            ErrorKind::from_errno(libc::ENOENT, Subject::Destination),
            ErrorKind::NoSuchDestination
        );
        assert_eq!(
            ErrorKind::from_errno(libc::ENOENT, Subject::Service),
            ErrorKind::UnknownScheduler
        );
        assert_eq!(
            ErrorKind::from_errno(libc::ENOENT, Subject::Family),
            ErrorKind::NotAvailable
        );
        assert_eq!(
            ErrorKind::from_errno(libc::ESRCH, Subject::Destination),
            ErrorKind::NoSuchService
        );
    }

    #[test]
    fn message_names_object_and_remedy() {
        let e = Error::from_kernel(
            libc::EPERM,
            Subject::Service,
            "add service TCP 10.0.0.1:80",
            None,
        );
        let s = e.to_string();
        assert!(
            s.starts_with("add service TCP 10.0.0.1:80: permission denied"),
            "{s}"
        );
        assert!(s.contains("CAP_NET_ADMIN"), "{s}");
        assert!(s.contains("errno 1"), "{s}");
    }
}
