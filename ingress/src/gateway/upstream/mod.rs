//! Upstreams: endpoint choice ([`balance`]) and pooled clients with
//! connect retries ([`client`]).

pub mod balance;
pub mod client;

pub use balance::{EndpointState, InFlight, Pool, Registry};
pub use client::{Clients, Forwarded, UpstreamError};
