//! `sluice-bench`: side-by-side benchmarks of Sluice and its peers.
//!
//! Each subcommand measures Sluice and the peer on the same work in the same
//! run, several rounds, and prints min/median and the ratio. See
//! `BENCHMARKS.md` at the repository root for method and latest numbers.

mod ingress;
mod ingress_backend;
mod ingress_load;
mod ingress_peers;
mod ipvs_sync;
mod overlay_sync;
mod proxy_sync;
mod stats;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ipvs-sync") => ipvs_sync::run(&args[1..]),
        Some("proxy-sync") => proxy_sync::run(&args[1..]),
        Some("overlay-sync") => overlay_sync::run(&args[1..]),
        Some("ingress") => ingress::run(&args[1..]),
        Some("ingress-backend") => ingress_backend::run(&args[1..]),
        _ => Err("usage: sluice-bench ipvs-sync [--services N] [--dests M] [--rounds R] | proxy-sync [--services N] [--rounds R] [--proxy BIN] | overlay-sync [--nodes N] [--rounds R] | ingress [--sluice BIN] [--rounds R] [--duration SECS] [--no-haproxy] [--access-log off|on|both] [--connections N] [--tests h1,h2,tls]".into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
