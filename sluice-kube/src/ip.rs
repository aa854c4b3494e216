//! IP addresses as Kubernetes components read them from the API.

use std::net::{IpAddr, Ipv4Addr};

/// Parses an IP address the way kube-proxy does (`netutils.ParseIPSloppy`):
/// IPv4 octets may carry leading zeros (read as decimal), and an
/// IPv4-mapped IPv6 address is the IPv4 address.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    if s.len() > 64 {
        return None;
    }
    let ip = match s.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => IpAddr::V4(parse_ipv4_leading_zeros(s)?),
    };
    Some(match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    })
}

fn parse_ipv4_leading_zeros(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sloppy_ips() {
        assert_eq!(parse_ip("10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_ip("010.000.0.01"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_ip("::ffff:1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_ip("fd00::1"), Some("fd00::1".parse().unwrap()));
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.0004",
            "x",
            " 1.2.3.4",
        ] {
            assert_eq!(parse_ip(bad), None, "{bad}");
        }
    }
}
