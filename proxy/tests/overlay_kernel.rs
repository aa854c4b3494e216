//! The overlay's kernel side on the host kernel (root, no VM): two "nodes"
//! are network namespaces joined by a veth underlay, each with its own
//! `OverlayKernel` opened inside it. Outcomes are read back with `ip` and
//! `bridge`, and traffic crosses the overlay for real.

use std::net::IpAddr;

use ipnet::IpNet;
use sluice_proxy::overlay::kernel::{OverlayKernel, SyncReport};
use sluice_proxy::overlay::model::{DeviceSpec, DeviceState, RemoteNode, RemotePath};
use sluice_tests::netns::{Netns, ask, echo_server, sh};

const MAC_A: &str = "0e:00:00:00:01:01";
const MAC_B: &str = "0e:00:00:00:02:01";
const MAC_B2: &str = "0e:00:00:00:02:02";

/// Two nodes on one underlay segment `192.168.{net}.0/24`: node `a` is
/// `.1` with pod subnet 10.244.1.0/24, node `b` is `.2` with 10.244.2.0/24.
struct Pair {
    a: Netns,
    b: Netns,
    net: u8,
}

impl Pair {
    fn new(prefix: &str, net: u8) -> Self {
        let a = Netns::new(&format!("{prefix}a"));
        let b = Netns::new(&format!("{prefix}b"));
        sh(&format!(
            "ip -n {a} link add ua type veth peer name ub netns {b} && \
             ip -n {a} addr add 192.168.{net}.1/24 dev ua && ip -n {a} link set ua up && \
             ip -n {b} addr add 192.168.{net}.2/24 dev ub && ip -n {b} link set ub up",
            a = a.name,
            b = b.name
        ));
        echo_server(&a.name, 7000, "nodeA");
        echo_server(&b.name, 7000, "nodeB");
        Self { a, b, net }
    }

    fn public(&self, node: u8) -> IpAddr {
        format!("192.168.{}.{node}", self.net).parse().unwrap()
    }

    /// Node `node`'s device spec (`ns` is where it lives, for the underlay
    /// index).
    fn spec(&self, ns: &Netns, node: u8, mac: &str) -> DeviceSpec {
        let underlay = if node == 1 { "ua" } else { "ub" };
        let index = sh(&format!("ip -n {} -o link show {underlay}", ns.name));
        let underlay_index = index.split(':').next().unwrap().trim().parse().unwrap();
        DeviceSpec {
            name: "flannel.1".into(),
            vni: 1,
            port: None,
            underlay_index,
            local: self.public(node),
            mtu: 1450,
            learning: false,
            gbp: false,
            mac: mac.parse().unwrap(),
            address: format!("10.244.{node}.0/32").parse().unwrap(),
            network: "10.244.0.0/16".parse().unwrap(),
        }
    }

    /// Node `node` as its peers see it.
    fn remote(&self, node: u8, mac: &str) -> RemoteNode {
        RemoteNode {
            node: format!("node{node}"),
            subnet: format!("10.244.{node}.0/24").parse().unwrap(),
            public_ip: self.public(node),
            path: RemotePath::Vxlan {
                vtep: format!("10.244.{node}.0").parse().unwrap(),
                mac: mac.parse().unwrap(),
            },
        }
    }

    fn direct(&self, node: u8) -> RemoteNode {
        RemoteNode {
            path: RemotePath::Direct,
            ..self.remote(node, MAC_B)
        }
    }
}

/// A fresh `OverlayKernel` in `ns` (a restarted agent): ensure the device,
/// then a full sync.
fn start(ns: &Netns, spec: &DeviceSpec, remotes: &[RemoteNode]) -> (DeviceState, SyncReport) {
    let (spec, remotes) = (spec.clone(), remotes.to_vec());
    ns.run(move || {
        let mut k = OverlayKernel::open().unwrap();
        let dev = k.ensure_device(&spec).unwrap();
        let report = k.sync(&dev, &spec, &remotes).unwrap();
        (dev, report)
    })
}

/// An incremental change through a kernel that has seen `spec`.
fn change(
    ns: &Netns,
    spec: &DeviceSpec,
    removed: &[RemoteNode],
    added: &[RemoteNode],
) -> SyncReport {
    let (spec, removed, added) = (spec.clone(), removed.to_vec(), added.to_vec());
    ns.run(move || {
        let mut k = OverlayKernel::open().unwrap();
        let dev = k.ensure_device(&spec).unwrap();
        k.apply_changes(&dev, &removed, &added).unwrap()
    })
}

/// What the independent readers show for the overlay in `ns`.
fn state(ns: &Netns) -> String {
    let n = &ns.name;
    sh(&format!(
        "ip -n {n} -4 neigh show dev flannel.1 nud permanent; \
         bridge -n {n} fdb show dev flannel.1 | grep permanent; \
         ip -n {n} -4 route show table main; \
         ip -n {n} -o -4 addr show dev flannel.1; \
         ip -n {n} -d -o link show flannel.1"
    ))
}

/// Sends one line over TCP from namespace `ns` to the echo server on
/// `to`:7000; the reply (`NODE SOURCE-IP LINE`), or `None` if unreachable.
fn talk(ns: &Netns, to: &str) -> Option<String> {
    let to: IpAddr = to.parse().unwrap();
    ns.run(move || {
        let timeout = std::time::Duration::from_secs(2);
        let mut c = std::net::TcpStream::connect_timeout(&(to, 7000).into(), timeout).ok()?;
        c.set_read_timeout(Some(timeout)).ok()?;
        let reply = ask(&mut c, "hello");
        (!reply.is_empty()).then_some(reply)
    })
}

fn ping(ns: &Netns, to: &str) -> bool {
    talk(ns, to).is_some()
}

fn clean(report: &SyncReport) {
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

#[test]
fn two_nodes_talk_over_the_overlay_and_a_restart_changes_nothing() {
    let p = Pair::new("okt1", 71);
    let (sa, sb) = (p.spec(&p.a, 1, MAC_A), p.spec(&p.b, 2, MAC_B));
    let (dev_a, ra) = start(&p.a, &sa, &[p.remote(2, MAC_B)]);
    let (_, rb) = start(&p.b, &sb, &[p.remote(1, MAC_A)]);
    clean(&ra);
    clean(&rb);
    assert_eq!(
        (ra.ops, rb.ops),
        (3, 3),
        "ARP, FDB and route per remote node"
    );
    assert_eq!(dev_a.mac.to_string(), MAC_A);
    assert_eq!(dev_a.mtu, 1450);

    // The device as flannel creates it, read back by `ip`.
    let a = &p.a.name;
    let link = sh(&format!("ip -n {a} -d link show flannel.1"));
    for want in [
        "mtu 1450",
        "state UNKNOWN",
        "link/ether 0e:00:00:00:01:01",
        "vxlan id 1 local 192.168.71.1 dev ua",
        "dstport 8472",
        "nolearning",
    ] {
        assert!(link.contains(want), "missing {want:?} in\n{link}");
    }
    let addrs = sh(&format!("ip -n {a} -o addr show dev flannel.1"));
    assert!(addrs.contains("inet 10.244.1.0/32"), "{addrs}");
    assert_eq!(
        sh(&format!(
            "ip netns exec {a} cat /proc/sys/net/ipv6/conf/flannel.1/accept_ra"
        ))
        .trim(),
        "0"
    );
    let entries = state(&p.a);
    for want in [
        "10.244.2.0 lladdr 0e:00:00:00:02:01 PERMANENT",
        "0e:00:00:00:02:01 dst 192.168.71.2 self permanent",
        "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
    ] {
        assert!(entries.contains(want), "missing {want:?} in\n{entries}");
    }

    // Traffic crosses the tunnel both ways (TCP through the VXLAN devices).
    assert!(ping(&p.a, "10.244.2.0"), "A cannot reach B's VTEP");
    assert!(ping(&p.b, "10.244.1.0"), "B cannot reach A's VTEP");
    assert_eq!(
        talk(&p.a, "10.244.2.0").as_deref(),
        Some("nodeB 10.244.1.0 hello"),
        "B sees A's VTEP address as the source"
    );

    // A restart: new kernel objects, same spec → no change at all.
    let before = state(&p.a);
    let (dev_again, again) = start(&p.a, &sa, &[p.remote(2, MAC_B)]);
    clean(&again);
    assert_eq!(again.ops, 0, "a restart must not rewrite right entries");
    assert_eq!(dev_again, dev_a, "the device is adopted, not recreated");
    assert_eq!(state(&p.a), before);
    assert!(ping(&p.a, "10.244.2.0"));
}

#[test]
fn incompatible_devices_are_recreated_and_compatible_ones_repaired() {
    let p = Pair::new("okt2", 72);
    let a = &p.a.name;
    let spec = p.spec(&p.a, 1, MAC_A);
    // A compatible device left behind with another MAC and MTU, a stale
    // address inside the network and a foreign one outside it.
    sh(&format!(
        "ip -n {a} link add flannel.1 address 0e:00:00:00:09:09 mtu 1400 type vxlan id 1 \
         dev ua local 192.168.72.1 dstport 0 nolearning && \
         ip -n {a} addr add 10.244.9.0/32 dev flannel.1 && \
         ip -n {a} addr add 192.0.2.1/32 dev flannel.1"
    ));
    let old_index = p.a.run(|| {
        ipvs_sys::rtnl::RtnlClient::open()
            .unwrap()
            .link("flannel.1")
            .unwrap()
            .unwrap()
            .index
    });
    let (dev, report) = start(&p.a, &spec, &[]);
    clean(&report);
    assert_eq!(dev.index, old_index, "a compatible device is kept");
    let link = sh(&format!("ip -n {a} -d link show flannel.1"));
    assert!(link.contains("link/ether 0e:00:00:00:01:01"), "{link}");
    assert!(link.contains("mtu 1450"), "{link}");
    let addrs = sh(&format!("ip -n {a} -o -4 addr show dev flannel.1"));
    assert!(addrs.contains("10.244.1.0/32"), "{addrs}");
    assert!(
        addrs.contains("192.0.2.1/32"),
        "outside the network: kept\n{addrs}"
    );
    assert!(
        !addrs.contains("10.244.9.0"),
        "inside the network: removed\n{addrs}"
    );

    // Another VNI: deleted and recreated.
    let spec2 = DeviceSpec {
        vni: 2,
        ..spec.clone()
    };
    let (dev2, _) = start(&p.a, &spec2, &[]);
    assert_ne!(dev2.index, dev.index, "an incompatible device is recreated");
    let link = sh(&format!("ip -n {a} -d link show flannel.1"));
    assert!(link.contains("vxlan id 2 "), "{link}");
    assert!(link.contains("link/ether 0e:00:00:00:01:01"), "{link}");
    // Another port: recreated too.
    let spec3 = DeviceSpec {
        port: Some(4789),
        ..spec2.clone()
    };
    let (dev3, _) = start(&p.a, &spec3, &[]);
    assert_ne!(dev3.index, dev2.index);
    let link = sh(&format!("ip -n {a} -d link show flannel.1"));
    assert!(link.contains("dstport 4789"), "{link}");

    // A link of another kind under our name is replaced as well.
    p.a.run(|| {
        OverlayKernel::open()
            .unwrap()
            .remove_device("flannel.1")
            .unwrap()
    });
    assert!(
        sh(&format!("ip -n {a} link show"))
            .lines()
            .all(|l| !l.contains("flannel.1"))
    );
    sh(&format!(
        "ip -n {a} link add flannel.1 type veth peer name junk0"
    ));
    let (dev4, _) = start(&p.a, &spec, &[]);
    let link = sh(&format!("ip -n {a} -d link show flannel.1"));
    assert!(link.contains("vxlan id 1 "), "{link}");
    assert_eq!(dev4.mac.to_string(), MAC_A);
}

#[test]
fn node_changes_touch_only_that_node_and_foreign_entries_survive() {
    let p = Pair::new("okt3", 73);
    let (sa, sb) = (p.spec(&p.a, 1, MAC_A), p.spec(&p.b, 2, MAC_B));
    start(&p.b, &sb, &[p.remote(1, MAC_A)]);
    // Node 3 exists only on paper (its VTEP is never answered).
    let node3 = RemoteNode {
        public_ip: p.public(3),
        ..p.remote(3, "0e:00:00:00:03:01")
    };
    let (_, r) = start(&p.a, &sa, &[p.remote(2, MAC_B), node3.clone()]);
    clean(&r);
    assert_eq!(r.ops, 6);
    let a = &p.a.name;

    // Foreign entries: ours by no definition.
    sh(&format!(
        "ip -n {a} route add 10.99.0.0/24 via 192.168.73.2 && \
         ip -n {a} route add 10.244.50.0/24 dev ua && \
         ip -n {a} route add 10.244.51.0/24 via 192.168.73.2 table 100 && \
         ip -n {a} neigh add 192.168.73.77 lladdr 0e:00:00:00:77:77 dev ua nud permanent && \
         ip -n {a} neigh add 10.244.60.0 lladdr 0e:00:00:00:60:60 dev flannel.1 nud stale"
    ));
    let foreign = |ns: &str| {
        let routes = sh(&format!("ip -n {ns} route show table all"));
        let neigh = sh(&format!("ip -n {ns} neigh show"));
        for want in [
            "10.99.0.0/24 via 192.168.73.2 dev ua",
            "10.244.50.0/24 dev ua",
            "10.244.51.0/24 via 192.168.73.2 dev ua table 100",
        ] {
            assert!(
                routes.contains(want),
                "foreign route {want:?} gone:\n{routes}"
            );
        }
        for want in ["192.168.73.77 dev ua", "10.244.60.0 dev flannel.1"] {
            assert!(
                neigh.contains(want),
                "foreign neighbour {want:?} gone:\n{neigh}"
            );
        }
    };

    // Node 2 changes its MAC: incremental, three changes (ARP and FDB
    // replaced, the old FDB entry removed; the route is unchanged).
    let (dev_b, _) = start(&p.b, &p.spec(&p.b, 2, MAC_B2), &[p.remote(1, MAC_A)]);
    assert_eq!(dev_b.mac.to_string(), MAC_B2);
    let r = change(&p.a, &sa, &[p.remote(2, MAC_B)], &[p.remote(2, MAC_B2)]);
    clean(&r);
    assert_eq!(r.ops, 3, "one changed node, three changes");
    let s = state(&p.a);
    assert!(
        s.contains("10.244.2.0 lladdr 0e:00:00:00:02:02 PERMANENT"),
        "{s}"
    );
    assert!(
        s.contains("0e:00:00:00:02:02 dst 192.168.73.2 self permanent"),
        "{s}"
    );
    assert!(
        !s.contains("0e:00:00:00:02:01"),
        "old MAC left behind:\n{s}"
    );
    assert!(s.contains("0e:00:00:00:03:01"), "node 3 untouched:\n{s}");
    assert!(ping(&p.a, "10.244.2.0"), "the new MAC is used");

    // Flannel leaves old-MAC FDB entries behind; a full sync removes them
    // and nothing else.
    sh(&format!(
        "bridge -n {a} fdb append 0e:00:00:00:02:01 dev flannel.1 dst 192.168.73.2 self permanent"
    ));
    let (_, r) = start(&p.a, &sa, &[p.remote(2, MAC_B2), node3.clone()]);
    clean(&r);
    assert_eq!(r.ops, 1);
    assert!(!state(&p.a).contains("0e:00:00:00:02:01"));
    foreign(a);

    // Node 3 removed incrementally: route, FDB entry and neighbour go.
    let r = change(&p.a, &sa, std::slice::from_ref(&node3), &[]);
    clean(&r);
    assert_eq!(r.ops, 3);
    let s = state(&p.a);
    assert!(
        !s.contains("10.244.3.0") && !s.contains("0e:00:00:00:03:01"),
        "{s}"
    );
    assert!(
        s.contains("10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"),
        "{s}"
    );

    // Node 2 deleted while we were down: a full sync finds and removes it.
    let (_, r) = start(&p.a, &sa, &[]);
    clean(&r);
    assert_eq!(r.ops, 3);
    let s = state(&p.a);
    assert!(
        !s.contains("10.244.2.0") && !s.contains("0e:00:00:00:02:02"),
        "{s}"
    );
    assert!(!ping(&p.a, "10.244.2.0"));
    foreign(a);
}

#[test]
fn direct_routing_goes_over_the_underlay_and_switches_both_ways() {
    let p = Pair::new("okt4", 74);
    let (sa, sb) = (p.spec(&p.a, 1, MAC_A), p.spec(&p.b, 2, MAC_B));
    let (_, r) = start(&p.a, &sa, &[p.direct(2)]);
    clean(&r);
    assert_eq!(r.ops, 1, "DirectRouting: a route only");
    start(&p.b, &sb, &[p.direct(1)]);
    let s = state(&p.a);
    assert!(s.contains("10.244.2.0/24 via 192.168.74.2 dev ua"), "{s}");
    assert!(
        !s.contains("PERMANENT") && !s.contains("self permanent"),
        "{s}"
    );
    assert!(ping(&p.a, "10.244.2.0"));
    // Restart: nothing to do.
    let (_, r) = start(&p.a, &sa, &[p.direct(2)]);
    assert_eq!(r.ops, 0);

    // To VXLAN: neighbour, FDB, and the route replaced (not duplicated).
    let (_, r) = start(&p.a, &sa, &[p.remote(2, MAC_B)]);
    clean(&r);
    assert_eq!(r.ops, 3);
    let s = state(&p.a);
    assert!(
        s.contains("10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"),
        "{s}"
    );
    assert!(!s.contains("via 192.168.74.2"), "{s}");
    // And back, incrementally: route replaced, FDB and neighbour removed.
    let r = change(&p.a, &sa, &[p.remote(2, MAC_B)], &[p.direct(2)]);
    clean(&r);
    assert_eq!(r.ops, 3);
    let s = state(&p.a);
    assert!(s.contains("10.244.2.0/24 via 192.168.74.2 dev ua"), "{s}");
    assert!(
        !s.contains("PERMANENT") && !s.contains("self permanent"),
        "{s}"
    );
    assert!(ping(&p.a, "10.244.2.0"));
}

#[test]
fn one_failing_node_does_not_stop_the_others() {
    let p = Pair::new("okt5", 75);
    let sa = p.spec(&p.a, 1, MAC_A);
    // The kernel refuses node "bad": its gateway is unreachable.
    let bad = RemoteNode {
        node: "bad".into(),
        subnet: "10.244.3.0/24".parse().unwrap(),
        public_ip: "203.0.113.9".parse().unwrap(),
        path: RemotePath::Direct,
    };
    // The planner would never send this one; the kernel side still refuses it.
    let outside = RemoteNode {
        node: "outside".into(),
        subnet: "10.99.4.0/24".parse::<IpNet>().unwrap(),
        ..p.remote(4, "0e:00:00:00:04:01")
    };
    let remotes = [
        p.remote(2, MAC_B),
        bad,
        outside,
        p.remote(5, "0e:00:00:00:05:01"),
    ];
    let (_, r) = start(&p.a, &sa, &remotes);
    let failed: Vec<&str> = r.failures.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed, ["outside", "bad"], "{:?}", r.failures);
    assert_eq!(r.ops, 7, "3 + 1 (refused) + 3");
    let s = state(&p.a);
    assert!(
        s.contains("10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"),
        "{s}"
    );
    assert!(
        s.contains("10.244.5.0/24 via 10.244.5.0 dev flannel.1 onlink"),
        "{s}"
    );
    assert!(!s.contains("10.244.3.0") && !s.contains("10.99.4.0"), "{s}");
}

#[test]
fn ipv6_overlay_over_an_ipv6_underlay_and_restart_is_idempotent() {
    let p = Pair::new("okt6", 76);
    let (a, b) = (p.a.name.clone(), p.b.name.clone());
    sh(&format!(
        "ip -n {a} addr add fd00:76::1/64 dev ua nodad && ip -n {b} addr add fd00:76::2/64 dev ub nodad"
    ));
    let spec = |ns: &Netns, node: u8, mac: &str| DeviceSpec {
        name: "flannel-v6.1".into(),
        local: format!("fd00:76::{node}").parse().unwrap(),
        address: format!("fd00:244:0:{node}::/128").parse().unwrap(),
        network: "fd00:244::/56".parse().unwrap(),
        ..p.spec(ns, node, mac)
    };
    let remote = |node: u8, mac: &str| RemoteNode {
        node: format!("node{node}"),
        subnet: format!("fd00:244:0:{node}::/64").parse().unwrap(),
        public_ip: format!("fd00:76::{node}").parse().unwrap(),
        path: RemotePath::Vxlan {
            vtep: format!("fd00:244:0:{node}::").parse().unwrap(),
            mac: mac.parse().unwrap(),
        },
    };
    // Over IPv6 the encapsulation takes 70 bytes: the kernel refuses 1450
    // on a 1500 underlay and clamps it; the device still comes up.
    let too_big = spec(&p.a, 1, MAC_A);
    let (dev, _) = start(&p.a, &too_big, &[]);
    assert_eq!(dev.mtu, 1430);
    let (sa, sb) = (
        DeviceSpec {
            mtu: 1430,
            ..spec(&p.a, 1, MAC_A)
        },
        DeviceSpec {
            mtu: 1430,
            ..spec(&p.b, 2, MAC_B)
        },
    );
    let (_, ra) = start(&p.a, &sa, &[remote(2, MAC_B)]);
    let (_, rb) = start(&p.b, &sb, &[remote(1, MAC_A)]);
    clean(&ra);
    clean(&rb);
    assert_eq!((ra.ops, rb.ops), (3, 3));
    let link = sh(&format!("ip -n {a} -d link show flannel-v6.1"));
    assert!(
        link.contains("vxlan id 1 local fd00:76::1 dev ua"),
        "{link}"
    );
    let v6 = |ns: &str| {
        sh(&format!(
            "ip -n {ns} -6 neigh show dev flannel-v6.1 nud permanent; \
             bridge -n {ns} fdb show dev flannel-v6.1 | grep permanent; \
             ip -n {ns} -6 route show dev flannel-v6.1"
        ))
    };
    let s = v6(&a);
    for want in [
        "fd00:244:0:2:: lladdr 0e:00:00:00:02:01 PERMANENT",
        "0e:00:00:00:02:01 dst fd00:76::2 self permanent",
        "fd00:244:0:2::/64 via fd00:244:0:2:: metric 1024 onlink",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    assert_eq!(
        talk(&p.a, "fd00:244:0:2::").as_deref(),
        Some("nodeB fd00:244:0:1:: hello"),
        "TCP over the IPv6 overlay, from A's VTEP address"
    );
    // IPv6 routes come back with the kernel's default metric 1024: still
    // "right", so a restart writes nothing.
    let (_, again) = start(&p.a, &sa, &[remote(2, MAC_B)]);
    clean(&again);
    assert_eq!(again.ops, 0);
    assert_eq!(v6(&a), s);
    // Removal while down: found by the dumps and removed.
    let (_, gone) = start(&p.a, &sa, &[]);
    clean(&gone);
    assert_eq!(gone.ops, 3);
    assert!(!v6(&a).contains("fd00:244:0:2"), "{}", v6(&a));
}
