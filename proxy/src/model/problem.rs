//! What the planner reports about bad input: one [`Problem`] per finding,
//! which the shell turns into a log line and a Kubernetes Event.

use std::fmt;

/// The kind of object a [`Problem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A `v1/Service`.
    Service,
    /// A `discovery.k8s.io/v1/EndpointSlice`.
    EndpointSlice,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
        })
    }
}

/// Something wrong with an object: the part at fault was skipped, the rest
/// was planned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Problem {
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object (empty if it has none).
    pub name: String,
    /// Which kind of object.
    pub kind: ObjectKind,
    /// What is wrong and what was done about it, for humans.
    pub reason: String,
}

impl Problem {
    /// A problem with a Service.
    pub fn service(namespace: &str, name: &str, reason: impl Into<String>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: ObjectKind::Service,
            reason: reason.into(),
        }
    }

    /// A problem with an EndpointSlice.
    pub fn endpoint_slice(namespace: &str, name: &str, reason: impl Into<String>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: ObjectKind::EndpointSlice,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {}",
            self.kind, self.namespace, self.name, self.reason
        )
    }
}

/// At most this many problems are kept per object; the rest are counted in
/// one closing "N more problems" entry, so a huge broken object cannot flood
/// the log or the Events API.
pub const MAX_PROBLEMS_PER_OBJECT: usize = 16;

/// Collects the problems of one object, capped at
/// [`MAX_PROBLEMS_PER_OBJECT`].
#[derive(Debug)]
pub(crate) struct ProblemSink {
    namespace: String,
    name: String,
    kind: ObjectKind,
    list: Vec<Problem>,
    suppressed: usize,
}

impl ProblemSink {
    pub(crate) fn new(kind: ObjectKind, namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind,
            list: Vec::new(),
            suppressed: 0,
        }
    }

    /// Records a problem; `reason` is only formatted if it is kept.
    pub(crate) fn report(&mut self, reason: impl FnOnce() -> String) {
        if self.list.len() < MAX_PROBLEMS_PER_OBJECT {
            self.list.push(Problem {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                kind: self.kind,
                reason: reason(),
            });
        } else {
            self.suppressed += 1;
        }
    }

    /// Counts `n` problems found but not kept (by a reader with its own cap).
    pub(crate) fn suppressed(&mut self, n: usize) {
        self.suppressed += n;
    }

    pub(crate) fn finish(mut self) -> Vec<Problem> {
        if self.suppressed > 0 {
            let n = self.suppressed;
            self.list.push(Problem {
                namespace: self.namespace,
                name: self.name,
                kind: self.kind,
                reason: format!("{n} more problems not shown"),
            });
        }
        self.list
    }
}
