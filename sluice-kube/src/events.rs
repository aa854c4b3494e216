//! Warning Events about objects, one per distinct problem, none lost.
//!
//! kube-runtime's `Recorder` folds every Event with the same object,
//! reason and action into one series that keeps the **first** note: a
//! second, different problem with the same reason on the same object would
//! only bump the first Event's count, and its text would be lost. So here
//! de-duplication is ours and per problem ([`Reported`]: each distinct
//! warning is published once while it lasts, again if it goes away and
//! comes back), and each publish is a new Event ([`EventPublisher`]).
//! A publish that fails is retried with the next report, not forgotten.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The Event API's limit on `note`, in bytes.
pub const MAX_NOTE_BYTES: usize = 1024;

/// The object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Regarding {
    /// `apiVersion`, e.g. `networking.k8s.io/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Ingress`.
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object's uid, when known (so `kubectl describe` of a recreated
    /// object does not show its predecessor's Events).
    pub uid: Option<String>,
}

impl Regarding {
    /// The object `o`, with its uid.
    pub fn object<K: kube::Resource<DynamicType = ()>>(o: &K) -> Self {
        let r = o.object_ref(&());
        Self {
            api_version: r.api_version.unwrap_or_default(),
            kind: r.kind.unwrap_or_default(),
            namespace: r.namespace.unwrap_or_default(),
            name: r.name.unwrap_or_default(),
            uid: r.uid,
        }
    }

    /// An object of type `K` known by namespace and name only.
    pub fn named<K: k8s_openapi::Resource>(namespace: &str, name: &str) -> Self {
        Self {
            api_version: K::API_VERSION.to_owned(),
            kind: K::KIND.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: None,
        }
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            namespace: Some(self.namespace.clone()).filter(|n| !n.is_empty()),
            name: Some(self.name.clone()),
            uid: self.uid.clone(),
            ..ObjectReference::default()
        }
    }
}

/// One problem with one object, as a Warning Event says it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Warning {
    /// The object.
    pub regarding: Regarding,
    /// Machine-readable reason (`InvalidInput`, `Conflict`, …).
    pub reason: String,
    /// What was done (`Skipped`, `Sync`, …).
    pub action: String,
    /// What is wrong, for humans.
    pub note: String,
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Publishes Warning Events as one controller (and instance).
#[derive(Clone)]
pub struct EventPublisher {
    client: kube::Client,
    reporter: Reporter,
}

impl EventPublisher {
    /// Events reported by `controller` (e.g. `sluice-proxy`) on
    /// `instance` (a node or Pod name).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            reporter: Reporter {
                controller: controller.to_owned(),
                instance,
            },
        }
    }

    /// Creates one Event for `w`.
    pub async fn publish(&self, w: &Warning) -> Result<(), kube::Error> {
        let event = Event {
            type_: EventType::Warning,
            reason: w.reason.clone(),
            note: Some(truncate(&w.note, MAX_NOTE_BYTES).to_owned()),
            action: w.action.clone(),
            secondary: None,
        };
        // A recorder per Event: a shared one would fold this Event into an
        // earlier one with the same object, reason and action, note lost.
        Recorder::new(self.client.clone(), self.reporter.clone())
            .publish(&event, &w.regarding.reference())
            .await
    }
}

/// Which of a changing set of items were already reported: each is
/// reported once while it lasts, and again if it goes away and comes back.
#[derive(Debug, Clone)]
pub struct Reported<K> {
    done: BTreeSet<K>,
}

impl<K> Default for Reported<K> {
    fn default() -> Self {
        Self {
            done: BTreeSet::new(),
        }
    }
}

impl<K: Ord> Reported<K> {
    /// Forgets the items no longer in `current`, and returns those of
    /// `current` not reported yet.
    pub fn pending<'a>(&mut self, current: &'a BTreeSet<K>) -> Vec<&'a K> {
        self.done.retain(|k| current.contains(k));
        current.iter().filter(|k| !self.done.contains(*k)).collect()
    }

    /// Records that `item` was reported.
    pub fn mark(&mut self, item: K) {
        self.done.insert(item);
    }
}

/// The Warning Events of a changing set of problems: each distinct warning
/// is published once while it lasts; a failed publish is tried again with
/// the next report.
#[derive(Debug, Default)]
pub struct WarningEvents {
    published: Reported<Warning>,
}

impl WarningEvents {
    /// Publishes the warnings of `current` not yet published; returns how
    /// many were published now.
    pub async fn report(
        &mut self,
        current: &BTreeSet<Warning>,
        publisher: &EventPublisher,
    ) -> usize {
        let mut n = 0;
        for w in self.published.pending(current) {
            match publisher.publish(w).await {
                Ok(()) => {
                    self.published.mark(w.clone());
                    n += 1;
                }
                Err(e) => tracing::warn!(
                    kind = %w.regarding.kind, namespace = %w.regarding.namespace,
                    name = %w.regarding.name, error = %e,
                    "could not publish event; will retry"
                ),
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_once_while_current_and_again_after_going_away() {
        let mut r = Reported::default();
        let set = |v: &[u8]| v.iter().copied().collect::<BTreeSet<u8>>();
        let cur = set(&[1, 2]);
        let p: Vec<u8> = r.pending(&cur).into_iter().copied().collect();
        assert_eq!(p, [1, 2]);
        r.mark(1);
        // 2 was not marked (its publish failed): still pending.
        let p: Vec<u8> = r.pending(&cur).into_iter().copied().collect();
        assert_eq!(p, [2]);
        r.mark(2);
        assert!(r.pending(&cur).is_empty());
        // 1 goes away and comes back: reported again.
        assert!(r.pending(&set(&[2])).is_empty());
        let p: Vec<u8> = r.pending(&cur).into_iter().copied().collect();
        assert_eq!(p, [1]);
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, MAX_NOTE_BYTES);
        assert_eq!(t.len(), 1024);
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("é", 1), "");
    }
}
