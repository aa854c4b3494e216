//! The VM tier: ipvs-sys against a real IPVS kernel, with `ipvsadm` and `ip`
//! as independent readers and writers.
//!
//! `cargo test` on the host runs [`ipvs_sys_in_the_ipvs_vm`], which boots the
//! IPVS VM once and runs every `guest_` test inside it (they are `#[ignore]`d
//! on the host).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use ipvs_sys::rtnl::{AddrOp, Address, RtnlClient};
use ipvs_sys::*;

#[test]
fn ipvs_sys_in_the_ipvs_vm() {
    sluice_tests::vm::run_guest_tests("guest_");
}

/// Without IPVS in the kernel (this host), opening the client is a typed,
/// actionable error rather than a panic or an opaque errno.
#[test]
fn missing_ipvs_is_a_typed_error() {
    if std::path::Path::new("/proc/net/ip_vs").exists() {
        eprintln!("SKIPPED: this kernel has IPVS; covered by the VM tier");
        return;
    }
    let err = IpvsClient::open()
        .err()
        .expect("no IPVS here, open must fail");
    assert_eq!(err.kind(), ErrorKind::NotAvailable, "{err}");
    assert!(err.to_string().contains("modprobe ip_vs"), "{err}");
}

// ---------------------------------------------------------------- helpers

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ipvsadm_restore(rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ipvsadm")
        .arg("-R")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ipvsadm -R");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "ipvsadm -R failed");
}

fn fresh() -> IpvsClient {
    let mut c = IpvsClient::open().expect("open IPVS");
    c.flush().expect("flush");
    c
}

/// What ipvs-sys dumps, as configuration only, sorted.
fn dumped(c: &mut IpvsClient) -> Vec<ipvsadm::Entry> {
    let mut out: Vec<ipvsadm::Entry> = c
        .dump()
        .expect("dump")
        .into_iter()
        .map(|(s, d)| {
            let mut dests: Vec<Destination> = d.into_iter().map(|d| d.destination).collect();
            dests.sort_by_key(|d| d.addr);
            (s.service, dests)
        })
        .collect();
    out.sort_by_key(|e| e.0.key);
    out
}

fn sorted(mut entries: Vec<ipvsadm::Entry>) -> Vec<ipvsadm::Entry> {
    for (_, d) in entries.iter_mut() {
        d.sort_by_key(|d| d.addr);
    }
    entries.sort_by_key(|e| e.0.key);
    entries
}

/// What `ipvsadm -Sn` reads back, parsed.
fn ipvsadm_saved() -> Vec<ipvsadm::Entry> {
    let text = sh("ipvsadm", &["-Sn"]);
    sorted(ipvsadm::parse(&text).unwrap_or_else(|e| panic!("parse ipvsadm -Sn: {e}\n{text}")))
}

/// `(service line head, real server, forward, weight, uthreshold, lthreshold)`
/// from `ipvsadm -Ln --exact` and `--thresholds`.
fn ipvsadm_listed() -> BTreeSet<(String, String, String, u32, u32, u32)> {
    let plain = sh("ipvsadm", &["-Ln", "--exact"]);
    let thresholds = sh("ipvsadm", &["-Ln", "--exact", "--thresholds"]);
    let rows = |text: &str| -> Vec<(String, Vec<String>)> {
        let mut svc = String::new();
        let mut rows = Vec::new();
        for line in text.lines().skip(3) {
            let toks: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            if toks.is_empty() {
                continue;
            }
            if toks[0] == "->" {
                rows.push((svc.clone(), toks[1..].to_vec()));
            } else {
                let v6 = toks.get(2).is_some_and(|t| t == "IPv6");
                svc = format!("{} {}{}", toks[0], toks[1], if v6 { " IPv6" } else { "" });
            }
        }
        rows
    };
    rows(&plain)
        .into_iter()
        .zip(rows(&thresholds))
        .map(|((svc, p), (svc2, t))| {
            assert_eq!(svc, svc2);
            assert_eq!(p[0], t[0]);
            (
                svc,
                p[0].clone(),
                p[1].clone(),
                p[2].parse().unwrap(),
                t[1].parse().unwrap(),
                t[2].parse().unwrap(),
            )
        })
        .collect()
}

fn list_head(key: &ServiceKey) -> String {
    let fmt = |a: &SocketAddr| match a.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", a.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", a.port()),
    };
    match key {
        ServiceKey::Inet { protocol, addr } => format!("{protocol} {}", fmt(addr)),
        ServiceKey::FwMark { family, mark } => {
            format!(
                "FWM {mark}{}",
                if *family == AddressFamily::Ipv6 {
                    " IPv6"
                } else {
                    ""
                }
            )
        }
    }
}

fn forward_name(f: &Forwarding) -> &'static str {
    match f {
        Forwarding::Masquerade => "Masq",
        Forwarding::Local => "Local",
        Forwarding::Tunnel(_) => "Tunnel",
        Forwarding::DirectRoute => "Route",
        Forwarding::Bypass => "Bypass",
    }
}

fn expected_listing(
    entries: &[ipvsadm::Entry],
) -> BTreeSet<(String, String, String, u32, u32, u32)> {
    let mut set = BTreeSet::new();
    for (s, dests) in entries {
        for d in dests {
            let addr = match d.addr.ip() {
                IpAddr::V4(ip) => format!("{ip}:{}", d.addr.port()),
                IpAddr::V6(ip) => format!("[{ip}]:{}", d.addr.port()),
            };
            set.insert((
                list_head(&s.key),
                addr,
                forward_name(&d.forwarding).to_owned(),
                d.weight,
                d.upper_threshold,
                d.lower_threshold,
            ));
        }
    }
    set
}

/// Asserts equality, reporting the first differing entry rather than
/// hundreds of lines.
fn assert_same(got: &[ipvsadm::Entry], want: &[ipvsadm::Entry]) {
    assert_eq!(got.len(), want.len(), "number of services");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "first differing service");
    }
}

fn apply_all(c: &mut IpvsClient, entries: &[ipvsadm::Entry]) {
    let mut ops = Vec::new();
    for (s, dests) in entries {
        ops.push(Op::AddService(s.clone()));
        for d in dests {
            ops.push(Op::AddDestination(s.key, *d));
        }
    }
    for (op, r) in ops.iter().zip(c.apply(&ops).expect("apply")) {
        r.unwrap_or_else(|e| panic!("{}: {e}", op.describe()));
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A table using every scheduler, flag, forwarding method, protocol, both
/// families, fwmarks, persistence with masks and timeouts, and thresholds.
fn showcase() -> Vec<ipvsadm::Entry> {
    let mut entries = Vec::new();
    for (i, sched) in Scheduler::KNOWN.iter().enumerate() {
        let key = ServiceKey::tcp(sa(&format!("10.10.0.{}:80", i + 1)));
        let dests = (0..3)
            .map(|j| Destination {
                addr: sa(&format!("10.20.{i}.{}:8080", j + 1)),
                forwarding: Forwarding::Masquerade,
                weight: j + 1,
                upper_threshold: 0,
                lower_threshold: 0,
            })
            .collect();
        entries.push((Service::new(key, sched.clone()), dests));
    }
    let mut persistent =
        Service::new(ServiceKey::tcp(sa("10.11.0.1:443")), Scheduler::RoundRobin).persistent(1800);
    persistent.netmask = Netmask::V4("255.255.255.0".parse().unwrap());
    entries.push((persistent, vec![Destination::masq(sa("10.21.0.1:8443"))]));
    let mut one_packet = Service::new(
        ServiceKey::udp(sa("10.11.0.2:53")),
        Scheduler::WeightedRoundRobin,
    );
    one_packet.flags |= ServiceFlags::ONE_PACKET;
    entries.push((one_packet, vec![Destination::masq(sa("10.21.0.2:5353"))]));
    let mut sh = Service::new(
        ServiceKey::tcp(sa("10.11.0.3:80")),
        Scheduler::SourceHashing,
    );
    sh.flags |= ServiceFlags::SH_FALLBACK | ServiceFlags::SH_PORT;
    entries.push((sh, vec![Destination::masq(sa("10.21.0.3:80"))]));
    let mut mh = Service::new(
        ServiceKey::tcp(sa("10.11.0.4:80")),
        Scheduler::MaglevHashing,
    );
    mh.flags |= ServiceFlags::MH_PORT;
    entries.push((mh, vec![Destination::masq(sa("10.21.0.4:80"))]));
    // SIP persistence engine (ip_vs_pe_sip, autoloaded) on a UDP service.
    let mut sip =
        Service::new(ServiceKey::udp(sa("10.11.0.7:5060")), Scheduler::RoundRobin).persistent(120);
    sip.persistence_engine = Some(ModuleName::new("sip").unwrap());
    entries.push((sip, vec![Destination::masq(sa("10.21.0.7:5060"))]));
    let sctp = Service::new(
        ServiceKey::sctp(sa("10.11.0.5:3868")),
        Scheduler::RoundRobin,
    );
    entries.push((sctp, vec![Destination::masq(sa("10.21.0.5:3868"))]));
    // Forwarding methods and thresholds.
    let fwd_key = ServiceKey::tcp(sa("10.11.0.6:80"));
    let checks = [
        TunnelChecksum::None,
        TunnelChecksum::Checksum,
        TunnelChecksum::Remote,
    ];
    let mut fwd_dests = vec![
        Destination {
            addr: sa("10.21.6.1:80"),
            forwarding: Forwarding::DirectRoute,
            weight: 7,
            upper_threshold: 1000,
            lower_threshold: 100,
        },
        Destination {
            addr: sa("10.21.6.2:80"),
            forwarding: Forwarding::Tunnel(Tunnel::Ipip),
            weight: 0,
            upper_threshold: 5,
            lower_threshold: 0,
        },
    ];
    for (n, c) in checks.iter().enumerate() {
        fwd_dests.push(Destination {
            addr: sa(&format!("10.21.6.{}:80", 10 + n)),
            forwarding: Forwarding::Tunnel(Tunnel::Gue {
                port: 6080 + n as u16,
                checksum: *c,
            }),
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        });
        fwd_dests.push(Destination {
            addr: sa(&format!("10.21.6.{}:80", 20 + n)),
            forwarding: Forwarding::Tunnel(Tunnel::Gre { checksum: *c }),
            weight: 2,
            upper_threshold: 0,
            lower_threshold: 0,
        });
    }
    entries.push((
        Service::new(fwd_key, Scheduler::WeightedLeastConnection),
        fwd_dests,
    ));
    // IPv6 service and persistence with a prefix.
    let mut v6 = Service::new(
        ServiceKey::tcp(sa("[fd00:10::1]:80")),
        Scheduler::WeightedRoundRobin,
    )
    .persistent(60);
    v6.netmask = Netmask::V6(64);
    entries.push((
        v6,
        vec![
            Destination::masq(sa("[fd00:20::1]:8080")),
            Destination::masq(sa("[fd00:20::2]:8080")).with_weight(5),
        ],
    ));
    let v6udp = Service::new(
        ServiceKey::udp(sa("[fd00:10::2]:53")),
        Scheduler::LeastConnection,
    );
    entries.push((v6udp, vec![Destination::masq(sa("[fd00:20::3]:53"))]));
    // Firewall marks, both families.
    entries.push((
        Service::new(
            ServiceKey::fwmark(AddressFamily::Ipv4, 0x4001),
            Scheduler::RoundRobin,
        ),
        vec![Destination {
            addr: sa("10.21.7.1:0"),
            forwarding: Forwarding::DirectRoute,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        }],
    ));
    entries.push((
        Service::new(
            ServiceKey::fwmark(AddressFamily::Ipv6, 0x4002),
            Scheduler::RoundRobin,
        )
        .persistent(30),
        vec![Destination {
            addr: sa("[fd00:21::1]:0"),
            forwarding: Forwarding::DirectRoute,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        }],
    ));
    entries
}

// ---------------------------------------------------------------- guest tests

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_info_and_timeouts() {
    let mut c = fresh();
    let info = c.info().unwrap();
    assert_eq!(info.version.to_string(), "1.2.1");
    let header = sh("ipvsadm", &["-Ln"]);
    assert!(
        header.starts_with(&format!(
            "IP Virtual Server version {} (size={})",
            info.version, info.conn_tab_size
        )),
        "{header}"
    );
    c.set_timeouts(&Timeouts {
        tcp: 901,
        tcp_fin: 121,
        udp: 301,
    })
    .unwrap();
    assert_eq!(
        c.timeouts().unwrap(),
        Timeouts {
            tcp: 901,
            tcp_fin: 121,
            udp: 301
        }
    );
    assert!(sh("ipvsadm", &["-Ln", "--timeout"]).contains("Timeout (tcp tcpfin udp): 901 121 301"));
    // Zero leaves a value unchanged.
    c.set_timeouts(&Timeouts {
        tcp: 0,
        tcp_fin: 0,
        udp: 99,
    })
    .unwrap();
    assert_eq!(
        c.timeouts().unwrap(),
        Timeouts {
            tcp: 901,
            tcp_fin: 121,
            udp: 99
        }
    );
    sh("ipvsadm", &["--set", "900", "120", "300"]);
    assert_eq!(
        c.timeouts().unwrap(),
        Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300
        }
    );
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_everything_written_reads_back_in_ipvsadm() {
    let mut c = fresh();
    let want = sorted(showcase());
    apply_all(&mut c, &want);
    // ipvs-sys itself reads back exactly what it wrote.
    assert_eq!(dumped(&mut c), want);
    // ipvsadm -Sn: every field it prints (it omits thresholds).
    let mut no_thresholds = want.clone();
    for (_, d) in no_thresholds.iter_mut() {
        for d in d.iter_mut() {
            d.upper_threshold = 0;
            d.lower_threshold = 0;
        }
    }
    assert_eq!(ipvsadm_saved(), no_thresholds);
    // ipvsadm -Ln --exact and --thresholds: forwarding, weights, thresholds.
    assert_eq!(ipvsadm_listed(), expected_listing(&want));
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_local_and_bypass_forwarding_and_updates() {
    let mut c = fresh();
    let key = ServiceKey::tcp(sa("10.12.0.1:80"));
    let mut svc = Service::new(key, Scheduler::RoundRobin);
    let local = Destination {
        forwarding: Forwarding::Local,
        ..Destination::masq(sa("10.22.0.1:80"))
    };
    let bypass = Destination {
        forwarding: Forwarding::Bypass,
        ..Destination::masq(sa("10.22.0.2:80"))
    };
    apply_all(&mut c, &[(svc.clone(), vec![local, bypass])]);
    assert_eq!(dumped(&mut c), vec![(svc.clone(), vec![local, bypass])]);
    let listing = sh("ipvsadm", &["-Ln"]);
    assert!(
        listing.contains("10.22.0.1:80") && listing.contains("Local"),
        "{listing}"
    );
    // Updates: scheduler and persistence; weight and thresholds.
    svc.scheduler = Scheduler::SourceHashing;
    svc = svc.persistent(77);
    c.update_service(&svc).unwrap();
    let updated = Destination {
        weight: 9,
        upper_threshold: 50,
        lower_threshold: 5,
        forwarding: Forwarding::Masquerade,
        ..local
    };
    c.update_destination(&key, &updated).unwrap();
    assert_eq!(c.service(&key).unwrap().service, svc);
    assert!(sh("ipvsadm", &["-Sn"]).contains("-A -t 10.12.0.1:80 -s sh -p 77"));
    let got = c.destinations(&key).unwrap();
    assert!(got.iter().any(|d| d.destination == updated), "{got:?}");
    c.delete_destination(&key, &bypass.addr).unwrap();
    c.delete_service(&key).unwrap();
    assert!(sh("ipvsadm", &["-Sn"]).trim().is_empty());
}

/// A deterministic generator of varied rules in what ipvsadm can express.
fn generated_rules(n: usize) -> Vec<ipvsadm::Entry> {
    let mut x: u64 = 0x5eed_1234_abcd_9876;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut entries = Vec::new();
    for i in 0..n {
        let r = next();
        let v6 = r % 5 == 0;
        let ip: IpAddr = if v6 {
            format!("fd00:96::{:x}", i + 1).parse().unwrap()
        } else {
            format!("10.96.{}.{}", i / 250, i % 250 + 1)
                .parse()
                .unwrap()
        };
        let port = 1 + (next() % 65000) as u16;
        let key = match r % 7 {
            0 => ServiceKey::udp(SocketAddr::new(ip, port)),
            1 if i % 3 == 0 => ServiceKey::fwmark(
                if v6 {
                    AddressFamily::Ipv6
                } else {
                    AddressFamily::Ipv4
                },
                1000 + i as u32,
            ),
            2 => ServiceKey::sctp(SocketAddr::new(ip, port)),
            _ => ServiceKey::tcp(SocketAddr::new(ip, port)),
        };
        let sched = Scheduler::KNOWN[(next() % 13) as usize].clone();
        let mut svc = Service::new(key, sched.clone());
        if next() % 4 == 0 {
            svc = svc.persistent(1 + (next() % 3600) as u32);
            if next() % 2 == 0 {
                svc.netmask = if v6 {
                    Netmask::V6(48 + (next() % 80) as u8)
                } else {
                    Netmask::V4("255.255.255.0".parse().unwrap())
                };
            }
        }
        if matches!(sched, Scheduler::SourceHashing | Scheduler::MaglevHashing) && next() % 2 == 0 {
            svc.flags |= ServiceFlags::SCHED1;
            if next() % 2 == 0 {
                svc.flags |= ServiceFlags::SCHED2;
            }
        }
        if matches!(
            key,
            ServiceKey::Inet {
                protocol: Protocol::Udp,
                ..
            }
        ) && next() % 3 == 0
        {
            svc.flags |= ServiceFlags::ONE_PACKET;
        }
        let mut dests = Vec::new();
        for j in 0..(next() % 6) {
            let dip: IpAddr = if v6 {
                format!("fd00:244:{:x}::{:x}", i + 1, j + 1)
                    .parse()
                    .unwrap()
            } else {
                format!("10.{}.{}.{}", 100 + i / 250, i % 250, j + 1)
                    .parse()
                    .unwrap()
            };
            let forwarding = match next() % 6 {
                0 => Forwarding::DirectRoute,
                1 => Forwarding::Tunnel(Tunnel::Ipip),
                2 => Forwarding::Tunnel(Tunnel::Gue {
                    port: 6000 + j as u16,
                    checksum: TunnelChecksum::Checksum,
                }),
                _ => Forwarding::Masquerade,
            };
            // ipvsadm gives non-NAT real servers the service's port (fwmark
            // services have none), so the generator does too.
            let dport = match key {
                ServiceKey::FwMark { .. } => 0,
                ServiceKey::Inet { addr, .. } if forwarding != Forwarding::Masquerade => {
                    addr.port()
                }
                ServiceKey::Inet { .. } => 8000 + j as u16,
            };
            let upper = if next() % 3 == 0 {
                (next() % 5000) as u32 + 10
            } else {
                0
            };
            let lower = if upper > 0 && next() % 2 == 0 {
                upper / 2
            } else {
                0
            };
            dests.push(Destination {
                addr: SocketAddr::new(dip, dport),
                forwarding,
                weight: (next() % 100) as u32,
                upper_threshold: upper,
                lower_threshold: lower,
            });
        }
        entries.push((svc, dests));
    }
    entries
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_ipvsadm_restore_is_dumped_exactly() {
    let mut c = fresh();
    let rules = generated_rules(400);
    let text = ipvsadm::render(&rules);
    assert!(text.lines().count() > 1000, "hundreds of varied rules");
    ipvsadm_restore(&text);
    assert_same(&dumped(&mut c), &sorted(rules));
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_typed_errors_disturb_nothing() {
    let mut c = fresh();
    let want = sorted(showcase());
    apply_all(&mut c, &want);
    let before = sh("ipvsadm", &["-Sn"]);
    let key = want[0].0.key;
    let missing = ServiceKey::tcp(sa("10.99.99.99:9"));
    let kind = |r: Result<(), Error>| r.expect_err("must fail").kind();
    assert_eq!(kind(c.add_service(&want[0].0)), ErrorKind::Exists);
    assert_eq!(
        kind(c.add_destination(&key, &want[0].1[0])),
        ErrorKind::Exists
    );
    assert_eq!(kind(c.delete_service(&missing)), ErrorKind::NoSuchService);
    assert_eq!(
        kind(c.update_service(&Service::new(missing, Scheduler::RoundRobin))),
        ErrorKind::NoSuchService
    );
    assert_eq!(
        kind(c.add_destination(&missing, &Destination::masq(sa("10.1.1.1:1")))),
        ErrorKind::NoSuchService
    );
    assert_eq!(
        kind(c.delete_destination(&key, &sa("10.1.1.1:1"))),
        ErrorKind::NoSuchDestination
    );
    assert_eq!(kind(c.zero(Some(&missing))), ErrorKind::NoSuchService);
    let err = c
        .add_service(&Service::new(missing, "nosuchsched".parse().unwrap()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownScheduler, "{err}");
    assert!(
        err.to_string().contains("add service TCP 10.99.99.99:9"),
        "{err}"
    );
    // The kernel refuses a masquerading IPv6 real server behind an IPv4 service.
    let mixed = c
        .add_destination(&key, &Destination::masq(sa("[fd00::1]:80")))
        .unwrap_err();
    assert_eq!(mixed.kind(), ErrorKind::InvalidArgument, "{mixed}");
    // Caught before sending: weights beyond the kernel's int.
    let heavy = Destination::masq(sa("10.1.1.2:1")).with_weight(u32::MAX);
    assert_eq!(
        kind(c.add_destination(&key, &heavy)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        sh("ipvsadm", &["-Sn"]),
        before,
        "failed operations changed nothing"
    );
    assert_eq!(dumped(&mut c), want);

    // A batch with good and bad operations: one verdict each, in order, and
    // the good ones take effect.
    let fresh_key = ServiceKey::udp(sa("10.13.0.1:53"));
    let ops = vec![
        Op::AddService(Service::new(fresh_key, Scheduler::RoundRobin)),
        Op::AddService(want[0].0.clone()),
        Op::AddDestination(fresh_key, Destination::masq(sa("10.23.0.1:53"))),
        Op::DeleteService(missing),
        Op::AddDestination(fresh_key, Destination::masq(sa("10.23.0.2:53"))),
    ];
    let kinds: Vec<Option<ErrorKind>> = c
        .apply(&ops)
        .unwrap()
        .into_iter()
        .map(|r| r.err().map(|e| e.kind()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            None,
            Some(ErrorKind::Exists),
            None,
            Some(ErrorKind::NoSuchService),
            None
        ]
    );
    let saved = sh("ipvsadm", &["-Sn"]);
    assert!(
        saved.contains("-a -u 10.13.0.1:53 -r 10.23.0.2:53 -m -w 1"),
        "{saved}"
    );
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_large_tables_dump_completely() {
    let mut c = fresh();
    let mut ops = Vec::new();
    let mut want = Vec::new();
    for i in 0..3000u32 {
        let key = ServiceKey::tcp(SocketAddr::new(
            IpAddr::from([10, 100 + (i / 250) as u8, (i % 250) as u8, 1]),
            80,
        ));
        let svc = Service::new(key, Scheduler::RoundRobin);
        ops.push(Op::AddService(svc.clone()));
        let mut dests = Vec::new();
        for j in 0..8u8 {
            let d = Destination::masq(SocketAddr::new(
                IpAddr::from([10, 200 + (i / 250) as u8, (i % 250) as u8, j + 1]),
                8080,
            ));
            ops.push(Op::AddDestination(key, d));
            dests.push(d);
        }
        want.push((svc, dests));
    }
    let results = c.apply(&ops).unwrap();
    assert_eq!(results.len(), ops.len());
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(dumped(&mut c), sorted(want));
    let lines = sh("ipvsadm", &["-Sn"]).lines().count();
    assert_eq!(lines, 3000 * 9);
    c.zero(None).unwrap();
    c.flush().unwrap();
    assert!(c.services().unwrap().is_empty());
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_dummy_link_and_addresses() {
    let mut r = RtnlClient::open().unwrap();
    let link = r.ensure_dummy("kube-ipvs0").unwrap();
    let shown = sh("ip", &["-d", "-o", "link", "show", "kube-ipvs0"]);
    assert!(shown.contains("dummy"), "{shown}");
    assert!(
        shown.starts_with(&format!("{}: kube-ipvs0:", link.index)),
        "{shown}"
    );
    // Ensuring again adopts the same link.
    assert_eq!(r.ensure_dummy("kube-ipvs0").unwrap().index, link.index);

    let addrs: Vec<Address> = (1..=1000u32)
        .map(|i| {
            Address::host(
                link.index,
                IpAddr::from([10, 96, (i / 250) as u8, (i % 250) as u8 + 1]),
            )
        })
        .chain([Address::host(link.index, "fd00:96::1".parse().unwrap())])
        .collect();
    let ops: Vec<AddrOp> = addrs.iter().map(|a| AddrOp::Add(*a)).collect();
    assert!(r.apply_addresses(&ops).unwrap().iter().all(Result::is_ok));
    let listed = sh("ip", &["-o", "addr", "show", "dev", "kube-ipvs0"]);
    assert_eq!(listed.lines().count(), 1001, "{listed}");
    assert!(listed.contains("inet 10.96.0.2/32"), "{listed}");
    assert!(listed.contains("inet6 fd00:96::1/128"), "{listed}");
    let mut ours = r.link_addresses(link.index).unwrap();
    ours.sort();
    let mut want = addrs.clone();
    want.sort();
    assert_eq!(ours, want);

    // Typed errors.
    assert_eq!(
        r.add_address(addrs[0]).unwrap_err().kind(),
        ErrorKind::Exists
    );
    let absent = Address::host(link.index, "10.97.0.1".parse().unwrap());
    assert_eq!(
        r.delete_address(absent).unwrap_err().kind(),
        ErrorKind::NoSuchAddress
    );
    sh(
        "ip",
        &[
            "link",
            "add",
            "sluice-veth0",
            "type",
            "veth",
            "peer",
            "name",
            "sluice-veth1",
        ],
    );
    assert_eq!(
        r.ensure_dummy("sluice-veth0").unwrap_err().kind(),
        ErrorKind::Exists
    );
    assert_eq!(r.link("no-such-link").unwrap(), None);
    assert_eq!(
        r.ensure_dummy("this-name-is-too-long").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    // Removal, batched, leaves nothing.
    let ops: Vec<AddrOp> = addrs.iter().map(|a| AddrOp::Delete(*a)).collect();
    assert!(r.apply_addresses(&ops).unwrap().iter().all(Result::is_ok));
    assert!(
        sh("ip", &["-o", "addr", "show", "dev", "kube-ipvs0"])
            .trim()
            .is_empty()
    );
    r.delete_link(link.index).unwrap();
    assert!(r.link("kube-ipvs0").unwrap().is_none());
}
