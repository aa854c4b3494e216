//! Decoding real kernel replies, captured in the IPVS VM (Debian 6.1 kernel)
//! by `examples/capture_replies.rs`, and hostile variations of them.
#![cfg(target_endian = "little")]

use ipvs_sys::ipvs::codec::{decode_destination, decode_service, find_nested};
use ipvs_sys::netlink::message::Messages;
use ipvs_sys::*;

const CAPTURED: &str = include_str!("fixtures/kernel-replies.txt");

fn replies(label: &str) -> Vec<Vec<u8>> {
    CAPTURED
        .lines()
        .filter_map(|l| l.strip_prefix(label)?.strip_prefix(' '))
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

fn services() -> Vec<ServiceState> {
    replies("services")
        .iter()
        .map(|raw| {
            let msg = Messages::new(raw).next().unwrap().unwrap();
            let (cmd, attrs) = msg.genl().unwrap();
            assert_eq!(cmd, 1, "dump entries come back as IPVS_CMD_NEW_SERVICE");
            decode_service(find_nested(attrs, 1).unwrap().unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn captured_service_dump_decodes() {
    let got: Vec<Service> = services().into_iter().map(|s| s.service).collect();
    let mut sticky = Service::new(
        ServiceKey::tcp("10.96.0.10:80".parse().unwrap()),
        Scheduler::SourceHashing,
    )
    .persistent(600);
    sticky.flags |= ServiceFlags::SH_PORT;
    sticky.netmask = Netmask::V4("255.255.255.0".parse().unwrap());
    let v6 = Service::new(
        ServiceKey::udp("[fd00:96::53]:53".parse().unwrap()),
        Scheduler::WeightedRoundRobin,
    );
    let fwm = Service::new(
        ServiceKey::fwmark(AddressFamily::Ipv4, 0x4000),
        Scheduler::MaglevHashing,
    );
    assert_eq!(got, vec![sticky, v6, fwm]);
    // The kernel marks every service it holds HASHED; comparisons ignore it.
    assert!(services().iter().all(|s| s.service.flags.bits() & 0x2 != 0));
}

#[test]
fn captured_destination_dump_decodes() {
    let decode = |label: &str, family| -> Vec<DestinationState> {
        replies(label)
            .iter()
            .map(|raw| {
                let msg = Messages::new(raw).next().unwrap().unwrap();
                let (cmd, attrs) = msg.genl().unwrap();
                assert_eq!(cmd, 5, "IPVS_CMD_NEW_DEST");
                decode_destination(find_nested(attrs, 2).unwrap().unwrap(), family).unwrap()
            })
            .collect()
    };
    let v4 = decode("dests-v4", AddressFamily::Ipv4);
    let mut got: Vec<Destination> = v4.iter().map(|d| d.destination).collect();
    got.sort_by_key(|d| d.addr);
    assert_eq!(
        got,
        vec![
            Destination::masq("10.244.1.5:8080".parse().unwrap()).with_weight(3),
            Destination {
                addr: "10.244.1.6:80".parse().unwrap(),
                forwarding: Forwarding::Tunnel(Tunnel::Gue {
                    port: 6080,
                    checksum: TunnelChecksum::Checksum
                }),
                weight: 1,
                upper_threshold: 100,
                lower_threshold: 10,
            },
        ]
    );
    assert!(
        v4.iter()
            .all(|d| d.active_conns == 0 && d.stats == Stats::default())
    );
    let v6 = decode("dests-v6", AddressFamily::Ipv6);
    assert_eq!(
        v6[0].destination,
        Destination::masq("[fd00:244::7]:5353".parse().unwrap())
    );
}

#[test]
fn captured_info_and_config_decode() {
    let info = &replies("info")[0];
    let msg = Messages::new(info).next().unwrap().unwrap();
    let (_, attrs) = msg.genl().unwrap();
    let vals: Vec<(u16, u32)> = attrs
        .map(|a| a.unwrap())
        .map(|a| (a.ty, a.u32().unwrap()))
        .collect();
    assert_eq!(
        vals,
        vec![(1, 0x010201), (2, 4096)],
        "version 1.2.1, table size 4096"
    );
    let config = &replies("config")[0];
    let msg = Messages::new(config).next().unwrap().unwrap();
    let (_, attrs) = msg.genl().unwrap();
    let vals: Vec<(u16, u32)> = attrs
        .map(|a| a.unwrap())
        .map(|a| (a.ty, a.u32().unwrap()))
        .collect();
    assert_eq!(
        vals,
        vec![(4, 900), (5, 120), (6, 300)],
        "kernel default timeouts"
    );
}

/// Every truncation and every single-byte corruption of every captured reply
/// decodes to an error or a value; none panics.
#[test]
fn corrupted_captures_never_panic() {
    for label in ["services", "dests-v4", "dests-v6", "info", "config"] {
        for raw in replies(label) {
            for cut in 0..raw.len() {
                walk(&raw[..cut]);
            }
            for i in 0..raw.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = raw.clone();
                    bad[i] ^= flip;
                    walk(&bad);
                }
            }
        }
    }
}

fn walk(bytes: &[u8]) {
    for msg in Messages::new(bytes).flatten() {
        let _ = msg.ack();
        if let Ok((_, attrs)) = msg.genl() {
            if let Ok(Some(s)) = find_nested(attrs.clone(), 1) {
                let _ = decode_service(s);
            }
            if let Ok(Some(d)) = find_nested(attrs, 2) {
                let _ = decode_destination(d, AddressFamily::Ipv4);
            }
        }
    }
}
