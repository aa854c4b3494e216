//! The request-path normaliser (`routes::hygiene`) on arbitrary targets.
//!
//! Never a panic; the result is in canonical form (starts with `/`, no
//! `//`, no `.`/`..` segment, only upper-case escapes of characters that
//! are not unreserved); normalising twice is normalising once; and both the
//! result and the refusal (with its reason) equal what a slow reference
//! written straight from the module docs gives: split into segments,
//! decode each, then resolve dot-segments on a stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_ingress::routes::{NormalizedPath, Reject, normalize};

fuzz_target!(|data: &[u8]| {
    // hyper hands the gateway a `&str`; lossy decoding keeps every byte
    // pattern reachable (a stray byte becomes U+FFFD, which is non-ASCII).
    let raw = String::from_utf8_lossy(data);
    let got = normalize(&raw);
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*raw, None),
    };
    let want = reference(path);
    match (&got, &want) {
        (Ok(g), Ok(w)) => {
            assert_eq!(g.path.as_str(), w, "normalised path of {raw:?}");
            assert_eq!(g.query.as_deref(), query, "query of {raw:?}");
            check_canonical(g.path.as_str());
            let again = NormalizedPath::new(g.path.as_str());
            assert_eq!(again.as_ref(), Ok(&g.path), "not idempotent: {raw:?}");
        }
        (Err(g), Err(w)) => assert_eq!(g, w, "reason for refusing {raw:?}"),
        _ => panic!("{raw:?}: normalize gave {got:?}, the reference {want:?}"),
    }
});

/// What a canonical path looks like, checked character by character.
fn check_canonical(p: &str) {
    assert!(p.starts_with('/'), "{p:?}");
    for bad in ["//", "/./", "/../"] {
        assert!(!p.contains(bad), "{p:?} contains {bad:?}");
    }
    assert!(!p.ends_with("/.") && !p.ends_with("/.."), "{p:?}");
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = &p[i + 1..i + 3];
            let v = u8::from_str_radix(hex, 16).expect("two hex digits");
            assert_eq!(hex, hex.to_ascii_uppercase(), "{p:?}");
            assert!(!unreserved(v) && !matches!(v, b'/' | b'\\' | 0), "{p:?}");
            i += 3;
        } else {
            assert!(
                b[i].is_ascii_graphic() && !matches!(b[i], b'\\' | b'#' | b'?'),
                "{p:?}"
            );
            i += 1;
        }
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The module docs, written as plainly as possible.
fn reference(path: &str) -> Result<String, Reject> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Reject::NotAbsolute);
    };
    let raw_segments: Vec<&str> = rest.split('/').collect();
    let mut stack: Vec<String> = Vec::new();
    let mut trailing = false;
    for (i, raw) in raw_segments.iter().enumerate() {
        let seg = decode_segment(raw)?;
        // `.` or `..` with path parameters, the `;` raw or encoded (the
        // segment is decoded, so an escaped `;` reads `%3B` here).
        let params = |dots: &str| {
            seg.strip_prefix(dots)
                .is_some_and(|r| r.starts_with(';') || r.starts_with("%3B"))
        };
        if params(".") || params("..") {
            return Err(Reject::DotSegmentParameter);
        }
        let last = i + 1 == raw_segments.len();
        match seg.as_str() {
            "" | "." => trailing = last,
            ".." => {
                stack.pop();
                trailing = last;
            }
            _ => {
                stack.push(seg);
                trailing = false;
            }
        }
    }
    let mut out = format!("/{}", stack.join("/"));
    if trailing && !stack.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn decode_segment(raw: &str) -> Result<String, Reject> {
    let b = raw.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(Reject::InvalidPercentEncoding)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Reject::InvalidPercentEncoding);
                }
                let hex = std::str::from_utf8(hex).expect("ASCII");
                let v = u8::from_str_radix(hex, 16).expect("hex");
                match v {
                    b'/' => return Err(Reject::EncodedSlash),
                    b'\\' => return Err(Reject::EncodedBackslash),
                    0 => return Err(Reject::Nul),
                    v if unreserved(v) => out.push(char::from(v)),
                    v => out.push_str(&format!("%{v:02X}")),
                }
                i += 3;
            }
            b'\\' => return Err(Reject::Backslash),
            0 => return Err(Reject::Nul),
            c if c.is_ascii_control() || c == b' ' || c == b'#' || c == b'?' || !c.is_ascii() => {
                return Err(Reject::InvalidCharacter(c));
            }
            c => {
                out.push(char::from(c));
                i += 1;
            }
        }
    }
    Ok(out)
}
