//! `/run/flannel/subnet.env`, the file the `flannel` CNI plugin reads:
//! rendered as flanneld's `WriteSubnetFile` does and written atomically
//! (temporary file in the same directory, then rename; mode 0644), so the
//! plugin never sees half a file.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};

/// The values of subnet.env.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`.
    pub network: Option<Ipv4Net>,
    /// This node's IPv4 pod subnet (written as its first address).
    pub subnet: Option<Ipv4Net>,
    /// `FLANNEL_IPV6_NETWORK`.
    pub ipv6_network: Option<Ipv6Net>,
    /// This node's IPv6 pod subnet (written as its first address).
    pub ipv6_subnet: Option<Ipv6Net>,
    /// `FLANNEL_MTU`.
    pub mtu: u32,
    /// `FLANNEL_IPMASQ`: whether the overlay masquerades (the CNI plugin
    /// then tells the bridge plugin not to).
    pub ip_masq: bool,
}

fn first_v4(n: Ipv4Net) -> String {
    let ip = Ipv4Addr::from(u32::from(n.network()).wrapping_add(1));
    format!("{ip}/{}", n.prefix_len())
}

fn first_v6(n: Ipv6Net) -> String {
    let ip = Ipv6Addr::from(u128::from(n.network()).wrapping_add(1));
    format!("{ip}/{}", n.prefix_len())
}

impl SubnetEnv {
    /// The file's text, e.g.
    /// `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some(n) = self.network {
            let _ = writeln!(s, "FLANNEL_NETWORK={n}");
        }
        if let Some(n) = self.subnet {
            let _ = writeln!(s, "FLANNEL_SUBNET={}", first_v4(n));
        }
        if let Some(n) = self.ipv6_network {
            let _ = writeln!(s, "FLANNEL_IPV6_NETWORK={n}");
        }
        if let Some(n) = self.ipv6_subnet {
            let _ = writeln!(s, "FLANNEL_IPV6_SUBNET={}", first_v6(n));
        }
        let _ = writeln!(s, "FLANNEL_MTU={}", self.mtu);
        let _ = writeln!(s, "FLANNEL_IPMASQ={}", self.ip_masq);
        s
    }
}

/// Writes `contents` to `path` atomically with mode 0644, creating the
/// directory if needed. Returns false (and writes nothing) when the file
/// already holds exactly `contents`.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| true)
}
