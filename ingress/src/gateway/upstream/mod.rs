//! Upstreams: endpoint choice ([`balance`], session affinity
//! [`affinity`], consistent hashing [`hash`]), keep-alive HTTP/1.1
//! connections ([`h1_pool`]), caps on the connections in use ([`slots`])
//! and the forwarding loop with connect retries ([`client`]).

pub mod affinity;
pub mod balance;
pub mod client;
pub mod h1_pool;
pub mod hash;
pub mod slots;

pub use balance::{EndpointState, InFlight, Pool, Registry};
pub use client::{
    AttemptPolicy, Clients, Forwarded, Resend, RetryPolicy, Statuses, UpstreamError, UpstreamEvent,
};
pub use h1_pool::UpstreamBody;
pub use slots::{SlotLimit, Slots};
