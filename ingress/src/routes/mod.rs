//! The pure routing core: Kubernetes objects in, an immutable route table
//! out, and request → route lookup. No I/O happens here.
//!
//! The flow the controller shell follows:
//!
//! 1. [`class::ClassSelector`] decides which Ingresses are ours (IngressClass
//!    `spec.controller`, the legacy `kubernetes.io/ingress.class` annotation,
//!    the default class, `watch_ingress_without_class`).
//! 2. [`build::build`] turns those Ingresses into a [`table::RouteTable`] plus
//!    [`build::Conflict`] and [`build::Problem`] reports (Warning Events).
//!    Invalid parts are skipped and reported; the rest keeps working.
//! 3. Per request the gateway calls [`hygiene::normalize`] on the raw request
//!    target (a [`hygiene::Reject`] is answered 400), then
//!    [`table::RouteTable::lookup`] with the Host header (or `:authority`)
//!    and the [`hygiene::NormalizedPath`].
//!
//! Semantics are documented in each module: [`path`] (path types and
//! precedence), [`host`] (hosts and wildcards), [`hygiene`] (request-path
//! normalization), [`table`] (lookup order, TLS and redirects), [`mod@build`]
//! (merging, conflicts, validation, annotations) and [`class`].

pub mod build;
pub mod class;
pub mod host;
pub mod hygiene;
pub mod path;
pub mod table;

pub use build::{BuildOutput, Conflict, ConflictKind, Problem, ProblemKind, build};
pub use class::{ClassSelector, Selection};
pub use host::HostPattern;
pub use hygiene::{NormalizedPath, NormalizedRequest, Reject, normalize};
pub use path::{MatchKind, PathType};
pub use table::{
    Backend, DefaultRoute, IngressRef, Lookup, PortRef, Route, RouteMatch, RouteTable, SecretRef,
    TlsHost,
};
