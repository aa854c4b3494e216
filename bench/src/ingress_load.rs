//! Load generators (wrk, h2load) run pinned on the load core, and what
//! their output says: requests/s, p50/p99 latency, errors, TLS parameters.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One load test shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// `wrk -t1 -cN --latency` over cleartext HTTP/1.1 keep-alive (N = 50
    /// unless `--connections` says otherwise).
    H1KeepAlive,
    /// `h2load -c10 -m10` over TLS with ALPN h2 (one handshake per
    /// connection, then many streams).
    H2Tls,
    /// `wrk -c20` over HTTPS with `Connection: close`: one request per
    /// TLS connection, so the rate is the handshake rate.
    TlsNewConn,
}

impl Test {
    /// Every test, in run order.
    pub const ALL: [Test; 3] = [Test::H1KeepAlive, Test::H2Tls, Test::TlsNewConn];

    /// Short name for tables; `h1_connections` is the HTTP/1.1 test's
    /// connection count.
    pub fn name(self, h1_connections: u32) -> String {
        match self {
            Test::H1KeepAlive => format!("HTTP/1.1 keep-alive (wrk -t1 -c{h1_connections})"),
            Test::H2Tls => "HTTP/2 over TLS (h2load -c10 -m10)".into(),
            Test::TlsNewConn => {
                "new TLS connection per request (wrk -t1 -c20, Connection: close)".into()
            }
        }
    }

    /// The test named `short` on the command line (`h1`, `h2`, `tls`).
    pub fn from_short(short: &str) -> Option<Test> {
        match short {
            "h1" => Some(Test::H1KeepAlive),
            "h2" => Some(Test::H2Tls),
            "tls" => Some(Test::TlsNewConn),
            _ => None,
        }
    }
}

/// Where and how long a load test runs.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Cleartext port on 127.0.0.1.
    pub http_port: u16,
    /// TLS port on 127.0.0.1.
    pub https_port: u16,
    /// Seconds of load.
    pub secs: u64,
    /// The CPU the load generator is pinned to.
    pub cpu: usize,
    /// Connections of the HTTP/1.1 keep-alive test.
    pub h1_connections: u32,
    /// Directory for h2load's request log.
    pub scratch: &'a Path,
}

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Requests completed.
    pub requests: u64,
    /// Failed requests, non-2xx responses and socket errors.
    pub errors: u64,
    /// TLS version, cipher and key exchange (h2load only).
    pub tls: String,
}

/// Runs `test` against the proxy of `t`.
pub fn run(test: Test, t: &Target<'_>) -> Result<LoadResult, String> {
    let (http_port, https_port, secs, scratch) = (t.http_port, t.https_port, t.secs, t.scratch);
    let pin = t.cpu.to_string();
    let d = format!("{secs}s");
    match test {
        Test::H1KeepAlive => {
            let url = format!("http://127.0.0.1:{http_port}/");
            let conns = format!("-c{}", t.h1_connections);
            let out = output(Command::new("taskset").args([
                "-c",
                &pin,
                "wrk",
                "-t1",
                &conns,
                "-d",
                &d,
                "--latency",
                &url,
            ]))?;
            parse_wrk(&out)
        }
        Test::TlsNewConn => {
            let url = format!("https://127.0.0.1:{https_port}/");
            let out = output(Command::new("taskset").args([
                "-c",
                &pin,
                "wrk",
                "-t1",
                "-c20",
                "-d",
                &d,
                "--latency",
                "-H",
                "Connection: close",
                &url,
            ]))?;
            parse_wrk(&out)
        }
        Test::H2Tls => {
            let url = format!("https://127.0.0.1:{https_port}/");
            let log = scratch.join("h2load.log");
            let _ = std::fs::remove_file(&log);
            let log_arg = format!("--log-file={}", log.display());
            let out = output(Command::new("taskset").args([
                "-c",
                &pin,
                "h2load",
                "-c10",
                "-m10",
                "-t1",
                "--warm-up-time=1",
                "-D",
                &secs.to_string(),
                &log_arg,
                &url,
            ]))?;
            let log = std::fs::read_to_string(&log).map_err(|e| format!("h2load log: {e}"))?;
            parse_h2load(&out, &log)
        }
    }
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{shown} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
}

/// `635.00us`, `2.05ms`, `1.10s`, `1.00m` (wrk's units).
fn parse_wrk_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return None;
    };
    let v: f64 = num.parse().ok()?;
    Some(Duration::from_secs_f64(v * scale))
}

/// Parses `wrk --latency` output.
pub fn parse_wrk(out: &str) -> Result<LoadResult, String> {
    let mut r = LoadResult::default();
    for line in out.lines() {
        let t = line.trim();
        let mut words = t.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(v)) => r.p50 = parse_wrk_duration(v).unwrap_or_default(),
            (Some("99%"), Some(v)) => r.p99 = parse_wrk_duration(v).unwrap_or_default(),
            (Some("Requests/sec:"), Some(v)) => r.rps = v.parse().unwrap_or(0.0),
            (Some(n), Some("requests")) => r.requests = n.parse().unwrap_or(0),
            _ => {}
        }
        if let Some(n) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += n.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(rest) = t.strip_prefix("Socket errors:") {
            // connect 0, read 0, write 0, timeout 0
            for part in rest.split(',') {
                let n = part.split_whitespace().nth(1).unwrap_or("0");
                r.errors += n.parse::<u64>().unwrap_or(0);
            }
        }
    }
    if r.requests == 0 || r.rps == 0.0 {
        return Err(format!("wrk measured nothing:\n{out}"));
    }
    Ok(r)
}

/// Parses h2load's summary and its `--log-file` (start µs, status,
/// duration µs per request) for the latency percentiles.
pub fn parse_h2load(out: &str, log: &str) -> Result<LoadResult, String> {
    let mut r = LoadResult::default();
    let mut tls = Vec::new();
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("finished in ") {
            // finished in 10.00s, 12345.60 req/s, 1.23MB/s
            r.rps = rest
                .split(',')
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("requests: ") {
            // N total, N started, N done, N succeeded, N failed, N errored, N timeout
            for part in rest.split(',') {
                let mut w = part.split_whitespace();
                let n: u64 = w.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                match w.next() {
                    Some("succeeded") => r.requests = n,
                    Some("failed" | "errored" | "timeout") => r.errors += n,
                    _ => {}
                }
            }
        } else if t.starts_with("TLS Protocol:")
            || t.starts_with("Cipher:")
            || t.starts_with("Server Temp Key:")
            || t.starts_with("Application protocol:")
        {
            tls.push(t.to_owned());
        }
    }
    r.tls = tls.join(", ");
    let mut lat: Vec<u64> = Vec::new();
    for line in log.lines() {
        let mut cols = line.split('\t');
        let (Some(_), Some(status), Some(us)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        if !status.starts_with('2') {
            r.errors += 1;
        }
        if let Ok(us) = us.trim().parse() {
            lat.push(us);
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
        Duration::from_micros(lat.get(i).copied().unwrap_or(0))
    };
    r.p50 = pct(0.50);
    r.p99 = pct(0.99);
    if r.requests == 0 || r.rps == 0.0 || lat.is_empty() {
        return Err(format!("h2load measured nothing:\n{out}"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output() {
        let out = "Running 10s test @ http://127.0.0.1:1/\n  1 threads and 50 connections\n\
  Latency Distribution\n     50%  635.00us\n     75%    1.00ms\n     90%    1.50ms\n     99%    2.05ms\n\
  123456 requests in 10.00s, 12.34MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n\
  Non-2xx or 3xx responses: 5\nRequests/sec:  12345.67\nTransfer/sec:      1.23MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests, 123_456);
        assert_eq!(r.errors, 9);
        assert!((r.rps - 12345.67).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(635));
        assert_eq!(r.p99, Duration::from_micros(2050));
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn h2load_output() {
        let out = "finished in 10.00s, 2000.50 req/s, 1.23MB/s\n\
requests: 4 total, 4 started, 4 done, 3 succeeded, 1 failed, 0 errored, 0 timeout\n\
TLS Protocol: TLSv1.3\nCipher: TLS_AES_256_GCM_SHA384\nServer Temp Key: X25519 253 bits\n";
        let log = "1\t200\t100\n2\t200\t300\n3\t200\t200\n4\t503\t400\n";
        let r = parse_h2load(out, log).unwrap();
        assert_eq!(r.requests, 3);
        assert_eq!(r.errors, 2);
        assert_eq!(r.p50, Duration::from_micros(200));
        assert_eq!(r.p99, Duration::from_micros(400));
        assert!(r.tls.contains("X25519"));
    }
}
