//! The netfilter layer: the exact `ipset restore` / `iptables-restore` text
//! for given states (pure), then the real kernel, each test in fresh network
//! namespaces: read back independently with `ipset save` and
//! `iptables-save`, idempotence, drift repair, foreign state surviving apply
//! and cleanup, packets (KUBE-IPVS-FILTER rejecting, KUBE-MARK-MASQ +
//! KUBE-POSTROUTING masquerading), sysctls and conntrack.
//!
//! Kernel tests skip (with the reason on stderr) when not root or when
//! `ip netns`, `ipset` or the iptables tools are unavailable; under `CI=true`
//! a skip is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ipnet::IpNet;
use ipvs_sys::{AddressFamily, Protocol};
use sluice_proxy::netfilter::conntrack::{UdpFlows, delete_udp_flows, deleted_count};
use sluice_proxy::netfilter::ipset::{self, IpsetError};
use sluice_proxy::netfilter::iptables::{self as ipt, InterfaceName, Saved, split_words};
use sluice_proxy::netfilter::rules::{build_rules, plan_jumps, render_cleanup};
use sluice_proxy::netfilter::sysctl::{
    ConnReuse, KernelVersion, Sysctl, SysctlError, SysctlOutcome, SysctlWriter, ipvs_sysctls,
};
use sluice_proxy::netfilter::{
    CommandRunner, ConfigError, ExecError, ExecOutput, LocalDetector, Netfilter, NetfilterConfig,
    NetfilterError, SystemRunner, canonical_sets, parse_iptables_version, probe_random_fully,
};
use sluice_proxy::plan::{DesiredState, IpSets, LbOutFilter, SetEntry, SetKind, SetName};

use AddressFamily::{Ipv4 as V4, Ipv6 as V6};
use Protocol::{Sctp, Tcp, Udp};

// ---------------------------------------------------------------------------
// Building desired states

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ipp(a: &str, protocol: Protocol, port: u16) -> SetEntry {
    SetEntry::IpPort {
        ip: ip(a),
        protocol,
        port,
    }
}

fn ippi(a: &str, protocol: Protocol, port: u16, b: &str) -> SetEntry {
    SetEntry::IpPortIp {
        ip: ip(a),
        protocol,
        port,
        ip2: ip(b),
    }
}

fn ippn(a: &str, protocol: Protocol, port: u16, n: &str) -> SetEntry {
    SetEntry::IpPortNet {
        ip: ip(a),
        protocol,
        port,
        net: net(n),
    }
}

fn set(kind: SetKind, family: AddressFamily) -> SetName {
    SetName { kind, family }
}

fn put(sets: &mut IpSets, kind: SetKind, family: AddressFamily, entry: SetEntry) {
    sets.entry(set(kind, family)).or_default().insert(entry);
}

/// Every set of one family with something in it, except
/// KUBE-NODE-PORT-LOCAL-UDP (so its rule must be absent).
fn full_sets(family: AddressFamily) -> IpSets {
    use SetKind::*;
    let mut s = IpSets::new();
    let (pod, vip, ext, ext_l, lb, lb_l, node, src_net) = match family {
        V4 => (
            "10.244.1.5",
            "10.96.0.10",
            "192.0.2.10",
            "192.0.2.11",
            "203.0.113.1",
            "203.0.113.2",
            "10.0.0.5",
            "10.1.2.3/8",
        ),
        V6 => (
            "fd00:244::5",
            "fd00:96::a",
            "2001:db8::10",
            "2001:db8::11",
            "2001:db8:113::1",
            "2001:db8:113::2",
            "fd00::5",
            "fd00:1:2::3/48",
        ),
    };
    put(&mut s, LoopBack, family, ippi(pod, Tcp, 8080, pod));
    put(&mut s, ClusterIp, family, ipp(vip, Udp, 53));
    put(&mut s, ClusterIp, family, ipp(vip, Tcp, 53));
    put(&mut s, ExternalIp, family, ipp(ext, Tcp, 80));
    put(&mut s, ExternalIpLocal, family, ipp(ext_l, Tcp, 80));
    put(&mut s, LoadBalancer, family, ipp(lb, Tcp, 443));
    put(&mut s, LoadBalancer, family, ipp(lb_l, Tcp, 443));
    put(&mut s, LoadBalancerLocal, family, ipp(lb_l, Tcp, 443));
    put(&mut s, LoadBalancerFw, family, ipp(lb, Tcp, 443));
    put(
        &mut s,
        LoadBalancerSourceCidr,
        family,
        ippn(lb, Tcp, 443, src_net),
    );
    put(&mut s, LoadBalancerSourceIp, family, ippi(lb, Tcp, 443, lb));
    put(&mut s, NodePortTcp, family, SetEntry::Port(30080));
    put(&mut s, NodePortLocalTcp, family, SetEntry::Port(30080));
    put(&mut s, NodePortUdp, family, SetEntry::Port(30053));
    put(&mut s, NodePortSctpHash, family, ipp(node, Sctp, 30900));
    put(
        &mut s,
        NodePortLocalSctpHash,
        family,
        ipp(node, Sctp, 30900),
    );
    put(&mut s, HealthCheckNodePort, family, SetEntry::Port(32000));
    for a in [vip, ext, ext_l, lb, lb_l] {
        put(&mut s, IpvsIps, family, SetEntry::Ip(ip(a)));
    }
    s
}

fn desired(sets: IpSets) -> DesiredState {
    DesiredState {
        sets,
        ..DesiredState::default()
    }
}

fn config(families: &[AddressFamily]) -> NetfilterConfig {
    NetfilterConfig {
        families: families.to_vec(),
        ..NetfilterConfig::default()
    }
}

// ---------------------------------------------------------------------------
// ipset: rendering, parsing, diffing

const IPSET_FRESH_V4: &str = "\
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536 -exist
create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-EXTERNAL-IP hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-EXTERNAL-IP-LOCAL hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER-LOCAL hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER-FW hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER-SOURCE-IP hash:ip,port,ip family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536 -exist
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 -exist
create KUBE-NODE-PORT-LOCAL-TCP bitmap:port range 0-65535 -exist
create KUBE-NODE-PORT-UDP bitmap:port range 0-65535 -exist
create KUBE-NODE-PORT-LOCAL-UDP bitmap:port range 0-65535 -exist
create KUBE-NODE-PORT-SCTP-HASH hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-NODE-PORT-LOCAL-SCTP-HASH hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-HEALTH-CHECK-NODE-PORT bitmap:port range 0-65535 -exist
create KUBE-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536 -exist
add KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5 -exist
add KUBE-CLUSTER-IP 10.96.0.10,tcp:53 -exist
add KUBE-CLUSTER-IP 10.96.0.10,udp:53 -exist
add KUBE-EXTERNAL-IP 192.0.2.10,tcp:80 -exist
add KUBE-EXTERNAL-IP-LOCAL 192.0.2.11,tcp:80 -exist
add KUBE-LOAD-BALANCER 203.0.113.1,tcp:443 -exist
add KUBE-LOAD-BALANCER 203.0.113.2,tcp:443 -exist
add KUBE-LOAD-BALANCER-LOCAL 203.0.113.2,tcp:443 -exist
add KUBE-LOAD-BALANCER-FW 203.0.113.1,tcp:443 -exist
add KUBE-LOAD-BALANCER-SOURCE-IP 203.0.113.1,tcp:443,203.0.113.1 -exist
add KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.1,tcp:443,10.0.0.0/8 -exist
add KUBE-NODE-PORT-TCP 30080 -exist
add KUBE-NODE-PORT-LOCAL-TCP 30080 -exist
add KUBE-NODE-PORT-UDP 30053 -exist
add KUBE-NODE-PORT-SCTP-HASH 10.0.0.5,sctp:30900 -exist
add KUBE-NODE-PORT-LOCAL-SCTP-HASH 10.0.0.5,sctp:30900 -exist
add KUBE-HEALTH-CHECK-NODE-PORT 32000 -exist
add KUBE-IPVS-IPS 10.96.0.10 -exist
add KUBE-IPVS-IPS 192.0.2.10 -exist
add KUBE-IPVS-IPS 192.0.2.11 -exist
add KUBE-IPVS-IPS 203.0.113.1 -exist
add KUBE-IPVS-IPS 203.0.113.2 -exist
";

#[test]
fn ipset_restore_text_for_a_fresh_node() {
    let (sets, rejected) = canonical_sets(&full_sets(V4), &[V4]);
    assert!(rejected.is_empty());
    let plan = ipset::plan_sync(&sets, &ipset::IpsetState::default(), &[V4]).unwrap();
    assert_eq!(plan.render(), IPSET_FRESH_V4);
}

#[test]
fn ipset_restore_text_ipv6_names_and_syntax() {
    let (sets, _) = canonical_sets(&full_sets(V6), &[V6]);
    let text = ipset::plan_sync(&sets, &ipset::IpsetState::default(), &[V6])
        .unwrap()
        .render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 17 + 22);
    for l in [
        "create KUBE-6-LOOP-BACK hash:ip,port,ip family inet6 hashsize 1024 maxelem 65536 -exist",
        "create KUBE-6-LOAD-BALANCER-SOURCE-CID hash:ip,port,net family inet6 hashsize 1024 maxelem 65536 -exist",
        "create KUBE-6-NODE-PORT-LOCAL-SCTP-HAS hash:ip,port family inet6 hashsize 1024 maxelem 65536 -exist",
        "create KUBE-6-NODE-PORT-TCP bitmap:port range 0-65535 -exist",
        "create KUBE-6-IPVS-IPS hash:ip family inet6 hashsize 1024 maxelem 65536 -exist",
        "add KUBE-6-LOOP-BACK fd00:244::5,tcp:8080,fd00:244::5 -exist",
        "add KUBE-6-CLUSTER-IP fd00:96::a,udp:53 -exist",
        "add KUBE-6-LOAD-BALANCER-SOURCE-CID 2001:db8:113::1,tcp:443,fd00:1:2::/48 -exist",
        "add KUBE-6-NODE-PORT-LOCAL-SCTP-HAS fd00::5,sctp:30900 -exist",
        "add KUBE-6-NODE-PORT-TCP 30080 -exist",
        "add KUBE-6-IPVS-IPS 2001:db8:113::2 -exist",
    ] {
        assert!(lines.contains(&l), "missing {l:?} in\n{text}");
    }
    assert!(lines.iter().all(|l| l.contains(" KUBE-6-")), "{text}");
}

/// `ipset save` as ipset 7 prints it: extra header options, hosts without
/// `/32`, foreign sets of types we never parse.
const SAVED: &str = "\
create cali40all-hosts hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x1
add cali40all-hosts 10.0.0.0/24 comment \"whatever\"
create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2
add KUBE-CLUSTER-IP 10.96.0.10,udp:53
add KUBE-CLUSTER-IP 10.96.0.99,tcp:80
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x3
add KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.1,tcp:443,10.0.0.0/8
add KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.1,tcp:443,198.51.100.7
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
add KUBE-NODE-PORT-TCP 30080
add KUBE-NODE-PORT-TCP 31000
create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0x4
add KUBE-6-CLUSTER-IP fd00:96::a,tcp:443
create KUBE-FOO hash:ip family inet hashsize 1024 maxelem 65536
add KUBE-FOO 1.2.3.4 timeout 30
";

#[test]
fn ipset_save_is_parsed_for_our_sets_only() {
    let state = ipset::parse_save(SAVED).unwrap();
    let names: Vec<String> = state.sets.keys().map(SetName::name).collect();
    assert_eq!(
        names,
        [
            "KUBE-CLUSTER-IP",
            "KUBE-6-CLUSTER-IP",
            "KUBE-LOAD-BALANCER-SOURCE-CIDR",
            "KUBE-NODE-PORT-TCP",
        ]
    );
    let cidr = &state.sets[&set(SetKind::LoadBalancerSourceCidr, V4)];
    assert_eq!(
        cidr.entries,
        BTreeSet::from([
            ippn("203.0.113.1", Tcp, 443, "10.0.0.0/8"),
            ippn("203.0.113.1", Tcp, 443, "198.51.100.7/32"),
        ])
    );
    assert_eq!(
        state.sets[&set(SetKind::NodePortTcp, V4)].entries,
        BTreeSet::from([SetEntry::Port(30080), SetEntry::Port(31000)])
    );
}

#[test]
fn ipset_diff_is_minimal_and_empties_other_sets_of_ours() {
    let state = ipset::parse_save(SAVED).unwrap();
    let mut want = IpSets::new();
    put(
        &mut want,
        SetKind::ClusterIp,
        V4,
        ipp("10.96.0.10", Udp, 53),
    );
    put(
        &mut want,
        SetKind::ClusterIp,
        V4,
        ipp("10.96.0.10", Tcp, 53),
    );
    put(&mut want, SetKind::NodePortTcp, V4, SetEntry::Port(30080));
    put(
        &mut want,
        SetKind::LoadBalancerSourceCidr,
        V4,
        ippn("203.0.113.1", Tcp, 443, "10.9.9.9/8"),
    );
    let (want, _) = canonical_sets(&want, &[V4]);
    let plan = ipset::plan_sync(&want, &state, &[V4]).unwrap();
    // The 14 missing IPv4 sets are created; KUBE-6-CLUSTER-IP (IPv6 is not
    // configured) is emptied but kept; KUBE-FOO and cali40all-hosts are not
    // ours.
    assert_eq!(plan.create.len(), 14);
    let text = plan.render();
    let rest: Vec<&str> = text.lines().filter(|l| !l.starts_with("create ")).collect();
    assert_eq!(
        rest,
        [
            "del KUBE-CLUSTER-IP 10.96.0.99,tcp:80 -exist",
            "del KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.1,tcp:443,198.51.100.7/32 -exist",
            "del KUBE-NODE-PORT-TCP 31000 -exist",
            "del KUBE-6-CLUSTER-IP fd00:96::a,tcp:443 -exist",
            "add KUBE-CLUSTER-IP 10.96.0.10,tcp:53 -exist",
        ]
    );
    assert!(!plan.render().contains("KUBE-FOO"));
    assert!(!plan.render().contains("cali"));
}

#[test]
fn ipset_save_lines_we_cannot_have_written_are_errors() {
    for (text, why) in [
        (
            "create KUBE-CLUSTER-IP hash:ip,port family inet\nadd KUBE-CLUSTER-IP 10.0.0.1,icmp:80\n",
            "protocol",
        ),
        (
            "create KUBE-CLUSTER-IP hash:ip,port family inet\nadd KUBE-CLUSTER-IP 10.0.0.1\n",
            "shape",
        ),
        (
            "create KUBE-CLUSTER-IP hash:ip,port family inet\nadd KUBE-CLUSTER-IP 10.0.0.1,tcp:80 timeout 5\n",
            "options",
        ),
        (
            "create KUBE-CLUSTER-IP hash:ip,port family inet\nadd KUBE-CLUSTER-IP fd00::1,tcp:80\n",
            "family",
        ),
        (
            "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\nadd KUBE-NODE-PORT-TCP 70000\n",
            "port",
        ),
        ("add KUBE-CLUSTER-IP 10.0.0.1,tcp:80\n", "add before create"),
        ("flush KUBE-CLUSTER-IP\n", "unknown command"),
        ("garbage\n", "one word"),
    ] {
        let err = ipset::parse_save(text).expect_err(why);
        assert!(err.line_no >= 1, "{why}: {err}");
    }
}

#[test]
fn ipset_of_ours_with_another_type_is_an_error_not_a_recreate() {
    let state = ipset::parse_save(
        "create KUBE-NODE-PORT-TCP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
         add KUBE-NODE-PORT-TCP 10.0.0.1,tcp:80\n",
    )
    .unwrap();
    let err = ipset::plan_sync(&IpSets::new(), &state, &[V4]).unwrap_err();
    assert!(
        matches!(&err, IpsetError::Mismatch { name, .. } if name == "KUBE-NODE-PORT-TCP"),
        "{err}"
    );
}

#[test]
fn desired_entries_are_canonicalised_or_rejected() {
    let mut s = IpSets::new();
    // A /0 source range cannot be stored (ipset: "The value of the CIDR
    // parameter of the IP address is invalid"): it becomes two /1.
    put(
        &mut s,
        SetKind::LoadBalancerSourceCidr,
        V4,
        ippn("203.0.113.1", Tcp, 443, "0.0.0.0/0"),
    );
    put(
        &mut s,
        SetKind::LoadBalancerSourceCidr,
        V6,
        ippn("2001:db8::1", Tcp, 443, "::/0"),
    );
    put(
        &mut s,
        SetKind::LoadBalancerSourceCidr,
        V4,
        ippn("203.0.113.1", Tcp, 443, "10.1.2.3/16"),
    );
    // Misfits.
    put(&mut s, SetKind::ClusterIp, V4, ipp("fd00::1", Tcp, 80));
    put(&mut s, SetKind::ClusterIp, V4, SetEntry::Port(80));
    put(&mut s, SetKind::NodePortTcp, V4, ipp("10.0.0.1", Tcp, 80));
    put(
        &mut s,
        SetKind::LoopBack,
        V4,
        ippi("10.0.0.1", Tcp, 80, "fd00::1"),
    );
    let (c, rejected) = canonical_sets(&s, &[V4, V6]);
    assert_eq!(
        c[&set(SetKind::LoadBalancerSourceCidr, V4)],
        BTreeSet::from([
            ippn("203.0.113.1", Tcp, 443, "0.0.0.0/1"),
            ippn("203.0.113.1", Tcp, 443, "128.0.0.0/1"),
            ippn("203.0.113.1", Tcp, 443, "10.1.0.0/16"),
        ])
    );
    assert_eq!(
        c[&set(SetKind::LoadBalancerSourceCidr, V6)],
        BTreeSet::from([
            ippn("2001:db8::1", Tcp, 443, "::/1"),
            ippn("2001:db8::1", Tcp, 443, "8000::/1"),
        ])
    );
    assert_eq!(rejected.len(), 4);
    // An unconfigured family is rejected too.
    let (_, rejected) = canonical_sets(&s, &[V4]);
    assert_eq!(rejected.len(), 5);
}

#[test]
fn set_entries_print_and_parse_back() {
    for (kind, entry, text) in [
        (
            SetKind::ClusterIp,
            ipp("10.0.0.1", Tcp, 80),
            "10.0.0.1,tcp:80",
        ),
        (
            SetKind::LoopBack,
            ippi("10.0.0.1", Udp, 53, "10.0.0.1"),
            "10.0.0.1,udp:53,10.0.0.1",
        ),
        (
            SetKind::LoadBalancerSourceCidr,
            ippn("10.0.0.1", Sctp, 80, "10.0.0.0/8"),
            "10.0.0.1,sctp:80,10.0.0.0/8",
        ),
        (SetKind::NodePortUdp, SetEntry::Port(8080), "8080"),
        (SetKind::IpvsIps, SetEntry::Ip(ip("10.0.0.1")), "10.0.0.1"),
        (
            SetKind::ClusterIp,
            ipp("fd00::1", Tcp, 80),
            "fd00::1,tcp:80",
        ),
        (
            SetKind::LoadBalancerSourceIp,
            ippi("fd00::1", Tcp, 80, "fd00::2"),
            "fd00::1,tcp:80,fd00::2",
        ),
    ] {
        assert_eq!(entry.to_string(), text);
        assert_eq!(SetEntry::parse(kind, text).unwrap(), entry);
    }
    assert_eq!(
        SetKind::from_name("KUBE-6-LOAD-BALANCER-SOURCE-CID"),
        Some(set(SetKind::LoadBalancerSourceCidr, V6))
    );
    assert_eq!(
        SetKind::from_name("KUBE-LOAD-BALANCER-SOURCE-CIDR")
            .unwrap()
            .family,
        V4
    );
    assert_eq!(SetKind::from_name("KUBE-FOO"), None);
}

// ---------------------------------------------------------------------------
// iptables: rendering

const RESTORE_FULL_V4: &str = r#"*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-SERVICES -m comment --comment "Kubernetes service lb portal" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER
-A KUBE-LOAD-BALANCER -m comment --comment "Kubernetes service load balancer ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port with externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-NODE-PORT -p udp -m comment --comment "Kubernetes nodeport UDP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ
-A KUBE-NODE-PORT -p sctp -m comment --comment "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'" -m set --match-set KUBE-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j RETURN
-A KUBE-NODE-PORT -p sctp -m comment --comment "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'" -m set --match-set KUBE-NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m addrtype --dst-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m addrtype --dst-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT
-A KUBE-POSTROUTING -m mark ! --mark 0x004000/0x004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x004000
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
-I FORWARD 1 -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-I INPUT 1 -m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT
-I INPUT 1 -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-I FORWARD 1 -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-I INPUT 1 -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
-I OUTPUT 1 -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER
-A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port for load balancer with sourceRange" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL
-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source cidr for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source IP for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-IP dst,dst,src -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
-A KUBE-IPVS-OUT-FILTER -s 203.0.113.2 -m ipvs --vaddr 203.0.113.2 --vproto tcp --vport 443 -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x004000/0x004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
COMMIT
"#;

fn out_filters() -> BTreeSet<LbOutFilter> {
    BTreeSet::from([
        LbOutFilter {
            vip: ip("203.0.113.2"),
            protocol: Tcp,
            port: 443,
        },
        LbOutFilter {
            vip: ip("2001:db8:113::2"),
            protocol: Udp,
            port: 53,
        },
    ])
}

#[test]
fn iptables_restore_text_matches_kube_proxy_for_a_full_ipv4_node() {
    let (sets, _) = canonical_sets(&full_sets(V4), &[V4]);
    let rules = build_rules(&config(&[V4]), V4, &sets, &out_filters());
    assert_eq!(
        rules.render_restore(&plan_jumps(&Saved::default())),
        RESTORE_FULL_V4
    );
}

#[test]
fn iptables_restore_text_ipv6() {
    let (sets, _) = canonical_sets(&full_sets(V6), &[V6]);
    let rules = build_rules(&config(&[V6]), V6, &sets, &out_filters());
    let text = rules.render_restore(&plan_jumps(&Saved::default()));
    // Same shape as IPv4 with the KUBE-6- sets and ::1/128.
    let expected = RESTORE_FULL_V4
        .replace("127.0.0.0/8", "::1/128")
        .replace(
            "-s 203.0.113.2 -m ipvs --vaddr 203.0.113.2 --vproto tcp --vport 443",
            "-s 2001:db8:113::2 -m ipvs --vaddr 2001:db8:113::2 --vproto udp --vport 53",
        )
        .replace(
            "--match-set KUBE-LOAD-BALANCER-SOURCE-CIDR",
            "--match-set KUBE-6-LOAD-BALANCER-SOURCE-CID",
        )
        .replace(
            "--match-set KUBE-NODE-PORT-LOCAL-SCTP-HASH",
            "--match-set KUBE-6-NODE-PORT-LOCAL-SCTP-HAS",
        )
        .replace("--match-set KUBE-", "--match-set KUBE-6-")
        .replace("--match-set KUBE-6-6-", "--match-set KUBE-6-");
    assert_eq!(text, expected);
}

#[test]
fn an_empty_node_gets_only_the_unconditional_rules() {
    let rules = build_rules(&config(&[V4]), V4, &IpSets::new(), &BTreeSet::new());
    let nat: Vec<String> = rules.nat.iter().map(ToString::to_string).collect();
    assert_eq!(
        nat,
        [
            "-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN",
            "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT",
            "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ",
            "-A KUBE-POSTROUTING -m mark ! --mark 0x004000/0x004000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x004000",
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE",
            "-A KUBE-MARK-MASQ -j MARK --or-mark 0x004000",
        ]
    );
    // filter: DROP, 2 forward, HC accept, 5 returns + reject.
    assert_eq!(rules.filter.len(), 10);
}

fn cluster_ip_rule(cfg: &NetfilterConfig, family: AddressFamily) -> String {
    let mut s = IpSets::new();
    let vip = if family == V4 { "10.96.0.1" } else { "fd00::1" };
    put(&mut s, SetKind::ClusterIp, family, ipp(vip, Tcp, 443));
    build_rules(cfg, family, &s, &BTreeSet::new())
        .nat
        .iter()
        .map(ToString::to_string)
        .find(|r| r.contains("-j KUBE-MARK-MASQ") && r.contains("CLUSTER-IP"))
        .unwrap()
}

#[test]
fn cluster_ip_masquerade_rule_follows_masquerade_all_and_local_detection() {
    const C: &str = "-A KUBE-SERVICES -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set";
    let cidrs = LocalDetector::ClusterCidrs(vec![net("10.244.0.0/16"), net("fd00:244::/56")]);
    let cases = [
        (
            NetfilterConfig::default(),
            V4,
            format!("{C} KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ"),
        ),
        (
            NetfilterConfig {
                masquerade_all: true,
                local_detector: cidrs.clone(),
                ..Default::default()
            },
            V4,
            format!("{C} KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"),
        ),
        (
            NetfilterConfig {
                local_detector: cidrs.clone(),
                ..Default::default()
            },
            V4,
            format!("{C} KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ"),
        ),
        (
            NetfilterConfig {
                local_detector: cidrs,
                families: vec![V6],
                ..Default::default()
            },
            V6,
            format!("{C} KUBE-6-CLUSTER-IP dst,dst ! -s fd00:244::/56 -j KUBE-MARK-MASQ"),
        ),
        (
            // No CIDR of this family: the detector is not implemented for it.
            NetfilterConfig {
                local_detector: LocalDetector::NodeCidrs(vec![net("10.244.3.0/24")]),
                families: vec![V6],
                ..Default::default()
            },
            V6,
            format!("{C} KUBE-6-CLUSTER-IP src,dst -j KUBE-MARK-MASQ"),
        ),
        (
            NetfilterConfig {
                local_detector: LocalDetector::BridgeInterface(InterfaceName::new("cbr0").unwrap()),
                ..Default::default()
            },
            V4,
            format!("{C} KUBE-CLUSTER-IP dst,dst ! -i cbr0 -j KUBE-MARK-MASQ"),
        ),
        (
            NetfilterConfig {
                local_detector: LocalDetector::InterfaceNamePrefix(
                    InterfaceName::new("veth").unwrap(),
                ),
                ..Default::default()
            },
            V4,
            format!("{C} KUBE-CLUSTER-IP dst,dst ! -i veth+ -j KUBE-MARK-MASQ"),
        ),
    ];
    for (cfg, family, want) in cases {
        assert_eq!(cluster_ip_rule(&cfg, family), want, "{cfg:?}");
    }
}

#[test]
fn masquerade_bit_and_random_fully() {
    let rules_text = |cfg: NetfilterConfig| {
        build_rules(&cfg, V4, &IpSets::new(), &BTreeSet::new()).render_restore(&Default::default())
    };
    let t = rules_text(NetfilterConfig {
        masquerade_bit: 0,
        random_fully: true,
        ..Default::default()
    });
    assert!(
        t.contains("-A KUBE-MARK-MASQ -j MARK --or-mark 0x000001\n"),
        "{t}"
    );
    assert!(
        t.contains("-m mark ! --mark 0x000001/0x000001 -j RETURN"),
        "{t}"
    );
    assert!(t.contains("-j MASQUERADE --random-fully\n"), "{t}");
    assert!(
        t.contains("-m mark --mark 0x000001/0x000001 -j ACCEPT"),
        "{t}"
    );
    let t = rules_text(NetfilterConfig {
        masquerade_bit: 31,
        ..Default::default()
    });
    assert!(t.contains("--or-mark 0x80000000\n"), "{t}");
    assert!(!t.contains("--random-fully"));
    // No jumps were asked for.
    assert!(!t.contains("-I "));
}

#[test]
fn config_is_validated() {
    let bad = [
        (
            NetfilterConfig {
                masquerade_bit: 32,
                ..Default::default()
            },
            ConfigError::MasqueradeBit(32),
        ),
        (
            NetfilterConfig {
                families: vec![],
                ..Default::default()
            },
            ConfigError::Families,
        ),
        (
            NetfilterConfig {
                families: vec![V4, V4],
                ..Default::default()
            },
            ConfigError::Families,
        ),
        (
            NetfilterConfig {
                local_detector: LocalDetector::ClusterCidrs(vec![
                    net("10.0.0.0/8"),
                    net("172.16.0.0/12"),
                ]),
                ..Default::default()
            },
            ConfigError::TooManyCidrs(V4),
        ),
    ];
    for (cfg, want) in bad {
        assert_eq!(cfg.validate(), Err(want));
        assert!(Netfilter::new(SystemRunner::new(), cfg).is_err());
    }
    assert!(InterfaceName::new("bad name").is_err());
    assert!(InterfaceName::new("-x").is_err());
    assert!(InterfaceName::new("sixteen-chars-xx").is_err());
    assert!(SystemRunner::in_netns("a;b").is_err());
    assert!(SystemRunner::in_netns("-n").is_err());
}

// ---------------------------------------------------------------------------
// iptables: reading iptables-save, jumps, cleanup

const SAVE_WITH_JUMPS: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 21 23:20:46 2026
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:FOREIGN - [0:0]
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "some \"other\" rule" -j FOREIGN
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-IPVS-FILTER - [0:0]
-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
-A INPUT -s 192.0.2.0/24 -j ACCEPT
-A INPUT -m comment --comment kubernetes -j KUBE-NODE-PORT
COMMIT
"#;

#[test]
fn iptables_save_is_read_word_by_word() {
    let saved = ipt::parse_save(SAVE_WITH_JUMPS).unwrap();
    let nat = saved.table(ipt::Table::Nat).unwrap();
    assert_eq!(nat.chains.len(), 6);
    let post: Vec<&[String]> = nat.rules_of("POSTROUTING").collect();
    assert_eq!(post[0][3], "some \"other\" rule");
    assert_eq!(
        split_words(r#"-A X -m comment --comment "a \"q\" b\\c" -j Y"#).unwrap(),
        [
            "-A",
            "X",
            "-m",
            "comment",
            "--comment",
            r#"a "q" b\c"#,
            "-j",
            "Y"
        ]
    );
    assert!(split_words(r#"-A X --comment "open"#).is_err());
    assert!(ipt::parse_save("-A INPUT -j ACCEPT\n").is_err());
    assert_eq!(ipt::quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
}

#[test]
fn jumps_missing_are_inserted_and_duplicates_deleted() {
    let saved = ipt::parse_save(SAVE_WITH_JUMPS).unwrap();
    let plan = plan_jumps(&saved);
    // OUTPUT has two copies (one goes), PREROUTING one, the filter INPUT jump
    // to KUBE-IPVS-FILTER is there; the KUBE-NODE-PORT one has another
    // comment, so kube-proxy's exact rule is missing.
    assert_eq!(plan.delete.len(), 1);
    assert_eq!(plan.delete[0].from, ipt::Chain::Output);
    let inserted: Vec<(&str, &str)> = plan
        .insert
        .iter()
        .map(|j| (j.from.name(), j.to.name()))
        .collect();
    assert_eq!(
        inserted,
        [
            ("POSTROUTING", "KUBE-POSTROUTING"),
            ("FORWARD", "KUBE-FORWARD"),
            ("INPUT", "KUBE-NODE-PORT"),
            ("INPUT", "KUBE-PROXY-FIREWALL"),
            ("FORWARD", "KUBE-PROXY-FIREWALL"),
            ("OUTPUT", "KUBE-IPVS-OUT-FILTER"),
        ]
    );
    let text =
        build_rules(&config(&[V4]), V4, &IpSets::new(), &BTreeSet::new()).render_restore(&plan);
    assert!(text.contains(
        ":KUBE-MARK-MASQ - [0:0]\n\
         -D OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -I POSTROUTING 1 -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-SERVICES"
    ), "{text}");
}

#[test]
fn cleanup_text_removes_only_ours() {
    let saved = ipt::parse_save(SAVE_WITH_JUMPS).unwrap();
    assert_eq!(
        render_cleanup(&saved).unwrap(),
        "*nat\n\
         -D OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -D OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -F KUBE-SERVICES\n\
         -F KUBE-MARK-MASQ\n\
         -X KUBE-SERVICES\n\
         -X KUBE-MARK-MASQ\n\
         COMMIT\n\
         *filter\n\
         -D INPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER\n\
         -F KUBE-IPVS-FILTER\n\
         -X KUBE-IPVS-FILTER\n\
         COMMIT\n"
    );
    assert_eq!(render_cleanup(&Saved::default()), None);
}

#[test]
fn random_fully_probe_reads_the_version() {
    assert_eq!(
        parse_iptables_version("iptables v1.8.9 (nf_tables)"),
        Some((1, 8, 9))
    );
    assert_eq!(parse_iptables_version("iptables v1.6.1"), Some((1, 6, 1)));
    assert_eq!(parse_iptables_version("nonsense"), None);
    let fake = |v: &'static str| Fake::new(move |_, _| Ok(v.to_owned()));
    assert!(probe_random_fully(&fake("iptables v1.6.2\n"), V4));
    assert!(probe_random_fully(
        &fake("ip6tables v1.8.10 (legacy)\n"),
        V6
    ));
    assert!(!probe_random_fully(&fake("iptables v1.6.1\n"), V4));
}

// ---------------------------------------------------------------------------
// A fake runner: for failure counting and recording

type Handler = dyn Fn(&str, &[&str]) -> Result<String, ExecError> + Send + Sync;

struct Fake {
    handler: Box<Handler>,
}

impl Fake {
    fn new(f: impl Fn(&str, &[&str]) -> Result<String, ExecError> + Send + Sync + 'static) -> Self {
        Self {
            handler: Box::new(f),
        }
    }
}

impl CommandRunner for Fake {
    fn run(
        &self,
        program: &str,
        args: &[&str],
        _stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, ExecError> {
        (self.handler)(program, args).map(|stdout| ExecOutput {
            stdout,
            stderr: String::new(),
        })
    }
}

#[test]
fn failed_restores_are_counted_per_family() {
    let nf = Netfilter::new(
        Fake::new(|program, _| match program {
            "ip6tables-restore" => Err(ExecError::Failed {
                program: program.into(),
                args: String::new(),
                status: "exit status: 2".into(),
                code: Some(2),
                stderr: "line 3 failed".into(),
            }),
            _ => Ok(String::new()),
        }),
        config(&[V4, V6]),
    )
    .unwrap();
    for n in 1..=2 {
        let err = nf.sync(&DesiredState::default()).unwrap_err();
        assert!(
            matches!(err, NetfilterError::Restore { family: V6, .. }),
            "{err}"
        );
        assert_eq!(nf.iptables_restore_failures(), n);
        assert_eq!(nf.iptables_restore_failures_for(V6), n);
        assert_eq!(nf.iptables_restore_failures_for(V4), 0);
    }
}

/// Wraps a runner and records every program run.
struct Recording<R> {
    inner: R,
    calls: Mutex<Vec<String>>,
}

impl<R> Recording<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
}

impl<R: CommandRunner> CommandRunner for Recording<R> {
    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, ExecError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{program} {}", args.join(" ")).trim().to_owned());
        self.inner.run(program, args, stdin)
    }
}

// ---------------------------------------------------------------------------
// sysctl and conntrack: pure parts

#[test]
fn kernel_versions_and_conn_reuse_decision() {
    for (s, v) in [
        ("6.18.44-fc-v445", (6, 18, 44)),
        ("5.4.0-150-generic", (5, 4, 0)),
        ("4.18.0-513.el8.x86_64", (4, 18, 0)),
        ("6.1", (6, 1, 0)),
        ("5.10.0+\n", (5, 10, 0)),
    ] {
        assert_eq!(
            KernelVersion::parse(s),
            Some(KernelVersion::new(v.0, v.1, v.2)),
            "{s}"
        );
    }
    assert_eq!(KernelVersion::parse("linux"), None);
    assert_eq!(KernelVersion::parse("6"), None);
    for (v, want) in [
        ((3, 10, 0), ConnReuse::Unsupported),
        ((4, 0, 9), ConnReuse::Unsupported),
        ((4, 1, 0), ConnReuse::SetZero),
        ((4, 19, 0), ConnReuse::SetZero),
        ((5, 8, 18), ConnReuse::SetZero),
        ((5, 9, 0), ConnReuse::LeaveAsIs),
        ((6, 18, 44), ConnReuse::LeaveAsIs),
    ] {
        assert_eq!(
            ConnReuse::for_kernel(KernelVersion::new(v.0, v.1, v.2)),
            want,
            "{v:?}"
        );
    }
}

#[test]
fn the_sysctl_list_is_kube_proxys() {
    let list = |k: (u32, u32, u32), strict| -> Vec<(&str, i64)> {
        ipvs_sysctls(KernelVersion::new(k.0, k.1, k.2), strict)
            .sysctls
            .iter()
            .map(|s| (s.path, s.value))
            .collect()
    };
    assert_eq!(
        list((5, 4, 0), true),
        [
            ("net/ipv4/vs/conntrack", 1),
            ("net/ipv4/vs/conn_reuse_mode", 0),
            ("net/ipv4/vs/expire_nodest_conn", 1),
            ("net/ipv4/vs/expire_quiescent_template", 1),
            ("net/ipv4/ip_forward", 1),
            ("net/ipv4/conf/all/arp_ignore", 1),
            ("net/ipv4/conf/all/arp_announce", 2),
        ]
    );
    assert_eq!(
        list((6, 1, 0), false),
        [
            ("net/ipv4/vs/conntrack", 1),
            ("net/ipv4/vs/expire_nodest_conn", 1),
            ("net/ipv4/vs/expire_quiescent_template", 1),
            ("net/ipv4/ip_forward", 1),
        ]
    );
    assert_eq!(list((3, 10, 0), false).len(), 4);
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "sluice-nf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sysctl_writer_writes_only_what_differs_under_an_injected_root() {
    let dir = TempDir::new("sysctl");
    let root = &dir.0;
    std::fs::create_dir_all(root.join("net/ipv4/vs")).unwrap();
    std::fs::write(root.join("net/ipv4/vs/conntrack"), "0\n").unwrap();
    std::fs::write(root.join("net/ipv4/ip_forward"), "1\n").unwrap();
    std::fs::write(root.join("net/ipv4/vs/expire_nodest_conn"), "yes\n").unwrap();
    let w = SysctlWriter::new(root);
    let plan = ipvs_sysctls(KernelVersion::new(6, 1, 0), false).sysctls;
    let results = w.ensure_all(&plan);
    let outcome = |path: &str| &results.iter().find(|(s, _)| s.path == path).unwrap().1;
    assert!(matches!(
        outcome("net/ipv4/vs/conntrack"),
        Ok(SysctlOutcome::Written { previous: 0 })
    ));
    assert!(matches!(
        outcome("net/ipv4/ip_forward"),
        Ok(SysctlOutcome::Unchanged)
    ));
    assert!(matches!(
        outcome("net/ipv4/vs/expire_nodest_conn"),
        Err(SysctlError::NotInteger { .. })
    ));
    // No ip_vs: the file is missing and that is reported, not created.
    assert!(matches!(
        outcome("net/ipv4/vs/expire_quiescent_template"),
        Err(SysctlError::Io { .. })
    ));
    assert!(!root.join("net/ipv4/vs/expire_quiescent_template").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("net/ipv4/vs/conntrack")).unwrap(),
        "1\n"
    );
    // Idempotent: the file's mtime does not move on a second run.
    let mtime = || {
        std::fs::metadata(root.join("net/ipv4/vs/conntrack"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = mtime();
    std::thread::sleep(Duration::from_millis(20));
    let again = w
        .ensure(&Sysctl {
            path: "net/ipv4/vs/conntrack",
            value: 1,
        })
        .unwrap();
    assert_eq!(again, SysctlOutcome::Unchanged);
    assert_eq!(mtime(), before);
    std::fs::create_dir_all(root.join("kernel")).unwrap();
    std::fs::write(root.join("kernel/osrelease"), "5.4.0-150-generic\n").unwrap();
    assert_eq!(
        KernelVersion::read(root).unwrap(),
        KernelVersion::new(5, 4, 0)
    );
}

#[test]
fn conntrack_arguments_are_typed() {
    let f = UdpFlows::ToServiceIp {
        vip: ip("10.96.0.10"),
        port: 53,
        endpoint: ip("10.244.1.5"),
    };
    assert_eq!(
        f.args().join(" "),
        "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.1.5 -f ipv4"
    );
    let f = UdpFlows::ToNodePort {
        port: 30053,
        endpoint: ip("fd00:244::5"),
    };
    assert_eq!(
        f.args().join(" "),
        "-D -p udp --orig-port-dst 30053 --reply-src fd00:244::5 -f ipv6"
    );
    assert_eq!(
        deleted_count("conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n"),
        Some(3)
    );
    assert_eq!(deleted_count("nothing"), None);
}

// ---------------------------------------------------------------------------
// Kernel tests: environment and network namespaces

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn probe_environment() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    for (prog, arg) in [
        ("ip", "-V"),
        ("ipset", "version"),
        ("iptables-restore", "--version"),
        ("ip6tables-restore", "--version"),
        ("iptables-save", "--version"),
        ("ip6tables-save", "--version"),
        ("conntrack", "--version"),
    ] {
        match Command::new(prog).arg(arg).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "{prog} {arg}: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            Err(e) => return Err(format!("{prog}: {e}")),
        }
    }
    let ns = format!("snf-probe-{}", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "add", &ns])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    Ok(())
}

/// Whether kernel tests can run; prints why not (and panics under CI=true).
fn kernel_ok(test: &str) -> bool {
    static ENV: OnceLock<Result<(), String>> = OnceLock::new();
    match ENV.get_or_init(probe_environment) {
        Ok(()) => true,
        Err(reason) if is_ci() => {
            panic!("{test}: cannot run under CI=true (a skip is a failure): {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED: {test}: {reason}");
            false
        }
    }
}

fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        cmd.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh network namespace, deleted on drop (also when the test panics).
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "snf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.sh("ip link set lo up");
        // Links created here from now on (veth peers moved elsewhere
        // included) skip IPv6 duplicate address detection, link-local
        // addresses too: while those are tentative, the first SYNs through
        // a fresh path can be lost, and a connect waits for the 1 s and
        // 3 s retransmissions.
        ns.sh("sysctl -qw net.ipv6.conf.default.accept_dad=0");
        ns
    }

    /// Runs a command line (split on whitespace) in the namespace.
    fn sh(&self, cmd: &str) -> String {
        let mut args = vec!["ip", "netns", "exec", &self.name];
        args.extend(cmd.split_whitespace());
        run(&args)
    }

    /// Runs a command in the namespace, returning success and output.
    fn try_cmd(&self, cmd: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn runner(&self) -> SystemRunner {
        SystemRunner::in_netns(&self.name).unwrap()
    }

    fn netfilter(&self, cfg: NetfilterConfig) -> Netfilter {
        Netfilter::new(self.runner(), cfg).unwrap()
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it
    /// creates belong to the namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(move || {
                let file = std::fs::File::open(&path).unwrap();
                // SAFETY: setns on this thread only, with a valid namespace fd.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// `iptables-save` / `ip6tables-save` without the timestamp comments.
    fn iptables_save(&self, family: AddressFamily) -> String {
        let prog = if family == V4 {
            "iptables-save"
        } else {
            "ip6tables-save"
        };
        self.sh(prog)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// `ipset save` without the per-set random `initval`.
    fn ipset_save(&self) -> String {
        self.sh("ipset save")
            .lines()
            .map(|l| match l.find(" initval ") {
                Some(i) => format!("{}\n", &l[..i]),
                None => format!("{l}\n"),
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The `-A CHAIN …` lines of one chain of one table, in order, without the
/// `-A CHAIN` prefix.
fn chain(save: &str, table: &str, chain: &str) -> Vec<String> {
    let mut in_table = false;
    let prefix = format!("-A {chain} ");
    save.lines()
        .filter_map(|l| {
            if let Some(t) = l.strip_prefix('*') {
                in_table = t == table;
                return None;
            }
            if in_table {
                l.strip_prefix(&prefix).map(str::to_owned)
            } else {
                None
            }
        })
        .collect()
}

/// Set name → members, from `ipset save`.
fn members(save: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in save.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["create", name, ..] => {
                m.entry((*name).to_owned()).or_default();
            }
            ["add", name, member] => {
                m.entry((*name).to_owned())
                    .or_default()
                    .insert((*member).to_owned());
            }
            _ => panic!("unexpected ipset save line {l:?}"),
        }
    }
    m
}

// ---------------------------------------------------------------------------
// Kernel tests: apply and read back

/// What `iptables-save` prints for our chains after a full IPv4 apply:
/// iptables' own normalisation of our input (`/32`, `--set-xmark`,
/// `--reject-with`, unquoted one-word comments), in kube-proxy's order.
fn expected_saved_chains(family: AddressFamily) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let p = if family == V4 { "KUBE-" } else { "KUBE-6-" };
    let lo = if family == V4 {
        "127.0.0.0/8"
    } else {
        "::1/128"
    };
    let reject = if family == V4 {
        "icmp-port-unreachable"
    } else {
        "icmp6-port-unreachable"
    };
    let cidr = if family == V4 {
        "KUBE-LOAD-BALANCER-SOURCE-CIDR"
    } else {
        "KUBE-6-LOAD-BALANCER-SOURCE-CID"
    };
    let lsctp = if family == V4 {
        "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
    } else {
        "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS"
    };
    let v = |rules: &[&str]| -> Vec<String> {
        rules
            .iter()
            .map(|r| {
                r.replace("{p}", p)
                    .replace("{lo}", lo)
                    .replace("{reject}", reject)
                    .replace("{cidr}", cidr)
                    .replace("{lsctp}", lsctp)
            })
            .collect()
    };
    vec![
        (
            "nat",
            "PREROUTING",
            v(&[r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#]),
        ),
        (
            "nat",
            "OUTPUT",
            v(&[r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#]),
        ),
        (
            "nat",
            "POSTROUTING",
            v(&[r#"-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING"#]),
        ),
        (
            "nat",
            "KUBE-SERVICES",
            v(&[
                "-s {lo} -j RETURN",
                r#"-m comment --comment "Kubernetes service lb portal" -m set --match-set {p}LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER"#,
                r#"-m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set {p}CLUSTER-IP src,dst -j KUBE-MARK-MASQ"#,
                r#"-m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set {p}EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ"#,
                r#"-m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set {p}EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"#,
                r#"-m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set {p}EXTERNAL-IP dst,dst -m addrtype --dst-type LOCAL -j ACCEPT"#,
                r#"-m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set {p}EXTERNAL-IP-LOCAL dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"#,
                r#"-m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set {p}EXTERNAL-IP-LOCAL dst,dst -m addrtype --dst-type LOCAL -j ACCEPT"#,
                "-m addrtype --dst-type LOCAL -j KUBE-NODE-PORT",
                "-m set --match-set {p}CLUSTER-IP dst,dst -j ACCEPT",
                "-m set --match-set {p}LOAD-BALANCER dst,dst -j ACCEPT",
            ]),
        ),
        (
            "nat",
            "KUBE-POSTROUTING",
            v(&[
                r#"-m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set {p}LOOP-BACK dst,dst,src -j MASQUERADE"#,
                "-m mark ! --mark 0x4000/0x4000 -j RETURN",
                "-j MARK --set-xmark 0x4000/0x0",
                r#"-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE"#,
            ]),
        ),
        (
            "nat",
            "KUBE-NODE-PORT",
            v(&[
                r#"-p tcp -m comment --comment "Kubernetes nodeport TCP port with externalTrafficPolicy=local" -m set --match-set {p}NODE-PORT-LOCAL-TCP dst -j RETURN"#,
                r#"-p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set {p}NODE-PORT-TCP dst -j KUBE-MARK-MASQ"#,
                r#"-p udp -m comment --comment "Kubernetes nodeport UDP port for masquerade purpose" -m set --match-set {p}NODE-PORT-UDP dst -j KUBE-MARK-MASQ"#,
                r#"-p sctp -m comment --comment "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type \'hash ip:port\'" -m set --match-set {lsctp} dst,dst -j RETURN"#,
                r#"-p sctp -m comment --comment "Kubernetes nodeport SCTP port for masquerade purpose with type \'hash ip:port\'" -m set --match-set {p}NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ"#,
            ]),
        ),
        (
            "nat",
            "KUBE-LOAD-BALANCER",
            v(&[
                r#"-m comment --comment "Kubernetes service load balancer ip + port with externalTrafficPolicy=local" -m set --match-set {p}LOAD-BALANCER-LOCAL dst,dst -j RETURN"#,
                "-j KUBE-MARK-MASQ",
            ]),
        ),
        (
            "nat",
            "KUBE-MARK-MASQ",
            v(&["-j MARK --set-xmark 0x4000/0x4000"]),
        ),
        (
            "filter",
            "INPUT",
            v(&[
                r#"-m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER"#,
                r#"-m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL"#,
                r#"-m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT"#,
            ]),
        ),
        (
            "filter",
            "FORWARD",
            v(&[
                r#"-m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL"#,
                r#"-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD"#,
            ]),
        ),
        (
            "filter",
            "OUTPUT",
            v(
                &[
                    r#"-m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER"#,
                ],
            ),
        ),
        (
            "filter",
            "KUBE-FORWARD",
            v(&[
                r#"-m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT"#,
                r#"-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"#,
            ]),
        ),
        (
            "filter",
            "KUBE-NODE-PORT",
            v(&[
                r#"-m comment --comment "Kubernetes health check node port" -m set --match-set {p}HEALTH-CHECK-NODE-PORT dst -j ACCEPT"#,
            ]),
        ),
        (
            "filter",
            "KUBE-PROXY-FIREWALL",
            v(&[
                r#"-m comment --comment "Kubernetes service load balancer ip + port for load balancer with sourceRange" -m set --match-set {p}LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL"#,
            ]),
        ),
        (
            "filter",
            "KUBE-SOURCE-RANGES-FIREWALL",
            v(&[
                r#"-m comment --comment "Kubernetes service load balancer ip + port + source cidr for packet filter purpose" -m set --match-set {cidr} dst,dst,src -j RETURN"#,
                r#"-m comment --comment "Kubernetes service load balancer ip + port + source IP for packet filter purpose" -m set --match-set {p}LOAD-BALANCER-SOURCE-IP dst,dst,src -j RETURN"#,
                "-j DROP",
            ]),
        ),
        (
            "filter",
            "KUBE-IPVS-FILTER",
            v(&[
                "-m set --match-set {p}LOAD-BALANCER dst,dst -j RETURN",
                "-m set --match-set {p}CLUSTER-IP dst,dst -j RETURN",
                "-m set --match-set {p}EXTERNAL-IP dst,dst -j RETURN",
                "-m set --match-set {p}EXTERNAL-IP-LOCAL dst,dst -j RETURN",
                "-m set --match-set {p}HEALTH-CHECK-NODE-PORT dst -j RETURN",
                "-m conntrack --ctstate NEW -m set --match-set {p}IPVS-IPS dst -j REJECT --reject-with {reject}",
            ]),
        ),
        ("filter", "KUBE-IPVS-OUT-FILTER", vec![]),
    ]
}

fn assert_rules_read_back(ns: &Netns, family: AddressFamily) {
    let save = ns.iptables_save(family);
    for (table, ch, want) in expected_saved_chains(family) {
        assert_eq!(
            chain(&save, table, ch),
            want,
            "{family:?} {table} {ch}\n{save}"
        );
        if ch.starts_with("KUBE-") {
            assert!(
                save.contains(&format!(":{ch} - [0:0]")),
                "{ch} not declared:\n{save}"
            );
        }
    }
}

fn assert_sets_read_back(ns: &Netns, family: AddressFamily) {
    let got = members(&ns.ipset_save());
    let (want_sets, _) = canonical_sets(&full_sets(family), &[family]);
    for name in SetKind::ALL.map(|kind| set(kind, family)) {
        let want: BTreeSet<String> = want_sets
            .get(&name)
            .map(|s| s.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        // ipset prints a host network without its /32 or /128.
        let want: BTreeSet<String> = want
            .into_iter()
            .map(|e| {
                e.trim_end_matches("/32")
                    .trim_end_matches("/128")
                    .to_owned()
            })
            .collect();
        assert_eq!(got.get(&name.name()), Some(&want), "{}", name.name());
    }
    let header = ns.ipset_save();
    let p = if family == V4 { "KUBE-" } else { "KUBE-6-" };
    let fam = if family == V4 { "inet" } else { "inet6" };
    assert!(
        header.contains(&format!(
            "create {p}CLUSTER-IP hash:ip,port family {fam} hashsize 1024 maxelem 65536"
        )),
        "{header}"
    );
    assert!(
        header.contains(&format!(
            "create {p}NODE-PORT-TCP bitmap:port range 0-65535\n"
        )),
        "{header}"
    );
    assert!(
        header.contains(&format!(
            "create {p}IPVS-IPS hash:ip family {fam} hashsize 1024 maxelem 65536"
        )),
        "{header}"
    );
}

#[test]
fn apply_ipv4_reads_back_exactly_with_kube_proxys_names_and_order() {
    if !kernel_ok("apply_ipv4") {
        return;
    }
    let ns = Netns::new("a4");
    let nf = ns.netfilter(config(&[V4]));
    let report = nf.sync(&desired(full_sets(V4))).unwrap();
    assert_eq!(report.sets_created, 17);
    assert_eq!(report.entries_added, 22);
    assert_eq!(report.jumps_inserted, 9);
    assert_sets_read_back(&ns, V4);
    assert_rules_read_back(&ns, V4);
    // IPv4 only: nothing in ip6tables, no KUBE-6- set.
    assert!(!ns.iptables_save(V6).contains("KUBE-"));
    assert!(!ns.ipset_save().contains("KUBE-6-"));
}

#[test]
fn apply_ipv6_reads_back_exactly() {
    if !kernel_ok("apply_ipv6") {
        return;
    }
    let ns = Netns::new("a6");
    let nf = ns.netfilter(config(&[V6]));
    nf.sync(&desired(full_sets(V6))).unwrap();
    assert_sets_read_back(&ns, V6);
    assert_rules_read_back(&ns, V6);
    assert!(!ns.iptables_save(V4).contains("KUBE-"));
}

#[test]
fn second_apply_changes_nothing_dual_stack() {
    if !kernel_ok("second_apply") {
        return;
    }
    let ns = Netns::new("twice");
    let nf = Netfilter::new(Recording::new(ns.runner()), config(&[V4, V6])).unwrap();
    let mut sets = full_sets(V4);
    sets.extend(full_sets(V6));
    let d = desired(sets);
    nf.sync(&d).unwrap();
    let (s4, s6, sets1) = (ns.iptables_save(V4), ns.iptables_save(V6), ns.ipset_save());
    nf.runner().take();

    let report = nf.sync(&d).unwrap();
    assert_eq!(
        (
            report.sets_created,
            report.entries_added,
            report.entries_deleted
        ),
        (0, 0, 0)
    );
    assert_eq!((report.jumps_inserted, report.jumps_deleted), (0, 0));
    // What iptables-save reads back counts as no drift.
    assert_eq!(report.rules_restored, 0);
    // One read of the sets and no ipset restore; per family one save and one
    // restore.
    assert_eq!(
        nf.runner().take(),
        [
            "ipset save",
            "iptables-save",
            "iptables-restore -w 5 -W 100000 --noflush --counters",
            "ip6tables-save",
            "ip6tables-restore -w 5 -W 100000 --noflush --counters",
        ]
    );
    assert_eq!(ns.iptables_save(V4), s4);
    assert_eq!(ns.iptables_save(V6), s6);
    assert_eq!(ns.ipset_save(), sets1);
    assert_rules_read_back(&ns, V4);
    assert_rules_read_back(&ns, V6);
}

fn s4_count(ns: &Netns, what: &str) -> usize {
    ns.iptables_save(V4)
        .lines()
        .filter(|l| l.starts_with("-A") && l.contains(what))
        .count()
}

#[test]
fn incremental_sync_writes_only_what_changed_and_reads_nothing() {
    if !kernel_ok("incremental") {
        return;
    }
    let ns = Netns::new("incr");
    let nf = Netfilter::new(Recording::new(ns.runner()), config(&[V4, V6])).unwrap();
    let mut sets = full_sets(V4);
    sets.extend(full_sets(V6));
    // Before any full sync there is nothing to trust: a full sync runs.
    nf.sync_changes(&desired(sets.clone())).unwrap();
    assert!(nf.runner().take().contains(&"ipset save".to_owned()));

    // An endpoint moves: one hairpin entry out, one in. One `ipset restore`
    // with exactly those two lines, no reads, no iptables restore.
    let old = ippi("10.244.1.5", Tcp, 8080, "10.244.1.5");
    let new = ippi("10.244.1.6", Tcp, 8080, "10.244.1.6");
    let loop_back = set(SetKind::LoopBack, V4);
    sets.get_mut(&loop_back).unwrap().remove(&old);
    sets.get_mut(&loop_back).unwrap().insert(new);
    let report = nf.sync_changes(&desired(sets.clone())).unwrap();
    assert_eq!((report.entries_added, report.entries_deleted), (1, 1));
    assert_eq!(nf.runner().take(), ["ipset restore"]);
    let got = members(&ns.ipset_save());
    let members_of = &got["KUBE-LOOP-BACK"];
    assert!(
        members_of.contains("10.244.1.6,tcp:8080,10.244.1.6"),
        "{members_of:?}"
    );
    assert!(
        !members_of.contains("10.244.1.5,tcp:8080,10.244.1.5"),
        "{members_of:?}"
    );

    // Nothing changed: nothing runs.
    nf.sync_changes(&desired(sets.clone())).unwrap();
    assert_eq!(nf.runner().take(), Vec::<String>::new());

    // The last IPv4 externalIP with eTP=Local goes: its set empties, so its
    // rule goes too. One `ipset restore` and the IPv4 rules only, unread.
    let ext_local = set(SetKind::ExternalIpLocal, V4);
    // Its rules: the conditional one in KUBE-SERVICES, and KUBE-IPVS-FILTER's
    // RETURN, which kube-proxy writes unconditionally.
    let rules_before = s4_count(&ns, "KUBE-EXTERNAL-IP-LOCAL");
    sets.remove(&ext_local);
    let d = desired(sets.clone());
    nf.sync_changes(&d).unwrap();
    assert_eq!(
        nf.runner().take(),
        [
            "ipset restore",
            "iptables-restore -w 5 -W 100000 --noflush --counters"
        ]
    );
    assert!(rules_before > 1);
    assert_eq!(
        s4_count(&ns, "KUBE-EXTERNAL-IP-LOCAL"),
        1,
        "{}",
        ns.iptables_save(V4)
    );

    // The kernel now equals what a full sync of the same state leaves.
    let (s4, s6, sets_now) = (ns.iptables_save(V4), ns.iptables_save(V6), ns.ipset_save());
    let report = nf.sync(&d).unwrap();
    assert_eq!((report.entries_added, report.entries_deleted), (0, 0));
    assert_eq!(ns.iptables_save(V4), s4);
    assert_eq!(ns.iptables_save(V6), s6);
    assert_eq!(ns.ipset_save(), sets_now);
}

#[test]
fn drift_is_repaired() {
    if !kernel_ok("drift") {
        return;
    }
    let ns = Netns::new("drift");
    let nf = ns.netfilter(config(&[V4]));
    let d = desired(full_sets(V4));
    nf.sync(&d).unwrap();
    let (rules0, sets0) = (ns.iptables_save(V4), ns.ipset_save());

    // By hand: lose a rule of ours and a jump, duplicate another jump, add a
    // stray rule to our chain, lose a member, add a stray one.
    ns.sh("iptables -t nat -D KUBE-SERVICES 2");
    ns.sh("iptables -t filter -A KUBE-IPVS-FILTER -j ACCEPT");
    ns.sh("iptables -t nat -D OUTPUT 1");
    ns.sh("iptables -t filter -A INPUT -m comment --comment kube-proxy_firewall_rules -j ACCEPT");
    let (ok, _) = ns.try_cmd(&[
        "iptables",
        "-t",
        "filter",
        "-A",
        "FORWARD",
        "-m",
        "comment",
        "--comment",
        "kubernetes forwarding rules",
        "-j",
        "KUBE-FORWARD",
    ]);
    assert!(ok);
    ns.sh("ipset del KUBE-CLUSTER-IP 10.96.0.10,udp:53");
    ns.sh("ipset add KUBE-CLUSTER-IP 10.96.0.77,tcp:1");
    ns.sh("ipset add KUBE-NODE-PORT-UDP 31999");
    assert_ne!(ns.iptables_save(V4), rules0);

    let report = nf.sync(&d).unwrap();
    assert_eq!((report.entries_added, report.entries_deleted), (1, 2));
    assert_eq!((report.jumps_inserted, report.jumps_deleted), (1, 1));
    // The lost KUBE-SERVICES rule and the stray KUBE-IPVS-FILTER one.
    assert_eq!(report.rules_restored, 2);
    assert_eq!(ns.ipset_save(), sets0);
    // Everything of ours is back; the foreign INPUT rule (a lookalike
    // comment) stays, and nothing is duplicated.
    let after = ns.iptables_save(V4);
    assert_rules_read_back_except_input(&ns);
    assert_eq!(
        chain(&after, "filter", "INPUT").last().unwrap(),
        "-m comment --comment kube-proxy_firewall_rules -j ACCEPT"
    );
    // The OUTPUT jump was re-inserted at the top, as kube-proxy's -I does.
    assert_eq!(
        chain(&after, "nat", "OUTPUT"),
        [r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#]
    );
}

fn assert_rules_read_back_except_input(ns: &Netns) {
    let save = ns.iptables_save(V4);
    for (table, ch, want) in expected_saved_chains(V4) {
        if ch == "INPUT" {
            assert_eq!(chain(&save, table, ch)[..3], want[..], "{save}");
        } else {
            assert_eq!(chain(&save, table, ch), want, "{table} {ch}\n{save}");
        }
    }
}

#[test]
fn foreign_state_survives_apply_and_cleanup_and_nothing_of_ours_remains() {
    if !kernel_ok("foreign") {
        return;
    }
    let ns = Netns::new("foreign");
    for family in [V4, V6] {
        let (t, src, fam) = if family == V4 {
            ("iptables", "192.0.2.0/24", "inet")
        } else {
            ("ip6tables", "2001:db8:ffff::/48", "inet6")
        };
        let set_name = if family == V4 {
            "FOREIGN-SET"
        } else {
            "FOREIGN-SET6"
        };
        ns.sh(&format!("ipset create {set_name} hash:ip family {fam}"));
        ns.sh(&format!("{t} -t filter -N FOREIGN"));
        ns.sh(&format!(
            "{t} -t filter -A FOREIGN -m set --match-set {set_name} src -j DROP"
        ));
        ns.sh(&format!("{t} -t filter -A INPUT -s {src} -j FOREIGN"));
        ns.sh(&format!("{t} -t nat -N FOREIGN-NAT"));
        ns.sh(&format!("{t} -t nat -A POSTROUTING -j FOREIGN-NAT"));
    }
    ns.sh("ipset add FOREIGN-SET 198.51.100.1");
    // Named like ours, but not one of kube-proxy's sets.
    ns.sh("ipset create KUBE-NOT-OURS hash:ip");
    ns.sh("ipset add KUBE-NOT-OURS 198.51.100.2");
    let foreign_before = |fam| foreign_lines(&ns.iptables_save(fam));
    let (f4, f6) = (foreign_before(V4), foreign_before(V6));
    assert_eq!(f4.len(), 5, "{f4:?}");

    let nf = ns.netfilter(config(&[V4, V6]));
    let mut sets = full_sets(V4);
    sets.extend(full_sets(V6));
    nf.sync(&desired(sets)).unwrap();
    assert_eq!(foreign_lines(&ns.iptables_save(V4)), f4);
    assert_eq!(foreign_lines(&ns.iptables_save(V6)), f6);
    // Our jumps went in front of the foreign INPUT rule.
    assert_eq!(
        chain(&ns.iptables_save(V4), "filter", "INPUT")
            .last()
            .unwrap(),
        "-s 192.0.2.0/24 -j FOREIGN"
    );
    let m = members(&ns.ipset_save());
    assert_eq!(m.len(), 3 + 34);
    assert_eq!(
        m["FOREIGN-SET"],
        BTreeSet::from(["198.51.100.1".to_owned()])
    );

    let report = nf.cleanup();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for family in [V4, V6] {
        let save = ns.iptables_save(family);
        assert!(!save.contains("KUBE-"), "{family:?}:\n{save}");
        assert_eq!(
            foreign_lines(&save),
            if family == V4 { f4.clone() } else { f6.clone() }
        );
    }
    let m = members(&ns.ipset_save());
    assert_eq!(
        m.keys().cloned().collect::<Vec<_>>(),
        ["FOREIGN-SET", "FOREIGN-SET6", "KUBE-NOT-OURS"]
    );
    assert_eq!(
        m["KUBE-NOT-OURS"],
        BTreeSet::from(["198.51.100.2".to_owned()])
    );
    // A second cleanup finds nothing to do.
    assert!(nf.cleanup().errors.is_empty());
}

#[test]
fn cleanup_goes_on_past_what_it_cannot_remove() {
    if !kernel_ok("cleanup_partial") {
        return;
    }
    let ns = Netns::new("partial");
    let nf = ns.netfilter(config(&[V4]));
    nf.sync(&desired(full_sets(V4))).unwrap();
    // Someone else's rules hold on to one chain and one set of ours.
    ns.sh("iptables -t filter -N HOLDER");
    ns.sh("iptables -t filter -A HOLDER -j KUBE-NODE-PORT");
    ns.sh("iptables -t filter -A HOLDER -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT");

    let report = nf.cleanup();
    // The atomic restore fails, so every step is retried alone: only
    // deleting filter KUBE-NODE-PORT and destroying KUBE-CLUSTER-IP fail.
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("-X KUBE-NODE-PORT"), "{errors:#?}");
    assert!(errors[1].contains("destroy KUBE-CLUSTER-IP"), "{errors:#?}");
    let save = ns.iptables_save(V4);
    let ours: Vec<&str> = save.lines().filter(|l| l.contains("KUBE-")).collect();
    assert_eq!(
        ours,
        [
            ":KUBE-NODE-PORT - [0:0]",
            "-A HOLDER -j KUBE-NODE-PORT",
            "-A HOLDER -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
        ]
    );
    let m = members(&ns.ipset_save());
    assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["KUBE-CLUSTER-IP"]);
}

fn foreign_lines(save: &str) -> Vec<String> {
    save.lines()
        .filter(|l| l.contains("FOREIGN"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn sets_no_longer_wanted_are_emptied_not_destroyed() {
    if !kernel_ok("emptied") {
        return;
    }
    let ns = Netns::new("empty");
    let mut sets = full_sets(V4);
    sets.extend(full_sets(V6));
    ns.netfilter(config(&[V4, V6]))
        .sync(&desired(sets))
        .unwrap();

    // Nothing wanted any more, and IPv6 is no longer configured.
    let nf = ns.netfilter(config(&[V4]));
    let report = nf.sync(&DesiredState::default()).unwrap();
    assert_eq!(report.entries_deleted, 44);
    let m = members(&ns.ipset_save());
    assert_eq!(m.len(), 34, "all 34 sets still exist");
    assert!(m.values().all(BTreeSet::is_empty), "{m:?}");
    // The rules that depend on non-empty sets are gone.
    let save = ns.iptables_save(V4);
    assert_eq!(chain(&save, "nat", "KUBE-SERVICES").len(), 2, "{save}");
    assert_eq!(chain(&save, "nat", "KUBE-NODE-PORT"), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Kernel tests: packets

/// Two namespaces: `client` (A::2) and `node` (A::1), joined by a veth pair,
/// the client routing everything through the node.
struct Pair {
    client: Netns,
    node: Netns,
}

fn pair(family: AddressFamily) -> Pair {
    let client = Netns::new("cl");
    let node = Netns::new("nd");
    node.sh(&format!(
        "ip link add vn type veth peer name vc netns {}",
        client.name
    ));
    if family == V4 {
        node.sh("ip addr add 10.0.1.1/24 dev vn");
        client.sh("ip addr add 10.0.1.2/24 dev vc");
    } else {
        node.sh("ip -6 addr add fd00:1::1/64 dev vn nodad");
        client.sh("ip -6 addr add fd00:1::2/64 dev vc nodad");
    }
    node.sh("ip link set vn up");
    client.sh("ip link set vc up");
    if family == V4 {
        client.sh("ip route add default via 10.0.1.1");
    } else {
        client.sh("ip -6 route add default via fd00:1::1");
    }
    Pair { client, node }
}

fn connect(ns: &Netns, to: SocketAddr) -> std::io::Result<TcpStream> {
    ns.enter(|| TcpStream::connect_timeout(&to, Duration::from_secs(3)))
}

/// kubernetes#72236: a new connection to a kube-ipvs0 address on a port that
/// is no service port is rejected even though a host process listens there;
/// once the address:port is a ClusterIP service it passes. (This host's
/// kernel has no dummy driver, so the VIP sits on `lo` in the node namespace:
/// for the filter only "a local address in KUBE-IPVS-IPS" matters.)
fn ipvs_filter_case(family: AddressFamily) {
    let p = pair(family);
    let (vip, other) = if family == V4 {
        ("10.96.0.10", "10.0.1.1")
    } else {
        ("fd00:96::a", "fd00:1::1")
    };
    let plen = if family == V4 { 32 } else { 128 };
    p.node.sh(&format!("ip addr add {vip}/{plen} dev lo"));
    let any: IpAddr = if family == V4 {
        ip("0.0.0.0")
    } else {
        ip("::")
    };
    let listener = p.node.enter(|| TcpListener::bind((any, 8080)).unwrap());
    let target = SocketAddr::new(ip(vip), 8080);

    // Before: the host listener is reachable through the VIP.
    connect(&p.client, target).expect("reachable before the rules");
    listener.accept().unwrap();

    let nf = p.node.netfilter(config(&[family]));
    let mut sets = IpSets::new();
    put(&mut sets, SetKind::IpvsIps, family, SetEntry::Ip(ip(vip)));
    put(&mut sets, SetKind::ClusterIp, family, ipp(vip, Tcp, 80));
    nf.sync(&desired(sets.clone())).unwrap();
    let err = connect(&p.client, target).expect_err("rejected by KUBE-IPVS-FILTER");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    // The node's own address is not in KUBE-IPVS-IPS: still reachable.
    connect(&p.client, SocketAddr::new(ip(other), 8080)).expect("node address still reachable");
    listener.accept().unwrap();

    // 8080 becomes a service port of the VIP: RETURN before the REJECT.
    put(&mut sets, SetKind::ClusterIp, family, ipp(vip, Tcp, 8080));
    nf.sync(&desired(sets)).unwrap();
    connect(&p.client, target).expect("service port passes");
    listener.accept().unwrap();
}

#[test]
fn ipvs_filter_rejects_new_connections_to_vips_off_service_ports_ipv4() {
    if kernel_ok("ipvs_filter_v4") {
        ipvs_filter_case(V4);
    }
}

#[test]
fn ipvs_filter_rejects_new_connections_to_vips_off_service_ports_ipv6() {
    if kernel_ok("ipvs_filter_v6") {
        ipvs_filter_case(V6);
    }
}

/// client → node (forwarding) → server. Traffic to a KUBE-CLUSTER-IP entry
/// is marked by KUBE-MARK-MASQ in PREROUTING and masqueraded by
/// KUBE-POSTROUTING: the server sees the node's address instead of the
/// client's. Unmarked traffic keeps its source.
fn masquerade_case(family: AddressFamily) {
    let p = pair(family);
    let server = Netns::new("sv");
    p.node.sh(&format!(
        "ip link add vs type veth peer name vv netns {}",
        server.name
    ));
    let (client_ip, node_ip, server_ip) = if family == V4 {
        p.node.sh("ip addr add 10.0.2.1/24 dev vs");
        server.sh("ip addr add 10.0.2.2/24 dev vv");
        p.node.sh("sysctl -qw net.ipv4.ip_forward=1");
        ("10.0.1.2", "10.0.2.1", "10.0.2.2")
    } else {
        p.node.sh("ip -6 addr add fd00:2::1/64 dev vs nodad");
        server.sh("ip -6 addr add fd00:2::2/64 dev vv nodad");
        p.node.sh("sysctl -qw net.ipv6.conf.all.forwarding=1");
        ("fd00:1::2", "fd00:2::1", "fd00:2::2")
    };
    p.node.sh("ip link set vs up");
    server.sh("ip link set vv up");
    if family == V4 {
        server.sh("ip route add default via 10.0.2.1");
    } else {
        server.sh("ip -6 route add default via fd00:2::1");
    }
    let listener = server.enter(|| TcpListener::bind((ip(server_ip), 8080)).unwrap());
    let seen = |listener: &TcpListener| -> IpAddr {
        let _c = connect(&p.client, SocketAddr::new(ip(server_ip), 8080)).unwrap();
        listener.accept().unwrap().1.ip()
    };
    assert_eq!(seen(&listener), ip(client_ip), "no rules yet");

    let mut sets = IpSets::new();
    put(
        &mut sets,
        SetKind::ClusterIp,
        family,
        ipp(server_ip, Tcp, 8080),
    );
    let cfg = NetfilterConfig {
        masquerade_all: true,
        ..config(&[family])
    };
    p.node.netfilter(cfg).sync(&desired(sets.clone())).unwrap();
    assert_eq!(seen(&listener), ip(node_ip), "marked and masqueraded");

    // Local detection: the client's network is the cluster CIDR, so its
    // traffic is not marked; with another cluster CIDR it is.
    let client_net = if family == V4 {
        "10.0.1.0/24"
    } else {
        "fd00:1::/64"
    };
    let other_net = if family == V4 {
        "10.244.0.0/16"
    } else {
        "fd00:244::/56"
    };
    for (cidr, want) in [(client_net, client_ip), (other_net, node_ip)] {
        let cfg = NetfilterConfig {
            local_detector: LocalDetector::ClusterCidrs(vec![net(cidr)]),
            ..config(&[family])
        };
        p.node.netfilter(cfg).sync(&desired(sets.clone())).unwrap();
        assert_eq!(seen(&listener), ip(want), "cluster CIDR {cidr}");
    }

    // Another port of the same address: not in the set, not masqueraded.
    let mut sets = IpSets::new();
    put(
        &mut sets,
        SetKind::ClusterIp,
        family,
        ipp(server_ip, Tcp, 8081),
    );
    let cfg = NetfilterConfig {
        masquerade_all: true,
        ..config(&[family])
    };
    p.node.netfilter(cfg).sync(&desired(sets)).unwrap();
    assert_eq!(seen(&listener), ip(client_ip), "other port");
}

#[test]
fn marked_traffic_is_masqueraded_ipv4() {
    if kernel_ok("masquerade_v4") {
        masquerade_case(V4);
    }
}

#[test]
fn marked_traffic_is_masqueraded_ipv6() {
    if kernel_ok("masquerade_v6") {
        masquerade_case(V6);
    }
}

// ---------------------------------------------------------------------------
// Kernel tests: sysctls and conntrack in a namespace

#[test]
fn sysctl_writer_sets_per_namespace_sysctls_for_real() {
    if !kernel_ok("sysctl_netns") {
        return;
    }
    let ns = Netns::new("sysctl");
    let plan = ipvs_sysctls(KernelVersion::new(6, 1, 0), true);
    // The net/ipv4/vs files exist only with ip_vs loaded; the others are per
    // network namespace, so a thread inside the namespace sees its own.
    let net_only: Vec<Sysctl> = plan
        .sysctls
        .iter()
        .copied()
        .filter(|s| !s.path.starts_with("net/ipv4/vs/"))
        .collect();
    assert_eq!(net_only.len(), 3);
    // A new namespace inherits the host's IPv4 settings: start from 0.
    ns.sh("sysctl -qw net.ipv4.ip_forward=0 net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0");
    let (first, second) = ns.enter(|| {
        let w = SysctlWriter::default();
        let first: Vec<_> = w
            .ensure_all(&net_only)
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect();
        let second: Vec<_> = w
            .ensure_all(&net_only)
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect();
        (first, second)
    });
    assert_eq!(
        first,
        [
            SysctlOutcome::Written { previous: 0 },
            SysctlOutcome::Written { previous: 0 },
            SysctlOutcome::Written { previous: 0 },
        ]
    );
    assert!(second.iter().all(|o| *o == SysctlOutcome::Unchanged));
    assert_eq!(ns.sh("sysctl -n net.ipv4.ip_forward").trim(), "1");
    assert_eq!(ns.sh("sysctl -n net.ipv4.conf.all.arp_ignore").trim(), "1");
    assert_eq!(
        ns.sh("sysctl -n net.ipv4.conf.all.arp_announce").trim(),
        "2"
    );
}

#[test]
fn udp_conntrack_entries_to_a_removed_endpoint_are_deleted() {
    if !kernel_ok("conntrack") {
        return;
    }
    let ns = Netns::new("ct");
    let runner = ns.runner();
    for (family, client, vip, ep1, ep2) in [
        (V4, "10.0.0.2", "10.96.0.10", "10.244.0.5", "10.244.0.6"),
        (V6, "fd00::2", "fd00:96::a", "fd00:244::5", "fd00:244::6"),
    ] {
        let f = if family == V4 { "ipv4" } else { "ipv6" };
        for (sport, ep) in [("1234", ep1), ("1235", ep2), ("1236", ep1)] {
            let (ok, out) = ns.try_cmd(&[
                "conntrack",
                "-I",
                "-p",
                "udp",
                "-s",
                client,
                "-d",
                vip,
                "--sport",
                sport,
                "--dport",
                "53",
                "--reply-src",
                ep,
                "--reply-dst",
                client,
                "--reply-port-src",
                "53",
                "--reply-port-dst",
                sport,
                "-t",
                "60",
            ]);
            assert!(ok, "{out}");
        }
        let flows = UdpFlows::ToServiceIp {
            vip: ip(vip),
            port: 53,
            endpoint: ip(ep1),
        };
        assert_eq!(delete_udp_flows(&runner, &flows).unwrap(), 2);
        assert_eq!(delete_udp_flows(&runner, &flows).unwrap(), 0, "none left");
        let (_, left) = ns.try_cmd(&["conntrack", "-L", "-f", f, "-p", "udp"]);
        assert!(
            left.contains(ep2) && !left.contains(&format!("src={ep1} ")),
            "{left}"
        );
    }
}

/// The `KUBE-CLUSTER-IP → KUBE-MARK-MASQ` rule as `iptables-save` prints it
/// (the source match comes before the modules).
fn saved_cluster_ip_masq_rule(save: &str, family: AddressFamily) -> Option<String> {
    let set = if family == V4 {
        "KUBE-CLUSTER-IP"
    } else {
        "KUBE-6-CLUSTER-IP"
    };
    chain(save, "nat", "KUBE-SERVICES")
        .into_iter()
        .find(|r| r.contains(&format!("--match-set {set} ")) && r.ends_with("-j KUBE-MARK-MASQ"))
}

#[test]
fn node_cidr_detection_is_applied_and_follows_a_changed_pod_cidr() {
    if !kernel_ok("node_cidr") {
        return;
    }
    let ns = Netns::new("nodecidr");
    let mut nf = ns.netfilter(NetfilterConfig {
        local_detector: LocalDetector::NodeCidrs(Vec::new()),
        ..config(&[V4, V6])
    });
    let mut sets = full_sets(V4);
    sets.extend(full_sets(V6));
    let d = desired(sets);
    // Not known yet: no detection, the `src,dst` (hairpin only) match.
    nf.sync(&d).unwrap();
    let r4 = saved_cluster_ip_masq_rule(&ns.iptables_save(V4), V4).unwrap();
    assert!(r4.contains("src,dst") && !r4.contains("-s "), "{r4}");

    // The Node's pod CIDRs arrive.
    let cidrs = vec![net("10.244.3.0/24"), net("fd00:244:3::/64")];
    assert!(
        nf.set_local_detector(LocalDetector::NodeCidrs(cidrs.clone()))
            .unwrap()
    );
    assert!(
        !nf.set_local_detector(LocalDetector::NodeCidrs(cidrs))
            .unwrap(),
        "same CIDRs: no change"
    );
    nf.sync(&d).unwrap();
    let (s4, s6) = (ns.iptables_save(V4), ns.iptables_save(V6));
    assert_eq!(
        saved_cluster_ip_masq_rule(&s4, V4).as_deref(),
        Some(
            "! -s 10.244.3.0/24 -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"
        ),
        "{s4}"
    );
    assert_eq!(
        saved_cluster_ip_masq_rule(&s6, V6).as_deref(),
        Some(
            "! -s fd00:244:3::/64 -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-6-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"
        ),
        "{s6}"
    );
    // Idempotent.
    nf.sync(&d).unwrap();
    assert_eq!(ns.iptables_save(V4), s4);
    assert_eq!(ns.iptables_save(V6), s6);

    // A changed pod CIDR replaces the rule; the old one is gone.
    nf.set_local_detector(LocalDetector::NodeCidrs(vec![net("10.245.0.0/16")]))
        .unwrap();
    nf.sync(&d).unwrap();
    let s4 = ns.iptables_save(V4);
    assert!(
        saved_cluster_ip_masq_rule(&s4, V4)
            .unwrap()
            .starts_with("! -s 10.245.0.0/16 "),
        "{s4}"
    );
    assert!(!s4.contains("10.244.3.0/24"), "{s4}");
    // Two CIDRs of one family are refused and change nothing.
    assert!(
        nf.set_local_detector(LocalDetector::NodeCidrs(vec![
            net("10.1.0.0/16"),
            net("10.2.0.0/16")
        ]))
        .is_err()
    );
    assert_eq!(
        nf.config().local_detector,
        LocalDetector::NodeCidrs(vec![net("10.245.0.0/16")])
    );
}
