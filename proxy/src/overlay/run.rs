//! The overlay's shell: Nodes (kube-rs watcher or a manifest directory) →
//! planner → kernel (`sync` at start, on the resync period and after a
//! failure; `apply_changes` for node changes) → this node's annotations and
//! NetworkUnavailable condition (a strategic-merge PATCH of `nodes/status`)
//! → subnet.env → CNI conflist → masquerade rules. Bad nodes are skipped
//! with a log line and a Warning Event; nothing here panics on input.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use sluice_kube::events::{EventPublisher, Reported, WarningEvents};
use tokio::sync::mpsc;

use super::cni;
use super::config::NetConf;
use super::error::OverlayError;
use super::masq::{Masq, MasqSpec};
use super::model::{DesiredOverlay, DeviceSpec, DeviceState, RemoteNode};
use super::nodes::NodeEvent;
use super::plan::{self, FreshMacs, OverlayPlan, UnderlayFacts};
use super::status::{rfc3339_now, skipped_warning, status_current, status_patch};
use super::subnet_env::write_atomic;
use crate::netfilter::CommandRunner;

/// How the overlay runs on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayOptions {
    /// The parsed net-conf.json.
    pub conf: NetConf,
    /// This node's name.
    pub node_name: String,
    /// `--overlay-iface`: the underlay interface (default: the default
    /// route's).
    pub iface: Option<String>,
    /// `--overlay-public-ip`: the address published in `public-ip`.
    pub public_ip: Option<IpAddr>,
    /// `--overlay-subnet-file` (default `/run/flannel/subnet.env`).
    pub subnet_file: PathBuf,
    /// `--overlay-cni-conflist`: write the flannel conflist here.
    pub cni_conflist: Option<PathBuf>,
    /// `--overlay-ip-masq` (default true).
    pub ip_masq: bool,
    /// The proxy's masquerade mark (`1 << masqueradeBit`).
    pub masquerade_mark: u32,
    /// Full resync (drift repair) interval.
    pub resync_period: Duration,
}

/// What one kernel call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelReport {
    /// Netlink operations applied.
    pub ops: usize,
    /// Entries that failed: (what, error).
    pub failures: Vec<(String, String)>,
}

/// The kernel side as the shell uses it (the real one is
/// [`SystemDataplane`](super::dataplane::SystemDataplane); tests use fakes). Every
/// call runs on a blocking thread.
pub trait OverlayDataplane: Send + 'static {
    /// Finds the underlay interface and its facts.
    fn underlay(
        &mut self,
        iface: Option<&str>,
        public_ip: Option<IpAddr>,
        overlay: &[IpNet],
    ) -> Result<UnderlayFacts, OverlayError>;
    /// Creates or adopts the VXLAN device.
    fn ensure_device(&mut self, spec: &DeviceSpec) -> Result<DeviceState, OverlayError>;
    /// Full reconcile of the remote entries, stale ones removed.
    fn sync(
        &mut self,
        device: &DeviceState,
        spec: &DeviceSpec,
        remotes: &[RemoteNode],
    ) -> Result<KernelReport, OverlayError>;
    /// Incremental change: `removed` entries go, then `added` are written.
    fn apply_changes(
        &mut self,
        device: &DeviceState,
        removed: &[RemoteNode],
        added: &[RemoteNode],
    ) -> Result<KernelReport, OverlayError>;
}

/// One family as programmed.
struct Programmed {
    spec: DeviceSpec,
    state: DeviceState,
    remotes: Vec<RemoteNode>,
}

/// The blocking half: kernel, files, rules.
struct Shell<D, R: CommandRunner> {
    dataplane: D,
    masq: Masq<R>,
    facts: Option<UnderlayFacts>,
    v4: Option<Programmed>,
    v6: Option<Programmed>,
}

/// What a step did, for logs and the caller.
#[derive(Debug, Default)]
struct StepReport {
    ops: usize,
    errors: Vec<OverlayError>,
}

fn entry_errors(failures: &[(String, String)]) -> impl Iterator<Item = OverlayError> + '_ {
    failures.iter().map(|(entry, reason)| OverlayError::Entry {
        entry: entry.clone(),
        reason: reason.clone(),
    })
}

impl<D: OverlayDataplane, R: CommandRunner> Shell<D, R> {
    fn family(
        dataplane: &mut D,
        slot: &mut Option<Programmed>,
        desired: &DesiredOverlay,
        full: bool,
        report: &mut StepReport,
    ) {
        let same_device = slot.as_ref().is_some_and(|p| p.spec == desired.device);
        if let (false, true, Some(p)) = (full, same_device, slot.as_mut()) {
            let (removed, added) = plan::diff_remotes(&p.remotes, &desired.remotes);
            if removed.is_empty() && added.is_empty() {
                return;
            }
            match dataplane.apply_changes(&p.state, &removed, &added) {
                Ok(r) if r.failures.is_empty() => {
                    report.ops += r.ops;
                    p.remotes = desired.remotes.clone();
                }
                Ok(r) => {
                    report.ops += r.ops;
                    report.errors.extend(entry_errors(&r.failures));
                    // Repair with a full sync on the next step.
                    *slot = None;
                }
                Err(e) => {
                    report.errors.push(e);
                    *slot = None;
                }
            }
            return;
        }
        let state = match dataplane.ensure_device(&desired.device) {
            Ok(s) => s,
            Err(e) => {
                report.errors.push(OverlayError::Device {
                    name: desired.device.name.clone(),
                    source: Box::new(e),
                });
                *slot = None;
                return;
            }
        };
        match dataplane.sync(&state, &desired.device, &desired.remotes) {
            Ok(r) => {
                report.ops += r.ops;
                let clean = r.failures.is_empty();
                report.errors.extend(entry_errors(&r.failures));
                *slot = clean.then(|| Programmed {
                    spec: desired.device.clone(),
                    state,
                    remotes: desired.remotes.clone(),
                });
            }
            Err(e) => {
                report.errors.push(e);
                *slot = None;
            }
        }
    }

    fn kernel(&mut self, plan: &OverlayPlan, full: bool) -> StepReport {
        let mut report = StepReport::default();
        for (desired, slot) in [(&plan.v4, &mut self.v4), (&plan.v6, &mut self.v6)] {
            if let Some(d) = desired {
                Self::family(&mut self.dataplane, slot, d, full, &mut report);
            }
        }
        report
    }

    /// Whether a family needs a full sync: never programmed, failed, or its
    /// device changed (e.g. a new podCIDR, which also changes the rules).
    fn needs_full(&self, plan: &OverlayPlan) -> bool {
        let stale = |want: &Option<DesiredOverlay>, have: &Option<Programmed>| match (want, have) {
            (Some(w), Some(h)) => w.device != h.spec,
            (Some(_), None) => true,
            (None, _) => false,
        };
        stale(&plan.v4, &self.v4) || stale(&plan.v6, &self.v6)
    }

    fn files_and_rules(
        &mut self,
        plan: &OverlayPlan,
        opts: &OverlayOptions,
        rules: bool,
    ) -> StepReport {
        let mut report = StepReport::default();
        let mut env = plan.subnet_env.clone();
        env.ip_masq = opts.ip_masq;
        match write_atomic(&opts.subnet_file, &env.render()) {
            Ok(true) => {
                tracing::info!(path = %opts.subnet_file.display(), "overlay: wrote subnet.env")
            }
            Ok(false) => {}
            Err(source) => report.errors.push(OverlayError::File {
                path: opts.subnet_file.clone(),
                source,
            }),
        }
        if let Some(path) = &opts.cni_conflist {
            match cni::write_conflist(path) {
                Ok(true) => tracing::info!(path = %path.display(), "overlay: wrote CNI conflist"),
                Ok(false) => {}
                Err(source) => report.errors.push(OverlayError::File {
                    path: path.clone(),
                    source,
                }),
            }
        }
        if rules {
            let specs = [
                plan.local_v4
                    .map(|l| (IpNet::V4(l.network), IpNet::V4(l.subnet))),
                plan.local_v6
                    .map(|l| (IpNet::V6(l.network), IpNet::V6(l.subnet))),
            ];
            for (network, subnet) in specs.into_iter().flatten() {
                let spec = MasqSpec {
                    network,
                    subnet,
                    mark: opts.masquerade_mark,
                    random_fully: true,
                    ip_masq: opts.ip_masq,
                };
                match self.masq.sync(&spec) {
                    Ok(true) => report.ops += 1,
                    Ok(false) => {}
                    Err(e) => report.errors.push(e.into()),
                }
            }
        }
        report
    }
}

async fn blocking<S: Send + 'static, T: Send + 'static>(
    shell: S,
    f: impl FnOnce(&mut S) -> T + Send + 'static,
) -> Result<(S, T), OverlayError> {
    tokio::task::spawn_blocking(move || {
        let mut shell = shell;
        let out = f(&mut shell);
        (shell, out)
    })
    .await
    .map_err(OverlayError::Task)
}

/// Runs the overlay until `events` closes. `client` (None with
/// `--manifests`) is used for the status patch and Events; `dataplane`
/// and `runner` must act on this node's network namespace.
pub async fn run<D, R>(
    opts: OverlayOptions,
    client: Option<Client>,
    mut events: mpsc::Receiver<NodeEvent>,
    dataplane: D,
    runner: R,
) -> Result<(), OverlayError>
where
    D: OverlayDataplane,
    R: CommandRunner + 'static,
{
    let fresh = FreshMacs {
        v4: plan::random_mac(),
        v6: plan::random_mac(),
    };
    let publisher = client
        .clone()
        .map(|c| EventPublisher::new(c, "sluice-proxy", Some(opts.node_name.clone())));
    let nodes_api = client.map(Api::<Node>::all);
    let masq = tokio::task::spawn_blocking(move || Masq::new(runner))
        .await
        .map_err(OverlayError::Task)?;
    let mut shell = Shell {
        dataplane,
        masq,
        facts: None,
        v4: None,
        v6: None,
    };
    let overlay_nets: Vec<IpNet> = opts
        .conf
        .network
        .map(IpNet::V4)
        .into_iter()
        .chain(opts.conf.ipv6_network.map(IpNet::V6))
        .collect();
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut synced = false;
    let mut dirty = false;
    let mut last_full: Option<Instant> = None;
    let mut last_patch: Option<Instant> = None;
    let mut patch_pending = false;
    let mut hold_until: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    let mut logged: Reported<(String, String)> = Reported::default();
    let mut warning_events = WarningEvents::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(node = %opts.node_name, vni = opts.conf.backend.vni, "overlay started");

    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                apply_event(&mut nodes, ev, &mut synced);
                // Take everything already queued before planning once.
                while let Ok(ev) = events.try_recv() {
                    apply_event(&mut nodes, ev, &mut synced);
                }
                dirty = true;
            }
            _ = tick.tick() => {}
        }
        if !synced {
            continue;
        }
        let now = Instant::now();
        if !dirty && hold_until.is_some_and(|t| now < t) {
            continue;
        }
        let full = last_full.is_none_or(|t| now.duration_since(t) >= opts.resync_period);
        // A failed patch is retried every few seconds, not every tick.
        let patch_due = nodes_api.is_some()
            && last_patch.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(3));
        if !(dirty || full || (patch_pending && patch_due)) {
            continue;
        }
        dirty = false;

        // Plan (facts re-read on full syncs) and program the kernel.
        let list: Vec<Node> = nodes.values().cloned().collect();
        let o = opts.clone();
        let nets = overlay_nets.clone();
        let (s, out) = blocking(shell, move |sh| {
            if full || sh.facts.is_none() {
                match sh
                    .dataplane
                    .underlay(o.iface.as_deref(), o.public_ip, &nets)
                {
                    Ok(f) => sh.facts = Some(f),
                    Err(e) => return Err(e),
                }
            }
            let facts = sh.facts.clone().unwrap_or_default();
            let plan = plan::plan(&o.node_name, &list, &o.conf, &facts, fresh)?;
            let full = full || sh.needs_full(&plan);
            let kernel = sh.kernel(&plan, full);
            Ok((plan, kernel, full))
        })
        .await?;
        shell = s;
        let (plan, kernel, was_full) = match out {
            Ok(x) => x,
            Err(e) => {
                let message = e.to_string();
                if last_error.as_deref() != Some(&message) {
                    tracing::error!(error = %e, "overlay: cannot program this node; will retry");
                    last_error = Some(message);
                }
                // Retry the whole step after a pause.
                hold_until = Some(now + Duration::from_secs(2));
                last_full = None;
                continue;
            }
        };
        last_error = None;
        for e in &kernel.errors {
            tracing::warn!(error = %e, "overlay: kernel step failed; will retry with a full sync");
        }
        if was_full {
            last_full = Some(Instant::now());
        }

        // Skipped nodes: one log line and one Event each.
        let current: BTreeSet<(String, String)> = plan
            .skipped
            .iter()
            .map(|s| (s.node.clone(), s.reason.clone()))
            .collect();
        for (node, reason) in logged.pending(&current) {
            tracing::warn!(node = %node, reason = %reason, "overlay: skipped remote node");
        }
        if let Some(publisher) = &publisher {
            let warnings = current.iter().map(|(n, r)| skipped_warning(n, r)).collect();
            warning_events.report(&warnings, publisher).await;
        }
        for item in current {
            logged.mark(item);
        }

        // Our annotations and condition, only when they differ.
        let own_current = nodes
            .get(&opts.node_name)
            .is_some_and(|n| status_current(n, &plan.annotations));
        patch_pending = nodes_api.is_some() && !own_current;
        if let Some(api) = &nodes_api
            && patch_pending
            && patch_due
        {
            last_patch = Some(Instant::now());
            let patch = status_patch(&plan.annotations, &rfc3339_now());
            match api
                .patch_status(
                    &opts.node_name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(n) => {
                    tracing::info!(node = %opts.node_name, "overlay: published node annotations");
                    patch_pending = !status_current(&n, &plan.annotations);
                    nodes.insert(opts.node_name.clone(), n);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "overlay: patching nodes/status failed; will retry")
                }
            }
        }

        // subnet.env, CNI conflist, masquerade rules (rules on full syncs).
        let o = opts.clone();
        let (s, files) = blocking(shell, move |sh| sh.files_and_rules(&plan, &o, was_full)).await?;
        shell = s;
        for e in &files.errors {
            tracing::warn!(error = %e, "overlay: step failed; will retry");
        }
        if !files.errors.is_empty() || !kernel.errors.is_empty() {
            hold_until = Some(Instant::now() + Duration::from_secs(2));
            last_full = None;
        }
        tracing::debug!(
            full = was_full,
            ops = kernel.ops + files.ops,
            "overlay synced"
        );
    }
    Ok(())
}

fn apply_event(nodes: &mut BTreeMap<String, Node>, ev: NodeEvent, synced: &mut bool) {
    let name = |n: &Node| n.metadata.name.clone().unwrap_or_default();
    match ev {
        NodeEvent::Replace((), list) => {
            *nodes = list.into_iter().map(|n| (name(&n), n)).collect();
            *synced = true;
        }
        NodeEvent::Apply(n) => {
            nodes.insert(name(&n), n);
        }
        NodeEvent::Delete(n) => {
            nodes.remove(&name(&n));
        }
    }
}
