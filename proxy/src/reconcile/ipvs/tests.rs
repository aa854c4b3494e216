use super::*;
use crate::plan::ServicePortRef;
use ipvs_sys::{Destination, Scheduler, Service, Stats};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn vs(key: ServiceKey, dests: &[&str]) -> VirtualServer {
    VirtualServer {
        service: Service::new(key, Scheduler::RoundRobin),
        destinations: dests
            .iter()
            .map(|d| (sa(d), Destination::masq(sa(d))))
            .collect(),
        owner: ServicePortRef {
            namespace: "default".into(),
            name: "svc".into(),
            port_name: String::new(),
        },
    }
}

fn state(v: &VirtualServer, conns: &[(&str, u32)]) -> (ServiceState, Vec<DestinationState>) {
    let mut dests: Vec<DestinationState> = v
        .destinations
        .values()
        .map(|d| DestinationState {
            destination: *d,
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            stats: Stats::default(),
        })
        .collect();
    for (addr, n) in conns {
        if let Some(d) = dests.iter_mut().find(|d| d.destination.addr == sa(addr)) {
            d.active_conns = *n;
        }
    }
    (
        ServiceState {
            service: v.service.clone(),
            stats: Stats::default(),
        },
        dests,
    )
}

struct World {
    dummy: BTreeSet<IpAddr>,
    node: BTreeSet<IpAddr>,
    exclude: Vec<IpNet>,
}

impl World {
    fn new() -> Self {
        Self {
            dummy: ["10.96.0.1", "10.96.0.2"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            node: ["192.168.1.10"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            exclude: vec!["10.96.0.2/32".parse().unwrap()],
        }
    }
    fn own(&self) -> Ownership<'_> {
        Ownership {
            dummy_addrs: &self.dummy,
            node_addrs: &self.node,
            exclude: &self.exclude,
        }
    }
}

const GRACE: Duration = Duration::from_secs(30);

#[test]
fn empty_kernel_gets_everything_and_matching_kernel_gets_nothing() {
    let w = World::new();
    let key = ServiceKey::tcp(sa("10.96.0.1:80"));
    let desired: BTreeMap<_, _> = [(key, vs(key, &["10.244.0.1:8080", "10.244.0.2:8080"]))].into();
    let now = Instant::now();
    let d = diff(
        &desired,
        &Actual::new(),
        Scope::Full,
        w.own(),
        &DrainQueue::default(),
        now,
        GRACE,
    );
    assert_eq!(d.ops.len(), 3);
    assert!(matches!(d.ops[0], Op::AddService(_)));
    let actual: Actual = [(key, state(&desired[&key], &[]))].into();
    let d = diff(
        &desired,
        &actual,
        Scope::Full,
        w.own(),
        &DrainQueue::default(),
        now,
        GRACE,
    );
    assert_eq!(
        d,
        Diff::default(),
        "a restart against a correct kernel changes nothing"
    );
}

#[test]
fn changed_scheduler_and_weight_are_updates() {
    let w = World::new();
    let key = ServiceKey::tcp(sa("10.96.0.1:80"));
    let mut want = vs(key, &["10.244.0.1:8080"]);
    let actual: Actual = [(key, state(&want, &[]))].into();
    want.service.scheduler = Scheduler::LeastConnection;
    want.destinations.values_mut().for_each(|d| d.weight = 2);
    let desired: BTreeMap<_, _> = [(key, want.clone())].into();
    let d = diff(
        &desired,
        &actual,
        Scope::Full,
        w.own(),
        &DrainQueue::default(),
        Instant::now(),
        GRACE,
    );
    assert_eq!(
        d.ops,
        vec![
            Op::UpdateService(want.service.clone()),
            Op::UpdateDestination(key, Destination::masq(sa("10.244.0.1:8080")).with_weight(2)),
        ]
    );
}

#[test]
fn removed_tcp_endpoint_with_connections_drains_then_goes() {
    let w = World::new();
    let key = ServiceKey::tcp(sa("10.96.0.1:80"));
    let old = vs(key, &["10.244.0.1:8080", "10.244.0.2:8080"]);
    let desired: BTreeMap<_, _> = [(key, vs(key, &["10.244.0.1:8080"]))].into();
    let now = Instant::now();
    let mut q = DrainQueue::default();
    // Connections open: weight 0 and drain.
    let actual: Actual = [(key, state(&old, &[("10.244.0.2:8080", 3)]))].into();
    let d = diff(&desired, &actual, Scope::Full, w.own(), &q, now, GRACE);
    assert_eq!(
        d.ops,
        vec![Op::UpdateDestination(
            key,
            Destination::masq(sa("10.244.0.2:8080")).with_weight(0)
        )]
    );
    assert_eq!(d.start_draining, vec![(key, sa("10.244.0.2:8080"))]);
    q.start(key, sa("10.244.0.2:8080"), now, GRACE);
    // Still connected, within the bound: nothing.
    let mut drained = old.clone();
    drained
        .destinations
        .get_mut(&sa("10.244.0.2:8080"))
        .unwrap()
        .weight = 0;
    let actual: Actual = [(key, state(&drained, &[("10.244.0.2:8080", 3)]))].into();
    let d = diff(
        &desired,
        &actual,
        Scope::Full,
        w.own(),
        &q,
        now + Duration::from_secs(5),
        GRACE,
    );
    assert!(d.ops.is_empty());
    // The bound passes: deleted even with connections.
    let d = diff(
        &desired,
        &actual,
        Scope::Full,
        w.own(),
        &q,
        now + GRACE,
        GRACE,
    );
    assert_eq!(
        d.ops,
        vec![Op::DeleteDestination(key, sa("10.244.0.2:8080"))]
    );
    // Connections reach zero before the bound: deleted.
    let actual: Actual = [(key, state(&drained, &[]))].into();
    let d = diff(
        &desired,
        &actual,
        Scope::Full,
        w.own(),
        &q,
        now + Duration::from_secs(1),
        GRACE,
    );
    assert_eq!(
        d.ops,
        vec![Op::DeleteDestination(key, sa("10.244.0.2:8080"))]
    );
    // The endpoint comes back while draining: weight restored, drain cancelled.
    let back: BTreeMap<_, _> = [(key, old.clone())].into();
    let actual: Actual = [(key, state(&drained, &[("10.244.0.2:8080", 3)]))].into();
    let d = diff(&back, &actual, Scope::Full, w.own(), &q, now, GRACE);
    assert_eq!(
        d.ops,
        vec![Op::UpdateDestination(
            key,
            Destination::masq(sa("10.244.0.2:8080"))
        )]
    );
    assert_eq!(d.stop_draining, vec![(key, sa("10.244.0.2:8080"))]);
}

#[test]
fn udp_and_idle_endpoints_go_at_once() {
    let w = World::new();
    let udp = ServiceKey::udp(sa("10.96.0.1:53"));
    let old = vs(udp, &["10.244.0.1:53", "10.244.0.2:53"]);
    let desired: BTreeMap<_, _> = [(udp, vs(udp, &["10.244.0.1:53"]))].into();
    let actual: Actual = [(udp, state(&old, &[("10.244.0.2:53", 9)]))].into();
    let d = diff(
        &desired,
        &actual,
        Scope::Full,
        w.own(),
        &DrainQueue::default(),
        Instant::now(),
        GRACE,
    );
    assert_eq!(d.ops, vec![Op::DeleteDestination(udp, sa("10.244.0.2:53"))]);
    assert_eq!(d.removed_udp, vec![(udp, sa("10.244.0.2:53"))]);
}

#[test]
fn only_our_stale_services_are_deleted() {
    let w = World::new();
    let ours = ServiceKey::tcp(sa("10.96.0.1:80"));
    let nodeport = ServiceKey::tcp(sa("192.168.1.10:30080"));
    let excluded = ServiceKey::tcp(sa("10.96.0.2:80"));
    let foreign = ServiceKey::tcp(sa("172.16.0.1:80"));
    let fwmark = ServiceKey::fwmark(ipvs_sys::AddressFamily::Ipv4, 7);
    let actual: Actual = [ours, nodeport, excluded, foreign, fwmark]
        .into_iter()
        .map(|k| (k, state(&vs(k, &[]), &[])))
        .collect();
    let d = diff(
        &BTreeMap::new(),
        &actual,
        Scope::Full,
        w.own(),
        &DrainQueue::default(),
        Instant::now(),
        GRACE,
    );
    assert_eq!(
        d.ops,
        vec![Op::DeleteService(ours), Op::DeleteService(nodeport)]
    );
}

#[test]
fn incremental_scope_touches_only_its_keys() {
    let w = World::new();
    let a = ServiceKey::tcp(sa("10.96.0.1:80"));
    let b = ServiceKey::tcp(sa("10.96.0.1:81"));
    let desired: BTreeMap<_, _> = [
        (a, vs(a, &["10.244.0.1:80"])),
        (b, vs(b, &["10.244.0.9:80"])),
    ]
    .into();
    let only_b: BTreeSet<_> = [b].into();
    let d = diff(
        &desired,
        &Actual::new(),
        Scope::Keys(&only_b),
        w.own(),
        &DrainQueue::default(),
        Instant::now(),
        GRACE,
    );
    assert_eq!(
        d.ops,
        vec![
            Op::AddService(desired[&b].service.clone()),
            Op::AddDestination(b, Destination::masq(sa("10.244.0.9:80")))
        ]
    );
}
