//! The imperative shell's kernel side: diff the planner's
//! [`DesiredState`](crate::plan::DesiredState) against what the kernel
//! reports and apply the minimal operations.
//!
//! Each part is split into a pure diff (unit-tested without root) and a thin
//! applier. Nothing is flushed: existing state is adopted, drift repaired,
//! and only objects that are provably ours and stale are removed.

pub mod addresses;
pub mod graceful;
pub mod ipvs;
