//! The overlay's rtnetlink calls against the host kernel, each test in a
//! fresh network namespace: VXLAN links, neighbours, forwarding entries and
//! routes written by `RtnlClient` and read back with `ip` and `bridge` (the
//! independent readers). Needs root; no IPVS, so no VM.

use std::net::IpAddr;

use ipvs_sys::ErrorKind;
use ipvs_sys::rtnl::{
    Change, FdbEntry, Neighbour, Route, RtnlClient, VxlanConfig, VxlanLink, VxlanSpec,
};
use sluice_tests::netns::{Netns, sh};

const MAC1: [u8; 6] = [0x0e, 0x11, 0x22, 0x33, 0x44, 0x01];
const MAC2: [u8; 6] = [0x0e, 0x11, 0x22, 0x33, 0x44, 0x02];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A namespace with an underlay veth `u0` (192.168.90.1/24, up); returns the
/// namespace and `u0`'s index.
fn underlay(name: &str) -> (Netns, u32) {
    let ns = Netns::new(name);
    let n = &ns.name;
    sh(&format!(
        "ip -n {n} link add u0 type veth peer name u1 && \
         ip -n {n} addr add 192.168.90.1/24 dev u0 && \
         ip -n {n} link set u0 up && ip -n {n} link set u1 up"
    ));
    let index = ns.run(|| {
        RtnlClient::open()
            .unwrap()
            .link("u0")
            .unwrap()
            .unwrap()
            .index
    });
    (ns, index)
}

fn spec(name: &str, vni: u32, link: u32) -> VxlanSpec {
    VxlanSpec {
        name: name.into(),
        config: VxlanConfig {
            vni,
            link: Some(link),
            local: Some(ip("192.168.90.1")),
            port: None,
            learning: false,
            gbp: false,
        },
        mac: Some(MAC1),
        mtu: Some(1450),
    }
}

/// Creates and brings up `flannel.1` in the current namespace.
fn vxlan_up(rtnl: &mut RtnlClient, u0: u32) -> VxlanLink {
    let link = rtnl.create_vxlan(&spec("flannel.1", 1, u0)).unwrap();
    rtnl.set_link_up(link.index, true).unwrap();
    link
}

#[test]
fn vxlan_link_is_created_as_flannel_does_and_read_back() {
    let (ns, u0) = underlay("rtvx1");
    let (created, custom) = ns.run(move || {
        let mut rtnl = RtnlClient::open().unwrap();
        assert_eq!(rtnl.vxlan_link("flannel.1").unwrap(), None);
        let created = rtnl.create_vxlan(&spec("flannel.1", 1, u0)).unwrap();
        let mut s = spec("vx4789", 7, u0);
        s.config.port = Some(4789);
        s.config.learning = true;
        s.config.gbp = true;
        s.mac = Some(MAC2);
        let custom = rtnl.create_vxlan(&s).unwrap();
        (created, custom)
    });
    assert_eq!(created.kind.as_deref(), Some("vxlan"));
    assert_eq!(created.mac, Some(MAC1));
    assert_eq!(created.mtu, Some(1450));
    assert_eq!(
        created.vxlan,
        Some(VxlanConfig {
            vni: 1,
            link: Some(u0),
            local: Some(ip("192.168.90.1")),
            port: Some(8472),
            learning: false,
            gbp: false,
        }),
        "the kernel default port is 8472 when none is given"
    );
    let c = custom.vxlan.clone().unwrap();
    assert_eq!(
        (c.vni, c.port, c.learning, c.gbp),
        (7, Some(4789), true, true)
    );

    let shown = sh(&format!("ip -n {} -d link show flannel.1", ns.name));
    for want in [
        "mtu 1450",
        "link/ether 0e:11:22:33:44:01",
        "vxlan id 1 local 192.168.90.1 dev u0",
        "dstport 8472",
        "nolearning",
    ] {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
    assert!(
        !shown.contains("l2miss") && !shown.contains("proxy"),
        "{shown}"
    );
    let shown = sh(&format!("ip -n {} -d link show vx4789", ns.name));
    assert!(shown.contains("vxlan id 7"), "{shown}");
    assert!(shown.contains("dstport 4789"), "{shown}");
    assert!(shown.contains(" gbp"), "{shown}");
    assert!(!shown.contains("nolearning"), "{shown}");

    // MTU and MAC changes, then the errors a caller must be able to tell apart.
    let index = created.index;
    let errors = ns.run(move || {
        let mut rtnl = RtnlClient::open().unwrap();
        rtnl.set_link_mtu(index, 1400).unwrap();
        rtnl.set_link_mac(index, MAC2).unwrap();
        let again = rtnl.create_vxlan(&spec("flannel.1", 1, u0)).unwrap_err();
        let no_underlay = rtnl.create_vxlan(&spec("flannel.9", 9, 9999)).unwrap_err();
        let bad_name = rtnl.create_vxlan(&spec("a/b", 2, u0)).unwrap_err();
        (again.kind(), no_underlay.kind(), bad_name.kind())
    });
    assert_eq!(
        errors,
        (
            ErrorKind::Exists,
            ErrorKind::NoSuchLink,
            ErrorKind::InvalidArgument
        )
    );
    let shown = sh(&format!("ip -n {} -d link show flannel.1", ns.name));
    assert!(shown.contains("mtu 1400"), "{shown}");
    assert!(shown.contains("link/ether 0e:11:22:33:44:02"), "{shown}");
}

#[test]
fn neighbours_fdb_entries_and_routes_replace_dump_and_delete() {
    let (ns, u0) = underlay("rtnb1");
    let n = ns.name.clone();
    let dev = ns.run(move || vxlan_up(&mut RtnlClient::open().unwrap(), u0).index);
    let arp = Neighbour {
        index: dev,
        ip: ip("10.244.2.0"),
        mac: MAC1,
    };
    let fdb = FdbEntry {
        index: dev,
        mac: MAC1,
        dst: ip("192.168.90.2"),
    };
    let onlink = Route {
        dst: ip("10.244.2.0"),
        prefix_len: 24,
        gateway: Some(ip("10.244.2.0")),
        oif: Some(dev),
        onlink: true,
        metric: None,
    };
    let direct = Route {
        dst: ip("10.244.3.0"),
        prefix_len: 24,
        gateway: Some(ip("192.168.90.2")),
        oif: None,
        onlink: false,
        metric: None,
    };
    let ndp = Neighbour {
        index: dev,
        ip: ip("fd00:244:2::"),
        mac: MAC1,
    };
    let batch = vec![
        Change::ReplaceNeighbour(arp),
        Change::ReplaceFdb(fdb),
        Change::ReplaceRoute(onlink),
        Change::ReplaceRoute(direct),
        Change::ReplaceNeighbour(ndp),
    ];
    let (results, counters, neigh, fdbs, routes) = ns.run(move || {
        let mut rtnl = RtnlClient::open().unwrap();
        let before = rtnl.counters();
        let results: Vec<_> = rtnl
            .apply(&batch)
            .unwrap()
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect();
        let after = rtnl.counters();
        (
            results,
            (
                after.requests - before.requests,
                after.sendmsgs - before.sendmsgs,
            ),
            rtnl.neighbours(dev).unwrap(),
            rtnl.fdb(dev).unwrap(),
            rtnl.routes(false).unwrap(),
        )
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(counters, (5, 1), "five changes, one sendmsg");

    // Independent readers.
    let shown = sh(&format!("ip -n {n} neigh show dev flannel.1"));
    assert!(
        shown.contains("10.244.2.0 lladdr 0e:11:22:33:44:01 PERMANENT"),
        "{shown}"
    );
    assert!(
        shown.contains("fd00:244:2:: lladdr 0e:11:22:33:44:01 PERMANENT"),
        "{shown}"
    );
    let shown = sh(&format!("bridge -n {n} fdb show dev flannel.1"));
    assert!(
        shown.contains("0e:11:22:33:44:01 dst 192.168.90.2 self permanent"),
        "{shown}"
    );
    let shown = sh(&format!("ip -n {n} route show"));
    assert!(
        shown.contains("10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"),
        "{shown}"
    );
    assert!(
        shown.contains("10.244.3.0/24 via 192.168.90.2 dev u0"),
        "{shown}"
    );

    // Our own dumps agree.
    let mut ips: Vec<_> = neigh
        .iter()
        .filter(|r| r.permanent())
        .map(|r| (r.ip, r.mac))
        .collect();
    ips.sort();
    assert_eq!(
        ips,
        vec![
            (ip("10.244.2.0"), Some(MAC1)),
            (ip("fd00:244:2::"), Some(MAC1))
        ]
    );
    let entries: Vec<_> = fdbs
        .iter()
        .filter(|r| r.permanent())
        .map(|r| (r.mac, r.dst))
        .collect();
    assert_eq!(entries, vec![(MAC1, Some(ip("192.168.90.2")))]);
    let ours = routes
        .iter()
        .find(|r| r.route.dst == ip("10.244.2.0"))
        .expect("onlink route dumped");
    assert_eq!(
        (
            ours.route.gateway,
            ours.route.oif,
            ours.route.onlink,
            ours.route.prefix_len
        ),
        (Some(ip("10.244.2.0")), Some(dev), true, 24)
    );
    let dir = routes
        .iter()
        .find(|r| r.route.dst == ip("10.244.3.0"))
        .expect("direct route dumped");
    assert_eq!(
        (dir.route.gateway, dir.route.oif),
        (Some(ip("192.168.90.2")), Some(u0)),
        "the kernel resolves the output link of a route given only a gateway"
    );

    // Replace: a new MAC and a new remote overwrite in place.
    let replace = vec![
        Change::ReplaceNeighbour(Neighbour { mac: MAC2, ..arp }),
        Change::ReplaceFdb(FdbEntry {
            dst: ip("192.168.90.3"),
            ..fdb
        }),
    ];
    ns.run(move || {
        let mut rtnl = RtnlClient::open().unwrap();
        for r in rtnl.apply(&replace).unwrap() {
            r.unwrap();
        }
    });
    let shown = sh(&format!("ip -n {n} -4 neigh show dev flannel.1"));
    assert_eq!(
        shown.trim(),
        "10.244.2.0 lladdr 0e:11:22:33:44:02 PERMANENT",
        "replaced, not added"
    );
    let shown = sh(&format!("bridge -n {n} fdb show dev flannel.1"));
    assert!(
        shown.contains("0e:11:22:33:44:01 dst 192.168.90.3 self permanent")
            && !shown.contains("192.168.90.2"),
        "{shown}"
    );

    // Delete everything, then deleting again is a typed "no such entry".
    let delete = vec![
        Change::DeleteRoute(onlink),
        Change::DeleteRoute(direct),
        Change::DeleteFdb(FdbEntry {
            dst: ip("192.168.90.3"),
            ..fdb
        }),
        Change::DeleteNeighbour(arp),
        Change::DeleteNeighbour(ndp),
    ];
    let (first, second) = ns.run(move || {
        let mut rtnl = RtnlClient::open().unwrap();
        let kinds = |rs: Vec<Result<(), ipvs_sys::Error>>| {
            rs.into_iter()
                .map(|r| r.err().map(|e| e.kind()))
                .collect::<Vec<_>>()
        };
        (
            kinds(rtnl.apply(&delete).unwrap()),
            kinds(rtnl.apply(&delete).unwrap()),
        )
    });
    assert_eq!(first, vec![None; 5]);
    assert_eq!(second, vec![Some(ErrorKind::NoSuchEntry); 5]);
    assert_eq!(
        sh(&format!("ip -n {n} neigh show dev flannel.1")).trim(),
        ""
    );
    assert_eq!(
        sh(&format!(
            "bridge -n {n} fdb show dev flannel.1 | grep -c permanent || true"
        ))
        .trim(),
        "0"
    );
    let shown = sh(&format!("ip -n {n} route show"));
    assert!(
        !shown.contains("10.244.2.0/24") && !shown.contains("10.244.3.0/24"),
        "{shown}"
    );
}

#[test]
fn changes_on_a_missing_link_are_typed_errors_and_do_not_stop_the_batch() {
    let (ns, u0) = underlay("rtmiss1");
    let n = ns.name.clone();
    let (kinds, dump) = ns.run(move || {
        let mut rtnl = RtnlClient::open().unwrap();
        let dev = vxlan_up(&mut rtnl, u0).index;
        let gone = 9999;
        let batch = [
            Change::ReplaceNeighbour(Neighbour {
                index: gone,
                ip: ip("10.244.2.0"),
                mac: MAC1,
            }),
            Change::ReplaceFdb(FdbEntry {
                index: gone,
                mac: MAC1,
                dst: ip("192.168.90.2"),
            }),
            Change::ReplaceRoute(Route {
                dst: ip("10.244.2.0"),
                prefix_len: 24,
                gateway: Some(ip("10.244.2.0")),
                oif: Some(gone),
                onlink: true,
                metric: None,
            }),
            // After three failures, a good change still lands.
            Change::ReplaceNeighbour(Neighbour {
                index: dev,
                ip: ip("10.244.5.0"),
                mac: MAC2,
            }),
        ];
        let kinds: Vec<_> = rtnl
            .apply(&batch)
            .unwrap()
            .into_iter()
            .map(|r| r.err().map(|e| (e.kind(), e.to_string())))
            .collect();
        (kinds, rtnl.neighbours(gone).unwrap())
    });
    for k in &kinds[..3] {
        let (kind, text) = k.as_ref().expect("missing link must fail");
        assert_eq!(*kind, ErrorKind::NoSuchLink, "{text}");
        assert!(text.contains("9999"), "the error names the link: {text}");
    }
    assert_eq!(kinds[3], None);
    assert!(dump.is_empty());
    let shown = sh(&format!("ip -n {n} neigh show dev flannel.1"));
    assert!(
        shown.contains("10.244.5.0 lladdr 0e:11:22:33:44:02 PERMANENT"),
        "{shown}"
    );
}

#[test]
fn a_thousand_remotes_take_a_few_sendmsg_calls() {
    let (ns, u0) = underlay("rtbulk1");
    let n = ns.name.clone();
    let counters = ns.run(move || {
        let mut rtnl = RtnlClient::open().unwrap();
        let dev = vxlan_up(&mut rtnl, u0).index;
        let mut batch = Vec::new();
        for i in 0..1000u32 {
            let (x, y) = ((i / 250 + 1) as u8, (i % 250) as u8);
            let vtep = IpAddr::from([10, x, y, 0]);
            let mac = [0x0e, 0, 0, 0, x, y];
            batch.push(Change::ReplaceNeighbour(Neighbour {
                index: dev,
                ip: vtep,
                mac,
            }));
            batch.push(Change::ReplaceFdb(FdbEntry {
                index: dev,
                mac,
                dst: IpAddr::from([172, 16, x, y]),
            }));
            batch.push(Change::ReplaceRoute(Route {
                dst: vtep,
                prefix_len: 24,
                gateway: Some(vtep),
                oif: Some(dev),
                onlink: true,
                metric: None,
            }));
        }
        let before = rtnl.counters();
        for r in rtnl.apply(&batch).unwrap() {
            r.unwrap();
        }
        let after = rtnl.counters();
        // Permanent ones only: the kernel keeps its own IPv6 entries.
        let neighbours = rtnl.neighbours(dev).unwrap();
        assert_eq!(neighbours.iter().filter(|r| r.permanent()).count(), 1000);
        assert_eq!(
            rtnl.fdb(dev)
                .unwrap()
                .iter()
                .filter(|r| r.permanent())
                .count(),
            1000
        );
        (
            after.requests - before.requests,
            after.sendmsgs - before.sendmsgs,
        )
    });
    assert_eq!(counters.0, 3000);
    assert!(
        counters.1 <= 4,
        "3000 changes took {} sendmsg calls",
        counters.1
    );
    let count = |cmd: &str| {
        sh(&format!("{cmd} | wc -l"))
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(
        count(&format!(
            "ip -n {n} -4 neigh show dev flannel.1 | grep PERMANENT"
        )),
        1000
    );
    assert_eq!(
        count(&format!(
            "bridge -n {n} fdb show dev flannel.1 | grep permanent"
        )),
        1000
    );
    assert_eq!(count(&format!("ip -n {n} route show dev flannel.1")), 1000);
}
