//! IPVS over generic netlink: the model, its wire codec, and the client.

pub mod client;
pub mod codec;
pub mod consts;
pub mod model;
pub mod op;
