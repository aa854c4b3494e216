//! Upstreams: endpoint choice ([`balance`]), keep-alive HTTP/1.1
//! connections ([`h1_pool`]) and the forwarding loop with connect retries
//! ([`client`]).

pub mod balance;
pub mod client;
pub mod h1_pool;

pub use balance::{EndpointState, InFlight, Pool, Registry};
pub use client::{Clients, Forwarded, UpstreamError};
pub use h1_pool::UpstreamBody;
