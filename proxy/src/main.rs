//! `sluice-proxy`: the per-node IPVS service proxy.
//!
//! The service-proxy itself (watchers, planner, reconciler) is being built in
//! the library; this binary currently reports the kernel's IPVS version.

fn main() -> std::process::ExitCode {
    match ipvs_sys::IpvsClient::open().and_then(|mut c| c.info()) {
        Ok(info) => {
            println!(
                "sluice-proxy: IPVS {} (connection table size {})",
                info.version, info.conn_tab_size
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
