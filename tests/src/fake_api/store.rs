//! The object store: objects by type and key, the global resourceVersion
//! counter, and the bounded history of changes that watches replay.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use serde_json::{Value, json};

use super::defaults::Allocators;
use super::meta::set_meta;
use super::resources::{self, RESOURCES, ResourceId};
use super::status::ApiError;

/// (namespace, name); the namespace is "" for cluster-scoped objects.
pub(crate) type Key = (String, String);

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    /// The object was created.
    Added,
    /// The object was changed.
    Modified,
    /// The object was removed; the event carries its last state.
    Deleted,
}

impl EventType {
    /// The `type` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept for watch replay.
#[derive(Debug, Clone)]
pub(crate) struct HistoryEntry {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Resource type changed.
    pub rt: ResourceId,
    /// What happened.
    pub kind: EventType,
    /// Object after the change (for deletes: last state, with the deletion's
    /// resourceVersion).
    pub object: Value,
    /// Object before the change, for selector transitions.
    pub prev: Option<Value>,
}

/// Who is writing: an API client (full server rules) or a test through the
/// handle (status kept as given, resourceVersion and finalizers ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A request through the HTTP API.
    Api,
    /// The test-control handle.
    Backdoor,
}

/// Which part of the object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The main resource: everything but status (for types with a status
    /// subresource).
    Main,
    /// The `/status` subresource: only status.
    Status,
}

/// Result of a DELETE.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// Removed now; the object's last state.
    Gone(Value),
    /// Finalizers pending: the object now carries a deletionTimestamp.
    Pending(Value),
}

/// All objects and the change history.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    rv: u64,
    /// New watches from a resourceVersion below this get 410 Expired.
    floor: u64,
    /// resourceVersion of the newest change dropped from history: open
    /// watches that have not yet seen it get 410 Expired.
    lost: u64,
    pub(super) objects: Vec<BTreeMap<Key, Value>>,
    history: VecDeque<HistoryEntry>,
    history_limit: usize,
    uid_seed: u64,
    uid_counter: u64,
    rng: u64,
    pub(super) alloc: Allocators,
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Store {
    /// An empty store keeping at most `history_limit` changes for watches.
    pub fn new(history_limit: usize) -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5117ce);
        let seed = h.finish();
        Store {
            rv: 0,
            floor: 0,
            lost: 0,
            objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            uid_seed: seed,
            uid_counter: 0,
            rng: seed | 1,
            alloc: Allocators::default(),
        }
    }

    /// The current (latest) resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a new watch can start from; older ones
    /// get 410 Expired.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Whether an open watch that has seen everything up to `rv` missed a
    /// change that is no longer in history.
    pub fn missed(&self, rv: u64) -> bool {
        rv < self.lost
    }

    /// Forgets all history and expires every resourceVersion handed out so
    /// far: new watches from any of them get 410 Expired. (This consumes a
    /// resourceVersion, so a list made afterwards can be watched from.)
    /// (`Shared::compact` also ends open watches.)
    pub fn compact(&mut self) {
        self.history.clear();
        self.lost = self.rv;
        self.rv += 1;
        self.floor = self.rv;
    }

    /// Changes after `rv`, oldest first.
    pub fn history_since(&self, rv: u64) -> impl Iterator<Item = &HistoryEntry> {
        let start = self.history.partition_point(|e| e.rv <= rv);
        self.history.range(start..)
    }

    /// One object.
    pub fn get(&self, rt: ResourceId, ns: &str, name: &str) -> Option<&Value> {
        self.objects[rt].get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a type, in (namespace, name) order, optionally in one
    /// namespace, that pass `filter`.
    pub fn list<'a>(
        &'a self,
        rt: ResourceId,
        ns: Option<&'a str>,
        filter: impl Fn(&Value) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects[rt]
            .iter()
            .filter(move |((n, _), _)| ns.is_none_or(|want| n == want))
            .filter(move |(_, v)| filter(v))
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    pub(super) fn new_uid(&mut self) -> String {
        self.uid_counter += 1;
        let s = self.uid_seed;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (s >> 32) as u32,
            (s >> 16) as u16,
            (s & 0xfff) as u16,
            (self.uid_counter >> 48) & 0xfff,
            self.uid_counter & 0xffff_ffff_ffff
        )
    }

    pub(super) fn generate_name(&mut self, rt: ResourceId, ns: &str, prefix: &str) -> String {
        loop {
            let mut name = prefix.to_string();
            for _ in 0..5 {
                let i = (self.next_rand() % NAME_CHARS.len() as u64) as usize;
                name.push(NAME_CHARS[i] as char);
            }
            if self.get(rt, ns, &name).is_none() {
                return name;
            }
        }
    }

    /// Records a change: bumps the resourceVersion, stores or removes the
    /// object and appends to history. Returns the object as stored (for
    /// deletes: its last state with the deletion's resourceVersion).
    pub(super) fn commit(&mut self, rt: ResourceId, key: Key, new: Option<Value>) -> Value {
        self.rv += 1;
        let rv = self.rv;
        let (kind, object, prev) = match new {
            Some(mut obj) => {
                set_meta(&mut obj, "resourceVersion", rv.to_string());
                let prev = self.objects[rt].insert(key, obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                (kind, obj, prev)
            }
            None => {
                let prev = self.objects[rt].remove(&key);
                let mut last = prev.clone().unwrap_or_else(|| json!({}));
                set_meta(&mut last, "resourceVersion", rv.to_string());
                (EventType::Deleted, last, prev)
            }
        };
        self.history.push_back(HistoryEntry {
            rv,
            rt,
            kind,
            object: object.clone(),
            prev,
        });
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.floor = self.floor.max(e.rv);
                self.lost = e.rv;
            }
        }
        object
    }
}

/// Finds the resource type of an object from its `apiVersion` and `kind`.
pub(crate) fn resolve(obj: &Value) -> Result<ResourceId, ApiError> {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    resources::by_kind(av, kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "the fake API server does not serve apiVersion {av:?} kind {kind:?}"
        ))
    })
}
