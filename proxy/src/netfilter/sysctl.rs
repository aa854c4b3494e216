//! The sysctls kube-proxy's IPVS mode sets (`NewProxier` in
//! `pkg/proxy/ipvs/proxier.go`), as a typed list, and an idempotent writer
//! for `/proc/sys` (or any other root, for tests).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A kernel release, `major.minor.patch` (`6.18.44-fc-v445` → 6.18.44).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch (0 when absent).
    pub patch: u32,
}

impl KernelVersion {
    /// A version.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses a release string as `uname -r` prints it: leading
    /// `MAJOR.MINOR[.PATCH]`, anything after the digits ignored
    /// (`5.4.0-150-generic`, `4.18.0-513.el8.x86_64`, `6.1`).
    pub fn parse(release: &str) -> Option<Self> {
        let mut nums = release.trim().split(['.', '-', '+', '_']).map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            (digits.len() == p.len() && !digits.is_empty())
                .then(|| digits.parse::<u32>().ok())
                .flatten()
        });
        let major = nums.next()??;
        let minor = nums.next()??;
        let patch = nums.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }

    /// The running kernel's version, from `ROOT/kernel/osrelease`.
    pub fn read(root: &Path) -> io::Result<Self> {
        let text = std::fs::read_to_string(root.join("kernel/osrelease"))?;
        Self::parse(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unparsable kernel release {text:?}"),
            )
        })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// First kernel where `conn_reuse_mode` can be set (kube-proxy's
/// `IPVSConnReuseModeMinSupportedKernelVersion`).
pub const CONN_REUSE_MIN_KERNEL: KernelVersion = KernelVersion::new(4, 1, 0);
/// First kernel where `conn_reuse_mode=1` no longer delays reused ports and
/// kube-proxy leaves it alone (`IPVSConnReuseModeFixedKernelVersion`,
/// kubernetes#93297).
pub const CONN_REUSE_FIXED_KERNEL: KernelVersion = KernelVersion::new(5, 9, 0);

/// One sysctl: a path under `/proc/sys` and the integer it should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sysctl {
    /// Path relative to `/proc/sys`, e.g. `net/ipv4/vs/conntrack`.
    pub path: &'static str,
    /// Wanted value.
    pub value: i64,
}

/// `net/ipv4/vs/conntrack`.
pub const VS_CONNTRACK: &str = "net/ipv4/vs/conntrack";
/// `net/ipv4/vs/conn_reuse_mode`.
pub const VS_CONN_REUSE_MODE: &str = "net/ipv4/vs/conn_reuse_mode";
/// `net/ipv4/vs/expire_nodest_conn`.
pub const VS_EXPIRE_NODEST_CONN: &str = "net/ipv4/vs/expire_nodest_conn";
/// `net/ipv4/vs/expire_quiescent_template`.
pub const VS_EXPIRE_QUIESCENT_TEMPLATE: &str = "net/ipv4/vs/expire_quiescent_template";
/// `net/ipv4/ip_forward`.
pub const IP_FORWARD: &str = "net/ipv4/ip_forward";
/// `net/ipv4/conf/all/arp_ignore`.
pub const ARP_IGNORE: &str = "net/ipv4/conf/all/arp_ignore";
/// `net/ipv4/conf/all/arp_announce`.
pub const ARP_ANNOUNCE: &str = "net/ipv4/conf/all/arp_announce";

/// What kube-proxy does with `conn_reuse_mode` on a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnReuse {
    /// 4.1 ≤ kernel < 5.9: set it to 0 (kubernetes#70747).
    SetZero,
    /// kernel ≥ 5.9: left as is (kubernetes#93297).
    LeaveAsIs,
    /// kernel < 4.1: cannot be set; kube-proxy logs an error and goes on.
    Unsupported,
}

impl ConnReuse {
    /// The decision for `kernel`.
    pub fn for_kernel(kernel: KernelVersion) -> Self {
        if kernel < CONN_REUSE_MIN_KERNEL {
            Self::Unsupported
        } else if kernel >= CONN_REUSE_FIXED_KERNEL {
            Self::LeaveAsIs
        } else {
            Self::SetZero
        }
    }
}

/// The sysctls to ensure, in kube-proxy's order, with the `conn_reuse_mode`
/// decision that shaped the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlPlan {
    /// What to write.
    pub sysctls: Vec<Sysctl>,
    /// What was decided about `conn_reuse_mode`.
    pub conn_reuse: ConnReuse,
}

/// kube-proxy's list: `vs/conntrack=1`, `vs/conn_reuse_mode=0` (kernels
/// 4.1–5.8 only), `vs/expire_nodest_conn=1`, `vs/expire_quiescent_template=1`,
/// `ip_forward=1`, and with `strict_arp` `conf/all/arp_ignore=1` and
/// `conf/all/arp_announce=2`.
pub fn ipvs_sysctls(kernel: KernelVersion, strict_arp: bool) -> SysctlPlan {
    let conn_reuse = ConnReuse::for_kernel(kernel);
    let mut sysctls = vec![Sysctl {
        path: VS_CONNTRACK,
        value: 1,
    }];
    if conn_reuse == ConnReuse::SetZero {
        sysctls.push(Sysctl {
            path: VS_CONN_REUSE_MODE,
            value: 0,
        });
    }
    sysctls.extend([
        Sysctl {
            path: VS_EXPIRE_NODEST_CONN,
            value: 1,
        },
        Sysctl {
            path: VS_EXPIRE_QUIESCENT_TEMPLATE,
            value: 1,
        },
        Sysctl {
            path: IP_FORWARD,
            value: 1,
        },
    ]);
    if strict_arp {
        sysctls.extend([
            Sysctl {
                path: ARP_IGNORE,
                value: 1,
            },
            Sysctl {
                path: ARP_ANNOUNCE,
                value: 2,
            },
        ]);
    }
    SysctlPlan {
        sysctls,
        conn_reuse,
    }
}

/// What [`SysctlWriter::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlOutcome {
    /// The value was already right; nothing was written.
    Unchanged,
    /// The value was written; this was the old one.
    Written {
        /// The value before.
        previous: i64,
    },
}

/// A sysctl that could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// Reading or writing the file failed (a `vs/*` file is missing when
    /// `ip_vs` is not loaded).
    #[error("sysctl {path}: {source}")]
    Io {
        /// The sysctl.
        path: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The file did not hold an integer.
    #[error("sysctl {path}: not an integer: {text:?}")]
    NotInteger {
        /// The sysctl.
        path: &'static str,
        /// What it held.
        text: String,
    },
    /// The write was accepted but reading back gave another value.
    #[error("sysctl {path}: wrote {wanted}, reads back {got}")]
    NotApplied {
        /// The sysctl.
        path: &'static str,
        /// Wanted value.
        wanted: i64,
        /// Value read back.
        got: i64,
    },
}

/// Reads and writes sysctls under a root (`/proc/sys` on a node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlWriter {
    root: PathBuf,
}

impl Default for SysctlWriter {
    fn default() -> Self {
        Self::new("/proc/sys")
    }
}

impl SysctlWriter {
    /// A writer for sysctls under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The current value of `path`.
    pub fn read(&self, path: &'static str) -> Result<i64, SysctlError> {
        let text = std::fs::read_to_string(self.root.join(path))
            .map_err(|source| SysctlError::Io { path, source })?;
        text.trim()
            .parse::<i64>()
            .map_err(|_| SysctlError::NotInteger {
                path,
                text: text.clone(),
            })
    }

    /// Makes `sysctl` hold its value, writing only when it differs
    /// (kube-proxy's `EnsureSysctl`), and checks the write took.
    pub fn ensure(&self, sysctl: &Sysctl) -> Result<SysctlOutcome, SysctlError> {
        let previous = self.read(sysctl.path)?;
        if previous == sysctl.value {
            return Ok(SysctlOutcome::Unchanged);
        }
        std::fs::write(self.root.join(sysctl.path), format!("{}\n", sysctl.value)).map_err(
            |source| SysctlError::Io {
                path: sysctl.path,
                source,
            },
        )?;
        let got = self.read(sysctl.path)?;
        if got != sysctl.value {
            return Err(SysctlError::NotApplied {
                path: sysctl.path,
                wanted: sysctl.value,
                got,
            });
        }
        Ok(SysctlOutcome::Written { previous })
    }

    /// Ensures every sysctl of the list, going on after failures; one result
    /// per sysctl, in order.
    pub fn ensure_all(
        &self,
        sysctls: &[Sysctl],
    ) -> Vec<(Sysctl, Result<SysctlOutcome, SysctlError>)> {
        sysctls.iter().map(|s| (*s, self.ensure(s))).collect()
    }
}
