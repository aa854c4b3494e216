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
use super::error::OverlayError;
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
fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, OverlayError> {
    let netns = |source| OverlayError::Netns {
        path: path.to_owned(),
        source,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(path).map_err(netns)?;
            // SAFETY: setns changes only this (scoped, short-lived) thread's
            // namespace; the descriptor is valid for the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(netns(std::io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| OverlayError::NetnsThread)?
    })
}

fn open_sockets() -> Result<(OverlayKernel, RtnlClient), OverlayError> {
    let kernel = OverlayKernel::open()?;
    let rtnl = RtnlClient::open().map_err(OverlayError::Rtnl)?;
    Ok((kernel, rtnl))
}

impl SystemDataplane {
    /// Opens the kernel side in the calling thread's network namespace.
    pub fn open() -> Result<Self, OverlayError> {
        let (kernel, rtnl) = open_sockets()?;
        Ok(Self {
            kernel,
            rtnl,
            netns: None,
        })
    }

    /// Opens the kernel side in the network namespace at `path` (e.g.
    /// `/run/netns/NAME`), whatever the caller's is.
    pub fn open_in_netns(path: &Path) -> Result<Self, OverlayError> {
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
    ) -> Result<UnderlayFacts, OverlayError> {
        let rtnl = &mut self.rtnl;
        Ok(match &self.netns {
            None => underlay::discover(rtnl, iface, public_ip, overlay)?,
            Some(path) => in_netns(path, || underlay::discover(rtnl, iface, public_ip, overlay))??,
        })
    }

    fn ensure_device(&mut self, spec: &DeviceSpec) -> Result<DeviceState, OverlayError> {
        Ok(self.kernel.ensure_device(spec)?)
    }

    fn sync(
        &mut self,
        device: &DeviceState,
        spec: &DeviceSpec,
        remotes: &[RemoteNode],
    ) -> Result<KernelReport, OverlayError> {
        Ok(self.kernel.sync(device, spec, remotes).map(report)?)
    }

    fn apply_changes(
        &mut self,
        device: &DeviceState,
        removed: &[RemoteNode],
        added: &[RemoteNode],
    ) -> Result<KernelReport, OverlayError> {
        Ok(self
            .kernel
            .apply_changes(device, removed, added)
            .map(report)?)
    }
}

/// `--cleanup` with the overlay configured: removes `flannel.<VNI>` and
/// `flannel-v6.<VNI>` (with them their neighbours, FDB entries and
/// routes) and our FLANNEL-* chains. Returns the errors.
pub fn cleanup(conf: &NetConf) -> Vec<OverlayError> {
    let mut errors = Vec::new();
    match OverlayKernel::open() {
        Ok(mut k) => {
            for name in [
                format!("flannel.{}", conf.backend.vni),
                format!("flannel-v6.{}", conf.backend.vni),
            ] {
                if let Err(source) = k.remove_device(&name) {
                    errors.push(OverlayError::RemoveDevice { name, source });
                }
            }
        }
        Err(e) => errors.push(e.into()),
    }
    errors.extend(
        Masq::new(SystemRunner::new())
            .cleanup()
            .into_iter()
            .map(OverlayError::from),
    );
    errors
}

/// Starts the overlay beside the proxy in this network namespace: Nodes
/// from the API server (or the `--manifests` directory, without status
/// patches), the real kernel, iptables through the system runner.
pub async fn spawn_system(
    opts: super::run::OverlayOptions,
    client: Option<kube::Client>,
    manifests: Option<PathBuf>,
) -> Result<tokio::task::JoinHandle<()>, OverlayError> {
    let dataplane = tokio::task::spawn_blocking(SystemDataplane::open)
        .await
        .map_err(OverlayError::Task)??;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    match (&client, manifests) {
        (Some(c), _) => {
            tokio::spawn(super::nodes::watch_nodes(c.clone(), tx));
        }
        (None, Some(dir)) => {
            tokio::spawn(super::nodes::watch_manifest_nodes(dir, tx));
        }
        (None, None) => return Err(OverlayError::NoNodeSource),
    }
    Ok(tokio::spawn(async move {
        if let Err(e) = super::run::run(opts, client, rx, dataplane, SystemRunner::new()).await {
            tracing::error!(error = %e, "overlay stopped");
        }
    }))
}
