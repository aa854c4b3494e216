//! `sluice-ingress`: an Ingress/IngressClass controller and hyper-based L7
//! gateway, a replacement for ingress-nginx.
//!
//! The crate never renders user input into configuration text: Kubernetes
//! objects are turned into typed values ([`routes::RouteTable`]) that the
//! gateway consults directly.

pub mod annotations;
pub mod controller;
pub mod gateway;
pub mod migrate;
pub mod routes;
