//! Putting per-Service plans together, and planning everything at once.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use ipvs_sys::ServiceKey;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{DesiredState, NodeFacts, PlannerConfig, ServicePlan, plan_service};
use crate::model::{Admission, EndpointSliceView, Problem, ServiceView, namespace_of};

/// The node's whole desired state and every problem found on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FullPlan {
    /// What the node should look like.
    pub state: DesiredState,
    /// Problems, ordered by object (namespace, name, kind).
    pub problems: Vec<Problem>,
}

impl DesiredState {
    /// The union of per-Service plans, with the plans' own problems and any
    /// conflicts between them. The result does not depend on the order of
    /// `plans`.
    ///
    /// Sets, addresses and out-filters are unions. Two Services claiming the
    /// same virtual server (say, one externalIP:port in both) conflict: the
    /// claim with the smaller [`Frontend`](super::Frontend) wins, then the
    /// Service first in (namespace, name) order; each loser gets a problem.
    /// A health-check port claimed twice goes to the Service first in
    /// (namespace, name) order.
    pub fn from_plans<'a>(plans: impl IntoIterator<Item = &'a ServicePlan>) -> FullPlan {
        let mut plans: Vec<&ServicePlan> = plans.into_iter().collect();
        plans.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut out = FullPlan::default();
        let state = &mut out.state;
        // Index of the plan owning each contested key, and every claimant.
        let mut contested: BTreeMap<ServiceKey, (usize, Vec<usize>)> = BTreeMap::new();
        let mut contested_hc: BTreeMap<u16, (usize, Vec<usize>)> = BTreeMap::new();
        let index: HashMap<(&str, &str), usize> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.namespace.as_str(), p.name.as_str()), i))
            .collect();
        // A claim without a recorded frontend ranks last.
        let rank = |i: usize, key: &ServiceKey| {
            let f = plans[i].frontends.get(key).copied();
            (f.unwrap_or(super::Frontend::ExternalIp), i)
        };
        for (i, p) in plans.iter().enumerate() {
            out.problems.extend(p.problems.iter().cloned());
            for (key, vs) in &p.state.virtual_servers {
                match state.virtual_servers.entry(*key) {
                    Entry::Vacant(v) => {
                        v.insert(vs.clone());
                    }
                    Entry::Occupied(mut o) => {
                        let holder = index
                            .get(&(
                                o.get().owner.namespace.as_str(),
                                o.get().owner.name.as_str(),
                            ))
                            .copied()
                            .unwrap_or(i);
                        if holder == i {
                            continue; // the same plan twice
                        }
                        let c = contested.entry(*key).or_insert((holder, vec![holder]));
                        c.1.push(i);
                        if rank(i, key) < rank(holder, key) {
                            o.insert(vs.clone());
                            c.0 = i;
                        }
                    }
                }
            }
            for (port, hc) in &p.state.health_checks {
                match state.health_checks.entry(*port) {
                    Entry::Vacant(v) => {
                        v.insert(hc.clone());
                    }
                    Entry::Occupied(o) => {
                        let holder = index
                            .get(&(o.get().namespace.as_str(), o.get().name.as_str()))
                            .copied()
                            .unwrap_or(i);
                        if holder != i {
                            // Plans are in name order: the holder stays.
                            contested_hc
                                .entry(*port)
                                .or_insert((holder, vec![holder]))
                                .1
                                .push(i);
                        }
                    }
                }
            }
            state
                .bound_addresses
                .extend(p.state.bound_addresses.iter().copied());
            for (name, entries) in &p.state.sets {
                state
                    .sets
                    .entry(*name)
                    .or_default()
                    .extend(entries.iter().copied());
            }
            state
                .lb_out_filters
                .extend(p.state.lb_out_filters.iter().copied());
        }
        let what = |i: usize, key: &ServiceKey| {
            plans[i]
                .frontends
                .get(key)
                .map(|f| f.to_string())
                .unwrap_or_else(|| "virtual server".into())
        };
        for (key, (winner, claimants)) in &contested {
            let w = plans[*winner];
            for &l in claimants.iter().filter(|&&c| c != *winner) {
                let port_name = plans[l]
                    .state
                    .virtual_servers
                    .get(key)
                    .map(|vs| vs.owner.port_name.as_str())
                    .unwrap_or_default();
                out.problems.push(Problem::service(
                    &plans[l].namespace,
                    &plans[l].name,
                    format!(
                        "virtual server {key} ({} of port {port_name:?}) is also claimed by \
                         Service {}/{} (as its {}), which keeps it",
                        what(l, key),
                        w.namespace,
                        w.name,
                        what(*winner, key)
                    ),
                ));
            }
        }
        for (port, (winner, claimants)) in &contested_hc {
            let w = plans[*winner];
            for &l in claimants.iter().filter(|&&c| c != *winner) {
                out.problems.push(Problem::service(
                    &plans[l].namespace,
                    &plans[l].name,
                    format!(
                        "healthCheckNodePort {port} is also used by Service {}/{}, which keeps it",
                        w.namespace, w.name
                    ),
                ));
            }
        }
        sort_problems(&mut out.problems);
        out
    }
}

/// Orders problems by object (namespace, name, kind), stably.
pub fn sort_problems(problems: &mut [Problem]) {
    // Stable: keeps each object's problems in the order they were found.
    problems.sort_by(|a, b| (&a.namespace, &a.name, a.kind).cmp(&(&b.namespace, &b.name, b.kind)));
}

type Id = (String, String);

/// Plans the whole node from Kubernetes objects: normalizes them
/// ([`ServiceView::from_k8s`], [`EndpointSliceView::from_k8s`]), plans
/// every Service ([`plan_service`]) and merges the plans
/// ([`DesiredState::from_plans`]).
///
/// Also reports objects rejected as a whole, duplicate objects (the first
/// is used), and EndpointSlices whose Service does not exist.
pub fn plan(
    services: &[Service],
    slices: &[EndpointSlice],
    node: &NodeFacts,
    config: &PlannerConfig,
) -> FullPlan {
    let proxy_name = config.service_proxy_name.as_deref();
    let mut problems = Vec::new();
    let mut views = Vec::with_capacity(services.len());
    // Services that exist but are not ours: their slices are not orphans.
    let mut not_ours: HashSet<Id> = HashSet::new();
    for svc in services {
        match ServiceView::from_k8s(svc, proxy_name) {
            Admission::Accepted(v) => views.push(v),
            Admission::Ignored(_) => {
                not_ours.insert((
                    namespace_of(&svc.metadata),
                    svc.metadata.name.clone().unwrap_or_default(),
                ));
            }
            Admission::Rejected(p) => {
                not_ours.insert((p.namespace.clone(), p.name.clone()));
                problems.push(p);
            }
        }
    }
    let mut slice_views = Vec::with_capacity(slices.len());
    for s in slices {
        match EndpointSliceView::from_k8s(s, proxy_name) {
            Admission::Accepted(v) => slice_views.push(v),
            Admission::Ignored(_) => {}
            Admission::Rejected(p) => problems.push(p),
        }
    }
    let mut out = plan_inner(&views, &slice_views, &not_ours, node, config);
    out.problems.extend(problems);
    sort_problems(&mut out.problems);
    out
}

/// [`plan`] for objects already normalized. EndpointSlices whose Service
/// is not among `services` are reported.
pub fn plan_views(
    services: &[ServiceView],
    slices: &[EndpointSliceView],
    node: &NodeFacts,
    config: &PlannerConfig,
) -> FullPlan {
    plan_inner(services, slices, &HashSet::new(), node, config)
}

fn plan_inner(
    services: &[ServiceView],
    slices: &[EndpointSliceView],
    not_ours: &HashSet<Id>,
    node: &NodeFacts,
    config: &PlannerConfig,
) -> FullPlan {
    let mut problems = Vec::new();
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSliceView>> = HashMap::new();
    let mut seen_slices: HashSet<(&str, &str)> = HashSet::new();
    for s in slices {
        if !seen_slices.insert((&s.namespace, &s.name)) {
            problems.push(Problem::endpoint_slice(
                &s.namespace,
                &s.name,
                "duplicate EndpointSlice; the first one is used",
            ));
            continue;
        }
        by_service
            .entry((&s.namespace, &s.service_name))
            .or_default()
            .push(s);
    }
    let mut plans = Vec::with_capacity(services.len());
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for svc in services {
        let id = (svc.namespace.as_str(), svc.name.as_str());
        if !seen.insert(id) {
            problems.push(Problem::service(
                &svc.namespace,
                &svc.name,
                "duplicate Service; the first one is used",
            ));
            continue;
        }
        let mine = by_service.get(&id).map(Vec::as_slice).unwrap_or_default();
        plans.push(plan_service(svc, mine.iter().copied(), node, config));
    }
    for ((ns, svc_name), list) in &by_service {
        if seen.contains(&(*ns, *svc_name))
            || not_ours.contains(&(ns.to_string(), svc_name.to_string()))
        {
            continue;
        }
        for s in list {
            problems.push(Problem::endpoint_slice(
                &s.namespace,
                &s.name,
                format!("Service {ns}/{svc_name} not found; slice ignored"),
            ));
        }
    }
    let mut out = DesiredState::from_plans(&plans);
    out.problems.extend(problems);
    sort_problems(&mut out.problems);
    out
}
