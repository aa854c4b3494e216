//! ipsets and iptables rules with kube-proxy's names and semantics, rendered
//! as typed values into `ipset restore` / `iptables-restore --noflush` input
//! (one call each per sync), touching only our own sets and chains.
//!
//! * [`Netfilter`] is the reconciler: [`Netfilter::sync`] and
//!   [`Netfilter::cleanup`].
//! * [`ipset`] and [`rules`] are the pure parts (parse, diff, render).
//! * [`sysctl`] and [`conntrack`] are kube-proxy's other kernel chores.

pub mod conntrack;
mod exec;
pub mod ipset;
pub mod iptables;
pub mod rules;
mod sets;
mod sync;
pub mod sysctl;

pub use exec::{CommandRunner, ExecError, ExecOutput, InvalidNetnsName, SystemRunner};
pub use ipset::{RejectedEntry, canonical_sets};
pub use rules::{ConfigError, LocalDetector, NetfilterConfig};
pub use sets::EntryParseError;
pub use sync::{
    CleanupReport, Netfilter, NetfilterError, SyncReport, parse_iptables_version,
    probe_random_fully,
};
