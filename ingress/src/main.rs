//! `sluice-ingress`: Ingress controller and L7 gateway.
//!
//! The gateway is tracked in its own issue; until it lands this binary only
//! identifies itself.

fn main() {
    println!("sluice-ingress {}", env!("CARGO_PKG_VERSION"));
}
