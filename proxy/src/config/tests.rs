use super::*;
use clap::Parser;

fn flags(args: &[&str]) -> Flags {
    Flags::try_parse_from(std::iter::once("sluice-proxy").chain(args.iter().copied())).unwrap()
}

fn from(yaml: &str, args: &[&str]) -> Result<ProxyConfig, ConfigError> {
    ProxyConfig::merge(
        &file::parse(yaml).map_err(|e| err("--config", e))?,
        &flags(args),
    )
}

const KUBEADM_STYLE: &str = r#"
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16,fd00:244::/56
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 1s
  syncPeriod: 0s
ipvs:
  excludeCIDRs:
  - 192.168.0.0/16
  minSyncPeriod: 1s
  scheduler: "wrr"
  strictARP: true
  syncPeriod: 45s
  tcpFinTimeout: 2m
  tcpTimeout: 15m0s
  udpTimeout: 5m
metricsBindAddress: 0.0.0.0:10249
mode: ipvs
nodePortAddresses: ["10.0.0.0/8"]
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
"#;

#[test]
fn reads_a_kubeadm_style_file() {
    let c = from(KUBEADM_STYLE, &[]).unwrap();
    assert_eq!(c.scheduler, Scheduler::WeightedRoundRobin);
    assert_eq!(c.sync_period, Duration::from_secs(45));
    assert_eq!(c.min_sync_period, Duration::from_secs(1));
    assert_eq!(
        c.exclude_cidrs,
        vec!["192.168.0.0/16".parse::<IpNet>().unwrap()]
    );
    assert!(c.strict_arp);
    assert_eq!(
        c.timeouts,
        IpvsTimeouts {
            tcp: Duration::from_secs(900),
            tcp_fin: Duration::from_secs(120),
            udp: Duration::from_secs(300)
        }
    );
    assert_eq!(c.cluster_cidrs.len(), 2);
    assert_eq!(c.detect_local, DetectLocal::ClusterCidr);
    assert_eq!(
        c.node_port_addresses,
        NodePortAddresses::Cidrs(vec!["10.0.0.0/8".parse().unwrap()])
    );
    assert_eq!(c.healthz_bind_address, None, "empty disables");
    assert_eq!(
        c.metrics_bind_address,
        Some("0.0.0.0:10249".parse().unwrap())
    );
    assert_eq!(
        c.api.kubeconfig,
        Some(PathBuf::from("/var/lib/kube-proxy/kubeconfig.conf"))
    );
    // qps: 0 and burst: 0 are kube-proxy's defaults.
    assert_eq!((c.api.qps, c.api.burst), (5.0, 10));
    assert_eq!(c.masquerade_bit, 14);
}

#[test]
fn flags_override_the_file() {
    let c = from(
        KUBEADM_STYLE,
        &[
            "--ipvs-scheduler=lc",
            "--masquerade-all",
            "--nodeport-addresses",
            "primary",
            "--hostname-override=Node-1",
            "--ipvs-sync-period=1m",
            "--master=https://10.0.0.1:6443",
            "--kube-api-qps=-1",
            "--kube-api-burst=50",
        ],
    )
    .unwrap();
    assert_eq!(c.api.master.as_deref(), Some("https://10.0.0.1:6443"));
    assert_eq!((c.api.qps, c.api.burst), (-1.0, 50), "negative: no limit");
    assert_eq!(c.scheduler, Scheduler::LeastConnection);
    assert!(c.masquerade_all);
    assert_eq!(c.node_port_addresses, NodePortAddresses::Primary);
    assert_eq!(c.hostname_override.as_deref(), Some("node-1"));
    assert_eq!(c.sync_period, Duration::from_secs(60));
}

#[test]
fn defaults_match_kube_proxy() {
    let c = ProxyConfig::merge(&KubeProxyConfiguration::default(), &flags(&[])).unwrap();
    assert_eq!(c, ProxyConfig::default());
    assert_eq!(c.scheduler, Scheduler::RoundRobin);
    assert_eq!(c.sync_period, Duration::from_secs(30));
    assert_eq!(
        c.healthz_bind_address,
        Some("0.0.0.0:10256".parse().unwrap())
    );
    assert_eq!(
        c.metrics_bind_address,
        Some("127.0.0.1:10249".parse().unwrap())
    );
}

#[test]
fn invalid_values_name_the_field() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("mode: iptables\n", &[], "mode"),
        ("", &["--proxy-mode=nftables"], "--proxy-mode"),
        ("ipvs:\n  scheduler: \"bad name!\"\n", &[], "ipvs.scheduler"),
        ("ipvs:\n  syncPeriod: 30\n", &[], "ipvs.syncPeriod"),
        (
            "ipvs:\n  syncPeriod: 10s\n  minSyncPeriod: 1m\n",
            &[],
            "ipvs.minSyncPeriod",
        ),
        ("clusterCIDR: 10.0.0.0/33\n", &[], "clusterCIDR"),
        (
            "iptables:\n  masqueradeBit: 32\n",
            &[],
            "iptables.masqueradeBit",
        ),
        ("metricsBindAddress: nowhere\n", &[], "metricsBindAddress"),
        ("detectLocalMode: Guess\n", &[], "detectLocalMode"),
        ("detectLocalMode: BridgeInterface\n", &[], "detectLocalMode"),
        (
            "nodePortAddresses: [primary, 10.0.0.0/8]\n",
            &[],
            "nodePortAddresses",
        ),
        ("", &["--logging-format=xml"], "--logging-format"),
    ];
    for (yaml, args, field) in cases {
        let e = from(yaml, args).expect_err(yaml);
        assert_eq!(&e.field, field, "{yaml} {args:?}: {e}");
    }
}

#[test]
fn unknown_fields_and_wrong_kinds_are_refused() {
    assert!(
        file::parse("ipvs:\n  schedular: rr\n")
            .unwrap_err()
            .contains("schedular")
    );
    assert!(file::parse("kind: KubeletConfiguration\n").is_err());
    assert!(file::parse("apiVersion: kubeproxy.config.k8s.io/v1beta9\n").is_err());
}

#[test]
fn overlay_flags() {
    let dir = std::env::temp_dir().join(format!("sluice-config-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("net-conf.json");
    std::fs::write(
        &good,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":3}}"#,
    )
    .unwrap();
    let host_gw = dir.join("host-gw.json");
    std::fs::write(
        &host_gw,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
    )
    .unwrap();
    let g = good.to_str().unwrap();

    let c = ProxyConfig::from_flags(&flags(&[])).unwrap();
    assert_eq!(c.overlay, None, "off unless --overlay-config");

    let c = ProxyConfig::from_flags(&flags(&["--overlay-config", g])).unwrap();
    let o = c.overlay.unwrap();
    assert_eq!(o.conf.backend.vni, 3);
    assert_eq!(o.subnet_file, PathBuf::from("/run/flannel/subnet.env"));
    assert!(o.ip_masq && o.cni_conflist.is_none() && o.iface.is_none());

    let c = ProxyConfig::from_flags(&flags(&[
        "--overlay-config",
        g,
        "--overlay-iface=eth1",
        "--overlay-public-ip=203.0.113.7",
        "--overlay-subnet-file=/tmp/x.env",
        "--overlay-cni-conflist=/etc/cni/net.d/10-flannel.conflist",
        "--overlay-ip-masq=false",
    ]))
    .unwrap();
    let o = c.overlay.unwrap();
    assert_eq!(o.iface.as_deref(), Some("eth1"));
    assert_eq!(o.public_ip, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(o.subnet_file, PathBuf::from("/tmp/x.env"));
    assert!(o.cni_conflist.is_some() && !o.ip_masq);

    for (args, field) in [
        (
            vec!["--overlay-config", "/nonexistent/net-conf.json"],
            "--overlay-config",
        ),
        (
            vec!["--overlay-config", host_gw.to_str().unwrap()],
            "--overlay-config",
        ),
        (
            vec!["--overlay-config", g, "--overlay-public-ip=nope"],
            "--overlay-public-ip",
        ),
        (
            vec!["--overlay-config", g, "--overlay-iface=a b"],
            "--overlay-iface",
        ),
    ] {
        let e = ProxyConfig::from_flags(&flags(&args)).expect_err(&format!("{args:?}"));
        assert_eq!(e.field, field, "{args:?}: {e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
