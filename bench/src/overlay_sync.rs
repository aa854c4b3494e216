//! The overlay's kernel side at scale, on the host in a private network
//! namespace (VXLAN needs no VM): 1,000 remote nodes programmed from an
//! empty `flannel.1` (neighbour, FDB entry and route each), read back with
//! dumps; then one node changing its VTEP MAC. The peer is flannel's
//! algorithm run through the same library: three replace requests per node,
//! one request per `sendmsg`, each waiting for its acknowledgement
//! (vishvananda/netlink's `NeighSet`/`RouteReplace`), so the comparison is
//! of batching and diffing, not of codecs.
//!
//! The end-to-end part runs the whole overlay (fake API server → kube-rs
//! watcher → planner → kernel side) in the same namespace: 1,000 Nodes with
//! flannel's annotations appear at once; the clock runs until dumps show
//! every entry; then one Node's `backend-data` changes its MAC.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipvs_sys::rtnl::{Change, FdbEntry, Neighbour, Route, RtnlClient};
use sluice_proxy::overlay::kernel::OverlayKernel;
use sluice_proxy::overlay::model::{DeviceSpec, DeviceState, MacAddr, RemoteNode, RemotePath};

use crate::stats::{Samples, ratio};
use e2e::control_loop;

/// Node `i`'s pod subnet `10.x.y.0/24` (x from 1, y below 250).
pub fn subnet_octets(i: u32) -> (u8, u8) {
    ((1 + i / 250) as u8, (i % 250) as u8)
}

/// Remote node `i` with VTEP MAC variant `variant`.
pub fn remote(i: u32, variant: u8) -> RemoteNode {
    let (x, y) = subnet_octets(i);
    RemoteNode {
        node: format!("node-{i}"),
        subnet: format!("10.{x}.{y}.0/24").parse().expect("valid subnet"),
        public_ip: IpAddr::from([172, 16, x, y]),
        path: RemotePath::Vxlan {
            vtep: IpAddr::from([10, x, y, 0]),
            mac: MacAddr([0x0e, variant, 0, 0, x, y]),
        },
    }
}

/// Creates the underlay (`u0`, 192.168.200.1/24) in the current namespace
/// and returns the spec of this node's device (subnet 10.255.0.0/24 inside
/// network 10.0.0.0/8).
pub fn underlay_and_spec() -> Result<DeviceSpec, String> {
    let sh = |cmd: &str| -> Result<(), String> {
        let st = std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .map_err(|e| format!("{cmd}: {e}"))?;
        st.success()
            .then_some(())
            .ok_or_else(|| format!("{cmd}: failed"))
    };
    sh("ip link set lo up")?;
    sh("ip link show u0 >/dev/null 2>&1 || ip link add u0 type veth peer name u1")?;
    sh("ip addr replace 192.168.200.1/24 dev u0 && ip link set u0 up && ip link set u1 up")?;
    let mut rtnl = RtnlClient::open().map_err(|e| e.to_string())?;
    let u0 = rtnl.link("u0").map_err(|e| e.to_string())?.ok_or("no u0")?;
    Ok(DeviceSpec {
        name: "flannel.1".into(),
        vni: 1,
        port: None,
        underlay_index: u0.index,
        local: IpAddr::from([192, 168, 200, 1]),
        mtu: 1450,
        learning: false,
        gbp: false,
        mac: MacAddr([0x0e, 0xff, 0, 0, 0, 1]),
        address: "10.255.0.0/32".parse().expect("valid address"),
        network: "10.0.0.0/8".parse().expect("valid network"),
    })
}

/// Moves this process into a new network namespace (before any thread is
/// started, so every later thread and child shares it).
pub fn enter_private_netns() -> Result<(), String> {
    // SAFETY: unshare affects only the calling thread's namespaces; nothing
    // else runs yet.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {} (run as root)",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Counts what the kernel holds for `device` (permanent neighbours,
/// permanent FDB entries, routes through it), with one dump each.
pub fn count_entries(rtnl: &mut RtnlClient, device: u32) -> Result<(usize, usize, usize), String> {
    let n = rtnl
        .neighbours(device)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|r| r.permanent())
        .count();
    let f = rtnl
        .fdb(device)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|r| r.permanent())
        .count();
    let r = rtnl
        .routes(false)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|r| r.route.oif == Some(device))
        .count();
    Ok((n, f, r))
}

/// Flannel's three writes for one node, as values.
fn flannel_changes(device: u32, r: &RemoteNode) -> [Change; 3] {
    let RemotePath::Vxlan { vtep, mac } = r.path else {
        unreachable!("the benchmark uses VXLAN nodes only")
    };
    [
        Change::ReplaceNeighbour(Neighbour {
            index: device,
            ip: vtep,
            mac: mac.0,
        }),
        Change::ReplaceFdb(FdbEntry {
            index: device,
            mac: mac.0,
            dst: r.public_ip,
        }),
        Change::ReplaceRoute(Route {
            dst: r.subnet.network(),
            prefix_len: r.subnet.prefix_len(),
            gateway: Some(vtep),
            oif: Some(device),
            onlink: true,
            metric: None,
        }),
    ]
}

/// A fresh device (the old one and everything through it deleted).
fn fresh_device(k: &mut OverlayKernel, spec: &DeviceSpec) -> Result<DeviceState, String> {
    k.remove_device(&spec.name).map_err(|e| e.to_string())?;
    k.ensure_device(spec).map_err(|e| e.to_string())
}

/// Runs the benchmark: `bench/run overlay-sync [--nodes N] [--rounds R]
/// [--kernel-only]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut nodes = 1000u32;
    let mut rounds = 3u32;
    let mut skip_e2e = false;
    let mut it = args.iter();
    while let Some(f) = it.next() {
        if f == "--kernel-only" {
            skip_e2e = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{f} needs a value"))?;
        match f.as_str() {
            "--nodes" => nodes = v.parse().map_err(|_| "bad --nodes")?,
            "--rounds" => rounds = v.parse().map_err(|_| "bad --rounds")?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if nodes > 250 * 250 {
        return Err("at most 62,500 nodes".into());
    }
    enter_private_netns()?;
    let spec = underlay_and_spec()?;
    let remotes: Vec<RemoteNode> = (0..nodes).map(|i| remote(i, 1)).collect();
    let mut k = OverlayKernel::open().map_err(|e| e.to_string())?;
    let mut reader = RtnlClient::open().map_err(|e| e.to_string())?;
    let want = (nodes as usize, nodes as usize, nodes as usize);

    let (mut ours, mut peer) = (Samples::default(), Samples::default());
    let (mut ours_readback, mut ours_change, mut peer_change) =
        (Samples::default(), Samples::default(), Samples::default());
    let (mut ours_ops, mut ours_sendmsgs, mut peer_sendmsgs) = (0, 0, 0);
    let (mut change_ops, mut restart_ops) = (0, usize::MAX);
    for round in 1..=rounds {
        // Alternate who goes first, each on a fresh device.
        for side in if round % 2 == 1 { [0, 1] } else { [1, 0] } {
            let dev = fresh_device(&mut k, &spec)?;
            if side == 0 {
                let c0 = k.counters();
                let t = Instant::now();
                let report = k.sync(&dev, &spec, &remotes).map_err(|e| e.to_string())?;
                let programmed = t.elapsed();
                let got = count_entries(&mut reader, dev.index)?;
                let readback = t.elapsed();
                if !report.failures.is_empty() || got != want {
                    return Err(format!("sync: {:?}, entries {got:?}", report.failures));
                }
                ours.push(programmed);
                ours_readback.push(readback);
                ours_ops = report.ops;
                ours_sendmsgs = k.counters().sendmsgs - c0.sendmsgs;
                // Restart: nothing to do.
                let again = k.sync(&dev, &spec, &remotes).map_err(|e| e.to_string())?;
                restart_ops = restart_ops.min(again.ops);
                // One node changes its MAC (removed old, added new).
                let i = nodes / 2;
                let (old, new) = (remote(i, 1), remote(i, 2));
                let t = Instant::now();
                let report = k
                    .apply_changes(&dev, std::slice::from_ref(&old), std::slice::from_ref(&new))
                    .map_err(|e| e.to_string())?;
                ours_change.push(t.elapsed());
                change_ops = report.ops;
            } else {
                let mut rtnl = RtnlClient::open().map_err(|e| e.to_string())?;
                let changes: Vec<Change> = remotes
                    .iter()
                    .flat_map(|r| flannel_changes(dev.index, r))
                    .collect();
                let t = Instant::now();
                let results = rtnl.apply_unbatched(&changes).map_err(|e| e.to_string())?;
                let took = t.elapsed();
                let got = count_entries(&mut reader, dev.index)?;
                if results.iter().any(Result::is_err) || got != want {
                    return Err(format!("peer: entries {got:?}"));
                }
                peer.push(took);
                peer_sendmsgs = rtnl.counters().sendmsgs;
                let i = nodes / 2;
                let changes = flannel_changes(dev.index, &remote(i, 2));
                let t = Instant::now();
                for r in rtnl.apply_unbatched(&changes).map_err(|e| e.to_string())? {
                    r.map_err(|e| e.to_string())?;
                }
                peer_change.push(t.elapsed());
            }
        }
        println!(
            "  round {round}: sluice {:.1} ms ({:.1} ms with read-back) vs one-request-per-op {:.1} ms; MAC change {:.3} ms vs {:.3} ms",
            ours.last().as_secs_f64() * 1e3,
            ours_readback.last().as_secs_f64() * 1e3,
            peer.last().as_secs_f64() * 1e3,
            ours_change.last().as_secs_f64() * 1e3,
            peer_change.last().as_secs_f64() * 1e3,
        );
    }
    k.remove_device(&spec.name).map_err(|e| e.to_string())?;
    let e2e = if skip_e2e {
        None
    } else {
        Some(control_loop(nodes, rounds, &mut reader)?)
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "| measure ({nodes} remote nodes) | sluice (min / median) | peer (min / median) | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| program every neighbour, FDB entry and route from empty | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.3} |",
        ms(ours.min()),
        ms(ours.median()),
        ms(peer.min()),
        ms(peer.median()),
        ratio(&ours, &peer)
    );
    println!(
        "| same, until read back with three dumps | {:.1} / {:.1} ms | | |",
        ms(ours_readback.min()),
        ms(ours_readback.median())
    );
    println!(
        "| netlink requests / sendmsg calls for it | {} / {} (+3 dumps) | {} / {} | |",
        ours_ops,
        ours_sendmsgs,
        3 * nodes,
        peer_sendmsgs
    );
    println!(
        "| changes on a restart with nothing to do | {restart_ops} | {} (flannel rewrites all) | |",
        3 * nodes
    );
    println!(
        "| one node's MAC changes → in the kernel | {:.3} / {:.3} ms, {change_ops} changes | {:.3} / {:.3} ms, 3 changes (old FDB entry left behind) | {:.3} |",
        ms(ours_change.min()),
        ms(ours_change.median()),
        ms(peer_change.min()),
        ms(peer_change.median()),
        ratio(&ours_change, &peer_change)
    );
    if let Some(e) = e2e {
        println!(
            "| end to end: {nodes} Nodes appear in the API server → every entry in the kernel | {:.1} / {:.1} ms, {} changes | flannel: {} requests, one per sendmsg | |",
            ms(e.full.min()),
            ms(e.full.median()),
            e.full_ops,
            3 * nodes
        );
        println!(
            "| end to end: one Node's backend-data MAC changes → new neighbour in the kernel | {:.1} / {:.1} ms, {} changes | flannel: 3 requests | |",
            ms(e.change.min()),
            ms(e.change.median()),
            e.change_ops
        );
    }
    Ok(())
}

mod e2e {
    //! The whole overlay loop against the fake API server.

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use ipnet::IpNet;
    use ipvs_sys::rtnl::RtnlClient;
    use serde_json::json;
    use sluice_proxy::netfilter::SystemRunner;
    use sluice_proxy::overlay::config::parse_net_conf;
    use sluice_proxy::overlay::dataplane::SystemDataplane;
    use sluice_proxy::overlay::model::{DeviceSpec, DeviceState, RemoteNode};
    use sluice_proxy::overlay::nodes::{NodeEvent, watch_nodes};
    use sluice_proxy::overlay::plan::UnderlayFacts;
    use sluice_proxy::overlay::run::{KernelReport, OverlayDataplane, OverlayOptions, run};
    use sluice_tests::fake_api::FakeApiServer;

    use super::{count_entries, subnet_octets};
    use crate::stats::Samples;

    /// What the end-to-end rounds measured.
    pub struct E2e {
        /// Nodes appear → every entry in the kernel.
        pub full: Samples,
        /// Netlink changes the loop made for that (last round).
        pub full_ops: usize,
        /// One MAC change → the new neighbour in the kernel.
        pub change: Samples,
        /// Netlink changes for it (last round).
        pub change_ops: usize,
    }

    /// The real dataplane, counting the changes it reports.
    struct Counting {
        inner: SystemDataplane,
        ops: Arc<AtomicUsize>,
    }

    impl Counting {
        fn count(
            &self,
            r: Result<KernelReport, sluice_proxy::overlay::OverlayError>,
        ) -> Result<KernelReport, sluice_proxy::overlay::OverlayError> {
            if let Ok(r) = &r {
                self.ops.fetch_add(r.ops, Ordering::SeqCst);
            }
            r
        }
    }

    impl OverlayDataplane for Counting {
        fn underlay(
            &mut self,
            iface: Option<&str>,
            public_ip: Option<std::net::IpAddr>,
            overlay: &[IpNet],
        ) -> Result<UnderlayFacts, sluice_proxy::overlay::OverlayError> {
            self.inner.underlay(iface, public_ip, overlay)
        }

        fn ensure_device(
            &mut self,
            spec: &DeviceSpec,
        ) -> Result<DeviceState, sluice_proxy::overlay::OverlayError> {
            self.inner.ensure_device(spec)
        }

        fn sync(
            &mut self,
            device: &DeviceState,
            spec: &DeviceSpec,
            remotes: &[RemoteNode],
        ) -> Result<KernelReport, sluice_proxy::overlay::OverlayError> {
            let r = self.inner.sync(device, spec, remotes);
            self.count(r)
        }

        fn apply_changes(
            &mut self,
            device: &DeviceState,
            removed: &[RemoteNode],
            added: &[RemoteNode],
        ) -> Result<KernelReport, sluice_proxy::overlay::OverlayError> {
            let r = self.inner.apply_changes(device, removed, added);
            self.count(r)
        }
    }

    fn node(i: u32, variant: u8) -> serde_json::Value {
        let (x, y) = subnet_octets(i);
        let cidr = format!("10.{x}.{y}.0/24");
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{i}"), "annotations": {
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/backend-data":
                    format!("{{\"VNI\":1,\"VtepMAC\":\"0e:{variant:02x}:00:00:{x:02x}:{y:02x}\"}}"),
                "flannel.alpha.coreos.com/public-ip": format!("172.16.{x}.{y}"),
                "flannel.alpha.coreos.com/kube-subnet-manager": "true",
            }},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        })
    }

    fn wait(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Result<Duration, String> {
        let t = Instant::now();
        while !done() {
            if t.elapsed() > Duration::from_secs(secs) {
                return Err(format!("timed out after {secs} s waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(t.elapsed())
    }

    /// `rounds` rounds of: a fresh API server with only this node, the
    /// overlay started, `nodes` Nodes applied at once, then one MAC change.
    pub fn control_loop(nodes: u32, rounds: u32, reader: &mut RtnlClient) -> Result<E2e, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut out = E2e {
            full: Samples::default(),
            full_ops: 0,
            change: Samples::default(),
            change_ops: 0,
        };
        let dir = std::env::temp_dir().join(format!("sluice-overlay-bench-{}", std::process::id()));
        for round in 1..=rounds {
            // The kube client and its tower buffer need the runtime's context.
            let _in_runtime = rt.enter();
            let api = rt.block_on(FakeApiServer::start());
            api.apply(&json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "bench-node"},
                "spec": {"podCIDR": "10.255.0.0/24", "podCIDRs": ["10.255.0.0/24"]},
            }));
            let ops = Arc::new(AtomicUsize::new(0));
            let dataplane = Counting {
                inner: SystemDataplane::open().map_err(|e| e.to_string())?,
                ops: ops.clone(),
            };
            let opts = OverlayOptions {
                conf: parse_net_conf(r#"{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}"#)
                    .map_err(|e| e.to_string())?,
                node_name: "bench-node".into(),
                iface: Some("u0".into()),
                public_ip: None,
                subnet_file: PathBuf::from(&dir).join("subnet.env"),
                cni_conflist: None,
                ip_masq: true,
                masquerade_mark: 0x4000,
                resync_period: Duration::from_secs(600),
            };
            let client = api.client();
            let task = rt.spawn(async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<NodeEvent>(256);
                let watch = tokio::spawn(watch_nodes(client.clone(), tx));
                let _ = run(opts, Some(client), rx, dataplane, SystemRunner::new()).await;
                watch.abort();
            });
            let mut index = None;
            wait("the overlay device", 60, || {
                index = reader.link("flannel.1").ok().flatten().map(|l| l.index);
                index.is_some()
            })?;
            let index = index.ok_or("no device")?;
            std::thread::sleep(Duration::from_millis(500));
            let ops0 = ops.load(Ordering::SeqCst);
            let want = (nodes as usize, nodes as usize, nodes as usize);
            let t = Instant::now();
            for i in 0..nodes {
                api.apply(&node(i, 1));
            }
            let applied = t.elapsed();
            wait("every entry", 300, || {
                count_entries(reader, index).is_ok_and(|got| got == want)
            })?;
            out.full.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(300));
            out.full_ops = ops.load(Ordering::SeqCst) - ops0;

            let i = nodes / 2;
            let (x, y) = subnet_octets(i);
            let new_mac = [0x0e, 2, 0, 0, x, y];
            let vtep = std::net::IpAddr::from([10, x, y, 0]);
            let ops1 = ops.load(Ordering::SeqCst);
            let t = Instant::now();
            api.apply(&node(i, 2));
            wait("the new MAC", 30, || {
                reader
                    .neighbours(index)
                    .is_ok_and(|ns| ns.iter().any(|n| n.ip == vtep && n.mac == Some(new_mac)))
            })?;
            out.change.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(300));
            out.change_ops = ops.load(Ordering::SeqCst) - ops1;
            println!(
                "  end-to-end round {round}: {nodes} Nodes applied in {:.1} ms, all entries in the kernel after {:.1} ms ({} changes); MAC change {:.1} ms ({} changes)",
                applied.as_secs_f64() * 1e3,
                out.full.last().as_secs_f64() * 1e3,
                out.full_ops,
                out.change.last().as_secs_f64() * 1e3,
                out.change_ops
            );
            task.abort();
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
            drop(api);
            let mut k =
                sluice_proxy::overlay::kernel::OverlayKernel::open().map_err(|e| e.to_string())?;
            k.remove_device("flannel.1").map_err(|e| e.to_string())?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(out)
    }
}
