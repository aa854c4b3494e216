//! Prometheus metrics with kube-proxy's names, so existing dashboards and
//! alerts keep working. Counters are registered without the `_total` suffix
//! (prometheus-client appends it).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::app::{Repairs, SyncError, SyncStep};

/// The proxy's metrics.
pub struct Metrics {
    registry: Registry,
    /// `kubeproxy_sync_proxy_rules_duration_seconds`.
    pub sync_duration: Histogram,
    /// `kubeproxy_network_programming_duration_seconds`.
    pub network_programming: Histogram,
    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`.
    pub last_sync: Gauge<f64, AtomicU64>,
    /// `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds`.
    pub last_queued: Gauge<f64, AtomicU64>,
    /// `kubeproxy_sync_proxy_rules_service_changes_total`.
    pub service_changes: Counter,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_total`.
    pub endpoint_changes: Counter,
    /// `kubeproxy_sync_proxy_rules_service_changes_pending`.
    pub service_changes_pending: Gauge,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_pending`.
    pub endpoint_changes_pending: Gauge,
    /// `kubeproxy_sync_proxy_rules_iptables_restore_failures_total`.
    pub iptables_restore_failures: Counter,
    /// `kubeproxy_sluice_netlink_operations_total`: IPVS and address changes sent.
    pub netlink_operations: Counter,
    /// `kubeproxy_sluice_sync_failures_total{step}`: failed sync steps.
    pub sync_failures: Family<StepLabel, Counter>,
    /// `kubeproxy_sluice_drift_repairs_total{object}`: kernel objects a
    /// periodic full sync found differing from the plan and fixed.
    pub drift_repairs: Family<ObjectLabel, Counter>,
}

/// The label of [`Metrics::drift_repairs`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ObjectLabel {
    /// `virtual_server`, `real_server`, `address`, `set`, `set_member` or
    /// `rule`.
    pub object: &'static str,
}

/// Which parts of a full sync may count as drift: those the plan did not
/// change in the same sync (their changes are planned, not repairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftParts {
    /// IPVS.
    pub ipvs: bool,
    /// kube-ipvs0's addresses.
    pub addresses: bool,
    /// ipsets and iptables.
    pub netfilter: bool,
}

/// The label of [`Metrics::sync_failures`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StepLabel {
    /// The step that failed.
    pub step: SyncStep,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        // kube-proxy: 0.001 * 2^n, n = 0..14.
        let sync_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let network_programming = Histogram::new([
            0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 30.0, 60.0,
            120.0, 300.0,
        ]);
        let m = Self {
            sync_duration,
            network_programming,
            last_sync: Gauge::default(),
            last_queued: Gauge::default(),
            service_changes: Counter::default(),
            endpoint_changes: Counter::default(),
            service_changes_pending: Gauge::default(),
            endpoint_changes_pending: Gauge::default(),
            iptables_restore_failures: Counter::default(),
            netlink_operations: Counter::default(),
            sync_failures: Family::default(),
            drift_repairs: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            m.network_programming.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_sync.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            m.last_queued.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.service_changes.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            m.endpoint_changes.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "Pending proxy rules Service changes",
            m.service_changes_pending.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            m.endpoint_changes_pending.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures",
            "Cumulative proxy iptables restore failures",
            m.iptables_restore_failures.clone(),
        );
        registry.register(
            "kubeproxy_sluice_netlink_operations",
            "Netlink changes sent to IPVS and rtnetlink (reads excluded)",
            m.netlink_operations.clone(),
        );
        registry.register(
            "kubeproxy_sluice_sync_failures",
            "Sync steps that failed (and are retried), by step",
            m.sync_failures.clone(),
        );
        registry.register(
            "kubeproxy_sluice_drift_repairs",
            "Kernel objects (IPVS, kube-ipvs0 addresses, ipsets, iptables rules) a periodic full sync found changed by someone else and repaired, by object",
            m.drift_repairs.clone(),
        );
        Self { registry, ..m }
    }

    /// Logs each failed step (with its Display) and counts it by step.
    pub fn sync_failed(&self, errors: &[SyncError]) {
        for e in errors {
            tracing::warn!(step = %e.step(), error = %e, "sync step failed; will retry");
            self.sync_failures
                .get_or_create(&StepLabel { step: e.step() })
                .inc();
        }
    }

    /// Counts what a full sync repaired in the parts the plan left alone.
    pub fn drift_repaired(&self, r: &Repairs, parts: DriftParts) {
        let counts = [
            (parts.ipvs, "virtual_server", r.virtual_servers),
            (parts.ipvs, "real_server", r.real_servers),
            (parts.addresses, "address", r.addresses),
            (parts.netfilter, "set", r.sets),
            (parts.netfilter, "set_member", r.set_members),
            (parts.netfilter, "rule", r.rules),
        ];
        for (counted, object, n) in counts {
            if counted && n > 0 {
                tracing::warn!(
                    object,
                    repaired = n,
                    "kernel state changed behind our back; repaired"
                );
                self.drift_repairs
                    .get_or_create(&ObjectLabel { object })
                    .inc_by(n);
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_kube_proxy_names() {
        let m = Metrics::new();
        m.service_changes.inc();
        m.sync_duration.observe(0.004);
        m.iptables_restore_failures.inc_by(2);
        let repairs = Repairs {
            real_servers: 3,
            addresses: 5,
            rules: 1,
            ..Repairs::default()
        };
        let parts = DriftParts {
            ipvs: true,
            addresses: false,
            netfilter: true,
        };
        m.drift_repaired(&repairs, parts);
        let text = m.render();
        assert!(
            !text.contains("object=\"address\""),
            "a planned part counted:\n{text}"
        );
        for name in [
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1",
            "kubeproxy_network_programming_duration_seconds_count 0",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds 0",
            "kubeproxy_sync_proxy_rules_service_changes_total 1",
            "kubeproxy_sync_proxy_rules_endpoint_changes_total 0",
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 2",
            "kubeproxy_sluice_drift_repairs_total{object=\"real_server\"} 3",
            "kubeproxy_sluice_drift_repairs_total{object=\"rule\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
