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
//!    and the [`hygiene::NormalizedPath`] — or [`table::RouteTable::resolve`],
//!    which returns what to do ([`resolve::Resolution`]: redirect, deny,
//!    preflight, forward with the rewritten path) and is the only entry
//!    point that honours ingress-nginx annotations.
//!
//! With [`build::BuildOptions::ingress_nginx`], the table follows
//! ingress-nginx instead of the Ingress specification: its annotations are
//! read ([`crate::annotations`]) and paths are matched as its nginx
//! locations ([`nginx`]): regex hosts, exact twins, the trailing-slash 301.
//!
//! Semantics are documented in each module: [`path`] (path types and
//! precedence), [`host`] (hosts and wildcards), [`hygiene`] (request-path
//! normalization), [`table`] (lookup order, TLS and redirects), [`mod@build`]
//! (merging, conflicts, validation, annotations), [`nginx`] (ingress-nginx
//! locations), [`resolve`] (the outcome) and [`class`].

pub mod build;
pub mod class;
pub mod host;
pub mod hygiene;
pub mod nginx;
mod nginx_build;
pub mod path;
pub mod resolve;
pub mod table;

pub use build::{
    BuildOptions, BuildOutput, Conflict, ConflictKind, Problem, ProblemKind, build, build_with,
};
pub use class::{ClassSelector, Selection};
pub use host::HostPattern;
pub use hygiene::{NormalizedPath, NormalizedRequest, Reject, normalize};
pub use path::{MatchKind, PathType};
pub use resolve::{Forward, Redirect, RedirectReason, RequestFacts, Resolution, Scheme};
pub use table::{
    Backend, CanaryRoute, DefaultRoute, IngressRef, Lookup, PortRef, Route, RouteMatch, RouteTable,
    SecretRef, TlsHost,
};
