//! Incremental planning: one cached [`ServicePlan`] per Service, re-planned
//! only when that Service or its EndpointSlices change (every Service when
//! the node's facts change), and what the change means for the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipvs_sys::ServiceKey;

use crate::model::{Admission, EndpointSliceView, Problem, ServiceView};
use crate::plan::{DesiredState, FullPlan, NodeFacts, PlannerConfig, ServicePlan, plan_service};
use crate::source::{Dirty, ObjectKey, Snapshot};

/// What a re-plan changed, for the reconcilers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replanned {
    /// Virtual servers whose desired state may differ.
    pub virtual_servers: BTreeSet<ServiceKey>,
    /// Whether set contents, out-filters or health checks changed.
    pub netfilter: bool,
    /// Whether the addresses to bind changed.
    pub addresses: bool,
    /// Whether everything was re-planned.
    pub everything: bool,
}

/// The cache of per-Service plans and their union.
#[derive(Debug, Default)]
pub struct Planning {
    plans: BTreeMap<ObjectKey, ServicePlan>,
    rejected: BTreeMap<ObjectKey, Vec<Problem>>,
    facts: Option<NodeFacts>,
    desired: Arc<DesiredState>,
    problems: Vec<Problem>,
}

fn plan_one(
    snap: &Snapshot,
    key: &ObjectKey,
    facts: &NodeFacts,
    cfg: &PlannerConfig,
) -> Result<Option<ServicePlan>, Vec<Problem>> {
    let Some(svc) = snap.services.get(key) else {
        return Ok(None);
    };
    let proxy_name = cfg.service_proxy_name.as_deref();
    let view = match ServiceView::from_k8s(svc, proxy_name) {
        Admission::Accepted(v) => v,
        Admission::Ignored(_) => return Ok(None),
        Admission::Rejected(p) => return Err(vec![p]),
    };
    let mut slice_problems = Vec::new();
    let slices: Vec<EndpointSliceView> = snap
        .slices_of(key)
        .filter_map(|s| match EndpointSliceView::from_k8s(s, proxy_name) {
            Admission::Accepted(v) => Some(v),
            Admission::Ignored(_) => None,
            Admission::Rejected(p) => {
                slice_problems.push(p);
                None
            }
        })
        .collect();
    let mut plan = plan_service(&view, &slices, facts, cfg);
    plan.problems.extend(slice_problems);
    Ok(Some(plan))
}

impl Planning {
    /// The current desired state of the node, shared (syncs run on another
    /// thread; a 100,000-endpoint state is not cheap to copy).
    pub fn desired(&self) -> Arc<DesiredState> {
        self.desired.clone()
    }

    /// Every problem, including Services rejected as a whole.
    pub fn problems(&self) -> Vec<Problem> {
        let mut all = self.problems.clone();
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
        let keys: Vec<ObjectKey> = if everything {
            let mut all: BTreeSet<ObjectKey> = snap.services.keys().cloned().collect();
            all.extend(self.plans.keys().cloned());
            all.into_iter().collect()
        } else {
            dirty.services.iter().cloned().collect()
        };
        let mut out = Replanned {
            everything,
            ..Replanned::default()
        };
        for key in keys {
            let old = self.plans.remove(&key);
            self.rejected.remove(&key);
            let new = match plan_one(snap, &key, &facts, cfg) {
                Ok(p) => p,
                Err(problems) => {
                    self.rejected.insert(key.clone(), problems);
                    None
                }
            };
            let empty = DesiredState::default();
            let (o, n) = (
                old.as_ref().map_or(&empty, |p| &p.state),
                new.as_ref().map_or(&empty, |p| &p.state),
            );
            for k in o.virtual_servers.keys().chain(n.virtual_servers.keys()) {
                if o.virtual_servers.get(k) != n.virtual_servers.get(k) {
                    out.virtual_servers.insert(*k);
                }
            }
            out.netfilter |= o.sets != n.sets
                || o.lb_out_filters != n.lb_out_filters
                || o.health_checks != n.health_checks;
            out.addresses |= o.bound_addresses != n.bound_addresses;
            if let Some(p) = new {
                self.plans.insert(key, p);
            }
        }
        self.facts = Some(facts);
        // Merging keeps cross-Service conflict resolution in one place; a
        // changed winner shows up as a changed virtual server above only for
        // the Services re-planned, so compare the merged result too.
        let FullPlan { state, problems } = DesiredState::from_plans(self.plans.values());
        for (k, vs) in &state.virtual_servers {
            if self.desired.virtual_servers.get(k) != Some(vs) {
                out.virtual_servers.insert(*k);
            }
        }
        for k in self.desired.virtual_servers.keys() {
            if !state.virtual_servers.contains_key(k) {
                out.virtual_servers.insert(*k);
            }
        }
        self.desired = Arc::new(state);
        self.problems = problems;
        out
    }
}
