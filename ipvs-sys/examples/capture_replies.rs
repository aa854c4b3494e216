//! Programs a few varied services, then prints the kernel's raw dump replies
//! (GET_SERVICE, GET_DEST, GET_INFO, GET_CONFIG) as hex, one message per
//! line. Its output, captured in the IPVS VM, is the fixture set in
//! `ipvs-sys/tests/fixtures/kernel-replies.txt` that the host-side decoder
//! tests read.

use ipvs_sys::ipvs::codec::put_nested_service_key;
use ipvs_sys::ipvs::consts::{IPVS_GENL_VERSION, cmd};
use ipvs_sys::netlink::message::{
    Header, Message, MessageWriter, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use ipvs_sys::netlink::socket::Connection;
use ipvs_sys::*;

fn hex(m: &Message<'_>) -> String {
    let mut raw = Vec::new();
    raw.extend_from_slice(&((16 + m.payload.len()) as u32).to_ne_bytes());
    raw.extend_from_slice(&m.ty.to_ne_bytes());
    raw.extend_from_slice(&m.flags.to_ne_bytes());
    raw.extend_from_slice(&m.seq.to_ne_bytes());
    raw.extend_from_slice(&0u32.to_ne_bytes());
    raw.extend_from_slice(m.payload);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut ipvs = IpvsClient::open()?;
    ipvs.flush()?;
    let v4 = ServiceKey::tcp("10.96.0.10:80".parse()?);
    let mut sticky = Service::new(v4, Scheduler::SourceHashing).persistent(600);
    sticky.flags |= ServiceFlags::SH_PORT;
    sticky.netmask = Netmask::V4("255.255.255.0".parse()?);
    let v6 = ServiceKey::udp("[fd00:96::53]:53".parse()?);
    let fwm = ServiceKey::fwmark(AddressFamily::Ipv4, 0x4000);
    let ops = vec![
        Op::AddService(sticky),
        Op::AddDestination(
            v4,
            Destination::masq("10.244.1.5:8080".parse()?).with_weight(3),
        ),
        Op::AddDestination(
            v4,
            Destination {
                addr: "10.244.1.6:80".parse()?,
                forwarding: Forwarding::Tunnel(Tunnel::Gue {
                    port: 6080,
                    checksum: TunnelChecksum::Checksum,
                }),
                weight: 1,
                upper_threshold: 100,
                lower_threshold: 10,
            },
        ),
        Op::AddService(Service::new(v6, Scheduler::WeightedRoundRobin)),
        Op::AddDestination(v6, Destination::masq("[fd00:244::7]:5353".parse()?)),
        Op::AddService(Service::new(fwm, Scheduler::MaglevHashing)),
    ];
    for r in ipvs.apply(&ops)? {
        r?;
    }
    let family = ipvs.family_id();
    let mut conn = Connection::open(netlink_sys::protocols::NETLINK_GENERIC)?;
    let mut run = |label: &str,
                   command: u8,
                   flags: u16,
                   key: Option<ServiceKey>|
     -> Result<(), Box<dyn std::error::Error>> {
        let seq = conn.next_seq(1);
        let mut buf = Vec::new();
        let header = Header {
            ty: family,
            flags: NLM_F_REQUEST | flags,
            seq,
        };
        let mut msg = MessageWriter::begin_genl(&mut buf, header, command, IPVS_GENL_VERSION);
        if let Some(k) = key {
            put_nested_service_key(&mut msg.attrs(), &k);
        }
        msg.finish();
        let verdict = conn.transact(&buf, seq, |m| {
            println!("{label} {}", hex(m));
            Ok(())
        });
        match verdict {
            Ok(Ok(())) => Ok(()),
            other => Err(format!("{label}: {other:?}").into()),
        }
    };
    run("services", cmd::GET_SERVICE, NLM_F_DUMP, None)?;
    run("dests-v4", cmd::GET_DEST, NLM_F_DUMP, Some(v4))?;
    run("dests-v6", cmd::GET_DEST, NLM_F_DUMP, Some(v6))?;
    run("info", cmd::GET_INFO, NLM_F_ACK, None)?;
    run("config", cmd::GET_CONFIG, NLM_F_ACK, None)?;
    ipvs.flush()?;
    Ok(())
}
