//! The `KubeProxyConfiguration` file parser (`proxy/src/config/file.rs`,
//! what `--config` reads) on arbitrary bytes.
//!
//! Never a panic, in the parser or in the validation that turns the file
//! into a `ProxyConfig` (`ProxyConfig::merge` with no flags). And a file
//! that parses round-trips: rendered back to YAML (block style, every
//! string double-quoted with escapes, as `render` below writes it), it
//! parses again to the same value (compared by `Debug`, the structs have
//! no `PartialEq`), and validates to the same `ProxyConfig` or the same
//! error.
#![no_main]

use std::fmt::Write as _;

use libfuzzer_sys::fuzz_target;
use sluice_proxy::config::{Flags, KubeProxyConfiguration, ProxyConfig, parse_config_file};

fuzz_target!(|data: &[u8]| {
    // `--config` is read with read_to_string, so the parser only ever sees
    // UTF-8; lossy decoding keeps every byte pattern reachable.
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = parse_config_file(&text) else {
        return;
    };
    let flags = Flags::default();
    let merged = ProxyConfig::merge(&cfg, &flags);
    let yaml = render(&cfg);
    let again = parse_config_file(&yaml)
        .unwrap_or_else(|e| panic!("rendered file does not parse: {e}\n{yaml}\nfrom {text:?}"));
    assert_eq!(
        format!("{cfg:?}"),
        format!("{again:?}"),
        "round trip changed the file\n{yaml}\nfrom {text:?}"
    );
    assert_eq!(
        merged,
        ProxyConfig::merge(&again, &flags),
        "validation differs"
    );
});

/// A YAML double-quoted scalar: printable ASCII as is, everything else
/// escaped.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Writes `key: value` lines at an indent.
struct Doc {
    out: String,
    indent: usize,
}

impl Doc {
    fn line(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.out, "{:w$}{key}: {value}", "", w = self.indent);
    }

    fn str(&mut self, key: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.line(key, &quoted(v));
        }
    }

    fn bool(&mut self, key: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.line(key, if v { "true" } else { "false" });
        }
    }

    fn list(&mut self, key: &str, v: &Option<Vec<String>>) {
        if let Some(v) = v {
            let items: Vec<String> = v.iter().map(|s| quoted(s)).collect();
            self.line(key, &format!("[{}]", items.join(", ")));
        }
    }

    /// A YAML number (`.nan`, `.inf`, `-.inf` for what Rust prints
    /// otherwise).
    fn float(&mut self, key: &str, v: Option<f32>) {
        let Some(v) = v else { return };
        let text = match v {
            v if v.is_nan() => ".nan".to_owned(),
            v if v == f32::INFINITY => ".inf".to_owned(),
            v if v == f32::NEG_INFINITY => "-.inf".to_owned(),
            v => format!("{v:?}"),
        };
        self.line(key, &text);
    }

    fn int(&mut self, key: &str, v: Option<i32>) {
        if let Some(v) = v {
            self.line(key, &v.to_string());
        }
    }

    fn any<T>(&mut self, key: &str, v: &Option<T>) {
        if v.is_some() {
            self.line(key, "{}");
        }
    }

    /// A nested mapping; `{}` when it has no keys.
    fn section<T>(&mut self, key: &str, v: &Option<T>, body: impl FnOnce(&mut Doc, &T)) {
        let Some(v) = v else { return };
        let mut inner = Doc {
            out: String::new(),
            indent: self.indent + 2,
        };
        body(&mut inner, v);
        if inner.out.is_empty() {
            self.line(key, "{}");
        } else {
            let _ = writeln!(self.out, "{:w$}{key}:", "", w = self.indent);
            self.out.push_str(&inner.out);
        }
    }
}

fn render(c: &KubeProxyConfiguration) -> String {
    let mut d = Doc {
        out: String::new(),
        indent: 0,
    };
    d.str("apiVersion", &c.api_version);
    d.str("kind", &c.kind);
    d.str("mode", &c.mode);
    d.str("clusterCIDR", &c.cluster_cidr);
    d.list("nodePortAddresses", &c.node_port_addresses);
    d.bool("masqueradeAll", c.masquerade_all);
    d.str("healthzBindAddress", &c.healthz_bind_address);
    d.str("metricsBindAddress", &c.metrics_bind_address);
    d.str("hostnameOverride", &c.hostname_override);
    d.str("detectLocalMode", &c.detect_local_mode);
    d.section("detectLocal", &c.detect_local, |d, s| {
        d.str("bridgeInterface", &s.bridge_interface);
        d.str("interfaceNamePrefix", &s.interface_name_prefix);
    });
    d.section("ipvs", &c.ipvs, |d, s| {
        d.str("scheduler", &s.scheduler);
        d.str("syncPeriod", &s.sync_period);
        d.str("minSyncPeriod", &s.min_sync_period);
        d.list("excludeCIDRs", &s.exclude_cidrs);
        d.bool("strictARP", s.strict_arp);
        d.str("tcpTimeout", &s.tcp_timeout);
        d.str("tcpFinTimeout", &s.tcp_fin_timeout);
        d.str("udpTimeout", &s.udp_timeout);
    });
    d.section("iptables", &c.iptables, |d, s| {
        d.bool("masqueradeAll", s.masquerade_all);
        if let Some(bit) = s.masquerade_bit {
            d.line("masqueradeBit", &bit.to_string());
        }
        d.any("minSyncPeriod", &s.min_sync_period);
        d.any("syncPeriod", &s.sync_period);
        d.any("localhostNodePorts", &s.localhost_node_ports);
    });
    d.str("syncPeriod", &c.sync_period);
    d.str("minSyncPeriod", &c.min_sync_period);
    d.section("clientConnection", &c.client_connection, |d, s| {
        d.str("kubeconfig", &s.kubeconfig);
        d.any("acceptContentTypes", &s.accept_content_types);
        d.any("contentType", &s.content_type);
        d.float("qps", s.qps);
        d.int("burst", s.burst);
    });
    d.any("bindAddress", &c.bind_address);
    d.any("bindAddressHardFail", &c.bind_address_hard_fail);
    d.any("configSyncPeriod", &c.config_sync_period);
    d.any("conntrack", &c.conntrack);
    d.any("enableProfiling", &c.enable_profiling);
    d.any("featureGates", &c.feature_gates);
    d.any("logging", &c.logging);
    d.any("nftables", &c.nftables);
    d.any("oomScoreAdj", &c.oom_score_adj);
    d.any("portRange", &c.port_range);
    d.any(
        "showHiddenMetricsForVersion",
        &c.show_hidden_metrics_for_version,
    );
    d.any("winkernel", &c.winkernel);
    d.any("windowsRunAsService", &c.windows_run_as_service);
    if d.out.is_empty() {
        d.out.push_str("{}\n");
    }
    d.out
}
