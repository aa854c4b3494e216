//! Typed annotation and ConfigMap values, parsed the way ingress-nginx (Go)
//! parses them, so that a value ingress-nginx accepted means the same here
//! and a value it refused is refused here too.
//!
//! * Booleans: Go's `strconv.ParseBool` (`1 t T TRUE true True` and
//!   `0 f F FALSE false False`), no surrounding space.
//! * Integers: Go's `strconv.Atoi` (optional sign, decimal digits, no space).
//! * Sizes ([`NginxSize`]): nginx's size syntax `\d+[kKmMgG]?`, `0` meaning
//!   unlimited where nginx says so (`client_max_body_size 0`).
//! * Times ([`NginxDuration`]): nginx's time syntax (`500ms`, `5s`, `1m`,
//!   `1h30m`, a bare number is seconds). The proxy timeouts are not times:
//!   ingress-nginx takes them as whole seconds ([`Seconds`]), so `"60s"`
//!   there is invalid, as it is in ingress-nginx.
//! * Address lists ([`CidrList`]): comma-separated IPs and CIDRs; one bad
//!   entry makes the whole list invalid (ingress-nginx's `ParseCIDRs`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Why a value was refused. Shown in the Warning Event next to the
/// annotation (or ConfigMap key) and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value is empty (ingress-nginx treats it as invalid too).
    #[error("the value is empty")]
    Empty,
    /// Not one of Go's boolean spellings.
    #[error("want \"true\" or \"false\"")]
    NotBool,
    /// Not a whole decimal number.
    #[error("want a whole number")]
    NotInteger,
    /// A number outside the accepted range.
    #[error("want a number from {min} to {max}")]
    OutOfRange {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// Not an nginx size.
    #[error("want an nginx size such as 8k, 1m or 1g (0 = unlimited)")]
    NotSize,
    /// Not an nginx time.
    #[error("want an nginx time such as 500ms, 5s, 1m or 1h")]
    NotDuration,
    /// An entry of an address list is neither an IP nor a CIDR.
    #[error("{0:?} is not an IP address or CIDR")]
    NotCidr(String),
    /// Not a valid HTTP header (or cookie) name.
    #[error("{0:?} is not a valid header name")]
    NotHeaderName(String),
    /// Not one of the accepted words.
    #[error("want one of {0}")]
    NotOneOf(&'static str),
    /// Anything else, said in words.
    #[error("{0}")]
    Invalid(String),
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, ValueError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        "" => Err(ValueError::Empty),
        _ => Err(ValueError::NotBool),
    }
}

/// Go's `strconv.Atoi` (64-bit).
pub fn parse_int(s: &str) -> Result<i64, ValueError> {
    if s.is_empty() {
        return Err(ValueError::Empty);
    }
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::NotInteger);
    }
    s.parse::<i64>().map_err(|_| ValueError::NotInteger)
}

/// [`parse_int`] within `min..=max`.
pub fn parse_int_in(s: &str, min: i64, max: i64) -> Result<i64, ValueError> {
    let n = parse_int(s)?;
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(ValueError::OutOfRange { min, max })
    }
}

/// [`parse_int`] as a `u32` (non-negative).
pub fn parse_u32(s: &str) -> Result<u32, ValueError> {
    parse_int_in(s, 0, i64::from(u32::MAX)).map(|n| n as u32)
}

/// A byte size in nginx syntax: digits and an optional `k`, `m` or `g`
/// (either case, powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NginxSize {
    bytes: u64,
}

impl NginxSize {
    /// A size of `bytes` bytes.
    pub const fn bytes(bytes: u64) -> Self {
        Self { bytes }
    }

    /// The size in bytes.
    pub const fn as_bytes(self) -> u64 {
        self.bytes
    }

    /// The size as a limit: `None` for `0`, which nginx takes as "no limit"
    /// where the size is a limit (`client_max_body_size 0`).
    pub const fn limit(self) -> Option<u64> {
        if self.bytes == 0 {
            None
        } else {
            Some(self.bytes)
        }
    }
}

impl FromStr for NginxSize {
    type Err = ValueError;

    /// Leading and trailing space is ignored (ingress-nginx trims before
    /// checking); `b` and fractional sizes are refused, as nginx refuses
    /// them in `client_max_body_size`.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        let (digits, mult) = match s.as_bytes()[s.len() - 1] {
            b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
            b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
            b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
            _ => (s, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::NotSize);
        }
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .map(Self::bytes)
            .ok_or(ValueError::NotSize)
    }
}

impl fmt::Display for NginxSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bytes;
        match b {
            0 => f.write_str("0"),
            _ if b.is_multiple_of(1 << 30) => write!(f, "{}g", b >> 30),
            _ if b.is_multiple_of(1 << 20) => write!(f, "{}m", b >> 20),
            _ if b.is_multiple_of(1 << 10) => write!(f, "{}k", b >> 10),
            _ => write!(f, "{b}"),
        }
    }
}

/// A time in nginx syntax: one or more `<number><unit>` with units `ms`,
/// `s`, `m`, `h`, `d`, `w`, `M` (30 days), `y` (365 days) from largest to
/// smallest, each at most once; a bare number is seconds (`"60"`, or the
/// last part of `"1m 30"`). Spaces between parts are allowed, as nginx
/// allows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NginxDuration {
    millis: u64,
}

impl NginxDuration {
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1000,
        }
    }

    /// As a `std` duration.
    pub const fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
}

impl FromStr for NginxDuration {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        // Units from largest to smallest, with their rank and milliseconds.
        const UNITS: [(&str, u64); 8] = [
            ("y", 365 * 86_400_000),
            ("M", 30 * 86_400_000),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ];
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        let mut rest = s;
        let mut total: u64 = 0;
        // Index into UNITS that the next unit must be at or after.
        let mut next_rank = 0;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(ValueError::NotDuration);
            }
            let n: u64 = rest[..end].parse().map_err(|_| ValueError::NotDuration)?;
            rest = &rest[end..];
            let unit_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            let (rank, ms) = if unit.is_empty() {
                // A bare number: seconds, and it must be the last part.
                if !rest.trim_start().is_empty() {
                    return Err(ValueError::NotDuration);
                }
                (6, 1000)
            } else {
                let rank = UNITS
                    .iter()
                    .position(|(u, _)| *u == unit)
                    .ok_or(ValueError::NotDuration)?;
                (rank, UNITS[rank].1)
            };
            if rank < next_rank {
                return Err(ValueError::NotDuration);
            }
            next_rank = rank + 1;
            total = n
                .checked_mul(ms)
                .and_then(|v| total.checked_add(v))
                .ok_or(ValueError::NotDuration)?;
            rest = rest[unit_end..].trim_start();
        }
        Ok(Self { millis: total })
    }
}

impl fmt::Display for NginxDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis.is_multiple_of(1000) {
            write!(f, "{}s", self.millis / 1000)
        } else {
            write!(f, "{}ms", self.millis)
        }
    }
}

/// Whole seconds, as ingress-nginx takes its proxy timeouts
/// (`proxy-read-timeout: "120"`; rendered as `120s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seconds(pub u32);

impl Seconds {
    /// As a `std` duration.
    pub const fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0 as u64)
    }
}

impl FromStr for Seconds {
    type Err = ValueError;

    /// Go's `Atoi`; negative values are refused (nginx would refuse the
    /// rendered `-5s` and with it the whole configuration).
    fn from_str(s: &str) -> Result<Self, ValueError> {
        parse_u32(s).map(Seconds)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

/// A list of client address ranges (allow-lists, deny-lists, rate-limit
/// exemptions, trusted proxies). Never empty when parsed from a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CidrList(Vec<IpNet>);

impl CidrList {
    /// A list of the given ranges (host bits cleared, duplicates removed,
    /// sorted).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        v.sort();
        v.dedup();
        Self(v)
    }

    /// The ranges.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether the list has no range.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` is in one of the ranges. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`, what a dual-stack socket reports) is taken as
    /// its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&addr))
    }
}

impl FromStr for CidrList {
    type Err = ValueError;

    /// Comma-separated IPs (`10.0.0.1`, `::1`) and CIDRs (`10.0.0.0/8`;
    /// host bits are cleared, as Go's `ParseCIDR` does); entries are
    /// trimmed; an empty entry or one that is neither is an error for the
    /// whole list.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s.trim().is_empty() {
            return Err(ValueError::Empty);
        }
        let mut nets = Vec::new();
        for entry in s.split(',') {
            let e = entry.trim();
            let net = match e.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match e.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => return Err(ValueError::NotCidr(e.to_owned())),
                },
            };
            nets.push(net);
        }
        Ok(Self::new(nets))
    }
}

impl fmt::Display for CidrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// Parses an HTTP header name (RFC 9110 token; stored lower-case).
pub fn parse_header_name(s: &str) -> Result<http::HeaderName, ValueError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ValueError::Empty);
    }
    http::HeaderName::from_bytes(s.as_bytes()).map_err(|_| ValueError::NotHeaderName(s.to_owned()))
}

/// Parses a comma-separated list of header names (`auth-response-headers`,
/// `cors-allow-headers`); empty entries are skipped, as ingress-nginx
/// skips them; names must match `[A-Za-z0-9_-]+` as ingress-nginx
/// requires.
pub fn parse_header_list(s: &str) -> Result<Vec<http::HeaderName>, ValueError> {
    let mut out = Vec::new();
    for h in s.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        if !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ValueError::NotHeaderName(h.to_owned()));
        }
        out.push(parse_header_name(h)?);
    }
    if out.is_empty() {
        return Err(ValueError::Empty);
    }
    Ok(out)
}

/// A cookie name: a non-empty token (RFC 6265 `cookie-name`), limited to
/// the characters ingress-nginx accepts (`[A-Za-z0-9._~:/-]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CookieName(String);

impl CookieName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CookieName {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValueError::NotHeaderName(s.to_owned()))
        }
    }
}

impl fmt::Display for CookieName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A namespaced object named by an annotation: `name` (the Ingress's
/// namespace) or `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    /// Namespace (the Ingress's when the value had none).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectName {
    /// Parses `name` or `namespace/name` (DNS-1123 subdomain names) for an
    /// Ingress in `namespace`.
    pub fn parse(s: &str, namespace: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        let (ns, name) = match s.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (namespace, s),
        };
        for part in [ns, name] {
            if !is_dns_subdomain(part) {
                return Err(ValueError::Invalid(format!(
                    "{s:?} is not NAME or NAMESPACE/NAME"
                )));
            }
        }
        Ok(Self {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Whether the object is in `namespace`.
    pub fn is_in(&self, namespace: &str) -> bool {
        self.namespace == namespace
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// DNS-1123 subdomain: lower-case alphanumerics, `-` and `.`, starting and
/// ending alphanumeric, at most 253 characters.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// DNS-1035 label (a Service name): lower-case alphanumerics and `-`,
/// starting with a letter, ending alphanumeric, at most 63 characters.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["yes", "on", " true", "tRUE", "2"] {
            assert_eq!(parse_bool(bad), Err(ValueError::NotBool), "{bad}");
        }
        assert_eq!(parse_bool(""), Err(ValueError::Empty));
    }

    #[test]
    fn go_ints() {
        assert_eq!(parse_int("42"), Ok(42));
        assert_eq!(parse_int("+7"), Ok(7));
        assert_eq!(parse_int("-7"), Ok(-7));
        assert_eq!(parse_int("007"), Ok(7));
        for bad in ["", " 1", "1 ", "1.5", "0x10", "60s", "+", "-", "1e3"] {
            assert!(parse_int(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_int("99999999999999999999"),
            Err(ValueError::NotInteger)
        );
        assert_eq!(
            parse_int_in("101", 0, 100),
            Err(ValueError::OutOfRange { min: 0, max: 100 })
        );
        assert_eq!("120".parse::<Seconds>(), Ok(Seconds(120)));
        assert!("-5".parse::<Seconds>().is_err());
        assert!(
            "60s".parse::<Seconds>().is_err(),
            "ingress-nginx refuses units"
        );
    }

    #[test]
    fn nginx_sizes() {
        let s = |v: &str| v.parse::<NginxSize>().map(NginxSize::as_bytes);
        assert_eq!(s("0"), Ok(0));
        assert_eq!(s("1000"), Ok(1000));
        assert_eq!(s("8k"), Ok(8192));
        assert_eq!(s("8K"), Ok(8192));
        assert_eq!(s("1m"), Ok(1 << 20));
        assert_eq!(s(" 1M "), Ok(1 << 20));
        assert_eq!(s("2g"), Ok(2 << 30));
        for bad in ["", "1.5m", "1mb", "10b", "k", "-1", "1 m", "1t"] {
            assert!(s(bad).is_err(), "{bad}");
        }
        assert_eq!(s("99999999999999999999g"), Err(ValueError::NotSize));
        assert_eq!("0".parse::<NginxSize>().unwrap().limit(), None);
        assert_eq!("1k".parse::<NginxSize>().unwrap().limit(), Some(1024));
        assert_eq!(NginxSize::bytes(1 << 20).to_string(), "1m");
        assert_eq!(NginxSize::bytes(1500).to_string(), "1500");
    }

    #[test]
    fn nginx_times() {
        let t = |v: &str| v.parse::<NginxDuration>().map(|d| d.millis);
        assert_eq!(t("60"), Ok(60_000));
        assert_eq!(t("5s"), Ok(5_000));
        assert_eq!(t("500ms"), Ok(500));
        assert_eq!(t("1m"), Ok(60_000));
        assert_eq!(t("1h30m"), Ok(5_400_000));
        assert_eq!(t("1h 30m"), Ok(5_400_000));
        assert_eq!(t("1m 30"), Ok(90_000));
        assert_eq!(t("1d"), Ok(86_400_000));
        assert_eq!(t("1w"), Ok(7 * 86_400_000));
        assert_eq!(t("1M"), Ok(30 * 86_400_000));
        assert_eq!(t("1y"), Ok(365 * 86_400_000));
        for bad in [
            "", "s", "1x", "30m1h", "1s1s", "1.5s", "30 1m", "-1s", "1 s",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
        assert_eq!(NginxDuration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(NginxDuration::from_secs(5).to_string(), "5s");
    }

    #[test]
    fn cidr_lists() {
        let l: CidrList = "10.0.0.1/8, 192.168.1.7,::1, 2001:db8::/32"
            .parse()
            .unwrap();
        assert_eq!(
            l.to_string(),
            "10.0.0.0/8,192.168.1.7/32,::1/128,2001:db8::/32"
        );
        assert!(l.contains("10.2.3.4".parse().unwrap()));
        assert!(l.contains("::ffff:10.2.3.4".parse().unwrap()));
        assert!(l.contains("192.168.1.7".parse().unwrap()));
        assert!(!l.contains("192.168.1.8".parse().unwrap()));
        assert!(l.contains("2001:db8::5".parse().unwrap()));
        assert_eq!(
            "10.0.0.0/8,".parse::<CidrList>(),
            Err(ValueError::NotCidr(String::new()))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<CidrList>(),
            Err(ValueError::NotCidr("10.0.0.0/33".into()))
        );
        assert_eq!(
            "example.com".parse::<CidrList>(),
            Err(ValueError::NotCidr("example.com".into()))
        );
        assert_eq!(" ".parse::<CidrList>(), Err(ValueError::Empty));
    }

    #[test]
    fn names() {
        assert_eq!(parse_header_name("X-Canary").unwrap().as_str(), "x-canary");
        assert!(parse_header_name("bad header").is_err());
        assert_eq!(
            parse_header_list("X-User, X-Email,,").unwrap().len(),
            2,
            "empty entries skipped"
        );
        assert!(parse_header_list("X-User, X:Bad").is_err());
        assert_eq!(
            "INGRESSCOOKIE".parse::<CookieName>().unwrap().as_str(),
            "INGRESSCOOKIE"
        );
        assert!("a b".parse::<CookieName>().is_err());
        assert_eq!(ObjectName::parse("s", "ns").unwrap().to_string(), "ns/s");
        assert_eq!(
            ObjectName::parse("other/s", "ns").unwrap().to_string(),
            "other/s"
        );
        assert!(ObjectName::parse("a/b/c", "ns").is_err());
        assert!(ObjectName::parse("Bad", "ns").is_err());
        assert!(is_dns_label("web-1") && !is_dns_label("1web") && !is_dns_label("web."));
    }
}
