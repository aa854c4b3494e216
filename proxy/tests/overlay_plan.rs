//! The overlay's pure side, table-driven: net-conf.json, flannel's
//! annotation text (against fixtures of flannel-written Nodes), the planner
//! rules, subnet.env, the CNI conflist and the masquerade rules' text.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use sluice_proxy::netfilter::iptables::parse_save;
use sluice_proxy::overlay::annotations::{self as ann, format_backend_data, parse_backend_data};
use sluice_proxy::overlay::cni::FLANNEL_CONFLIST;
use sluice_proxy::overlay::config::{NetConf, parse_net_conf};
use sluice_proxy::overlay::masq::{MasqSpec, render_cleanup, render_restore};
use sluice_proxy::overlay::model::{MacAddr, RemoteNode, RemotePath};
use sluice_proxy::overlay::plan::{self, FreshMacs, PlanError, UnderlayFacts, diff_remotes};
use sluice_proxy::overlay::status::{status_current, status_patch};
use sluice_proxy::overlay::subnet_env::{SubnetEnv, write_atomic};

fn fixture(name: &str) -> Node {
    let path = format!(
        "{}/tests/fixtures/flannel/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

const FRESH: FreshMacs = FreshMacs {
    v4: MacAddr([0x0a, 1, 2, 3, 4, 5]),
    v6: MacAddr([0x0a, 6, 7, 8, 9, 10]),
};

fn conf(text: &str) -> NetConf {
    parse_net_conf(text).unwrap()
}

fn default_conf() -> NetConf {
    conf(r#"{"Network":"10.244.0.0/16","EnableNFTables":false,"Backend":{"Type":"vxlan"}}"#)
}

fn facts() -> UnderlayFacts {
    UnderlayFacts {
        index: 2,
        mtu: 1500,
        local_v4: Some("192.168.0.1".parse().unwrap()),
        local_v6: Some("fd00::1".parse().unwrap()),
        public_ip: None,
        public_ipv6: None,
        connected: vec!["192.168.0.0/24".parse().unwrap()],
    }
}

fn node(name: &str, cidrs: &[&str], annotations: &[(&str, &str)]) -> Node {
    let a: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": a},
        "spec": {"podCIDRs": cidrs},
    }))
    .unwrap()
}

fn flannel_node(name: &str, cidr: &str, ip: &str, m: &str) -> Node {
    let data = format!("{{\"VNI\":1,\"VtepMAC\":\"{m}\"}}");
    node(
        name,
        &[cidr],
        &[
            (ann::BACKEND_TYPE, "vxlan"),
            (ann::KUBE_SUBNET_MANAGER, "true"),
            (ann::PUBLIC_IP, ip),
            (ann::BACKEND_DATA, &data),
        ],
    )
}

// ---- net-conf.json ----

#[test]
fn net_conf_defaults_and_case_insensitive_keys() {
    let c = default_conf();
    assert_eq!(c.network, Some("10.244.0.0/16".parse().unwrap()));
    assert!(c.enable_ipv4 && !c.enable_ipv6);
    assert_eq!(
        (c.backend.vni, c.backend.port, c.backend.mtu),
        (1, 0, 0),
        "VNI 1, kernel port, underlay MTU"
    );
    assert!(!c.backend.learning && !c.backend.gbp && !c.backend.direct_routing);

    // Go's encoding/json: keys match regardless of case.
    let c = conf(
        r#"{"network":"10.10.0.0/16","BACKEND":{"type":"VXLAN","vni":4096,"port":4789,"mtu":9000,
            "gbp":true,"learning":true,"directrouting":true}}"#,
    );
    assert_eq!(c.network, Some("10.10.0.0/16".parse().unwrap()));
    let b = c.backend;
    assert_eq!((b.vni, b.port, b.mtu), (4096, 4789, 9000));
    assert!(b.gbp && b.learning && b.direct_routing);

    let c = conf(
        r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}"#,
    );
    assert_eq!(c.network, None);
    assert_eq!(c.ipv6_network, Some("fd00:10:244::/56".parse().unwrap()));
}

#[test]
fn net_conf_rejections_are_clear() {
    let cases = [
        (r#"{"Network":"10.244.0.0/16"}"#, "udp"),
        (
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
            "host-gw",
        ),
        (r#"{"Backend":{"Type":"vxlan"}}"#, "Network is required"),
        (
            r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"Backend":{"Type":"vxlan"}}"#,
            "IPv6Network",
        ),
        (
            r#"{"Network":"banana","Backend":{"Type":"vxlan"}}"#,
            "not an IPv4 CIDR",
        ),
        (
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}"#,
            "24 bits",
        ),
        (
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","Port":"8472"}}"#,
            "number",
        ),
        (
            r#"{"Network":"10.244.0.0/16","EnableIPv4":false,"Backend":{"Type":"vxlan"}}"#,
            "both false",
        ),
        ("[1]", "object"),
        ("{", "not JSON"),
    ];
    for (text, want) in cases {
        let e = parse_net_conf(text).expect_err(text).to_string();
        assert!(e.contains(want), "{text}: {e} should mention {want}");
    }
}

// ---- annotations ----

#[test]
fn backend_data_is_written_exactly_as_flannel_writes_it() {
    assert_eq!(
        format_backend_data(1, mac("EE:43:F0:12:F0:3F")),
        r#"{"VNI":1,"VtepMAC":"ee:43:f0:12:f0:3f"}"#
    );
    // Every fixture's backend-data text round-trips byte for byte.
    for f in ["node-v4.yaml", "node-dualstack.yaml", "node-vni11.yaml"] {
        let n = fixture(f);
        let a = n.metadata.annotations.unwrap();
        for key in [ann::BACKEND_DATA, ann::BACKEND_V6_DATA] {
            if let Some(text) = a.get(key) {
                let d = parse_backend_data(ann::BACKEND_DATA, text).unwrap();
                assert_eq!(
                    &format_backend_data(d.vni.unwrap(), d.vtep_mac),
                    text,
                    "{f}"
                );
            }
        }
    }
}

#[test]
fn backend_data_is_parsed_as_flannel_parses_it() {
    type Want = Option<(Option<u32>, &'static str)>;
    let cases: [(&str, Want); 8] = [
        (
            r#"{"VNI":1,"VtepMAC":"ee:43:f0:12:f0:3f"}"#,
            Some((Some(1), "ee:43:f0:12:f0:3f")),
        ),
        (
            r#"{"VtepMAC":"96:59:b2:3f:04:ee"}"#,
            Some((None, "96:59:b2:3f:04:ee")),
        ),
        (
            r#"{"vni":7,"vtepmac":"AA-BB-CC-DD-EE-FF"}"#,
            Some((Some(7), "aa:bb:cc:dd:ee:ff")),
        ),
        (
            r#"{ "VNI" : 1 , "VtepMAC" : "0a0b.0c0d.0e0f" }"#,
            Some((Some(1), "0a:0b:0c:0d:0e:0f")),
        ),
        (r#"{"VNI":1}"#, None),
        (r#"{"VNI":1,"VtepMAC":"zz:43:f0:12:f0:3f"}"#, None),
        (r#"{"VNI":"1","VtepMAC":"ee:43:f0:12:f0:3f"}"#, None),
        ("garbage", None),
    ];
    for (text, want) in cases {
        let got = parse_backend_data(ann::BACKEND_DATA, text)
            .ok()
            .map(|d| (d.vni, d.vtep_mac.to_string()));
        assert_eq!(got, want.map(|(v, m)| (v, m.to_owned())), "{text}");
    }
}

#[test]
fn own_annotations_have_flannels_names_and_forms() {
    let me = node("me", &["10.244.1.0/24"], &[]);
    let p = plan::plan("me", &[me], &default_conf(), &facts(), FRESH).unwrap();
    let want: BTreeMap<String, String> = [
        ("flannel.alpha.coreos.com/backend-type", "vxlan"),
        (
            "flannel.alpha.coreos.com/backend-data",
            r#"{"VNI":1,"VtepMAC":"0a:01:02:03:04:05"}"#,
        ),
        ("flannel.alpha.coreos.com/public-ip", "192.168.0.1"),
        ("flannel.alpha.coreos.com/kube-subnet-manager", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(p.annotations, want);

    let ds = conf(
        r#"{"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/56","EnableIPv6":true,"Backend":{"Type":"vxlan"}}"#,
    );
    let me = node("me", &["10.244.1.0/24", "fd00:10:244:1::/64"], &[]);
    let p = plan::plan("me", &[me], &ds, &facts(), FRESH).unwrap();
    assert_eq!(
        p.annotations["flannel.alpha.coreos.com/backend-v6-data"],
        r#"{"VNI":1,"VtepMAC":"0a:06:07:08:09:0a"}"#
    );
    assert_eq!(
        p.annotations["flannel.alpha.coreos.com/public-ipv6"],
        "fd00::1"
    );

    let patch = status_patch(&p.annotations, "2026-01-01T00:00:00Z");
    assert_eq!(
        patch["status"]["conditions"][0]["type"],
        "NetworkUnavailable"
    );
    assert_eq!(patch["status"]["conditions"][0]["status"], "False");
    assert_eq!(patch["status"]["conditions"][0]["reason"], "FlannelIsUp");
    let annotated: Node = serde_json::from_value(json!({
        "metadata": {"name": "me", "annotations": p.annotations},
        "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}
    }))
    .unwrap();
    assert!(status_current(&annotated, &p.annotations));
    let me_plain = node("me", &[], &[]);
    assert!(!status_current(&me_plain, &p.annotations));
}

// ---- planner ----

#[test]
fn device_follows_flannels_rules() {
    let me = node("me", &["10.244.1.0/24"], &[]);
    let cases = [
        // (net-conf, device name, vni, port, mtu)
        (
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#,
            "flannel.1",
            1,
            None,
            1450,
        ),
        (
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":42,"Port":4789,"MTU":9000}}"#,
            "flannel.42",
            42,
            Some(4789),
            8950,
        ),
    ];
    for (text, name, vni, port, mtu) in cases {
        let p = plan::plan(
            "me",
            std::slice::from_ref(&me),
            &conf(text),
            &facts(),
            FRESH,
        )
        .unwrap();
        let d = &p.v4.as_ref().unwrap().device;
        assert_eq!(d.name, name);
        assert_eq!(d.vni, vni);
        assert_eq!(d.port, port);
        assert_eq!(d.mtu, mtu);
        assert_eq!(d.address.to_string(), "10.244.1.0/32");
        assert_eq!(d.network.to_string(), "10.244.0.0/16");
        assert_eq!(d.local, "192.168.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(d.underlay_index, 2);
        assert!(!d.learning && !d.gbp);
        assert_eq!(d.mac, FRESH.v4, "no annotation yet: the fresh random MAC");
        assert_eq!(p.subnet_env.mtu, mtu);
        assert!(p.v6.is_none());
    }
}

#[test]
fn mac_is_kept_from_our_backend_data() {
    let me = node(
        "me",
        &["10.244.1.0/24"],
        &[(
            ann::BACKEND_DATA,
            r#"{"VNI":1,"VtepMAC":"2a:11:22:33:44:55"}"#,
        )],
    );
    let p = plan::plan("me", &[me], &default_conf(), &facts(), FRESH).unwrap();
    assert_eq!(p.v4.unwrap().device.mac, mac("2a:11:22:33:44:55"));
    // A broken or multicast MAC in our annotation is not reused.
    for bad in ["{}", r#"{"VtepMAC":"01:00:5e:00:00:01"}"#] {
        let me = node("me", &["10.244.1.0/24"], &[(ann::BACKEND_DATA, bad)]);
        let p = plan::plan("me", &[me], &default_conf(), &facts(), FRESH).unwrap();
        assert_eq!(p.v4.unwrap().device.mac, FRESH.v4, "{bad}");
    }
    for _ in 0..32 {
        let m = plan::random_mac();
        assert!(m.is_local_unicast(), "{m}");
    }
    assert_ne!(plan::random_mac(), plan::random_mac());
}

#[test]
fn public_ip_overwrite_and_flag() {
    let me = node(
        "me",
        &["10.244.1.0/24"],
        &[(ann::PUBLIC_IP_OVERWRITE, "203.0.113.9")],
    );
    let mut f = facts();
    f.public_ip = Some("198.51.100.1".parse().unwrap());
    let p = plan::plan("me", &[me], &default_conf(), &f, FRESH).unwrap();
    assert_eq!(
        p.annotations[ann::PUBLIC_IP],
        "203.0.113.9",
        "overwrite wins"
    );
    assert_eq!(
        p.v4.unwrap().device.local.to_string(),
        "192.168.0.1",
        "tunnel stays local"
    );
    let me = node("me", &["10.244.1.0/24"], &[]);
    let p = plan::plan("me", &[me], &default_conf(), &f, FRESH).unwrap();
    assert_eq!(
        p.annotations[ann::PUBLIC_IP],
        "198.51.100.1",
        "then the flag"
    );
}

#[test]
fn own_subnet_errors() {
    let legacy: Node = serde_json::from_value(json!({
        "metadata": {"name": "me"}, "spec": {"podCIDR": "10.244.9.0/24"}
    }))
    .unwrap();
    let p = plan::plan("me", &[legacy], &default_conf(), &facts(), FRESH).unwrap();
    assert_eq!(
        p.subnet_env.subnet,
        Some("10.244.9.0/24".parse().unwrap()),
        "podCIDR fallback"
    );

    let cases: [(Vec<Node>, &str); 4] = [
        (vec![], "not found"),
        (vec![node("me", &[], &[])], "pod cidr not assigned"),
        (
            vec![node("me", &["10.99.1.0/24"], &[])],
            "outside the overlay network",
        ),
        (vec![node("me", &["nonsense"], &[])], "is not a CIDR"),
    ];
    for (nodes, want) in cases {
        let e = plan::plan("me", &nodes, &default_conf(), &facts(), FRESH).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    let mut f = facts();
    f.local_v4 = None;
    let me = node("me", &["10.244.1.0/24"], &[]);
    assert_eq!(
        plan::plan("me", &[me], &default_conf(), &f, FRESH).unwrap_err(),
        PlanError::NoUnderlayAddress("IPv4")
    );
}

#[test]
fn remotes_from_flannel_fixtures() {
    let me = node("me", &["10.244.9.0/24"], &[]);
    let nodes = vec![
        me,
        fixture("node-v4.yaml"),
        fixture("node-old-form.yaml"),
        fixture("node-dualstack.yaml"),
    ];
    let p = plan::plan("me", &nodes, &default_conf(), &facts(), FRESH).unwrap();
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    let got: Vec<(String, String, String, RemotePath)> =
        p.v4.unwrap()
            .remotes
            .into_iter()
            .map(|r| {
                (
                    r.node,
                    r.subnet.to_string(),
                    r.public_ip.to_string(),
                    r.path,
                )
            })
            .collect();
    let vx = |vtep: &str, m: &str| RemotePath::Vxlan {
        vtep: vtep.parse().unwrap(),
        mac: mac(m),
    };
    assert_eq!(
        got,
        vec![
            (
                "worker0".into(),
                "10.244.1.0/24".into(),
                "10.192.220.94".into(),
                vx("10.244.1.0", "ee:43:f0:12:f0:3f")
            ),
            (
                "node-ds".into(),
                "10.244.2.0/24".into(),
                "1.1.33.34".into(),
                vx("10.244.2.0", "12:62:b6:2a:21:cf")
            ),
            (
                "test".into(),
                "10.244.7.0/24".into(),
                "192.168.77.17".into(),
                vx("10.244.7.0", "96:59:b2:3f:04:ee")
            ),
        ]
    );
}

#[test]
fn dual_stack_remotes_and_v6_requirements() {
    let ds = conf(
        r#"{"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/48","EnableIPv6":true,"Backend":{"Type":"vxlan"}}"#,
    );
    let me = node("me", &["10.244.9.0/24", "fd00:10:244:9::/64"], &[]);
    let nodes = vec![me, fixture("node-dualstack.yaml"), fixture("node-v4.yaml")];
    let p = plan::plan("me", &nodes, &ds, &facts(), FRESH).unwrap();
    let v6 = p.v6.unwrap();
    assert_eq!(v6.device.name, "flannel-v6.1");
    assert_eq!(v6.device.address.to_string(), "fd00:10:244:9::/128");
    // VXLAN over an IPv6 underlay carries a 40-byte outer header: − 70.
    assert_eq!(v6.device.mtu, 1430);
    assert_eq!(v6.remotes.len(), 1);
    assert_eq!(
        v6.remotes[0].path,
        RemotePath::Vxlan {
            vtep: "fd00:10:244:2::".parse().unwrap(),
            mac: mac("ba:5d:da:3f:78:e1")
        }
    );
    assert_eq!(v6.remotes[0].public_ip.to_string(), "2003:ac18::30a:2");
    // With IPv6 enabled a node without v6 annotations is skipped whole.
    assert_eq!(p.v4.unwrap().remotes.len(), 1);
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.skipped[0].node, "worker0");
    assert_eq!(
        p.subnet_env.render(),
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\n\
         FLANNEL_IPV6_NETWORK=fd00:10:244::/48\nFLANNEL_IPV6_SUBNET=fd00:10:244:9::1/64\n\
         FLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n"
    );
}

#[test]
fn bad_remotes_are_skipped_and_the_rest_kept() {
    let good = flannel_node("good", "10.244.2.0/24", "192.168.0.2", "2a:00:00:00:00:02");
    let mut bad_data = flannel_node("bad-data", "10.244.3.0/24", "192.168.0.3", "x");
    let _ = &mut bad_data;
    let host_gw = node(
        "host-gw",
        &["10.244.4.0/24"],
        &[
            (ann::BACKEND_TYPE, "host-gw"),
            (ann::KUBE_SUBNET_MANAGER, "true"),
            (ann::PUBLIC_IP, "192.168.0.4"),
        ],
    );
    let bad_ip = flannel_node("bad-ip", "10.244.5.0/24", "not-an-ip", "2a:00:00:00:00:05");
    let bad_cidr = flannel_node(
        "bad-cidr",
        "10.244.6.0/99",
        "192.168.0.6",
        "2a:00:00:00:00:06",
    );
    let outside = flannel_node("outside", "0.0.0.0/0", "192.168.0.7", "2a:00:00:00:00:07");
    let overlap = flannel_node(
        "overlap",
        "10.244.2.128/25",
        "192.168.0.8",
        "2a:00:00:00:00:08",
    );
    let mine = flannel_node("mine", "10.244.1.0/24", "192.168.0.9", "2a:00:00:00:00:09");
    let multicast = flannel_node(
        "multicast",
        "10.244.10.0/24",
        "192.168.0.10",
        "01:00:5e:00:00:01",
    );
    let no_subnet_mgr = node(
        "other-cni",
        &["10.244.11.0/24"],
        &[(ann::PUBLIC_IP, "192.168.0.11")],
    );
    let me = node("me", &["10.244.1.0/24"], &[]);
    let nodes = vec![
        me,
        good,
        bad_data,
        host_gw,
        bad_ip,
        bad_cidr,
        outside,
        overlap,
        mine,
        multicast,
        no_subnet_mgr,
    ];
    let p = plan::plan("me", &nodes, &default_conf(), &facts(), FRESH).unwrap();
    let remotes: Vec<&str> =
        p.v4.as_ref()
            .unwrap()
            .remotes
            .iter()
            .map(|r| r.node.as_str())
            .collect();
    assert_eq!(remotes, ["good"]);
    let skipped: BTreeMap<&str, &str> = p
        .skipped
        .iter()
        .map(|s| (s.node.as_str(), s.reason.as_str()))
        .collect();
    let want = [
        ("bad-data", "VtepMAC"),
        ("host-gw", "not vxlan"),
        ("bad-ip", "not an IPv4 address"),
        ("bad-cidr", "not a CIDR"),
        ("outside", "outside the overlay network"),
        ("overlap", "overlaps node \"good\""),
        ("mine", "overlaps this node's"),
        ("multicast", "not a unicast"),
    ];
    assert_eq!(skipped.len(), want.len(), "{skipped:?}");
    for (n, why) in want {
        assert!(skipped[n].contains(why), "{n}: {}", skipped[n]);
    }
}

#[test]
fn direct_routing_only_for_nodes_on_our_l2() {
    let c = conf(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#);
    let near = flannel_node("near", "10.244.2.0/24", "192.168.0.2", "2a:00:00:00:00:02");
    let far = flannel_node("far", "10.244.3.0/24", "172.16.0.3", "2a:00:00:00:00:03");
    let me = node("me", &["10.244.1.0/24"], &[]);
    let nodes = [me, near, far];
    let p = plan::plan("me", &nodes, &c, &facts(), FRESH).unwrap();
    let paths: Vec<(&str, RemotePath)> =
        p.v4.as_ref()
            .unwrap()
            .remotes
            .iter()
            .map(|r| (r.node.as_str(), r.path))
            .collect();
    assert_eq!(
        paths,
        [
            ("near", RemotePath::Direct),
            (
                "far",
                RemotePath::Vxlan {
                    vtep: "10.244.3.0".parse().unwrap(),
                    mac: mac("2a:00:00:00:00:03")
                }
            ),
        ]
    );
    // Without DirectRouting the same node goes through the tunnel.
    let p = plan::plan("me", &nodes, &default_conf(), &facts(), FRESH).unwrap();
    assert!(
        p.v4.unwrap()
            .remotes
            .iter()
            .all(|r| matches!(r.path, RemotePath::Vxlan { .. }))
    );
}

#[test]
fn incremental_diff_removes_changed_entries_first() {
    let r = |n: &str, m: &str, ip: &str| RemoteNode {
        node: n.into(),
        subnet: "10.244.2.0/24".parse().unwrap(),
        public_ip: ip.parse().unwrap(),
        path: RemotePath::Vxlan {
            vtep: "10.244.2.0".parse().unwrap(),
            mac: mac(m),
        },
    };
    let a = r("a", "2a:00:00:00:00:01", "192.168.0.2");
    let a_new_mac = r("a", "2a:00:00:00:00:99", "192.168.0.2");
    let a_new_ip = r("a", "2a:00:00:00:00:01", "192.168.0.22");
    let one = std::slice::from_ref;
    assert_eq!(diff_remotes(one(&a), one(&a)), (vec![], vec![]));
    assert_eq!(diff_remotes(one(&a), &[]), (vec![a.clone()], vec![]));
    assert_eq!(diff_remotes(&[], one(&a)), (vec![], vec![a.clone()]));
    assert_eq!(
        diff_remotes(one(&a), one(&a_new_mac)),
        (vec![a.clone()], vec![a_new_mac])
    );
    assert_eq!(
        diff_remotes(one(&a), one(&a_new_ip)),
        (vec![a], vec![a_new_ip])
    );
}

// ---- files ----

#[test]
fn subnet_env_and_atomic_write() {
    let env = SubnetEnv {
        network: Some("10.244.0.0/16".parse().unwrap()),
        subnet: Some("10.244.1.0/24".parse().unwrap()),
        mtu: 1450,
        ip_masq: true,
        ..SubnetEnv::default()
    };
    let text = env.render();
    assert_eq!(
        text,
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    );
    let dir = std::env::temp_dir().join(format!("sluice-overlay-plan-{}", std::process::id()));
    let path = dir.join("run/flannel/subnet.env");
    assert!(write_atomic(&path, &text).unwrap());
    assert!(
        !write_atomic(&path, &text).unwrap(),
        "unchanged: not rewritten"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cni_conflist_is_kube_flannels() {
    let v: serde_json::Value = serde_json::from_str(FLANNEL_CONFLIST).unwrap();
    assert_eq!(
        v,
        json!({"name":"cbr0","cniVersion":"0.3.1","plugins":[
            {"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},
            {"type":"portmap","capabilities":{"portMappings":true}}]})
    );
}

// ---- masquerade rules ----

fn masq_spec() -> MasqSpec {
    MasqSpec {
        network: "10.244.0.0/16".parse().unwrap(),
        subnet: "10.244.1.0/24".parse().unwrap(),
        mark: 0x4000,
        random_fully: true,
        ip_masq: true,
    }
}

const GOLDEN: &str = "*nat
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x004000/0x004000 -m comment --comment \"flanneld masq\" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully
COMMIT
*filter
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT
-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT
COMMIT
";

/// What iptables-save prints after GOLDEN was restored (marks without
/// leading zeros), plus foreign rules that must not matter.
const SAVED: &str = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FLANNEL-POSTRTG - [0:0]
:KUBE-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully
COMMIT
*filter
:FORWARD ACCEPT [0:0]
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT
-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT
COMMIT
";

#[test]
fn masquerade_rules_golden_text_and_idempotence() {
    let empty = parse_save("").unwrap();
    assert_eq!(render_restore(&empty, &masq_spec()), GOLDEN);
    let saved = parse_save(SAVED).unwrap();
    assert_eq!(
        render_restore(&saved, &masq_spec()),
        "",
        "already right: nothing to do"
    );
    // A changed subnet rewrites our chain but does not add a second jump.
    let moved = MasqSpec {
        subnet: "10.244.2.0/24".parse().unwrap(),
        ..masq_spec()
    };
    let text = render_restore(&saved, &moved);
    assert!(
        text.contains("-A FLANNEL-POSTRTG -s 10.244.2.0/24 -d 10.244.0.0/16"),
        "{text}"
    );
    assert!(!text.contains("-A POSTROUTING"), "{text}");
    assert!(!text.contains("*filter"), "forward rules unchanged: {text}");
    // Without ip-masq only the forward rules are ours to write.
    let no_masq = MasqSpec {
        ip_masq: false,
        ..masq_spec()
    };
    assert!(!render_restore(&empty, &no_masq).contains("*nat"));
    // The mark follows the proxy's masquerade bit.
    let other_bit = MasqSpec {
        mark: 1 << 15,
        ..masq_spec()
    };
    assert!(render_restore(&empty, &other_bit).contains("--mark 0x008000/0x008000"));
    // Cleanup removes exactly our jumps and chains.
    assert_eq!(
        render_cleanup(&saved).unwrap(),
        "*nat\n-D POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
         -F FLANNEL-POSTRTG\n-X FLANNEL-POSTRTG\nCOMMIT\n*filter\n\
         -D FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n\
         -F FLANNEL-FWD\n-X FLANNEL-FWD\nCOMMIT\n"
    );
    assert_eq!(render_cleanup(&empty), None);
}

#[test]
fn ipv6_masquerade_uses_ff00() {
    let spec = MasqSpec {
        network: "fd00:10:244::/48".parse().unwrap(),
        subnet: "fd00:10:244:1::/64".parse().unwrap(),
        ..masq_spec()
    };
    let text = render_restore(&parse_save("").unwrap(), &spec);
    assert!(
        text.contains("-s fd00:10:244::/48 ! -d ff00::/8 -m comment"),
        "{text}"
    );
}

// ---- underlay discovery (pure parts) ----

#[test]
fn default_route_interface_from_proc() {
    use sluice_proxy::overlay::underlay::{default_route_v4, default_route_v6};
    let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
              eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
              eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
              eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    assert_eq!(
        default_route_v4(v4).as_deref(),
        Some("eth0"),
        "lowest metric wins"
    );
    assert_eq!(default_route_v4("Iface\tDestination\n"), None);
    let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
              00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth2\n\
              00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
    assert_eq!(default_route_v6(v6).as_deref(), Some("eth2"));
}
