//! Programming a large IPVS table from empty and dumping it back: ipvs-sys
//! (pipelined batches) against `ipvsadm -R` and `ipvsadm -Sn` on the
//! identical rule set. Needs a kernel with IPVS (run it in the IPVS VM:
//! `bench/run ipvs-sync`).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Instant;

use ipvs_sys::{Destination, IpvsClient, Op, Scheduler, Service, ServiceKey, ipvsadm};

use crate::stats::{Samples, ratio};

struct Args {
    services: u32,
    dests: u32,
    rounds: u32,
    settle: u32,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        services: 10_000,
        dests: 10,
        rounds: 1,
        settle: 130,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v: u32 = it
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--services" => a.services = v,
            "--dests" => a.dests = v,
            "--rounds" => a.rounds = v.max(1),
            "--settle" => a.settle = v,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// The table: ClusterIP-like TCP services, each with `dests` NAT endpoints.
fn table(services: u32, dests: u32) -> Vec<ipvsadm::Entry> {
    (0..services)
        .map(|i| {
            let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i);
            let key = ServiceKey::tcp(SocketAddr::new(IpAddr::V4(vip), 80));
            let ds = (0..dests)
                .map(|j| {
                    let ep =
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + i * dests + j);
                    Destination::masq(SocketAddr::new(IpAddr::V4(ep), 8080))
                })
                .collect();
            (Service::new(key, Scheduler::RoundRobin), ds)
        })
        .collect()
}

fn ipvsadm(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new("ipvsadm")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("ipvsadm: {e}"))?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("ipvsadm {args:?} failed: {status}"))
}

/// Waits for the kernel's destination trash to expire (see `run`).
fn settle(secs: u32) {
    if secs > 0 {
        println!("  (waiting {secs} s for the IPVS destination trash to expire)");
        std::thread::sleep(std::time::Duration::from_secs(u64::from(secs)));
    }
}

/// Runs the comparison and prints a report.
pub fn run(args: &[String]) -> Result<(), String> {
    let a = parse(args)?;
    let entries = table(a.services, a.dests);
    let objects = a.services as usize * (1 + a.dests as usize);
    let rules = ipvsadm::render(&entries);
    let ops: Vec<Op> = entries
        .iter()
        .flat_map(|(s, ds)| {
            std::iter::once(Op::AddService(s.clone()))
                .chain(ds.iter().map(|d| Op::AddDestination(s.key, *d)))
        })
        .collect();
    let mut client = IpvsClient::open().map_err(|e| e.to_string())?;
    let (mut ours_prog, mut ours_dump, mut ours_dump_text) =
        (Samples::default(), Samples::default(), Samples::default());
    let (mut peer_prog, mut peer_dump) = (Samples::default(), Samples::default());
    println!(
        "ipvs-sync: {} services x {} destinations = {objects} objects, {} rounds",
        a.services, a.dests, a.rounds
    );
    for round in 1..=a.rounds {
        // ipvs-sys: program from empty, then dump.
        client.flush().map_err(|e| e.to_string())?;
        if round > 1 {
            settle(a.settle);
        }
        let t = Instant::now();
        let results = client.apply(&ops).map_err(|e| e.to_string())?;
        ours_prog.push(t.elapsed());
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(format!("ipvs-sys apply: {e}"));
        }
        let t = Instant::now();
        let dump = client.dump().map_err(|e| e.to_string())?;
        ours_dump.push(t.elapsed());
        let dests: usize = dump.iter().map(|(_, d)| d.len()).sum();
        if dump.len() + dests != objects {
            return Err(format!(
                "ipvs-sys dumped {} objects, wanted {objects}",
                dump.len() + dests
            ));
        }
        let t = Instant::now();
        let as_config: Vec<ipvsadm::Entry> = client
            .dump()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(s, d)| (s.service, d.into_iter().map(|d| d.destination).collect()))
            .collect();
        std::hint::black_box(ipvsadm::render(&as_config));
        ours_dump_text.push(t.elapsed());

        // The peer on the identical rules. Deleted real servers sit in the
        // kernel's destination trash for up to two minutes, and every add
        // scans that list: programming right after a flush of 100,000 real
        // servers is slowed by the flush, not by the tool. Let it empty.
        ipvsadm(&["-C"], None)?;
        settle(a.settle);
        let t = Instant::now();
        ipvsadm(&["-R"], Some(&rules))?;
        peer_prog.push(t.elapsed());
        let t = Instant::now();
        ipvsadm(&["-Sn"], None)?;
        peer_dump.push(t.elapsed());
        let check = client.services().map_err(|e| e.to_string())?.len();
        if check != a.services as usize {
            return Err(format!("ipvsadm -R left {check} services"));
        }
        println!(
            "  round {round}: program ipvs-sys {:.3} s vs ipvsadm -R {:.3} s; dump ipvs-sys {:.3} s vs ipvsadm -Sn {:.3} s",
            ours_prog.last().as_secs_f64(),
            peer_prog.last().as_secs_f64(),
            ours_dump.last().as_secs_f64(),
            peer_dump.last().as_secs_f64(),
        );
    }
    client.flush().map_err(|e| e.to_string())?;
    println!();
    println!("| step | ipvs-sys (min / median) | peer (min / median) | ratio (median) | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| program {objects} objects from empty | {} | ipvsadm -R: {} | {:.3} | <= 0.5 |",
        ours_prog.cell(),
        peer_prog.cell(),
        ratio(&ours_prog, &peer_prog)
    );
    println!(
        "| dump everything | {} | ipvsadm -Sn: {} | {:.3} | <= 0.5 |",
        ours_dump.cell(),
        peer_dump.cell(),
        ratio(&ours_dump, &peer_dump)
    );
    println!(
        "| dump + render as ipvsadm -S text | {} | ipvsadm -Sn: {} | {:.3} | (info) |",
        ours_dump_text.cell(),
        peer_dump.cell(),
        ratio(&ours_dump_text, &peer_dump)
    );
    Ok(())
}
