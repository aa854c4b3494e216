//! Wire-format tests that need no kernel: requests encode to the bytes the
//! kernel ABI (`include/uapi/linux/ip_vs.h`) expects, replies decode, and
//! encode/decode round trips hold for arbitrary values. Fixtures are written
//! out field by field so each byte can be checked against the header file.
#![cfg(target_endian = "little")]

use std::net::{IpAddr, SocketAddr};

use ipvs_sys::ipvs::codec::{decode_destination, decode_service, put_destination, put_service};
use ipvs_sys::netlink::attr::{AttrWriter, Attrs};
use ipvs_sys::*;
use proptest::prelude::*;

/// Builds a fixture: nlattr header then payload, padded to 4.
fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((4 + payload.len()) as u16).to_le_bytes());
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

fn nested(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = parts.concat();
    let mut v = Vec::new();
    v.extend_from_slice(&((4 + body.len()) as u16).to_le_bytes());
    v.extend_from_slice(&(ty | 0x8000).to_le_bytes()); // NLA_F_NESTED
    v.extend_from_slice(&body);
    v
}

fn message(family: u16, cmd: u8, seq: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = attrs.concat();
    let len = 16 + 4 + body.len();
    let mut v = Vec::new();
    v.extend_from_slice(&(len as u32).to_le_bytes()); // nlmsg_len
    v.extend_from_slice(&family.to_le_bytes()); // nlmsg_type = family id
    v.extend_from_slice(&5u16.to_le_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes()); // nlmsg_pid
    v.extend_from_slice(&[cmd, 1, 0, 0]); // genlmsghdr: cmd, IPVS_GENL_VERSION
    v.extend_from_slice(&body);
    v
}

fn addr16(ip: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&ip);
    a
}

/// `IPVS_SVC_ATTR_*` for TCP 10.0.0.1:80, as a key.
fn svc_key_attrs() -> Vec<Vec<u8>> {
    vec![
        nla(1, &2u16.to_le_bytes()),    // AF = AF_INET
        nla(2, &6u16.to_le_bytes()),    // PROTOCOL = IPPROTO_TCP
        nla(3, &addr16([10, 0, 0, 1])), // ADDR: union nf_inet_addr
        nla(4, &80u16.to_be_bytes()),   // PORT, network order
    ]
}

#[test]
fn new_service_matches_the_abi() {
    let key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
    let mut buf = Vec::new();
    Op::AddService(Service::new(key, Scheduler::RoundRobin)).encode(&mut buf, 0x1c, 1);
    let mut svc = svc_key_attrs();
    svc.push(nla(6, b"rr\0")); // SCHED_NAME
    let mut flags = 0u32.to_le_bytes().to_vec(); // struct ip_vs_flags { flags, mask }
    flags.extend_from_slice(&u32::MAX.to_le_bytes());
    svc.push(nla(7, &flags));
    svc.push(nla(8, &0u32.to_le_bytes())); // TIMEOUT
    svc.push(nla(9, &u32::MAX.to_le_bytes())); // NETMASK 255.255.255.255
    let want = message(0x1c, 1, 1, &[nested(1, &svc)]); // IPVS_CMD_NEW_SERVICE
    assert_eq!(buf, want);
    assert_eq!(buf.len(), 104);
}

#[test]
fn persistent_service_with_engine_and_mask() {
    let key = ServiceKey::udp("10.0.0.1:53".parse().unwrap());
    let mut s = Service::new(key, Scheduler::SourceHashing).persistent(120);
    s.flags |= ServiceFlags::SH_PORT;
    s.netmask = Netmask::V4("255.255.0.0".parse().unwrap());
    s.persistence_engine = Some(ModuleName::new("sip").unwrap());
    let mut buf = Vec::new();
    Op::UpdateService(s).encode(&mut buf, 0x1c, 9);
    let mut svc = vec![
        nla(1, &2u16.to_le_bytes()),
        nla(2, &17u16.to_le_bytes()),
        nla(3, &addr16([10, 0, 0, 1])),
        nla(4, &53u16.to_be_bytes()),
        nla(6, b"sh\0"),
        nla(11, b"sip\0"), // PE_NAME
    ];
    let mut flags = (0x1u32 | 0x10).to_le_bytes().to_vec(); // PERSISTENT | SCHED2
    flags.extend_from_slice(&u32::MAX.to_le_bytes());
    svc.push(nla(7, &flags));
    svc.push(nla(8, &120u32.to_le_bytes()));
    svc.push(nla(9, &[255, 255, 0, 0])); // netmask bytes in network order
    assert_eq!(buf, message(0x1c, 2, 9, &[nested(1, &svc)])); // SET_SERVICE
}

#[test]
fn ipv6_fwmark_service_key() {
    let mut buf = Vec::new();
    Op::DeleteService(ServiceKey::fwmark(AddressFamily::Ipv6, 0x4000)).encode(&mut buf, 0x1c, 2);
    let svc = vec![
        nla(1, &10u16.to_le_bytes()),
        nla(5, &0x4000u32.to_le_bytes()),
    ];
    assert_eq!(buf, message(0x1c, 3, 2, &[nested(1, &svc)])); // DEL_SERVICE
}

#[test]
fn new_destination_matches_the_abi() {
    let key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
    let d = Destination {
        addr: "10.244.1.5:8080".parse().unwrap(),
        forwarding: Forwarding::Masquerade,
        weight: 3,
        upper_threshold: 100,
        lower_threshold: 10,
    };
    let mut buf = Vec::new();
    Op::AddDestination(key, d).encode(&mut buf, 0x1c, 3);
    let dest = vec![
        nla(1, &addr16([10, 244, 1, 5])), // ADDR
        nla(2, &8080u16.to_be_bytes()),   // PORT
        nla(11, &2u16.to_le_bytes()),     // ADDR_FAMILY
        nla(3, &0u32.to_le_bytes()),      // FWD_METHOD = IP_VS_CONN_F_MASQ
        nla(4, &3u32.to_le_bytes()),      // WEIGHT
        nla(5, &100u32.to_le_bytes()),    // U_THRESH
        nla(6, &10u32.to_le_bytes()),     // L_THRESH
    ];
    let want = message(0x1c, 5, 3, &[nested(1, &svc_key_attrs()), nested(2, &dest)]);
    assert_eq!(buf, want);
}

#[test]
fn gue_tunnel_destination_matches_the_abi() {
    let key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
    let d = Destination {
        addr: "[2001:db8::5]:80".parse().unwrap(),
        forwarding: Forwarding::Tunnel(Tunnel::Gue {
            port: 6080,
            checksum: TunnelChecksum::Remote,
        }),
        weight: 1,
        upper_threshold: 0,
        lower_threshold: 0,
    };
    let mut buf = Vec::new();
    Op::UpdateDestination(key, d).encode(&mut buf, 0x1c, 4);
    let v6: std::net::Ipv6Addr = "2001:db8::5".parse().unwrap();
    let dest = vec![
        nla(1, &v6.octets()),
        nla(2, &80u16.to_be_bytes()),
        nla(11, &10u16.to_le_bytes()),
        nla(3, &2u32.to_le_bytes()), // IP_VS_CONN_F_TUNNEL
        nla(4, &1u32.to_le_bytes()),
        nla(13, &[1]),                   // TUN_TYPE = GUE
        nla(14, &6080u16.to_be_bytes()), // TUN_PORT, network order
        nla(15, &2u16.to_le_bytes()),    // TUN_FLAGS = REMCSUM
        nla(5, &0u32.to_le_bytes()),
        nla(6, &0u32.to_le_bytes()),
    ];
    assert_eq!(
        buf,
        message(0x1c, 6, 4, &[nested(1, &svc_key_attrs()), nested(2, &dest)])
    );
}

#[test]
fn delete_destination_flush_and_zero() {
    let key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
    let mut buf = Vec::new();
    Op::DeleteDestination(key, "10.244.1.5:8080".parse().unwrap()).encode(&mut buf, 0x1c, 5);
    let dest = vec![
        nla(1, &addr16([10, 244, 1, 5])),
        nla(2, &8080u16.to_be_bytes()),
        nla(11, &2u16.to_le_bytes()),
    ];
    assert_eq!(
        buf,
        message(0x1c, 7, 5, &[nested(1, &svc_key_attrs()), nested(2, &dest)])
    );
    buf.clear();
    Op::Flush.encode(&mut buf, 0x1c, 6);
    assert_eq!(buf, message(0x1c, 17, 6, &[]));
    buf.clear();
    Op::Zero(None).encode(&mut buf, 0x1c, 7);
    assert_eq!(buf, message(0x1c, 16, 7, &[]));
}

/// A service as the kernel sends it in a dump (`ip_vs_genl_fill_service`):
/// stats nests, HASHED set, the 16-byte address.
#[test]
fn decodes_kernel_style_service_reply() {
    let mut flags = (0x1u32 | 0x2).to_le_bytes().to_vec(); // PERSISTENT | HASHED
    flags.extend_from_slice(&u32::MAX.to_le_bytes());
    let stats32 = nested(
        10,
        &[nla(1, &7u32.to_le_bytes()), nla(4, &900u64.to_le_bytes())],
    );
    let stats64 = nested(
        12,
        &[nla(1, &7u64.to_le_bytes()), nla(4, &900u64.to_le_bytes())],
    );
    let mut attrs = svc_key_attrs();
    attrs.extend([
        nla(6, b"wrr\0"),
        nla(7, &flags),
        nla(8, &300u32.to_le_bytes()),
        nla(9, &u32::MAX.to_le_bytes()),
        stats32,
        stats64,
    ]);
    let body = attrs.concat();
    let st = decode_service(Attrs::new(&body)).unwrap();
    let key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
    assert_eq!(
        st.service,
        Service::new(key, Scheduler::WeightedRoundRobin).persistent(300)
    );
    assert!(
        st.service.flags.bits() & 0x2 != 0,
        "HASHED is kept in the bits"
    );
    assert_eq!(st.stats.conns, 7);
    assert_eq!(st.stats.in_bytes, 900);
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn arb_scheduler() -> impl Strategy<Value = Scheduler> {
    prop_oneof![
        (0..Scheduler::KNOWN.len()).prop_map(|i| Scheduler::KNOWN[i].clone()),
        "[a-z][a-z0-9_]{0,14}".prop_map(|s| s.parse::<Scheduler>().unwrap()),
    ]
}

prop_compose! {
    fn arb_service()(
        ip in arb_ip(),
        port in any::<u16>(),
        proto in 0..4u8,
        mark in 1..u32::MAX,
        scheduler in arb_scheduler(),
        flag_bits in 0u32..64,
        timeout in any::<u32>(),
        v4mask in any::<[u8; 4]>(),
        v6prefix in 1u8..=128,
        pe in proptest::option::of("[a-z]{1,15}"),
    ) -> Service {
        let key = match proto {
            0 => ServiceKey::tcp(SocketAddr::new(ip, port)),
            1 => ServiceKey::udp(SocketAddr::new(ip, port)),
            2 => ServiceKey::sctp(SocketAddr::new(ip, port)),
            _ => ServiceKey::fwmark(AddressFamily::of(&ip), mark),
        };
        let netmask = match key.family() {
            AddressFamily::Ipv4 => Netmask::V4(v4mask.into()),
            AddressFamily::Ipv6 => Netmask::V6(v6prefix),
        };
        Service {
            key,
            scheduler,
            flags: ServiceFlags::from_bits(flag_bits),
            timeout,
            netmask,
            persistence_engine: pe.map(|p| ModuleName::new(&p).unwrap()),
        }
    }
}

fn arb_forwarding() -> impl Strategy<Value = Forwarding> {
    let checksum = prop_oneof![
        Just(TunnelChecksum::None),
        Just(TunnelChecksum::Checksum),
        Just(TunnelChecksum::Remote)
    ];
    prop_oneof![
        Just(Forwarding::Masquerade),
        Just(Forwarding::Local),
        Just(Forwarding::DirectRoute),
        Just(Forwarding::Bypass),
        Just(Forwarding::Tunnel(Tunnel::Ipip)),
        (1..=u16::MAX, checksum.clone())
            .prop_map(|(port, checksum)| Forwarding::Tunnel(Tunnel::Gue { port, checksum })),
        checksum.prop_map(|checksum| Forwarding::Tunnel(Tunnel::Gre { checksum })),
    ]
}

prop_compose! {
    fn arb_destination()(
        ip in arb_ip(),
        port in any::<u16>(),
        forwarding in arb_forwarding(),
        weight in 0..=i32::MAX as u32,
        upper_threshold in any::<u32>(),
        lower_threshold in any::<u32>(),
    ) -> Destination {
        Destination { addr: SocketAddr::new(ip, port), forwarding, weight, upper_threshold, lower_threshold }
    }
}

proptest! {
    #[test]
    fn service_round_trips(s in arb_service()) {
        let mut buf = Vec::new();
        put_service(&mut AttrWriter::new(&mut buf), &s);
        let back = decode_service(Attrs::new(&buf)).unwrap();
        prop_assert_eq!(back.service, s);
    }

    #[test]
    fn destination_round_trips(d in arb_destination(), v6 in any::<bool>()) {
        let mut buf = Vec::new();
        put_destination(&mut AttrWriter::new(&mut buf), &d);
        let family = if v6 { AddressFamily::Ipv6 } else { AddressFamily::Ipv4 };
        let back = decode_destination(Attrs::new(&buf), family).unwrap();
        prop_assert_eq!(back.destination, d);
    }

    #[test]
    fn ipvsadm_rules_round_trip(s in arb_service(), d in arb_destination()) {
        // ipvsadm cannot express local/bypass forwarding, flag 3, a netmask
        // without persistence, or a persistence timeout without persistence:
        // map those to what it can say.
        let mut d = d;
        if matches!(d.forwarding, Forwarding::Local | Forwarding::Bypass) {
            d.forwarding = Forwarding::DirectRoute;
        }
        let mut s = s;
        s.flags = ServiceFlags::from_bits(s.flags.bits() & !(ServiceFlags::SCHED3.bits() | ServiceFlags::HASHED.bits()));
        if !s.flags.contains(ServiceFlags::PERSISTENT) {
            s.timeout = 0;
            s.netmask = Netmask::host(s.key.family());
        }
        let entries = vec![(s, vec![d])];
        let text = ipvsadm::render(&entries);
        prop_assert_eq!(ipvsadm::parse(&text).unwrap(), entries);
    }

    /// Garbage never panics a decoder; it is an error or a value.
    #[test]
    fn decoders_survive_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_service(Attrs::new(&bytes));
        let _ = decode_destination(Attrs::new(&bytes), AddressFamily::Ipv4);
        for m in ipvs_sys::netlink::message::Messages::new(&bytes).flatten() {
            let _ = m.ack();
            let _ = m.genl().map(|(_, a)| a.count());
        }
    }

    /// Every prefix of a valid encoding is rejected or decoded, never a panic,
    /// and never silently decoded into a different service.
    #[test]
    fn truncated_service_is_an_error(s in arb_service(), cut in 0usize..200) {
        let mut buf = Vec::new();
        put_service(&mut AttrWriter::new(&mut buf), &s);
        let cut = cut.min(buf.len());
        if let Ok(st) = decode_service(Attrs::new(&buf[..cut])) {
            // Truncation can only drop trailing optional attributes.
            prop_assert_eq!(st.service.key, s.key);
        }
    }
}
