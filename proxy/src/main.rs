//! `sluice-proxy`: the per-node IPVS service proxy, a drop-in replacement
//! for `kube-proxy --proxy-mode=ipvs`. See `sluice-proxy --help`.

use clap::Parser;
use sluice_proxy::app;
use sluice_proxy::config::{Flags, ProxyConfig};

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    let cfg = match ProxyConfig::from_flags(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-proxy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    sluice_kube::logging::init(cfg.log_json);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-proxy: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        if cfg.cleanup {
            app::cleanup(&cfg)
                .await
                .map(|()| tracing::info!("cleanup done"))
        } else {
            app::run(cfg).await
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sluice-proxy failed");
            eprintln!("sluice-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
