//! Configuration: kube-proxy's flags and `KubeProxyConfiguration` file,
//! validated into one typed [`ProxyConfig`]. Flags given on the command line
//! override the file (as kube-proxy's do). Another proxy mode, or any invalid
//! value, is a startup error that names the field.

mod duration;
mod file;
mod flags;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use ipvs_sys::Scheduler;
use sluice_kube::client::ClientOptions;

pub use duration::parse_go_duration;
pub use file::KubeProxyConfiguration;
/// The `--config` file parser, for the fuzz target (`proxy/fuzz`).
#[doc(hidden)]
pub use file::parse as parse_config_file;
pub use flags::Flags;

/// Where NodePorts are served (`--nodeport-addresses`): the planner's type.
pub use crate::plan::NodePortAddresses;

/// How traffic from local pods is recognised (`detectLocalMode`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DetectLocal {
    /// No detection (ClusterCIDR mode without a clusterCIDR).
    #[default]
    None,
    /// Sources inside the cluster CIDRs are local.
    ClusterCidr,
    /// Sources inside this node's podCIDRs (`Node.spec.podCIDRs`, the first
    /// of each family) are local. As in kube-proxy, nothing is programmed
    /// until the Node has a pod CIDR.
    NodeCidr,
    /// Traffic entering from this bridge is local.
    BridgeInterface(String),
    /// Traffic entering from interfaces with this prefix is local.
    InterfaceNamePrefix(String),
}

/// IPVS connection timeouts; zero leaves the kernel's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpvsTimeouts {
    /// Established TCP.
    pub tcp: Duration,
    /// TCP after FIN.
    pub tcp_fin: Duration,
    /// UDP.
    pub udp: Duration,
}

/// The overlay's settings (`--overlay-*`), present when `--overlay-config`
/// is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// The parsed net-conf.json.
    pub conf: crate::overlay::config::NetConf,
    /// `--overlay-iface`.
    pub iface: Option<String>,
    /// `--overlay-public-ip`.
    pub public_ip: Option<std::net::IpAddr>,
    /// `--overlay-subnet-file`.
    pub subnet_file: PathBuf,
    /// `--overlay-cni-conflist`.
    pub cni_conflist: Option<PathBuf>,
    /// `--overlay-ip-masq`.
    pub ip_masq: bool,
}

/// The validated configuration of `sluice-proxy`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Default IPVS scheduler.
    pub scheduler: Scheduler,
    /// Full resync interval (drift repair).
    pub sync_period: Duration,
    /// Minimum interval between syncs.
    pub min_sync_period: Duration,
    /// IPVS services inside these CIDRs are never touched.
    pub exclude_cidrs: Vec<IpNet>,
    /// Set arp_ignore=1 / arp_announce=2.
    pub strict_arp: bool,
    /// IPVS timeouts.
    pub timeouts: IpvsTimeouts,
    /// Pod CIDRs of the cluster.
    pub cluster_cidrs: Vec<IpNet>,
    /// Where NodePorts are served.
    pub node_port_addresses: NodePortAddresses,
    /// Masquerade all traffic to services.
    pub masquerade_all: bool,
    /// Bit of the masquerade fwmark (mark = 1 << bit).
    pub masquerade_bit: u8,
    /// Health server address (`None`: disabled).
    pub healthz_bind_address: Option<SocketAddr>,
    /// Metrics server address (`None`: disabled).
    pub metrics_bind_address: Option<SocketAddr>,
    /// This node's name.
    pub hostname_override: Option<String>,
    /// Local-traffic detection.
    pub detect_local: DetectLocal,
    /// How to reach the API server: kubeconfig (in-cluster config when
    /// `None`), `--master`, and the client's QPS and burst.
    pub api: ClientOptions,
    /// Read objects from YAML files in this directory instead of an API server.
    pub manifests: Option<PathBuf>,
    /// Remove everything Sluice created and exit.
    pub cleanup: bool,
    /// Handle only Services labelled `service.kubernetes.io/service-proxy-name`
    /// with this value (`None`: only unlabelled ones, like kube-proxy).
    pub service_proxy_name: Option<String>,
    /// Upper bound on draining a removed TCP real server.
    pub graceful_termination_period: Duration,
    /// JSON log lines.
    pub log_json: bool,
    /// The flannel-compatible overlay, when enabled.
    pub overlay: Option<OverlayConfig>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            scheduler: Scheduler::RoundRobin,
            sync_period: Duration::from_secs(30),
            min_sync_period: Duration::ZERO,
            exclude_cidrs: Vec::new(),
            strict_arp: false,
            timeouts: IpvsTimeouts::default(),
            cluster_cidrs: Vec::new(),
            node_port_addresses: NodePortAddresses::All,
            masquerade_all: false,
            masquerade_bit: 14,
            healthz_bind_address: Some(SocketAddr::from(([0, 0, 0, 0], 10256))),
            metrics_bind_address: Some(SocketAddr::from(([127, 0, 0, 1], 10249))),
            hostname_override: None,
            detect_local: DetectLocal::None,
            api: ClientOptions::default(),
            manifests: None,
            cleanup: false,
            service_proxy_name: None,
            graceful_termination_period: Duration::from_secs(30),
            log_json: false,
            overlay: None,
        }
    }
}

/// A configuration error: which setting, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct ConfigError {
    /// The flag or file field, e.g. `ipvs.scheduler`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn mode(field: &str, value: &str) -> Result<(), ConfigError> {
    match value {
        "" | "ipvs" => Ok(()),
        other => Err(err(
            field,
            format!(
                "mode {other:?} is not supported: sluice-proxy implements --proxy-mode=ipvs only"
            ),
        )),
    }
}

fn cidrs(field: &str, items: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .map_err(|_| err(field, format!("{s:?} is not a CIDR")))
        })
        .collect()
}

fn duration(field: &str, s: &str) -> Result<Duration, ConfigError> {
    parse_go_duration(s).map_err(|e| err(field, e))
}

fn bind(field: &str, s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| err(field, format!("{s:?} is not host:port")))
}

fn scheduler(field: &str, s: &str) -> Result<Scheduler, ConfigError> {
    if s.is_empty() {
        return Ok(Scheduler::RoundRobin);
    }
    s.parse::<Scheduler>()
        .map_err(|e| err(field, e.to_string()))
}

/// `--kubeconfig`, `--master`, `--kube-api-qps`, `--kube-api-burst` over
/// `clientConnection`. As in kube-proxy, a QPS or burst of 0 is the default
/// (5 and 10); a negative QPS turns rate limiting off.
fn client_options(
    f: &Flags,
    file: Option<&file::ClientConnection>,
) -> Result<ClientOptions, ConfigError> {
    let defaults = ClientOptions::default();
    let qps = f.kube_api_qps.or(file.and_then(|c| c.qps)).unwrap_or(0.0);
    if !qps.is_finite() {
        return Err(err(
            "clientConnection.qps",
            format!("{qps} is not a number"),
        ));
    }
    let burst = f.kube_api_burst.or(file.and_then(|c| c.burst)).unwrap_or(0);
    let burst = match burst {
        0 => defaults.burst,
        b => u32::try_from(b)
            .map_err(|_| err("clientConnection.burst", format!("{b} is negative")))?,
    };
    Ok(ClientOptions {
        kubeconfig: f.kubeconfig.clone().or(file
            .and_then(|cc| cc.kubeconfig.as_ref())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)),
        master: f.master.clone().filter(|m| !m.is_empty()),
        qps: if qps == 0.0 { defaults.qps } else { qps },
        burst,
    })
}

fn node_port_addresses(field: &str, items: &[String]) -> Result<NodePortAddresses, ConfigError> {
    let items: Vec<String> = items
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Ok(NodePortAddresses::All);
    }
    if items.iter().any(|s| s == "primary") {
        if items.len() > 1 {
            return Err(err(field, "\"primary\" cannot be combined with CIDRs"));
        }
        return Ok(NodePortAddresses::Primary);
    }
    Ok(NodePortAddresses::Cidrs(cidrs(field, &items)?))
}

fn detect_local(
    field: &str,
    mode: &str,
    bridge: Option<&str>,
    prefix: Option<&str>,
    cluster_cidrs: &[IpNet],
) -> Result<DetectLocal, ConfigError> {
    let need = |v: Option<&str>, what: &str| {
        v.filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| err(field, format!("{mode} needs {what}")))
    };
    match mode {
        "" | "ClusterCIDR" if cluster_cidrs.is_empty() => Ok(DetectLocal::None),
        "" | "ClusterCIDR" => Ok(DetectLocal::ClusterCidr),
        "NodeCIDR" => Ok(DetectLocal::NodeCidr),
        "BridgeInterface" => Ok(DetectLocal::BridgeInterface(need(
            bridge,
            "detectLocal.bridgeInterface",
        )?)),
        "InterfaceNamePrefix" => Ok(DetectLocal::InterfaceNamePrefix(need(
            prefix,
            "detectLocal.interfaceNamePrefix",
        )?)),
        other => Err(err(
            field,
            format!(
                "unknown mode {other:?} (ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix)"
            ),
        )),
    }
}

/// `--overlay-*`: reads and validates the net-conf.json.
fn overlay(f: &Flags) -> Result<Option<OverlayConfig>, ConfigError> {
    let Some(path) = &f.overlay_config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("--overlay-config", format!("{}: {e}", path.display())))?;
    let conf = crate::overlay::config::parse_net_conf(&text)
        .map_err(|e| err("--overlay-config", e.to_string()))?;
    let public_ip = f
        .overlay_public_ip
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| err("--overlay-public-ip", format!("{s:?} is not an IP address")))
        })
        .transpose()?;
    let iface = f.overlay_iface.clone().filter(|s| !s.is_empty());
    if let Some(name) = &iface {
        crate::netfilter::iptables::InterfaceName::new(name)
            .map_err(|e| err("--overlay-iface", e.to_string()))?;
    }
    Ok(Some(OverlayConfig {
        conf,
        iface,
        public_ip,
        subnet_file: f.overlay_subnet_file.clone(),
        cni_conflist: f.overlay_cni_conflist.clone(),
        ip_masq: f.overlay_ip_masq,
    }))
}

impl ProxyConfig {
    /// Builds the configuration from parsed flags, reading `--config` if
    /// given. Flags set on the command line override the file.
    pub fn from_flags(flags: &Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err("--config", format!("{}: {e}", path.display())))?;
                file::parse(&text).map_err(|e| err("--config", e))?
            }
            None => KubeProxyConfiguration::default(),
        };
        let mut c = Self::merge(&file, flags)?;
        c.overlay = overlay(flags)?;
        Ok(c)
    }

    /// Merges a parsed file and flags (flags win) and validates the result.
    pub fn merge(file: &KubeProxyConfiguration, f: &Flags) -> Result<Self, ConfigError> {
        let mut c = ProxyConfig::default();
        let ipvs = file.ipvs.as_ref();
        let ipt = file.iptables.as_ref();

        if let Some(m) = &file.mode {
            mode("mode", m)?;
        }
        if let Some(m) = &f.proxy_mode {
            mode("--proxy-mode", m)?;
        }
        if let Some(s) = f
            .ipvs_scheduler
            .as_deref()
            .or(ipvs.and_then(|i| i.scheduler.as_deref()))
        {
            c.scheduler = scheduler("ipvs.scheduler", s)?;
        }
        let sync = f
            .ipvs_sync_period
            .as_deref()
            .or(f.sync_period.as_deref())
            .or(ipvs.and_then(|i| i.sync_period.as_deref()))
            .or(file.sync_period.as_deref());
        if let Some(s) = sync {
            c.sync_period = duration("ipvs.syncPeriod", s)?;
        }
        let min_sync = f
            .ipvs_min_sync_period
            .as_deref()
            .or(f.min_sync_period.as_deref())
            .or(ipvs.and_then(|i| i.min_sync_period.as_deref()))
            .or(file.min_sync_period.as_deref());
        if let Some(s) = min_sync {
            c.min_sync_period = duration("ipvs.minSyncPeriod", s)?;
        }
        if c.sync_period.is_zero() {
            return Err(err("ipvs.syncPeriod", "must be greater than 0"));
        }
        if c.min_sync_period > c.sync_period {
            return Err(err("ipvs.minSyncPeriod", "must not exceed ipvs.syncPeriod"));
        }
        if let Some(v) = &f.ipvs_exclude_cidrs {
            c.exclude_cidrs = cidrs("--ipvs-exclude-cidrs", v)?;
        } else if let Some(v) = ipvs.and_then(|i| i.exclude_cidrs.as_ref()) {
            c.exclude_cidrs = cidrs("ipvs.excludeCIDRs", v)?;
        }
        c.strict_arp = f
            .ipvs_strict_arp
            .or(ipvs.and_then(|i| i.strict_arp))
            .unwrap_or(false);
        let timeout = |flag: &Option<String>,
                       file_val: Option<&String>,
                       field: &str|
         -> Result<Duration, ConfigError> {
            match flag.as_ref().or(file_val) {
                Some(s) => duration(field, s),
                None => Ok(Duration::ZERO),
            }
        };
        c.timeouts = IpvsTimeouts {
            tcp: timeout(
                &f.ipvs_tcp_timeout,
                ipvs.and_then(|i| i.tcp_timeout.as_ref()),
                "ipvs.tcpTimeout",
            )?,
            tcp_fin: timeout(
                &f.ipvs_tcpfin_timeout,
                ipvs.and_then(|i| i.tcp_fin_timeout.as_ref()),
                "ipvs.tcpFinTimeout",
            )?,
            udp: timeout(
                &f.ipvs_udp_timeout,
                ipvs.and_then(|i| i.udp_timeout.as_ref()),
                "ipvs.udpTimeout",
            )?,
        };
        if let Some(v) = f.cluster_cidr.as_ref().or(file.cluster_cidr.as_ref()) {
            c.cluster_cidrs = cidrs("clusterCIDR", std::slice::from_ref(v))?;
        }
        if let Some(v) = &f.nodeport_addresses {
            c.node_port_addresses = node_port_addresses("--nodeport-addresses", v)?;
        } else if let Some(v) = &file.node_port_addresses {
            c.node_port_addresses = node_port_addresses("nodePortAddresses", v)?;
        }
        c.masquerade_all = f
            .masquerade_all
            .or(file.masquerade_all)
            .or(ipt.and_then(|i| i.masquerade_all))
            .unwrap_or(false);
        if let Some(bit) = f
            .iptables_masquerade_bit
            .or(ipt.and_then(|i| i.masquerade_bit))
        {
            if !(0..=31).contains(&bit) {
                return Err(err(
                    "iptables.masqueradeBit",
                    format!("{bit} is not in 0..=31"),
                ));
            }
            c.masquerade_bit = bit as u8;
        }
        if let Some(s) = f
            .healthz_bind_address
            .as_ref()
            .or(file.healthz_bind_address.as_ref())
        {
            c.healthz_bind_address = bind("healthzBindAddress", s)?;
        }
        if let Some(s) = f
            .metrics_bind_address
            .as_ref()
            .or(file.metrics_bind_address.as_ref())
        {
            c.metrics_bind_address = bind("metricsBindAddress", s)?;
        }
        c.hostname_override = f
            .hostname_override
            .clone()
            .or(file.hostname_override.clone())
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_lowercase());
        let dl = file.detect_local.as_ref();
        c.detect_local = detect_local(
            "detectLocalMode",
            f.detect_local_mode
                .as_deref()
                .or(file.detect_local_mode.as_deref())
                .unwrap_or(""),
            f.pod_bridge_interface
                .as_deref()
                .or(dl.and_then(|d| d.bridge_interface.as_deref())),
            f.pod_interface_name_prefix
                .as_deref()
                .or(dl.and_then(|d| d.interface_name_prefix.as_deref())),
            &c.cluster_cidrs,
        )?;
        c.api = client_options(f, file.client_connection.as_ref())?;
        c.manifests = f.manifests.clone();
        c.cleanup = f.cleanup;
        c.service_proxy_name = f.service_proxy_name.clone().filter(|s| !s.is_empty());
        if let Some(s) = &f.graceful_termination_period {
            c.graceful_termination_period = duration("--graceful-termination-period", s)?;
        }
        c.log_json = match f.logging_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(err(
                    "--logging-format",
                    format!("{other:?} is not text or json"),
                ));
            }
        };
        Ok(c)
    }
}

#[cfg(test)]
mod tests;
