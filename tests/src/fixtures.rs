//! Objects and helpers the suites share: Kubernetes objects as JSON (what
//! the fake API server, a manifest directory or a deserializer takes),
//! each a base the test bends with a JSON merge patch ([`merge`]); a plain
//! HTTP GET; a test CA.

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use serde_json::{Value, json};

/// Applies a JSON merge patch (RFC 7386): objects merge key by key, `null`
/// removes a key, anything else (arrays too) replaces.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

fn patched(mut base: Value, patch: Value) -> Value {
    merge(&mut base, patch);
    base
}

/// A ClusterIP Service `namespace/name` on `cluster_ip` (both `clusterIP`
/// and `clusterIPs`), one port `http` 80 → 8080/TCP; `patch` merged over
/// it.
pub fn service(namespace: &str, name: &str, cluster_ip: &str, patch: Value) -> Value {
    patched(
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
            }
        }),
        patch,
    )
}

/// An IPv4 EndpointSlice `namespace/name` of Service `service`, port `http`
/// 8080/TCP, with `endpoints`; `patch` merged over it.
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    endpoints: Vec<Value>,
    patch: Value,
) -> Value {
    patched(
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints
        }),
        patch,
    )
}

/// A ready endpoint at `ip`; `patch` merged over it (`nodeName`,
/// `conditions`, ...).
pub fn endpoint(ip: &str, patch: Value) -> Value {
    patched(
        json!({"addresses": [ip], "conditions": {"ready": true}}),
        patch,
    )
}

/// Ready endpoints at `ips`.
pub fn ready_endpoints<S: AsRef<str>>(ips: &[S]) -> Vec<Value> {
    ips.iter()
        .map(|ip| endpoint(ip.as_ref(), json!({})))
        .collect()
}

/// A Node `name`; `patch` merged over it.
pub fn node(name: &str, patch: Value) -> Value {
    patched(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}),
        patch,
    )
}

/// An Ingress `namespace/name` with `spec`; `patch` merged over it.
pub fn ingress(namespace: &str, name: &str, spec: Value, patch: Value) -> Value {
    patched(
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec
        }),
        patch,
    )
}

/// An Ingress rule: `host`, prefix `path`, to `service`'s `port` (an
/// IngressServiceBackend port: `{"name": ..}` or `{"number": ..}`).
pub fn ingress_rule(host: &str, path: &str, service: &str, port: Value) -> Value {
    json!({"host": host, "http": {"paths": [{
        "path": path, "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": port}}
    }]}})
}

/// `GET path` over HTTP/1.1 with `Connection: close`: the whole response
/// as text (status line, headers, body), read within 5 s.
pub fn http_get(addr: impl ToSocketAddrs, path: &str) -> std::io::Result<String> {
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// [`http_get`] from async code: the whole response as text.
pub async fn http_get_async(
    addr: impl tokio::net::ToSocketAddrs,
    path: &str,
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    let read = s.read_to_string(&mut out);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(out)
}

/// A certificate authority for tests, and leaves it signs.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate signed by a [`TestCa`].
pub struct Leaf {
    /// The leaf then the CA, PEM.
    pub chain_pem: String,
    /// The leaf's key, PEM.
    pub key_pem: String,
    /// The leaf, DER.
    pub der: Vec<u8>,
}

impl TestCa {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for the DNS `names`.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = rcgen::CertificateParams::new(names)
            .expect("leaf params")
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_merge_remove_and_replace() {
        let s = service(
            "ns",
            "web",
            "10.96.0.1",
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"ports": [{"port": 53}], "type": null}}),
        );
        assert_eq!(s["metadata"]["labels"]["a"], "b");
        assert_eq!(s["spec"]["ports"], json!([{"port": 53}]));
        assert!(s["spec"].get("type").is_none());
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.96.0.1"]));
    }

    #[test]
    fn ca_signs_leaves() {
        let ca = TestCa::new("Test CA");
        let leaf = ca.leaf(&["a.test"]);
        assert!(leaf.chain_pem.ends_with(&ca.cert_pem));
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
    }
}
