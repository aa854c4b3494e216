//! One access log line, rendered straight into a byte buffer.
//!
//! The lines are those `tracing-subscriber`'s formatter printed for the
//! per-request event before the access log left `tracing` (ANSI colours
//! aside): `TIMESTAMP  INFO sluice_ingress::access: client=… method=…`
//! with `--log-format text`, `{"timestamp":…,"level":"INFO","fields":{…},
//! "target":"sluice_ingress::access"}` with `--log-format json`; the
//! `json` access log puts its JSON object where the message goes. The
//! tests below render the same record through `tracing-subscriber` and
//! compare. One difference: terminal control characters (ESC, BEL, BS,
//! FF, DEL, C1) in text values are escaped (`\x1b`), which
//! `tracing-subscriber` meant to do but did not for these fields. Rendering here costs no allocation and no `fmt` machinery
//! beyond the numbers.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::AccessRecord;
use crate::gateway::config::AccessLogFormat;

/// The `tracing` target the lines have always carried.
pub const TARGET: &str = "sluice_ingress::access";

/// How lines look: the record's rendering and the envelope around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineStyle {
    /// `Fields` (key=value, or JSON fields) or `Json` (one JSON object as
    /// the message). `Off` renders nothing.
    pub format: AccessLogFormat,
    /// Whether the envelope is a JSON object (`--log-format json`) rather
    /// than a text line.
    pub json_envelope: bool,
}

/// The `YYYY-MM-DDTHH:MM:SS` of the last second rendered, reused while the
/// second lasts.
#[derive(Debug, Default)]
pub(super) struct Clock {
    second: u64,
    text: [u8; 19],
}

impl Clock {
    /// Writes the current time as RFC 3339 UTC with microseconds, as
    /// `tracing-subscriber` does (`2026-12-03T15:14:21.123456Z`).
    fn write_now(&mut self, out: &mut Vec<u8>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.write(out, now.as_secs(), now.subsec_micros());
    }

    fn write(&mut self, out: &mut Vec<u8>, secs: u64, micros: u32) {
        if self.second != secs || self.text[0] == 0 {
            self.second = secs;
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let t = secs % 86_400;
            let mut text = [0u8; 19];
            let _ = write!(
                &mut text[..],
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                t / 3600,
                t / 60 % 60,
                t % 60
            );
            self.text = text;
        }
        out.extend_from_slice(&self.text);
        let _ = write!(out, ".{micros:06}Z");
    }
}

/// Year, month, day of the `days`th day since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends the line for `r` (`ms`: its duration) to `out`, newline
/// included.
pub(super) fn render(
    out: &mut Vec<u8>,
    clock: &mut Clock,
    style: LineStyle,
    r: &AccessRecord,
    ms: f64,
) {
    if style.format == AccessLogFormat::Off {
        return;
    }
    if style.json_envelope {
        out.extend_from_slice(b"{\"timestamp\":\"");
        clock.write_now(out);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{");
        if style.format == AccessLogFormat::Json {
            let mut msg = Vec::with_capacity(256);
            json_object(&mut msg, r, ms);
            out.extend_from_slice(b"\"message\":");
            json_str(out, std::str::from_utf8(&msg).unwrap_or_default());
        } else {
            json_fields(out, r, ms);
        }
        out.extend_from_slice(b"},\"target\":\"");
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b"\"}\n");
    } else {
        clock.write_now(out);
        out.extend_from_slice(b"  INFO ");
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b": ");
        if style.format == AccessLogFormat::Json {
            json_object(out, r, ms);
        } else {
            text_fields(out, r, ms);
        }
        out.push(b'\n');
    }
}

/// `client=… method=… …` as `tracing`'s default field formatter writes
/// them: `%` values escaped against terminal injection, the protocol as
/// a quoted `&str`, the duration as `f64`'s `Debug`.
fn text_fields(out: &mut Vec<u8>, r: &AccessRecord, ms: f64) {
    out.extend_from_slice(b"client=");
    if let Some(c) = r.client {
        let _ = write!(out, "{c}");
    }
    for (name, v) in [
        (&b" method="[..], r.method.as_str()),
        (b" host=", &r.host),
        (b" path=", &r.path),
    ] {
        out.extend_from_slice(name);
        escaped(out, v);
    }
    out.extend_from_slice(b" protocol=");
    let _ = write!(out, "{:?}", r.protocol);
    let _ = write!(
        out,
        " tls={} status={} bytes={} duration_ms={ms:?} ingress=",
        r.tls, r.status, r.bytes
    );
    escaped(out, &r.ingress);
    out.extend_from_slice(b" service=");
    escaped(out, &r.service);
    out.extend_from_slice(b" upstream=");
    if let Some(u) = r.upstream {
        let _ = write!(out, "{u}");
    }
    let _ = write!(out, " attempts={} complete={}", r.attempts, r.complete);
}

/// `s` with the characters `tracing-subscriber` escapes (ESC, BEL, BS, FF,
/// DEL and the C1 controls) written as it writes them.
fn escaped(out: &mut Vec<u8>, s: &str) {
    let plain = |b: &u8| !matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2);
    if s.as_bytes().iter().all(plain) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for ch in s.chars() {
        let _ = match ch {
            '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => write!(out, "\\x{:02x}", ch as u32),
            '\u{80}'..='\u{9f}' => write!(out, "\\u{{{:x}}}", ch as u32),
            _ => write!(out, "{ch}"),
        };
    }
}

/// The record's fields inside `tracing`'s JSON envelope.
fn json_fields(out: &mut Vec<u8>, r: &AccessRecord, ms: f64) {
    json_entries(out, r, ms, &FIELD_ORDER);
}

/// The `json` access log's object (its keys in `serde_json::Map`'s
/// order, alphabetical, as `serde_json::json!` built it before).
fn json_object(out: &mut Vec<u8>, r: &AccessRecord, ms: f64) {
    out.push(b'{');
    json_entries(out, r, ms, &SORTED_ORDER);
    out.push(b'}');
}

/// The record's fields in the order the event declared them.
const FIELD_ORDER: [Field; 14] = [
    Field::Client,
    Field::Method,
    Field::Host,
    Field::Path,
    Field::Protocol,
    Field::Tls,
    Field::Status,
    Field::Bytes,
    Field::DurationMs,
    Field::Ingress,
    Field::Service,
    Field::Upstream,
    Field::Attempts,
    Field::Complete,
];

/// The record's fields in alphabetical order.
const SORTED_ORDER: [Field; 14] = [
    Field::Attempts,
    Field::Bytes,
    Field::Client,
    Field::Complete,
    Field::DurationMs,
    Field::Host,
    Field::Ingress,
    Field::Method,
    Field::Path,
    Field::Protocol,
    Field::Service,
    Field::Status,
    Field::Tls,
    Field::Upstream,
];

/// One field of a line.
#[derive(Debug, Clone, Copy)]
enum Field {
    Client,
    Method,
    Host,
    Path,
    Protocol,
    Tls,
    Status,
    Bytes,
    DurationMs,
    Ingress,
    Service,
    Upstream,
    Attempts,
    Complete,
}

fn json_entries(out: &mut Vec<u8>, r: &AccessRecord, ms: f64, order: &[Field]) {
    for (i, f) in order.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = match f {
            Field::Client => {
                out.extend_from_slice(b"\"client\":\"");
                if let Some(c) = r.client {
                    let _ = write!(out, "{c}");
                }
                write!(out, "\"")
            }
            Field::Method => json_entry(out, "method", &r.method),
            Field::Host => json_entry(out, "host", &r.host),
            Field::Path => json_entry(out, "path", &r.path),
            Field::Protocol => json_entry(out, "protocol", r.protocol),
            Field::Tls => write!(out, "\"tls\":{}", r.tls),
            Field::Status => write!(out, "\"status\":{}", r.status),
            Field::Bytes => write!(out, "\"bytes\":{}", r.bytes),
            Field::DurationMs => {
                out.extend_from_slice(b"\"duration_ms\":");
                serde_json::to_writer(&mut *out, &ms).map_err(std::io::Error::other)
            }
            Field::Ingress => json_entry(out, "ingress", &r.ingress),
            Field::Service => json_entry(out, "service", &r.service),
            Field::Upstream => {
                out.extend_from_slice(b"\"upstream\":\"");
                if let Some(u) = r.upstream {
                    let _ = write!(out, "{u}");
                }
                write!(out, "\"")
            }
            Field::Attempts => write!(out, "\"attempts\":{}", r.attempts),
            Field::Complete => write!(out, "\"complete\":{}", r.complete),
        };
    }
}

fn json_entry(out: &mut Vec<u8>, name: &str, value: &str) -> std::io::Result<()> {
    let _ = write!(out, "\"{name}\":");
    json_str(out, value);
    Ok(())
}

/// `s` as a JSON string, escaped as `serde_json` escapes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            client: Some("10.1.2.3".parse().unwrap()),
            method: "GET".into(),
            host: "app.test".into(),
            path: "/a\"b\\%20ü".into(),
            protocol: "HTTP/1.1",
            tls: true,
            status: 200,
            bytes: 1234,
            ingress: "ns/web".into(),
            service: "ns/web:80".into(),
            upstream: Some("10.0.0.7:8080".parse().unwrap()),
            attempts: 2,
            complete: true,
        }
    }

    /// The event `Completion` emitted through `tracing` before.
    fn emit_old(r: &AccessRecord, ms: f64, format: AccessLogFormat) {
        let client = r.client.map(|c| c.to_string()).unwrap_or_default();
        let upstream = r.upstream.map(|u| u.to_string()).unwrap_or_default();
        if format == AccessLogFormat::Json {
            let line = serde_json::json!({
                "client": client, "method": r.method, "host": r.host,
                "path": r.path, "protocol": r.protocol, "tls": r.tls,
                "status": r.status, "bytes": r.bytes, "duration_ms": ms,
                "ingress": r.ingress, "service": r.service,
                "upstream": upstream, "attempts": r.attempts,
                "complete": r.complete,
            });
            tracing::info!(target: "sluice_ingress::access", "{line}");
        } else {
            tracing::info!(
                target: "sluice_ingress::access",
                client = %client, method = %r.method, host = %r.host,
                path = %r.path, protocol = r.protocol, tls = r.tls,
                status = r.status, bytes = r.bytes, duration_ms = ms,
                ingress = %r.ingress, service = %r.service,
                upstream = %upstream, attempts = r.attempts,
                complete = r.complete,
            );
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `s` without its ANSI colour sequences (`ESC [ … m`).
    fn uncoloured(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find('\x1b') {
            out.push_str(&rest[..at]);
            let end = rest[at..].find('m').expect("a colour sequence");
            rest = &rest[at + end + 1..];
        }
        out + rest
    }

    /// What `tracing-subscriber` (as `sluice_kube::logging` sets it up:
    /// colours on, so values are sanitised) printed for the record, its
    /// colours taken out.
    fn old_line(r: &AccessRecord, ms: f64, style: LineStyle) -> String {
        let out = Captured::default();
        let w = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(!style.json_envelope)
            .with_writer(move || w.clone());
        let _guard = if style.json_envelope {
            tracing::subscriber::set_default(builder.json().finish())
        } else {
            tracing::subscriber::set_default(builder.finish())
        };
        emit_old(r, ms, style.format);
        uncoloured(&String::from_utf8(out.0.lock().unwrap().clone()).unwrap())
    }

    fn new_line(r: &AccessRecord, ms: f64, style: LineStyle) -> String {
        let mut out = Vec::new();
        render(&mut out, &mut Clock::default(), style, r, ms);
        String::from_utf8(out).unwrap()
    }

    /// The line without its timestamp (the two were taken at different
    /// instants).
    fn untimed(line: &str) -> String {
        let at = line.find("Z").expect("a timestamp");
        assert!(line[..at].contains('T'), "{line}");
        line[at..].to_owned()
    }

    #[test]
    fn lines_are_those_tracing_subscriber_printed() {
        let mut empty = record();
        empty.client = None;
        empty.upstream = None;
        empty.ingress.clear();
        empty.protocol = "HTTP/2.0";
        for r in [record(), empty] {
            for ms in [0.123456, 12.5, 1e-7, 3.0] {
                for format in [AccessLogFormat::Fields, AccessLogFormat::Json] {
                    for json_envelope in [false, true] {
                        let style = LineStyle {
                            format,
                            json_envelope,
                        };
                        let (old, new) = (old_line(&r, ms, style), new_line(&r, ms, style));
                        assert_eq!(untimed(&new), untimed(&old), "{style:?}");
                        assert!(new.ends_with('\n') && new.matches('\n').count() == 1);
                    }
                }
            }
        }
    }

    #[test]
    fn terminal_controls_in_values_are_escaped() {
        // tracing-subscriber 0.3.23 printed these raw: a client could
        // colour or rewrite an operator's terminal.
        let mut r = record();
        r.path = "/a\u{1b}[31m\u{85}\u{7}b".into();
        let style = LineStyle {
            format: AccessLogFormat::Fields,
            json_envelope: false,
        };
        let line = new_line(&r, 1.0, style);
        assert!(line.contains(" path=/a\\x1b[31m\\u{85}\\x07b "), "{line}");
        assert!(!line.contains('\u{1b}'));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut out = Vec::new();
        let mut clock = Clock::default();
        // 2024-02-29T23:59:59 UTC, then the next second.
        clock.write(&mut out, 1_709_251_199, 7);
        out.push(b' ');
        clock.write(&mut out, 1_709_251_200, 999_999);
        out.push(b' ');
        clock.write(&mut out, 0, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-02-29T23:59:59.000007Z 2024-03-01T00:00:00.999999Z 1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn off_renders_nothing() {
        let style = LineStyle {
            format: AccessLogFormat::Off,
            json_envelope: false,
        };
        assert_eq!(new_line(&record(), 1.0, style), "");
    }
}
