//! Programs a small embedded table the way a service proxy would — a dummy
//! link holding the virtual addresses, then every virtual service and real
//! server in one pipelined batch — and reads it back.
//!
//! Needs root and an IPVS kernel: `scripts/demo.sh` runs it in the IPVS VM.

use std::net::{IpAddr, SocketAddr};

use ipvs_sys::rtnl::{AddrOp, Address, RtnlClient};
use ipvs_sys::{Destination, IpvsClient, Op, Scheduler, Service, ServiceKey};

/// `(virtual address, scheduler, sticky seconds, real servers)`.
const TABLE: &[(&str, &str, Option<u32>, &[&str])] = &[
    (
        "10.96.0.10:53",
        "rr",
        None,
        &["10.244.1.2:53", "10.244.2.2:53"],
    ),
    (
        "10.96.0.20:80",
        "rr",
        None,
        &["10.244.1.3:8080", "10.244.1.4:8080", "10.244.2.3:8080"],
    ),
    ("10.96.0.30:443", "sh", Some(10800), &["10.244.2.4:8443"]),
    (
        "[fd00:96::40]:80",
        "wrr",
        None,
        &["[fd00:244::5]:8080", "[fd00:244::6]:8080"],
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rtnl = RtnlClient::open()?;
    let link = rtnl.ensure_dummy("kube-ipvs0")?;
    let mut ops = Vec::new();
    let mut addrs = Vec::new();
    for (vip, sched, sticky, backends) in TABLE {
        let vip: SocketAddr = vip.parse()?;
        addrs.push(AddrOp::Add(Address::host(link.index, vip.ip())));
        let key = ServiceKey::tcp(vip);
        let mut svc = Service::new(key, sched.parse::<Scheduler>()?);
        if let Some(secs) = sticky {
            svc = svc.persistent(*secs);
        }
        ops.push(Op::AddService(svc));
        for b in *backends {
            ops.push(Op::AddDestination(key, Destination::masq(b.parse()?)));
        }
    }
    for r in rtnl.apply_addresses(&addrs)? {
        // Already bound from an earlier run is fine: adopt, never flush.
        if let Err(e) = r
            && e.kind() != ipvs_sys::ErrorKind::Exists
        {
            return Err(e.into());
        }
    }
    let mut ipvs = IpvsClient::open()?;
    let results = ipvs.apply(&ops)?;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    println!(
        "programmed {} IPVS objects in one batch ({} failed), {} addresses on {} (index {})",
        ops.len(),
        failed.len(),
        addrs.len(),
        link.name,
        link.index
    );
    for e in failed {
        println!("  error: {e}");
    }
    println!("\nread back with ipvs-sys:");
    for (s, dests) in ipvs.dump()? {
        println!("  {} {}", s.service.key, s.service.scheduler);
        for d in dests {
            println!(
                "    -> {} weight {}",
                d.destination.addr, d.destination.weight
            );
        }
    }
    let bound: Vec<IpAddr> = rtnl
        .link_addresses(link.index)?
        .iter()
        .map(|a| a.addr)
        .collect();
    println!("  addresses on kube-ipvs0: {bound:?}");
    Ok(())
}
