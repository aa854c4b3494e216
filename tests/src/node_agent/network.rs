//! A simulated node's pod network: one Linux bridge per node holding the
//! first address of the node's podCIDR (the pods' default gateway), and per
//! pod a network namespace joined to it by a veth pair (`eth0` inside).
//! The bridge lives in the agent's own namespace (the host's, or the IPVS
//! VM's), so every pod is reachable from there by its podIP.

use std::net::Ipv4Addr;
use std::process::Command;

use ipnet::Ipv4Net;

/// Why a network change failed (the `ip` command and its stderr).
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {stderr}")]
pub struct NetError {
    /// The command line.
    pub command: String,
    /// What it printed.
    pub stderr: String,
}

fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetError {
            command: format!("ip {}", args.join(" ")),
            stderr: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError {
            command: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// A short stable tag for a name (link names are limited to 15 bytes).
pub fn tag(name: &str) -> String {
    // FNV-1a: stable across runs and platforms, no dependency.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The node's bridge and the podCIDR it serves.
#[derive(Debug)]
pub struct NodeNetwork {
    /// The bridge's name (`skb` + tag of the node name).
    pub bridge: String,
    /// The node's podCIDR.
    pub cidr: Ipv4Net,
    /// Addresses in use (index = host part).
    used: Vec<bool>,
}

impl NodeNetwork {
    /// Creates (or re-creates, deleting a stale one first) the bridge for
    /// `node` with the gateway address of `cidr`.
    pub fn create(node: &str, cidr: Ipv4Net) -> Result<Self, NetError> {
        let bridge = format!("skb{}", tag(node));
        let _ = ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        let gw = format!("{}/{}", gateway(cidr), cidr.prefix_len());
        ip(&["addr", "add", &gw, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        let size = 1usize << (32 - u32::from(cidr.prefix_len())).min(16);
        let mut used = vec![false; size];
        // Network, gateway and broadcast addresses are never handed out.
        for i in [0, 1, size - 1] {
            used[i] = true;
        }
        Ok(Self { bridge, cidr, used })
    }

    /// The pods' default gateway (the bridge's address).
    pub fn gateway(&self) -> Ipv4Addr {
        gateway(self.cidr)
    }

    /// Takes the lowest free address of the podCIDR.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let i = self.used.iter().position(|u| !u)?;
        self.used[i] = true;
        Some(Ipv4Addr::from(u32::from(self.cidr.network()) + i as u32))
    }

    /// Returns an address to the pool.
    pub fn release(&mut self, addr: Ipv4Addr) {
        let i = (u32::from(addr) - u32::from(self.cidr.network())) as usize;
        if let Some(u) = self.used.get_mut(i) {
            *u = false;
        }
    }

    /// Creates a pod's namespace `netns` with `addr` on its `eth0`, joined
    /// to the bridge; loopback up, default route via the bridge.
    pub fn add_pod(&self, netns: &str, addr: Ipv4Addr) -> Result<(), NetError> {
        let host_if = format!("skv{}", tag(netns));
        let _ = ip(&["netns", "del", netns]);
        let _ = ip(&["link", "del", &host_if]);
        ip(&["netns", "add", netns])?;
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ])?;
        ip(&["link", "set", &host_if, "master", &self.bridge])?;
        ip(&["link", "set", &host_if, "up"])?;
        let a = format!("{addr}/{}", self.cidr.prefix_len());
        ip(&["-n", netns, "addr", "add", &a, "dev", "eth0"])?;
        ip(&["-n", netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", netns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            netns,
            "route",
            "add",
            "default",
            "via",
            &self.gateway().to_string(),
        ])?;
        Ok(())
    }

    /// Deletes a pod's namespace (its veth pair goes with it).
    pub fn remove_pod(&self, netns: &str) {
        let _ = ip(&["netns", "del", netns]);
    }
}

impl Drop for NodeNetwork {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

fn gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}
