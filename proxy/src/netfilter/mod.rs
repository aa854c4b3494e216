//! ipsets and iptables rules with kube-proxy's names and semantics, rendered
//! as typed values into `ipset restore` / `iptables-restore --noflush` input
//! (one call each per sync), touching only our own sets and chains.

mod sets;

pub use sets::*;
