//! kube-proxy's command-line flags (the ones that matter to IPVS mode) and
//! Sluice's own. `--flag=value` and `--flag value` both work; boolean flags
//! accept `--flag`, `--flag=true` and `--flag=false`.

use std::path::PathBuf;

use clap::Parser;

/// Command-line flags of `sluice-proxy`.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "sluice-proxy",
    version,
    about = "Kubernetes service proxy on IPVS: a drop-in replacement for kube-proxy --proxy-mode=ipvs"
)]
pub struct Flags {
    /// Path to a KubeProxyConfiguration file; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Proxy mode; only `ipvs` is supported.
    #[arg(long)]
    pub proxy_mode: Option<String>,
    /// Default IPVS scheduler (rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf).
    #[arg(long)]
    pub ipvs_scheduler: Option<String>,
    /// Full resync interval (Go duration, e.g. 30s).
    #[arg(long)]
    pub ipvs_sync_period: Option<String>,
    /// Minimum interval between syncs (Go duration).
    #[arg(long)]
    pub ipvs_min_sync_period: Option<String>,
    /// Full resync interval (newer spelling).
    #[arg(long)]
    pub sync_period: Option<String>,
    /// Minimum interval between syncs (newer spelling).
    #[arg(long)]
    pub min_sync_period: Option<String>,
    /// Comma-separated CIDRs whose IPVS services are left alone.
    #[arg(long, value_delimiter = ',')]
    pub ipvs_exclude_cidrs: Option<Vec<String>>,
    /// Enable strict ARP (arp_ignore=1, arp_announce=2).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub ipvs_strict_arp: Option<bool>,
    /// IPVS TCP timeout (Go duration; 0 keeps the kernel's).
    #[arg(long)]
    pub ipvs_tcp_timeout: Option<String>,
    /// IPVS TCP FIN timeout.
    #[arg(long)]
    pub ipvs_tcpfin_timeout: Option<String>,
    /// IPVS UDP timeout.
    #[arg(long)]
    pub ipvs_udp_timeout: Option<String>,
    /// Bit of the fwmark that marks packets for masquerading (default 14).
    #[arg(long)]
    pub iptables_masquerade_bit: Option<i64>,
    /// Comma-separated pod CIDRs of the cluster.
    #[arg(long, alias = "cluster-cidrs")]
    pub cluster_cidr: Option<String>,
    /// CIDRs (or `primary`) where NodePorts are served.
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Option<Vec<String>>,
    /// Masquerade all traffic sent to service IPs.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub masquerade_all: Option<bool>,
    /// This node's name if not the hostname.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// kubeconfig for the API server.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The API server's URL, overriding the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,
    /// Requests per second to the API server (default 5; negative: no limit).
    #[arg(long, allow_negative_numbers = true)]
    pub kube_api_qps: Option<f32>,
    /// Requests above the rate allowed at once (default 10).
    #[arg(long)]
    pub kube_api_burst: Option<i32>,
    /// Remove all rules Sluice created and exit.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub cleanup: bool,
    /// Health server `host:port` (empty disables).
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    /// Metrics server `host:port` (empty disables).
    #[arg(long)]
    pub metrics_bind_address: Option<String>,
    /// ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix.
    #[arg(long)]
    pub detect_local_mode: Option<String>,
    /// Bridge for detect-local-mode BridgeInterface.
    #[arg(long)]
    pub pod_bridge_interface: Option<String>,
    /// Interface prefix for detect-local-mode InterfaceNamePrefix.
    #[arg(long)]
    pub pod_interface_name_prefix: Option<String>,
    /// Read Services, EndpointSlices and Nodes from YAML files in DIR
    /// (watched) instead of an API server.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Handle only Services labelled service.kubernetes.io/service-proxy-name=NAME.
    #[arg(long)]
    pub service_proxy_name: Option<String>,
    /// Upper bound on draining a removed TCP real server (Go duration, default 30s).
    #[arg(long)]
    pub graceful_termination_period: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub logging_format: Option<String>,
    /// Log verbosity (kube-proxy's klog --v; accepted for compatibility).
    #[arg(long = "v", short = 'v')]
    pub verbosity: Option<u8>,
    /// Enable the flannel-compatible VXLAN overlay with this net-conf.json
    /// (e.g. the kube-flannel-cfg ConfigMap's file).
    #[arg(long, value_name = "FILE")]
    pub overlay_config: Option<PathBuf>,
    /// Overlay underlay interface (default: the default route's).
    #[arg(long, value_name = "NAME")]
    pub overlay_iface: Option<String>,
    /// Address published as this node's overlay public IP.
    #[arg(long, value_name = "IP")]
    pub overlay_public_ip: Option<String>,
    /// Where the overlay writes flannel's subnet.env.
    #[arg(long, value_name = "PATH", default_value = "/run/flannel/subnet.env")]
    pub overlay_subnet_file: PathBuf,
    /// Also write flannel's CNI conflist (flannel → bridge cni0, portmap) here.
    #[arg(long, value_name = "PATH")]
    pub overlay_cni_conflist: Option<PathBuf>,
    /// Masquerade pod traffic leaving the cluster network (flannel's --ip-masq).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub overlay_ip_masq: bool,
}
