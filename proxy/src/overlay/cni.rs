//! The CNI conflist kube-flannel.yml's `install-cni` init container writes
//! to `/etc/cni/net.d/10-flannel.conflist`: the `flannel` plugin (which
//! reads subnet.env and delegates to the `bridge` plugin on `cni0` with
//! `host-local` IPAM) plus `portmap`. Written only when asked for
//! (`--overlay-cni-conflist`).

use std::path::Path;

use super::subnet_env::write_atomic;

/// kube-flannel.yml's `cni-conf.json`, byte for byte.
pub const FLANNEL_CONFLIST: &str = r#"{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "flannel",
      "delegate": {
        "hairpinMode": true,
        "isDefaultGateway": true
      }
    },
    {
      "type": "portmap",
      "capabilities": {
        "portMappings": true
      }
    }
  ]
}
"#;

/// Writes the conflist atomically (0644) unless it already holds exactly
/// that text; returns whether it wrote.
pub fn write_conflist(path: &Path) -> std::io::Result<bool> {
    write_atomic(path, FLANNEL_CONFLIST)
}
