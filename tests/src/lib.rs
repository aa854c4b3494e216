//! Shared test support for Sluice.
//!
//! * [`vm`]: boots Debian's stock kernel under qemu (the host kernel has no
//!   IPVS) and runs test binaries inside it with the host filesystem visible.

#[cfg(feature = "fake-api")]
pub mod fake_api;

pub mod vm;
