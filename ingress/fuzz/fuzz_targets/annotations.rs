//! ingress-nginx annotations and ConfigMap settings (`annotations::parse`,
//! `ControllerSettings::from_configmap`) on structured random input: keys
//! from the catalog (under the default or a custom prefix, or under none),
//! and values built from words the parsers care about or raw text.
//!
//! * Never a panic, and parsing is a function (twice gives the same).
//! * Every value type with a printer: a value that parses, printed and
//!   parsed again, is the same value, and printing is idempotent
//!   (`NginxSize`, `NginxDuration`, `CidrList`, `CookieName`, `ObjectName`,
//!   `CaptureTemplate`, Go bools and integers); `Seconds`' printer writes
//!   an nginx time (`120s`), which must read back as the same duration.
//! * The same holds through the policy parser: replacing each value of an
//!   annotation (or ConfigMap key) whose parser is such a type by its
//!   printed form gives the same `IngressPolicy` (and `ControllerSettings`).
#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::str::FromStr;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sluice_ingress::annotations::configmap::SETTINGS;
use sluice_ingress::annotations::paths::CaptureTemplate;
use sluice_ingress::annotations::values::{
    CidrList, CookieName, NginxDuration, NginxSize, ObjectName, Seconds, parse_bool, parse_int,
    parse_u32,
};
use sluice_ingress::annotations::{
    AnnotationConfig, AnnotationPrefix, CATALOG, ControllerSettings, DEFAULT_PREFIX, parse,
};

/// Pieces of values the parsers distinguish.
const WORDS: &[&str] = &[
    "true",
    "false",
    "1",
    "0",
    "T",
    "FALSE",
    "on",
    "off",
    "-1",
    "+7",
    "007",
    "10",
    "120",
    "4294967296",
    "99999999999999999999",
    "8k",
    "1m",
    "2G",
    "1.5m",
    "5s",
    "500ms",
    "1h30m",
    "1m 30",
    "1y",
    "1M",
    "10.0.0.0/8",
    "192.168.1.7",
    "::1",
    "2001:db8::/32",
    "::ffff:10.0.0.1",
    "/33",
    ",",
    " ",
    "/",
    "shop/secret",
    "other/x",
    "Bad",
    "$1",
    "$2",
    "$",
    "${host}",
    "http://",
    "https://",
    "auth.test",
    "/path",
    "?",
    "#",
    "&",
    "CN=",
    "INGRESSCOOKIE",
    "Strict",
    "Lax",
    "None",
    "GRPC",
    "GRPCS",
    "HTTPS",
    "HTTP2",
    "FCGI",
    "round_robin",
    "ewma",
    "$request_uri",
    "error timeout",
    "http_502",
    "non_idempotent",
    "*",
    "*.app.test",
    "app.test",
    ":443",
    "-",
    "_",
    "é",
    "\t",
    "\n",
    "GET",
    "POST",
    "X-User",
    "x_y",
    "basic",
    "digest",
    "auth-file",
    "auth-map",
    "all",
    "any",
    "optional",
    "optional_no_ca",
    "301",
    "308",
    "404",
    "503",
    "%2F",
    "..",
    "\\",
    "\"",
    "{",
    "}",
    ";",
    "cookie",
    "balanced",
    "persistent",
    "legacy",
    "sticky",
];

const NAMESPACES: &[&str] = &["default", "shop", "other"];
const OTHER_PREFIXES: &[&str] = &["example.com", "nginx.ingress.kubernetes.io.evil"];

#[derive(Debug, Arbitrary)]
enum Key {
    /// A catalog annotation under the configured prefix.
    Catalog(u16),
    /// A catalog annotation under another prefix (must be ignored).
    OtherPrefix(u8, u16),
    /// Anything.
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Value {
    Words(Vec<u8>),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    custom_prefix: bool,
    namespace: u8,
    annotations: Vec<(Key, Value)>,
    configmap: Vec<(u16, Value)>,
}

fn pick<T: Copy>(list: &[T], i: usize) -> T {
    list[i % list.len()]
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Words(w) => w.iter().map(|&i| pick(WORDS, i.into())).collect(),
            Value::Raw(s) => s.clone(),
        }
    }
}

/// A value type's parser and the printer whose output it must read back.
struct Printer {
    parse: fn(&str) -> Option<String>,
}

/// Parses with `T`'s parser and prints with `print`, checking on the way
/// that the printed form parses to the same value and prints the same.
fn round_trip<T: PartialEq + Debug>(
    v: &str,
    parse: impl Fn(&str) -> Option<T>,
    print: impl Fn(&T) -> String,
) -> Option<String> {
    let x = parse(v)?;
    let printed = print(&x);
    let again = parse(&printed);
    assert_eq!(again.as_ref(), Some(&x), "{v:?} printed as {printed:?}");
    assert_eq!(print(again.as_ref().unwrap()), printed, "printing {v:?}");
    Some(printed)
}

fn from_str<T: FromStr + PartialEq + Debug + ToString>(v: &str) -> Option<String> {
    round_trip(v, |s| s.parse::<T>().ok(), T::to_string)
}

fn seconds(v: &str) -> Option<String> {
    let printed = round_trip(v, |s| s.parse::<Seconds>().ok(), |s| s.0.to_string())?;
    let s: Seconds = printed.parse().unwrap();
    let nginx: NginxDuration = s
        .to_string()
        .parse()
        .unwrap_or_else(|e| panic!("{s:?} renders as {}, not an nginx time: {e}", s));
    assert_eq!(nginx.as_duration(), s.as_duration(), "{v:?}");
    Some(printed)
}

fn go_bool(v: &str) -> Option<String> {
    round_trip(v, |s| parse_bool(s).ok(), bool::to_string)
}

fn go_int(v: &str) -> Option<String> {
    round_trip(v, |s| parse_int(s).ok(), i64::to_string)
}

fn go_u32(v: &str) -> Option<String> {
    round_trip(v, |s| parse_u32(s).ok(), u32::to_string)
}

const SIZE: Printer = Printer {
    parse: from_str::<NginxSize>,
};
const SECONDS: Printer = Printer { parse: seconds };
const CIDRS: Printer = Printer {
    parse: from_str::<CidrList>,
};
const COOKIE: Printer = Printer {
    parse: from_str::<CookieName>,
};
const BOOL: Printer = Printer { parse: go_bool };
const INT: Printer = Printer { parse: go_int };
const U32: Printer = Printer { parse: go_u32 };

/// Annotations whose value the policy parser reads with exactly one of the
/// printers' parsers (aliases included).
fn annotation_printer(name: &str) -> Option<Printer> {
    Some(match name {
        "proxy-body-size" => SIZE,
        "proxy-connect-timeout"
        | "proxy-read-timeout"
        | "proxy-send-timeout"
        | "proxy-next-upstream-timeout" => SECONDS,
        "limit-allowlist"
        | "limit-whitelist"
        | "allowlist-source-range"
        | "whitelist-source-range"
        | "denylist-source-range" => CIDRS,
        "session-cookie-name" | "canary-by-cookie" => COOKIE,
        "use-regex"
        | "ssl-redirect"
        | "force-ssl-redirect"
        | "from-to-www-redirect"
        | "relative-redirects"
        | "service-upstream"
        | "session-cookie-secure"
        | "session-cookie-change-on-failure"
        | "canary"
        | "enable-cors"
        | "cors-allow-credentials"
        | "enable-global-auth"
        | "disable-proxy-intercept-errors"
        | "enable-access-log"
        | "auth-always-set-cookie" => BOOL,
        "limit-rate"
        | "limit-rate-after"
        | "canary-weight"
        | "canary-weight-total"
        | "proxy-next-upstream-tries"
        | "limit-burst-multiplier" => U32,
        "session-cookie-expires" | "session-cookie-max-age" => INT,
        _ => return None,
    })
}

/// The same for ConfigMap keys.
fn setting_printer(key: &str) -> Option<Printer> {
    Some(match key {
        "proxy-body-size" => SIZE,
        "proxy-connect-timeout"
        | "proxy-read-timeout"
        | "proxy-send-timeout"
        | "proxy-next-upstream-timeout" => SECONDS,
        "proxy-real-ip-cidr" | "whitelist-source-range" | "denylist-source-range" => CIDRS,
        "ssl-redirect"
        | "force-ssl-redirect"
        | "preserve-trailing-slash"
        | "relative-redirects"
        | "use-port-in-redirects"
        | "hsts"
        | "hsts-include-subdomains"
        | "hsts-preload"
        | "use-forwarded-headers"
        | "compute-full-forwarded-for"
        | "enable-real-ip"
        | "use-proxy-protocol"
        | "allow-snippet-annotations"
        | "disable-access-log"
        | "service-upstream" => BOOL,
        "proxy-next-upstream-tries" => U32,
        _ => return None,
    })
}

/// Every printer on one value, for the value-level properties.
fn every_printer(v: &str, namespace: &str) {
    for p in [SIZE, SECONDS, CIDRS, COOKIE, BOOL, INT, U32] {
        (p.parse)(v);
    }
    from_str::<NginxDuration>(v);
    round_trip(
        v,
        |s| ObjectName::parse(s, namespace).ok(),
        ToString::to_string,
    );
    if let Ok(t) = CaptureTemplate::parse(v) {
        let again = CaptureTemplate::parse(&t.to_string());
        assert_eq!(again.as_ref(), Ok(&t), "{v:?}");
    }
}

/// `map` with every value that one of `printer`'s types parses replaced
/// by its printed form.
fn printed(
    map: &BTreeMap<String, String>,
    name_of: impl Fn(&str) -> Option<String>,
    printer: impl Fn(&str) -> Option<Printer>,
) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let p = name_of(k)
                .and_then(|n| printer(&n))
                .and_then(|p| (p.parse)(v));
            (k.clone(), p.unwrap_or_else(|| v.clone()))
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let prefix = if input.custom_prefix {
        AnnotationPrefix::new("example.com").unwrap()
    } else {
        AnnotationPrefix::default()
    };
    let namespace = pick(NAMESPACES, input.namespace.into());
    let annotations: BTreeMap<String, String> = input
        .annotations
        .iter()
        .map(|(k, v)| {
            let key = match k {
                Key::Catalog(i) => prefix.key(pick(CATALOG, (*i).into()).name),
                Key::OtherPrefix(p, i) => {
                    let other = if input.custom_prefix {
                        DEFAULT_PREFIX
                    } else {
                        pick(OTHER_PREFIXES, (*p).into())
                    };
                    format!("{other}/{}", pick(CATALOG, (*i).into()).name)
                }
                Key::Raw(s) => s.clone(),
            };
            (key, v.text())
        })
        .collect();
    let configmap: BTreeMap<String, String> = input
        .configmap
        .iter()
        .map(|(i, v)| (pick(SETTINGS, (*i).into()).key.to_owned(), v.text()))
        .collect();

    for v in annotations.values().chain(configmap.values()) {
        every_printer(v, namespace);
    }

    let (settings, _) = ControllerSettings::from_configmap(&configmap);
    assert_eq!(
        ControllerSettings::from_configmap(&configmap).0,
        settings,
        "deterministic"
    );
    let cm_printed = printed(&configmap, |k| Some(k.to_owned()), setting_printer);
    assert_eq!(
        ControllerSettings::from_configmap(&cm_printed).0,
        settings,
        "ConfigMap {configmap:?} with printed values {cm_printed:?}"
    );

    let config = AnnotationConfig { prefix, settings };
    let parsed = parse(&annotations, namespace, &config);
    assert_eq!(
        parse(&annotations, namespace, &config),
        parsed,
        "deterministic"
    );
    let an_printed = printed(
        &annotations,
        |k| config.prefix.strip(k).map(str::to_owned),
        annotation_printer,
    );
    let again = parse(&an_printed, namespace, &config);
    assert_eq!(
        again.policy, parsed.policy,
        "annotations {annotations:?} with printed values {an_printed:?}"
    );
});
