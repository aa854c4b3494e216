//! The real kernel side for the shell: [`OverlayKernel`] (rtnetlink VXLAN
//! device, neighbours, FDB entries, routes) plus underlay discovery, bound to
//! one network namespace: the caller's, or a named one (the netlink sockets
//! are opened there and keep it; discovery runs on a thread that joins it).

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use ipvs_sys::rtnl::RtnlClient;

use super::config::NetConf;
use super::kernel::OverlayKernel;
use super::masq::Masq;
use super::model::{DeviceSpec, DeviceState, RemoteNode};
use super::plan::UnderlayFacts;
use super::run::{KernelReport, OverlayDataplane};
use super::underlay;
use crate::netfilter::SystemRunner;

/// The overlay's kernel side on this host.
pub struct SystemDataplane {
    kernel: OverlayKernel,
    rtnl: RtnlClient,
    netns: Option<PathBuf>,
}

/// Runs `f` on a thread that first joins the network namespace at `path`.
fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            // SAFETY: setns changes only this (scoped, short-lived) thread's
            // namespace; the descriptor is valid for the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(format!(
                    "setns {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| "netns thread panicked".to_owned())?
    })
}

fn open_sockets() -> Result<(OverlayKernel, RtnlClient), String> {
    let kernel = OverlayKernel::open().map_err(|e| e.to_string())?;
    let rtnl = RtnlClient::open().map_err(|e| e.to_string())?;
    Ok((kernel, rtnl))
}

impl SystemDataplane {
    /// Opens the kernel side in the calling thread's network namespace.
    pub fn open() -> Result<Self, String> {
        let (kernel, rtnl) = open_sockets()?;
        Ok(Self {
            kernel,
            rtnl,
            netns: None,
        })
    }

    /// Opens the kernel side in the network namespace at `path` (e.g.
    /// `/run/netns/NAME`), whatever the caller's is.
    pub fn open_in_netns(path: &Path) -> Result<Self, String> {
        let (kernel, rtnl) = in_netns(path, open_sockets)??;
        Ok(Self {
            kernel,
            rtnl,
            netns: Some(path.to_owned()),
        })
    }
}

fn report(r: super::kernel::SyncReport) -> KernelReport {
    KernelReport {
        ops: r.ops,
        failures: r.failures,
    }
}

impl OverlayDataplane for SystemDataplane {
    fn underlay(
        &mut self,
        iface: Option<&str>,
        public_ip: Option<IpAddr>,
        overlay: &[IpNet],
    ) -> Result<UnderlayFacts, String> {
        let rtnl = &mut self.rtnl;
        match &self.netns {
            None => underlay::discover(rtnl, iface, public_ip, overlay),
            Some(path) => in_netns(path, || underlay::discover(rtnl, iface, public_ip, overlay))?,
        }
    }

    fn ensure_device(&mut self, spec: &DeviceSpec) -> Result<DeviceState, String> {
        self.kernel.ensure_device(spec).map_err(|e| e.to_string())
    }

    fn sync(
        &mut self,
        device: &DeviceState,
        spec: &DeviceSpec,
        remotes: &[RemoteNode],
    ) -> Result<KernelReport, String> {
        self.kernel
            .sync(device, spec, remotes)
            .map(report)
            .map_err(|e| e.to_string())
    }

    fn apply_changes(
        &mut self,
        device: &DeviceState,
        removed: &[RemoteNode],
        added: &[RemoteNode],
    ) -> Result<KernelReport, String> {
        self.kernel
            .apply_changes(device, removed, added)
            .map(report)
            .map_err(|e| e.to_string())
    }
}

/// `--cleanup` with the overlay configured: removes `flannel.<VNI>` and
/// `flannel-v6.<VNI>` (with them their neighbours, FDB entries and
/// routes) and our FLANNEL-* chains. Returns the errors.
pub fn cleanup(conf: &NetConf) -> Vec<String> {
    let mut errors = Vec::new();
    match OverlayKernel::open() {
        Ok(mut k) => {
            for name in [
                format!("flannel.{}", conf.backend.vni),
                format!("flannel-v6.{}", conf.backend.vni),
            ] {
                if let Err(e) = k.remove_device(&name) {
                    errors.push(format!("remove {name}: {e}"));
                }
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    errors.extend(Masq::new(SystemRunner::new()).cleanup());
    errors
}

/// Starts the overlay beside the proxy in this network namespace: Nodes
/// from the API server (or the `--manifests` directory, without status
/// patches), the real kernel, iptables through the system runner.
pub async fn spawn_system(
    opts: super::run::OverlayOptions,
    client: Option<kube::Client>,
    manifests: Option<PathBuf>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let dataplane = tokio::task::spawn_blocking(SystemDataplane::open)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("overlay: {e}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    match (&client, manifests) {
        (Some(c), _) => {
            tokio::spawn(super::nodes::watch_nodes(c.clone(), tx));
        }
        (None, Some(dir)) => {
            tokio::spawn(super::nodes::watch_manifest_nodes(dir, tx));
        }
        (None, None) => return Err("overlay: needs an API server or --manifests".into()),
    }
    Ok(tokio::spawn(async move {
        if let Err(e) = super::run::run(opts, client, rx, dataplane, SystemRunner::new()).await {
            tracing::error!(error = %e, "overlay stopped");
        }
    }))
}
