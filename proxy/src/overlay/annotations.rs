//! flannel's Node annotations (prefix `flannel.alpha.coreos.com/`): their
//! names and text forms, written exactly as flanneld writes them and parsed
//! exactly as it parses them, so Sluice and flannel nodes read each other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::model::MacAddr;

/// flannel's default annotation prefix (`--kube-annotation-prefix`).
pub const PREFIX: &str = "flannel.alpha.coreos.com/";
/// `backend-type`: `vxlan`.
pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
/// `backend-data`: `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`.
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
/// `backend-v6-data`: the IPv6 device's backend data.
pub const BACKEND_V6_DATA: &str = "flannel.alpha.coreos.com/backend-v6-data";
/// `public-ip`: the node's IPv4 underlay address.
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
/// `public-ipv6` (not `public-ip-v6`).
pub const PUBLIC_IPV6: &str = "flannel.alpha.coreos.com/public-ipv6";
/// `kube-subnet-manager`: `true` on every node that takes part.
pub const KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";
/// Set by the user: replaces `public-ip` (the address need not be local).
pub const PUBLIC_IP_OVERWRITE: &str = "flannel.alpha.coreos.com/public-ip-overwrite";
/// Set by the user: replaces `public-ipv6`.
pub const PUBLIC_IPV6_OVERWRITE: &str = "flannel.alpha.coreos.com/public-ipv6-overwrite";
/// The one backend type this overlay speaks.
pub const VXLAN: &str = "vxlan";

/// The contents of a vxlan `backend-data` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendData {
    /// `VNI`; absent in the old `{"VtepMAC":…}` form (flannel does not
    /// check it: every node uses the configured VNI).
    pub vni: Option<u32>,
    /// `VtepMAC`.
    pub vtep_mac: MacAddr,
}

/// Why an annotation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {name}: {reason}")]
pub struct AnnotationError {
    /// The annotation's full name.
    pub name: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// `backend-data` as flanneld writes it: Go's `json.Marshal` of
/// `{VNI, VtepMAC}`, no spaces, lowercase MAC.
pub fn format_backend_data(vni: u32, mac: MacAddr) -> String {
    format!("{{\"VNI\":{vni},\"VtepMAC\":\"{mac}\"}}")
}

/// Go's `net.ParseMAC` for 6-byte addresses: `aa:bb:cc:dd:ee:ff`,
/// `aa-bb-cc-dd-ee-ff` or `aabb.ccdd.eeff`, any case.
fn parse_go_mac(s: &str) -> Option<MacAddr> {
    let hex = |p: &str| {
        (p.len() == 2)
            .then(|| u8::from_str_radix(p, 16).ok())
            .flatten()
    };
    let mut out = [0u8; 6];
    for sep in [':', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() == 6 {
            for (b, p) in out.iter_mut().zip(&parts) {
                *b = hex(p)?;
            }
            return Some(MacAddr(out));
        }
    }
    let groups: Vec<&str> = s.split('.').collect();
    if groups.len() == 3 && groups.iter().all(|g| g.len() == 4) {
        for (i, g) in groups.iter().enumerate() {
            out[2 * i] = hex(&g[..2])?;
            out[2 * i + 1] = hex(&g[2..])?;
        }
        return Some(MacAddr(out));
    }
    None
}

/// Reads a vxlan `backend-data` annotation as flanneld's
/// `json.Unmarshal` into `vxlanLeaseAttrs` does: keys match without regard
/// to case, `VNI` may be missing (old form), `VtepMAC` is required.
pub fn parse_backend_data(name: &'static str, text: &str) -> Result<BackendData, AnnotationError> {
    let err = |reason: String| AnnotationError { name, reason };
    let v: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(err("not a JSON object".into()));
    };
    let get = |key: &str| {
        obj.get(key).or_else(|| {
            obj.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
                .next_back()
        })
    };
    let vni = match get("VNI") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v < 1 << 24)
                .ok_or_else(|| err(format!("VNI {n} out of range")))?,
        ),
        Some(other) => return Err(err(format!("VNI {other} is not a number"))),
    };
    let vtep_mac = match get("VtepMAC") {
        Some(Value::String(s)) => {
            parse_go_mac(s).ok_or_else(|| err(format!("VtepMAC {s:?} is not a MAC address")))?
        }
        Some(other) => return Err(err(format!("VtepMAC {other} is not a string"))),
        None => return Err(err("no VtepMAC".into())),
    };
    Ok(BackendData { vni, vtep_mac })
}

/// Reads `public-ip` (IPv4, as flannel's `ip.ParseIP4`).
pub fn parse_public_ip(text: &str) -> Result<Ipv4Addr, AnnotationError> {
    text.parse::<Ipv4Addr>().map_err(|_| AnnotationError {
        name: PUBLIC_IP,
        reason: format!("{text:?} is not an IPv4 address"),
    })
}

/// Reads `public-ipv6`.
pub fn parse_public_ipv6(text: &str) -> Result<Ipv6Addr, AnnotationError> {
    text.parse::<Ipv6Addr>().map_err(|_| AnnotationError {
        name: PUBLIC_IPV6,
        reason: format!("{text:?} is not an IPv6 address"),
    })
}

/// The annotations one node publishes, as (name, value) pairs in flannel's
/// text forms. `v4`/`v6` are `(backend data, public address)` for each
/// enabled family.
pub fn node_annotations(
    vni: u32,
    v4: Option<(MacAddr, Ipv4Addr)>,
    v6: Option<(MacAddr, Ipv6Addr)>,
) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (BACKEND_TYPE, VXLAN.to_owned()),
        (KUBE_SUBNET_MANAGER, "true".to_owned()),
    ];
    if let Some((mac, ip)) = v4 {
        out.push((BACKEND_DATA, format_backend_data(vni, mac)));
        out.push((PUBLIC_IP, IpAddr::V4(ip).to_string()));
    }
    if let Some((mac, ip)) = v6 {
        out.push((BACKEND_V6_DATA, format_backend_data(vni, mac)));
        out.push((PUBLIC_IPV6, IpAddr::V6(ip).to_string()));
    }
    out.sort();
    out
}
