//! Writes to the API server: Ingress status and Warning Events.
//!
//! Status is written only while `leader` says so (see
//! [`super::leader`]). Only our Ingresses get status; Ingresses of other
//! classes are never touched. On graceful shutdown the leader takes its
//! address back out ([`remove_status`]) unless another replica is running
//! ([`other_replicas_running`]) and will take over.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice_kube::events::{EventPublisher, Regarding, Warning, WarningEvents};
use tokio::sync::watch;

use super::run::Update;
use super::snapshot::ObjectKey;

/// The `status.loadBalancer.ingress` entry for an address: `ip` when it
/// parses as one, else `hostname`.
pub fn status_entry(address: &str) -> Value {
    match address.parse::<IpAddr>() {
        Ok(_) => json!({ "ip": address }),
        Err(_) => json!({ "hostname": address }),
    }
}

fn current_entries(ingress: &Ingress) -> Vec<Value> {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|v| {
            v.iter()
                .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                .collect()
        })
        .unwrap_or_default()
}

/// Follows `updates` and writes `status.loadBalancer.ingress` =
/// `[address]` on each of our Ingresses whose status differs. Returns when
/// the sender is dropped. Writes only while `leader` is true.
pub async fn write_status(
    client: Client,
    address: String,
    mut updates: watch::Receiver<Option<Arc<Update>>>,
    mut leader: watch::Receiver<bool>,
) {
    let want = vec![status_entry(&address)];
    // The resourceVersion each Ingress had when we last patched it: no
    // second patch until the watch shows a newer version.
    let mut patched: HashMap<ObjectKey<Ingress>, Option<String>> = HashMap::new();
    let mut leader_open = true;
    loop {
        let update = updates.borrow_and_update().clone();
        let leading = *leader.borrow_and_update();
        if let (Some(update), true) = (update, leading) {
            for r in &update.computed.ours {
                let key = ObjectKey::new(&r.namespace, &r.name);
                let Some(ing) = update.snapshot.ingresses.get(&key) else {
                    continue;
                };
                if current_entries(ing) == want {
                    continue;
                }
                let rv = ing.metadata.resource_version.clone();
                if patched.get(&key) == Some(&rv) {
                    continue;
                }
                let api = Api::<Ingress>::namespaced(client.clone(), &r.namespace);
                let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
                match api
                    .patch_status(&r.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(ingress = %r, %address, "wrote status");
                        patched.insert(key, rv);
                    }
                    Err(e) => tracing::warn!(ingress = %r, error = %e, "writing status failed"),
                }
            }
        }
        // A closed `leader` channel keeps its last value.
        tokio::select! {
            r = updates.changed() => if r.is_err() { return },
            r = leader.changed(), if leader_open => leader_open = r.is_ok(),
        }
    }
}

/// Removes `address` from `status.loadBalancer.ingress` of our Ingresses
/// in `update`, keeping every other entry: what the leader does on
/// graceful shutdown (`--update-status-on-shutdown`), so that clients
/// following the status stop sending traffic to a replica that is going
/// away. Each Ingress is read fresh (the snapshot may not show our own
/// last write yet); one that does not carry the address is not touched.
/// Returns how many Ingresses were patched.
pub async fn remove_status(client: Client, address: &str, update: &Update) -> usize {
    let ours = status_entry(address);
    let mut patched = 0;
    for r in &update.computed.ours {
        let api = Api::<Ingress>::namespaced(client.clone(), &r.namespace);
        let ing = match api.get_opt(&r.name).await {
            Ok(Some(ing)) => ing,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(ingress = %r, error = %e, "reading status failed");
                continue;
            }
        };
        let entries = current_entries(&ing);
        if !entries.contains(&ours) {
            continue;
        }
        let rest: Vec<Value> = entries.into_iter().filter(|e| *e != ours).collect();
        let patch = json!({"status": {"loadBalancer": {"ingress": rest}}});
        match api
            .patch_status(&r.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(ingress = %r, %address, "removed status on shutdown");
                patched += 1;
            }
            Err(e) => tracing::warn!(ingress = %r, error = %e, "removing status failed"),
        }
    }
    patched
}

/// Labels that differ between revisions of the same workload, ignored
/// when looking for other replicas.
const REVISION_LABELS: [&str; 3] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
];

/// Whether another replica of this controller is running: a Pod in
/// `namespace`, other than `pod_name`, that carries every label of ours
/// (revision labels aside, so a rollout's new Pods count), is `Running`
/// and is not being deleted. Then the status is left for the next leader
/// rather than taken away and written back seconds later (ingress-nginx
/// does the same). Labels are compared here, never rendered into a
/// selector.
pub async fn other_replicas_running(
    client: Client,
    namespace: &str,
    pod_name: &str,
) -> Result<bool, kube::Error> {
    let pods = Api::<Pod>::namespaced(client, namespace);
    let Some(me) = pods.get_opt(pod_name).await? else {
        return Ok(false);
    };
    let mine: Vec<(String, String)> = me
        .metadata
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !REVISION_LABELS.contains(&k.as_str()))
        .collect();
    if mine.is_empty() {
        return Ok(false);
    }
    let list = pods.list(&ListParams::default()).await?;
    Ok(list.items.iter().any(|p| {
        let labels = p.metadata.labels.as_ref();
        p.metadata.name.as_deref() != Some(pod_name)
            && p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && mine
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }))
}

/// The Warning Events of an update: one per warning about an Ingress we
/// know (reason `Conflict`, `Unresolved`, `InvalidIngress`, or for
/// ingress-nginx annotations `InvalidAnnotation`, `SnippetRefused`,
/// `AccessNotEnforced`, `AnnotationIgnored`, `IngressRefused`,
/// `UnsupportedRegex`: each names the annotation and its value), and one
/// per problem with a key of the `--configmap` ConfigMap, on it
/// (`InvalidSetting`).
pub fn warnings(update: &Update) -> BTreeSet<Warning> {
    let computed = &update.computed;
    let mut out: BTreeSet<Warning> = computed
        .warnings()
        .into_iter()
        .filter_map(|(ingress, reason, message)| {
            let r = ingress?;
            let ing = update
                .snapshot
                .ingresses
                .get(&ObjectKey::new(&r.namespace, &r.name))?;
            Some(Warning {
                regarding: Regarding::object(ing.as_ref()),
                reason: reason.to_owned(),
                action: "Sync".into(),
                note: message,
            })
        })
        .collect();
    if let Some(key) = &computed.configmap {
        let regarding = match update.snapshot.configmaps.get(key) {
            Some(cm) => Regarding::object(cm.as_ref()),
            None => Regarding::named::<ConfigMap>(&key.namespace, &key.name),
        };
        for p in &computed.setting_problems {
            out.insert(Warning {
                regarding: regarding.clone(),
                reason: "InvalidSetting".into(),
                action: "Sync".into(),
                note: p.to_string(),
            });
        }
    }
    out
}

/// Follows `updates` and publishes each new warning (conflict, problem,
/// unresolved backend or certificate) as a Warning Event on its Ingress:
/// each distinct message once while it lasts, as an Event of its own.
pub async fn publish_events(client: Client, mut updates: watch::Receiver<Option<Arc<Update>>>) {
    let publisher = EventPublisher::new(client, "sluice-ingress", std::env::var("POD_NAME").ok());
    let mut events = WarningEvents::default();
    loop {
        let update = updates.borrow_and_update().clone();
        if let Some(update) = update {
            events.report(&warnings(&update), &publisher).await;
        }
        if updates.changed().await.is_err() {
            return;
        }
    }
}
