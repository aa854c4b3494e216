//! Defaulting and allocation the real API server performs on writes, for
//! the fields a service proxy and an ingress controller read.

use serde_json::{Value, json};

/// Allocators for Service cluster IPs (from 10.96.0.0/16, starting at
/// 10.96.0.10) and node ports (30000-32767).
#[derive(Debug, Clone)]
pub(crate) struct Allocators {
    next_ip: u32,
    next_node_port: u32,
}

impl Default for Allocators {
    fn default() -> Self {
        Allocators {
            next_ip: 10,
            next_node_port: 30000,
        }
    }
}

impl Allocators {
    fn cluster_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip = if n >= 65_534 { 10 } else { n + 1 };
        format!("10.96.{}.{}", n / 256, n % 256)
    }

    fn node_port(&mut self) -> u32 {
        let p = self.next_node_port;
        self.next_node_port = if p >= 32_767 { 30_000 } else { p + 1 };
        p
    }
}

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Value::Object(m) = obj
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.to_string(), value);
    }
}

/// Applies defaults to a Service (every write) and allocates its cluster IP
/// and node ports. `old` is the stored object on updates: allocated values
/// missing from the new object are carried over, as the real server does.
pub(crate) fn service(obj: &mut Value, old: Option<&Value>, alloc: &mut Allocators) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let old_spec = old.and_then(|o| o.get("spec"));
    let spec = &mut obj["spec"];
    set_default(spec, "type", json!("ClusterIP"));
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    set_default(spec, "sessionAffinity", json!("None"));
    if ty == "ExternalName" {
        return;
    }
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let carried = old_spec
            .and_then(|s| s.get("clusterIP"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let ip = carried.unwrap_or_else(|| alloc.cluster_ip());
        spec["clusterIP"] = json!(ip);
    }
    let ip = spec["clusterIP"].clone();
    if spec.get("clusterIPs").is_none_or(Value::is_null) {
        spec["clusterIPs"] = json!([ip]);
    }
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    let wants_node_ports = ty == "NodePort"
        || (ty == "LoadBalancer"
            && spec.get("allocateLoadBalancerNodePorts") != Some(&json!(false)));
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter(|p| p.is_object()) {
            set_default(port, "protocol", json!("TCP"));
            if port.get("targetPort").is_none_or(Value::is_null)
                && let Some(p) = port.get("port").cloned()
            {
                port["targetPort"] = p;
            }
            if wants_node_ports && port.get("nodePort").is_none_or(Value::is_null) {
                let carried = old_spec
                    .and_then(|s| s.get("ports"))
                    .and_then(Value::as_array)
                    .and_then(|old| {
                        old.iter().find(|o| {
                            o.get("port") == port.get("port")
                                && o.get("protocol") == port.get("protocol")
                        })
                    })
                    .and_then(|o| o.get("nodePort"))
                    .filter(|n| !n.is_null())
                    .cloned();
                port["nodePort"] = carried.unwrap_or_else(|| json!(alloc.node_port()));
            }
        }
    }
}

/// Defaults an EndpointSlice's port protocols to TCP.
pub(crate) fn endpoint_slice(obj: &mut Value) {
    if let Some(Value::Array(ports)) = obj.get_mut("ports") {
        for port in ports.iter_mut() {
            set_default(port, "protocol", json!("TCP"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_defaults_and_carry_over() {
        let mut a = Allocators::default();
        let mut s = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        service(&mut s, None, &mut a);
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
        let mut upd = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        service(&mut upd, Some(&s), &mut a);
        assert_eq!(upd["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(upd["spec"]["ports"][0]["nodePort"], 30000);
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        service(&mut headless, None, &mut a);
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let mut odd =
            json!({"spec": {"type": "NodePort", "ports": [5, null, "x"], "clusterIP": 7}});
        service(&mut odd, None, &mut a);
        assert_eq!(odd["spec"]["ports"], json!([5, null, "x"]));
        let mut odd = json!({"spec": {"type": 5, "ports": {"a": 1}}});
        service(&mut odd, None, &mut a);
        let mut ext = json!({"spec": {"type": "ExternalName", "externalName": "x"}});
        service(&mut ext, None, &mut a);
        assert!(ext["spec"].get("clusterIP").is_none());
    }
}
