//! flannel's `net-conf.json` (the `kube-flannel-cfg` ConfigMap's file),
//! read as flanneld reads it: Go's `encoding/json` matches keys without
//! regard to case (an exact match wins), `EnableIPv4` defaults to true, and
//! only the `vxlan` backend is accepted here.

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{Map, Value};

/// The overlay's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    /// `Network`: the cluster's IPv4 pod network (required with IPv4).
    pub network: Option<Ipv4Net>,
    /// `IPv6Network`: the cluster's IPv6 pod network (required with IPv6).
    pub ipv6_network: Option<Ipv6Net>,
    /// `EnableIPv4` (default true).
    pub enable_ipv4: bool,
    /// `EnableIPv6` (default false).
    pub enable_ipv6: bool,
    /// The `Backend` object.
    pub backend: VxlanBackend,
}

/// `Backend` with `Type: vxlan`, with flannel's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanBackend {
    /// `VNI` (default 1).
    pub vni: u32,
    /// `Port`; 0 leaves the kernel's default (8472).
    pub port: u16,
    /// `MTU`; 0 means the underlay interface's MTU. The device gets this
    /// minus 50.
    pub mtu: u32,
    /// `GBP` (default false).
    pub gbp: bool,
    /// `Learning` (default false).
    pub learning: bool,
    /// `DirectRouting` (default false): nodes on the same L2 segment are
    /// routed directly over the underlay.
    pub direct_routing: bool,
}

impl Default for VxlanBackend {
    fn default() -> Self {
        Self {
            vni: 1,
            port: 0,
            mtu: 0,
            gbp: false,
            learning: false,
            direct_routing: false,
        }
    }
}

/// Why a net-conf.json was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("net-conf.json: {0}")]
pub struct NetConfError(pub String);

fn bad(msg: impl Into<String>) -> NetConfError {
    NetConfError(msg.into())
}

/// Go's rule: an exact key match wins, otherwise the last key equal to
/// `name` ignoring ASCII case.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .next_back()
    })
}

fn string<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, NetConfError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(format!("{name} must be a string, not {other}"))),
    }
}

fn boolean(obj: &Map<String, Value>, name: &str, default: bool) -> Result<bool, NetConfError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(format!("{name} must be true or false, not {other}"))),
    }
}

fn number<T: TryFrom<u64>>(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<T>, NetConfError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| T::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{name} {n} is out of range"))),
        Some(other) => Err(bad(format!("{name} must be a number, not {other}"))),
    }
}

/// Parses and validates net-conf.json text.
pub fn parse_net_conf(text: &str) -> Result<NetConf, NetConfError> {
    let root: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Object(obj) = &root else {
        return Err(bad("must be a JSON object"));
    };
    let network = string(obj, "Network")?
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Ipv4Net>()
                .map(|n| n.trunc())
                .map_err(|_| bad(format!("Network {s:?} is not an IPv4 CIDR")))
        })
        .transpose()?;
    let ipv6_network = string(obj, "IPv6Network")?
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Ipv6Net>()
                .map(|n| n.trunc())
                .map_err(|_| bad(format!("IPv6Network {s:?} is not an IPv6 CIDR")))
        })
        .transpose()?;
    let enable_ipv4 = boolean(obj, "EnableIPv4", true)?;
    let enable_ipv6 = boolean(obj, "EnableIPv6", false)?;
    if !enable_ipv4 && !enable_ipv6 {
        return Err(bad("EnableIPv4 and EnableIPv6 are both false"));
    }
    if enable_ipv4 && network.is_none() {
        return Err(bad("Network is required when EnableIPv4 is true"));
    }
    if enable_ipv6 && ipv6_network.is_none() {
        return Err(bad("IPv6Network is required when EnableIPv6 is true"));
    }
    let backend = match field(obj, "Backend") {
        None | Some(Value::Null) => {
            return Err(bad(
                "no Backend: flannel's default is type udp; only {\"Type\":\"vxlan\"} is supported",
            ));
        }
        Some(Value::Object(b)) => backend(b)?,
        Some(other) => return Err(bad(format!("Backend must be an object, not {other}"))),
    };
    Ok(NetConf {
        network: network.filter(|_| enable_ipv4),
        ipv6_network: ipv6_network.filter(|_| enable_ipv6),
        enable_ipv4,
        enable_ipv6,
        backend,
    })
}

fn backend(b: &Map<String, Value>) -> Result<VxlanBackend, NetConfError> {
    let ty = string(b, "Type")?.unwrap_or("udp");
    // flannel lower-cases the type before looking the backend up.
    if !ty.eq_ignore_ascii_case("vxlan") {
        return Err(bad(format!(
            "Backend Type {ty:?} is not supported: only vxlan is"
        )));
    }
    let d = VxlanBackend::default();
    let vni: u32 = number(b, "VNI")?.unwrap_or(d.vni);
    // flannel treats VNI 0 as "unset" and uses the default.
    let vni = if vni == 0 { d.vni } else { vni };
    if vni >= 1 << 24 {
        return Err(bad(format!("VNI {vni} does not fit in 24 bits")));
    }
    let mtu: u32 = number(b, "MTU")?.unwrap_or(0);
    if mtu != 0 && mtu <= 50 + 68 {
        return Err(bad(format!(
            "MTU {mtu} leaves no room after the 50-byte VXLAN header"
        )));
    }
    Ok(VxlanBackend {
        vni,
        port: number(b, "Port")?.unwrap_or(0),
        mtu,
        gbp: boolean(b, "GBP", false)?,
        learning: boolean(b, "Learning", false)?,
        direct_routing: boolean(b, "DirectRouting", false)?,
    })
}
