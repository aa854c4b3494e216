//! Incremental planning: each Service is re-planned only when it or its
//! EndpointSlices change (every Service when the node's facts change), and
//! its new plan is applied to the node's merged [`DesiredState`] as a
//! delta, so one endpoint change costs O(that Service), not O(cluster).
//!
//! The merged state must equal [`DesiredState::from_plans`] over every
//! Service's plan; a test below checks that over random change sequences.
//! What keeps the delta exact:
//! - each Service's contribution is remembered as keys only (which virtual
//!   servers, set entries, addresses, out-filters, health-check ports), so
//!   it can be taken out again without the old objects;
//! - members of the unions (sets, addresses, out-filters) that more than
//!   one Service contributes carry a count of the extra contributors, so the
//!   member leaves only with its last contributor;
//! - a virtual server claimed by two Services keeps every claim, and the
//!   winner is re-decided with the same rule as the full merge whenever a
//!   claim comes or goes.

use std::collections::hash_map::Entry as HashEntry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipvs_sys::ServiceKey;

use crate::model::{Admission, Problem};
use crate::plan::{
    DesiredState, Frontend, HealthCheck, LbOutFilter, NodeFacts, PlannerConfig, ServicePlan,
    SetEntry, SetName, VirtualServer, plan_service, sort_problems,
};
use crate::source::{Dirty, ObjectKey, Snapshot};
use k8s_openapi::api::core::v1::Service;

/// What a re-plan changed, for the reconcilers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replanned {
    /// Virtual servers whose desired state differs.
    pub virtual_servers: BTreeSet<ServiceKey>,
    /// Whether set contents, out-filters or health checks changed.
    pub netfilter: bool,
    /// Whether the addresses to bind changed.
    pub addresses: bool,
    /// Whether everything was re-planned.
    pub everything: bool,
}

/// What one Service put into the merged state, as keys.
#[derive(Debug, Default, PartialEq, Eq)]
struct Contribution {
    virtual_servers: Vec<(ServiceKey, Frontend)>,
    sets: Vec<(SetName, SetEntry)>,
    addresses: Vec<IpAddr>,
    out_filters: Vec<LbOutFilter>,
    health_checks: Vec<u16>,
    problems: Vec<Problem>,
}

/// One Service's claim on a contested virtual server.
#[derive(Debug, Clone)]
struct Claim {
    frontend: Frontend,
    server: VirtualServer,
}

/// The claim that keeps a contested virtual server: the smaller frontend,
/// then the Service first in (namespace, name) order — the rule of
/// [`DesiredState::from_plans`].
fn winner(claims: &BTreeMap<ObjectKey<Service>, Claim>) -> Option<(&ObjectKey<Service>, &Claim)> {
    claims.iter().min_by_key(|(k, c)| (c.frontend, *k))
}

/// Counts of extra contributors to members of a union: a member is stored
/// once in the merged state, and here only while two or more Services
/// contribute it.
#[derive(Debug)]
struct Shared<T>(HashMap<T, u32>);

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<T: std::hash::Hash + Eq> Shared<T> {
    /// Records one more contributor of a member that is already present.
    fn add(&mut self, member: T) {
        *self.0.entry(member).or_insert(0) += 1;
    }

    /// Drops one contributor; true if it was the last (remove the member).
    fn release(&mut self, member: T) -> bool {
        match self.0.entry(member) {
            HashEntry::Occupied(mut o) => {
                *o.get_mut() -= 1;
                if *o.get() == 0 {
                    o.remove();
                }
                false
            }
            HashEntry::Vacant(_) => true,
        }
    }
}

/// The per-Service contributions and their merged union.
#[derive(Debug, Default)]
pub struct Planning {
    contributions: BTreeMap<ObjectKey<Service>, Contribution>,
    rejected: BTreeMap<ObjectKey<Service>, Vec<Problem>>,
    facts: Option<NodeFacts>,
    desired: Arc<DesiredState>,
    /// Every claim on virtual servers that two or more Services claim.
    contested: BTreeMap<ServiceKey, BTreeMap<ObjectKey<Service>, Claim>>,
    /// Every claim on each health-check port (usually one).
    health_claims: BTreeMap<u16, BTreeMap<ObjectKey<Service>, HealthCheck>>,
    shared_sets: Shared<(SetName, SetEntry)>,
    shared_addresses: Shared<IpAddr>,
    shared_filters: Shared<LbOutFilter>,
}

fn plan_one(
    snap: &Snapshot,
    key: &ObjectKey<Service>,
    facts: &NodeFacts,
    cfg: &PlannerConfig,
) -> Result<Option<ServicePlan>, Vec<Problem>> {
    let Some(entry) = snap.services.get(key) else {
        return Ok(None);
    };
    let view = match &entry.admission {
        Admission::Accepted(v) => v,
        Admission::Ignored(_) => return Ok(None),
        Admission::Rejected(p) => return Err(vec![p.clone()]),
    };
    let mut slice_problems = Vec::new();
    let slices = snap.slices_of(key).filter_map(|s| match &s.admission {
        Admission::Accepted(v) => Some(v),
        Admission::Ignored(_) => None,
        Admission::Rejected(p) => {
            slice_problems.push(p.clone());
            None
        }
    });
    let mut plan = plan_service(view, slices, facts, cfg);
    plan.problems.extend(slice_problems);
    Ok(Some(plan))
}

impl Planning {
    /// The current desired state of the node, shared (syncs run on another
    /// thread; a 100,000-endpoint state is not cheap to copy).
    pub fn desired(&self) -> Arc<DesiredState> {
        self.desired.clone()
    }

    /// Every problem: each Service's own, conflicts between Services, and
    /// Services rejected as a whole.
    pub fn problems(&self) -> Vec<Problem> {
        let mut all: Vec<Problem> = self
            .contributions
            .values()
            .flat_map(|c| c.problems.iter().cloned())
            .collect();
        for (key, claims) in &self.contested {
            let Some((wk, w)) = winner(claims) else {
                continue;
            };
            for (lk, l) in claims.iter().filter(|(k, _)| *k != wk) {
                all.push(Problem::service(
                    &lk.namespace,
                    &lk.name,
                    format!(
                        "virtual server {key} ({} of port {:?}) is also claimed by \
                         Service {}/{} (as its {}), which keeps it",
                        l.frontend, l.server.owner.port_name, wk.namespace, wk.name, w.frontend
                    ),
                ));
            }
        }
        for (port, claims) in &self.health_claims {
            let mut it = claims.keys();
            let Some(w) = it.next() else { continue };
            for l in it {
                all.push(Problem::service(
                    &l.namespace,
                    &l.name,
                    format!(
                        "healthCheckNodePort {port} is also used by Service {}/{}, which keeps it",
                        w.namespace, w.name
                    ),
                ));
            }
        }
        sort_problems(&mut all);
        all.extend(self.rejected.values().flatten().cloned());
        all
    }

    /// Re-plans what `dirty` says changed (everything if the node facts
    /// differ from the last plan's) and returns what it means for the kernel.
    pub fn update(
        &mut self,
        snap: &Snapshot,
        dirty: &Dirty,
        facts: NodeFacts,
        cfg: &PlannerConfig,
    ) -> Replanned {
        let everything = self.facts.as_ref() != Some(&facts);
        let mut out = Replanned {
            everything,
            ..Replanned::default()
        };
        // Desired virtual servers before the change, for the keys touched,
        // so only real differences reach the reconciler.
        let mut before: BTreeMap<ServiceKey, Option<VirtualServer>> = BTreeMap::new();
        let keys: BTreeSet<ObjectKey<Service>> = if everything {
            // Start over: cheaper than removing every contribution, and the
            // reconciler looks at everything anyway.
            let old = std::mem::take(self);
            before = old
                .desired
                .virtual_servers
                .iter()
                .map(|(k, v)| (*k, Some(v.clone())))
                .collect();
            out.netfilter = true;
            out.addresses = true;
            let mut all: BTreeSet<ObjectKey<Service>> = snap.services.keys().cloned().collect();
            all.extend(old.contributions.into_keys());
            all
        } else {
            dirty.services.clone()
        };
        for key in &keys {
            let (netfilter, addresses) = self.replan(snap, key, &facts, cfg, &mut before);
            out.netfilter |= netfilter;
            out.addresses |= addresses;
        }
        for (k, old) in before {
            if self.desired.virtual_servers.get(&k) != old.as_ref() {
                out.virtual_servers.insert(k);
            }
        }
        self.facts = Some(facts);
        out
    }

    /// Re-plans one Service and applies the difference to the merged state.
    /// Records the previous value of every virtual server it touches in
    /// `before`; returns whether netfilter inputs and bound addresses changed.
    fn replan(
        &mut self,
        snap: &Snapshot,
        key: &ObjectKey<Service>,
        facts: &NodeFacts,
        cfg: &PlannerConfig,
        before: &mut BTreeMap<ServiceKey, Option<VirtualServer>>,
    ) -> (bool, bool) {
        self.rejected.remove(key);
        let plan = match plan_one(snap, key, facts, cfg) {
            Ok(p) => p,
            Err(problems) => {
                self.rejected.insert(key.clone(), problems);
                None
            }
        };
        let old = self.contributions.remove(key).unwrap_or_default();
        let Some(plan) = plan else {
            return self.withdraw(key, &old, before, true, true);
        };
        let ServicePlan {
            state,
            frontends,
            problems,
            ..
        } = plan;
        let new = Contribution {
            virtual_servers: state
                .virtual_servers
                .keys()
                .map(|k| {
                    (
                        *k,
                        frontends.get(k).copied().unwrap_or(Frontend::ExternalIp),
                    )
                })
                .collect(),
            sets: state
                .sets
                .iter()
                .flat_map(|(n, entries)| entries.iter().map(move |e| (*n, *e)))
                .collect(),
            addresses: state.bound_addresses.iter().copied().collect(),
            out_filters: state.lb_out_filters.iter().copied().collect(),
            health_checks: state.health_checks.keys().copied().collect(),
            problems,
        };
        // Unchanged parts stay as they are: an endpoint change touches its
        // virtual servers and one set, nothing else.
        let sets_changed = old.sets != new.sets
            || old.out_filters != new.out_filters
            || old.health_checks != new.health_checks
            || state
                .health_checks
                .iter()
                .any(|(p, hc)| self.health_claims.get(p).and_then(|c| c.get(key)) != Some(hc));
        let addresses_changed = old.addresses != new.addresses;
        self.withdraw(key, &old, before, sets_changed, addresses_changed);
        self.contribute(key, &new, state, before, sets_changed, addresses_changed);
        self.contributions.insert(key.clone(), new);
        (sets_changed, addresses_changed)
    }

    /// Takes a Service's contribution out of the merged state (virtual
    /// servers always; sets, out-filters and health checks only if
    /// `netfilter`; addresses only if `addresses`).
    fn withdraw(
        &mut self,
        key: &ObjectKey<Service>,
        old: &Contribution,
        before: &mut BTreeMap<ServiceKey, Option<VirtualServer>>,
        netfilter: bool,
        addresses: bool,
    ) -> (bool, bool) {
        let state = Arc::make_mut(&mut self.desired);
        for (vk, _) in &old.virtual_servers {
            before
                .entry(*vk)
                .or_insert_with(|| state.virtual_servers.get(vk).cloned());
            let Some(claims) = self.contested.get_mut(vk) else {
                state.virtual_servers.remove(vk);
                continue;
            };
            claims.remove(key);
            match winner(claims) {
                Some((_, w)) => {
                    state.virtual_servers.insert(*vk, w.server.clone());
                }
                None => {
                    state.virtual_servers.remove(vk);
                }
            }
            if claims.len() < 2 {
                self.contested.remove(vk);
            }
        }
        if netfilter {
            for (name, entry) in &old.sets {
                if self.shared_sets.release((*name, *entry))
                    && let Some(set) = state.sets.get_mut(name)
                {
                    set.remove(entry);
                    if set.is_empty() {
                        state.sets.remove(name);
                    }
                }
            }
            for f in &old.out_filters {
                if self.shared_filters.release(*f) {
                    state.lb_out_filters.remove(f);
                }
            }
            for port in &old.health_checks {
                let Some(claims) = self.health_claims.get_mut(port) else {
                    continue;
                };
                claims.remove(key);
                match claims.values().next() {
                    Some(hc) => {
                        state.health_checks.insert(*port, hc.clone());
                    }
                    None => {
                        state.health_checks.remove(port);
                        self.health_claims.remove(port);
                    }
                }
            }
        }
        if addresses {
            for a in &old.addresses {
                if self.shared_addresses.release(*a) {
                    state.bound_addresses.remove(a);
                }
            }
        }
        (
            netfilter
                && !(old.sets.is_empty()
                    && old.out_filters.is_empty()
                    && old.health_checks.is_empty()),
            addresses && !old.addresses.is_empty(),
        )
    }

    /// Adds a Service's plan to the merged state (the parts selected as in
    /// [`Self::withdraw`]).
    fn contribute(
        &mut self,
        key: &ObjectKey<Service>,
        new: &Contribution,
        plan: DesiredState,
        before: &mut BTreeMap<ServiceKey, Option<VirtualServer>>,
        netfilter: bool,
        addresses: bool,
    ) {
        let state = Arc::make_mut(&mut self.desired);
        let frontends: BTreeMap<ServiceKey, Frontend> =
            new.virtual_servers.iter().copied().collect();
        for (vk, server) in plan.virtual_servers {
            before
                .entry(vk)
                .or_insert_with(|| state.virtual_servers.get(&vk).cloned());
            let claim = Claim {
                frontend: frontends[&vk],
                server,
            };
            let claims = match self.contested.get_mut(&vk) {
                Some(claims) => claims,
                None => match state.virtual_servers.get(&vk) {
                    None => {
                        state.virtual_servers.insert(vk, claim.server);
                        continue;
                    }
                    Some(held) => {
                        // A second claimant: remember both claims.
                        let holder: ObjectKey<Service> =
                            ObjectKey::new(held.owner.namespace.clone(), held.owner.name.clone());
                        let frontend = self
                            .contributions
                            .get(&holder)
                            .and_then(|c| c.virtual_servers.iter().find(|(k, _)| *k == vk))
                            .map_or(Frontend::ExternalIp, |(_, f)| *f);
                        let held = Claim {
                            frontend,
                            server: held.clone(),
                        };
                        self.contested.entry(vk).or_default().insert(holder, held);
                        self.contested.get_mut(&vk).expect("just inserted")
                    }
                },
            };
            claims.insert(key.clone(), claim);
            if let Some((_, w)) = winner(claims) {
                state.virtual_servers.insert(vk, w.server.clone());
            }
        }
        if netfilter {
            for (name, entries) in plan.sets {
                let set = state.sets.entry(name).or_default();
                for e in entries {
                    if !set.insert(e) {
                        self.shared_sets.add((name, e));
                    }
                }
                if set.is_empty() {
                    state.sets.remove(&name);
                }
            }
            for f in plan.lb_out_filters {
                if !state.lb_out_filters.insert(f) {
                    self.shared_filters.add(f);
                }
            }
            for (port, hc) in plan.health_checks {
                let claims = self.health_claims.entry(port).or_default();
                claims.insert(key.clone(), hc);
                if let Some(first) = claims.values().next() {
                    state.health_checks.insert(port, first.clone());
                }
            }
        }
        if addresses {
            for a in plan.bound_addresses {
                if !state.bound_addresses.insert(a) {
                    self.shared_addresses.add(a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The incremental merge against the full one, over random sequences of
    //! Services and EndpointSlices that collide on purpose (shared ClusterIPs,
    //! externalIPs, NodePorts and health-check ports, shared endpoints).

    use super::*;
    use crate::plan::FullPlan;
    use crate::source::{Kind, Object, SourceEvent};
    use serde_json::json;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

    fn service(rng: &mut Rng, name: &str) -> Object {
        let ty = ["ClusterIP", "NodePort", "LoadBalancer"][rng.below(3) as usize];
        let mut ports =
            vec![json!({"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080})];
        if rng.chance(40) {
            ports.push(json!({"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}));
        }
        if ty != "ClusterIP" {
            for p in &mut ports {
                p["nodePort"] = json!(30000 + rng.below(2));
            }
        }
        let mut spec = json!({
            "type": ty,
            "clusterIP": format!("10.96.0.{}", 1 + rng.below(4)),
            "ports": ports,
        });
        if rng.chance(40) {
            spec["externalIPs"] = json!([format!("192.0.2.{}", 1 + rng.below(2))]);
        }
        if ty == "LoadBalancer" && rng.chance(50) {
            spec["externalTrafficPolicy"] = json!("Local");
            spec["healthCheckNodePort"] = json!(32000 + rng.below(2));
        }
        if rng.chance(30) {
            spec["sessionAffinity"] = json!("ClientIP");
        }
        if rng.chance(10) {
            spec["clusterIP"] = json!("not-an-ip");
        }
        let mut svc = json!({
            "metadata": {"namespace": "ns", "name": name},
            "spec": spec,
        });
        if ty == "LoadBalancer" && rng.chance(60) {
            svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": format!("203.0.113.{}", 1 + rng.below(2))}]}});
            if rng.chance(50) {
                svc["spec"]["loadBalancerSourceRanges"] = json!(["198.51.100.0/24"]);
            }
        }
        Object::service(&serde_json::from_value(svc).unwrap(), None)
    }

    fn slice(rng: &mut Rng, service: &str, n: u64) -> Object {
        let endpoints: Vec<_> = (0..rng.below(4))
            .map(|_| {
                json!({
                    "addresses": [format!("10.244.0.{}", 1 + rng.below(6))],
                    "nodeName": if rng.chance(50) { "node-1" } else { "node-2" },
                    "conditions": {"ready": rng.chance(70), "serving": true, "terminating": rng.chance(30)},
                })
            })
            .collect();
        let s = json!({
            "metadata": {"namespace": "ns", "name": format!("{service}-{n}"),
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": endpoints,
        });
        Object::endpoint_slice(&serde_json::from_value(s).unwrap(), None)
    }

    fn facts(rng: &mut Rng) -> NodeFacts {
        let mut addresses = BTreeSet::from(["192.168.1.10".parse().unwrap()]);
        if rng.chance(50) {
            addresses.insert("192.0.2.1".parse().unwrap());
        }
        NodeFacts {
            name: "node-1".into(),
            addresses,
            ..NodeFacts::default()
        }
    }

    fn without_empty_sets(mut s: DesiredState) -> DesiredState {
        s.sets.retain(|_, v| !v.is_empty());
        s
    }

    /// What the full merge says for the snapshot.
    fn reference(
        snap: &Snapshot,
        f: &NodeFacts,
        cfg: &PlannerConfig,
    ) -> (DesiredState, Vec<Problem>) {
        let mut plans = Vec::new();
        let mut rejected = Vec::new();
        for key in snap.services.keys() {
            match plan_one(snap, key, f, cfg) {
                Ok(Some(p)) => plans.push(p),
                Ok(None) => {}
                Err(p) => rejected.extend(p),
            }
        }
        let FullPlan {
            state,
            mut problems,
        } = DesiredState::from_plans(&plans);
        problems.extend(rejected);
        (without_empty_sets(state), problems)
    }

    #[test]
    fn incremental_merge_equals_the_full_merge() {
        let cfg = PlannerConfig::default();
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut snap = Snapshot::default();
            let mut planning = Planning::default();
            let mut f = facts(&mut rng);
            let mut d = Dirty::default();
            for kind in [Kind::Service, Kind::EndpointSlice, Kind::Node] {
                d.absorb(snap.apply(SourceEvent::Replace(kind, vec![])));
            }
            for step in 0..150 {
                let name = NAMES[rng.below(NAMES.len() as u64) as usize];
                let ev = match rng.below(10) {
                    0..=3 => SourceEvent::Apply(service(&mut rng, name)),
                    4 => SourceEvent::Delete(service(&mut rng, name)),
                    5..=8 => {
                        let n = rng.below(2);
                        SourceEvent::Apply(slice(&mut rng, name, n))
                    }
                    _ => {
                        let n = rng.below(2);
                        SourceEvent::Delete(slice(&mut rng, name, n))
                    }
                };
                d.absorb(snap.apply(ev));
                if rng.chance(5) {
                    f = facts(&mut rng);
                }
                // Several events per plan now and then, as the rate limit does.
                if rng.chance(30) {
                    continue;
                }
                let old = planning.desired();
                let r = planning.update(&snap, &std::mem::take(&mut d), f.clone(), &cfg);
                let new = planning.desired();
                let (want, problems) = reference(&snap, &f, &cfg);
                assert_eq!(
                    without_empty_sets((*new).clone()),
                    want,
                    "seed {seed} step {step}: merged state differs"
                );
                assert_eq!(planning.problems(), problems, "seed {seed} step {step}");
                // The reconcilers hear about every difference.
                for (k, v) in old.virtual_servers.iter().chain(new.virtual_servers.iter()) {
                    if old.virtual_servers.get(k) != new.virtual_servers.get(k) {
                        assert!(
                            r.virtual_servers.contains(k),
                            "seed {seed} step {step}: {k} changed silently ({v:?})"
                        );
                    }
                }
                if old.sets != new.sets
                    || old.lb_out_filters != new.lb_out_filters
                    || old.health_checks != new.health_checks
                {
                    assert!(
                        r.netfilter,
                        "seed {seed} step {step}: netfilter change not flagged"
                    );
                }
                if old.bound_addresses != new.bound_addresses {
                    assert!(
                        r.addresses,
                        "seed {seed} step {step}: address change not flagged"
                    );
                }
            }
        }
    }
}
