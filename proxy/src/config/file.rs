//! The `KubeProxyConfiguration` file (`kubeproxy.config.k8s.io/v1alpha1`),
//! as kube-proxy reads it: unknown fields are an error, fields that only
//! matter to other modes are accepted and ignored.

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The raw file, before validation. Field names follow the API.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeProxyConfiguration {
    /// Must be `kubeproxy.config.k8s.io/v1alpha1`.
    pub api_version: Option<String>,
    /// Must be `KubeProxyConfiguration`.
    pub kind: Option<String>,
    /// Proxy mode; only `ipvs` (or empty) is accepted.
    pub mode: Option<String>,
    /// Comma-separated pod CIDRs.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    /// Where NodePorts are served: CIDRs, or `primary`.
    pub node_port_addresses: Option<Vec<String>>,
    /// Masquerade all traffic to services (newer top-level form).
    pub masquerade_all: Option<bool>,
    /// `host:port` of the health server.
    pub healthz_bind_address: Option<String>,
    /// `host:port` of the metrics server.
    pub metrics_bind_address: Option<String>,
    /// This node's name, if not the hostname.
    pub hostname_override: Option<String>,
    /// How to tell local traffic: ClusterCIDR, NodeCIDR, BridgeInterface,
    /// InterfaceNamePrefix.
    pub detect_local_mode: Option<String>,
    /// Parameters of detectLocalMode.
    pub detect_local: Option<DetectLocalConfiguration>,
    /// IPVS settings.
    pub ipvs: Option<IpvsConfiguration>,
    /// iptables settings (only masqueradeAll and masqueradeBit matter here).
    pub iptables: Option<IptablesConfiguration>,
    /// Newer top-level sync period (Go duration).
    pub sync_period: Option<String>,
    /// Newer top-level minimum sync period (Go duration).
    pub min_sync_period: Option<String>,
    /// API client settings (kubeconfig path, QPS, burst).
    pub client_connection: Option<ClientConnection>,
    /// Accepted, not used.
    pub bind_address: Option<IgnoredAny>,
    /// Accepted, not used.
    pub bind_address_hard_fail: Option<IgnoredAny>,
    /// Accepted, not used.
    pub config_sync_period: Option<IgnoredAny>,
    /// Accepted, not used (conntrack tuning stays with the node).
    pub conntrack: Option<IgnoredAny>,
    /// Accepted, not used.
    pub enable_profiling: Option<IgnoredAny>,
    /// Accepted, not used.
    pub feature_gates: Option<IgnoredAny>,
    /// Accepted, not used.
    pub logging: Option<IgnoredAny>,
    /// Accepted, not used.
    pub nftables: Option<IgnoredAny>,
    /// Accepted, not used.
    pub oom_score_adj: Option<IgnoredAny>,
    /// Accepted, not used.
    pub port_range: Option<IgnoredAny>,
    /// Accepted, not used.
    pub show_hidden_metrics_for_version: Option<IgnoredAny>,
    /// Accepted, not used.
    pub winkernel: Option<IgnoredAny>,
    /// Accepted, not used.
    pub windows_run_as_service: Option<IgnoredAny>,
}

/// `ipvs:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpvsConfiguration {
    /// Scheduler name (`rr` when empty).
    pub scheduler: Option<String>,
    /// Go duration.
    pub sync_period: Option<String>,
    /// Go duration.
    pub min_sync_period: Option<String>,
    /// CIDRs whose IPVS services are never touched.
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    /// Set arp_ignore/arp_announce.
    #[serde(rename = "strictARP")]
    pub strict_arp: Option<bool>,
    /// Go duration; 0 leaves the kernel's value.
    pub tcp_timeout: Option<String>,
    /// Go duration; 0 leaves the kernel's value.
    pub tcp_fin_timeout: Option<String>,
    /// Go duration; 0 leaves the kernel's value.
    pub udp_timeout: Option<String>,
}

/// `iptables:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IptablesConfiguration {
    /// Masquerade all traffic to services.
    pub masquerade_all: Option<bool>,
    /// Bit of the fwmark used for masquerading (0-31, default 14).
    pub masquerade_bit: Option<i64>,
    /// Accepted, not used.
    pub min_sync_period: Option<IgnoredAny>,
    /// Accepted, not used.
    pub sync_period: Option<IgnoredAny>,
    /// Accepted, not used (IPVS mode never serves NodePorts on localhost).
    pub localhost_node_ports: Option<IgnoredAny>,
}

/// `detectLocal:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectLocalConfiguration {
    /// Bridge name for BridgeInterface.
    pub bridge_interface: Option<String>,
    /// Interface prefix for InterfaceNamePrefix.
    pub interface_name_prefix: Option<String>,
}

/// `clientConnection:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnection {
    /// Path of the kubeconfig.
    pub kubeconfig: Option<String>,
    /// Accepted, not used.
    pub accept_content_types: Option<IgnoredAny>,
    /// Accepted, not used.
    pub content_type: Option<IgnoredAny>,
    /// Requests per second to the API server (0: 5; negative: no limit).
    pub qps: Option<f32>,
    /// Requests above the rate allowed at once (0: 10).
    pub burst: Option<i32>,
}

/// Parses the YAML (or JSON) text of a configuration file.
pub fn parse(text: &str) -> Result<KubeProxyConfiguration, String> {
    let cfg: KubeProxyConfiguration =
        serde_saphyr::from_str(text).map_err(|e| format!("invalid KubeProxyConfiguration: {e}"))?;
    if let Some(v) = &cfg.api_version
        && v != "kubeproxy.config.k8s.io/v1alpha1"
    {
        return Err(format!(
            "unsupported apiVersion {v:?}: expected kubeproxy.config.k8s.io/v1alpha1"
        ));
    }
    if let Some(k) = &cfg.kind
        && k != "KubeProxyConfiguration"
    {
        return Err(format!(
            "unsupported kind {k:?}: expected KubeProxyConfiguration"
        ));
    }
    Ok(cfg)
}
