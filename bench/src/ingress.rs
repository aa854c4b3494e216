//! sluice-ingress against nginx (and HAProxy when installed) as the same
//! reverse proxy, on the same machine in the same run: one worker each,
//! pinned to CPU 0; the backend and the load generators pinned to CPU 1.
//!
//! Each round runs every test against every proxy, alternating which proxy
//! goes first, so slow drifts of a shared machine hit both. Reported: the
//! median and best requests/s, median p50/p99 latency, proxy CPU per
//! request (utime + stime of the proxy's process tree from
//! `/proc/PID/stat`), and peak RSS (`VmHWM`, summed over the tree).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ingress_backend::BODY;
use crate::ingress_load::{LoadResult, Test};
use crate::ingress_peers::{PeerSetup, haproxy_conf, nginx_conf};

/// The CPU the proxies run on.
const PROXY_CPU: usize = 0;
/// The CPU the backend and the load generators run on.
const LOAD_CPU: usize = 1;

struct Options {
    sluice: PathBuf,
    rounds: usize,
    secs: u64,
    haproxy: bool,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        sluice: PathBuf::from("target/release/sluice-ingress"),
        rounds: 3,
        secs: 10,
        haproxy: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--sluice" => o.sluice = PathBuf::from(value()?),
            "--rounds" => o.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--duration" => o.secs = value()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--no-haproxy" => o.haproxy = false,
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.rounds == 0 || o.secs == 0 {
        return Err("--rounds and --duration must be positive".into());
    }
    Ok(o)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

fn tool_exists(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process killed (with its children) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    http_port: u16,
    https_port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Parents first: an nginx master that saw its worker die would
        // start another one.
        for pid in tree(self.child.id()) {
            // SAFETY: plain kill(2) on a process this benchmark started.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

/// `pid` and its descendants (parents first), from `/proc/*/stat`.
fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = stat_fields(p).and_then(|f| f.get(1).and_then(|v| v.parse().ok())) {
                parents.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// Fields of `/proc/PID/stat` after the command name: state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        s.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// utime + stime of the whole tree, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = tree(pid)
        .into_iter()
        .filter_map(|p| {
            let f = stat_fields(p)?;
            // utime and stime are fields 14 and 15 of stat(5); 12 and 13 here.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / hz
}

/// Peak RSS of the whole tree, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| {
            let s = fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// One plain GET through `port`; the body must be the backend's.
fn probe(port: u16) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    if text.starts_with("HTTP/1.1 200") && buf.ends_with(BODY) {
        Ok(())
    } else {
        Err(format!("unexpected answer: {text:?}"))
    }
}

fn wait_serving(p: &mut Proc, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            let log = fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{} exited ({status}): {log}", p.name));
        }
        match probe(p.http_port) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("{} never served the route: {e}", p.name));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn spawn(
    name: &'static str,
    cmd: &mut Command,
    log: &Path,
    ports: (u16, u16),
) -> Result<Proc, String> {
    let file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file)
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    Ok(Proc {
        name,
        child,
        http_port: ports.0,
        https_port: ports.1,
    })
}

fn pinned(cpu: usize, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpu.to_string()).arg(program);
    c
}

/// Standard base64 (RFC 4648, padded), for the Secret manifest.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The manifests sluice-ingress serves: one Service with one endpoint
/// (the backend), one Ingress routing every host's `/` to it, and the TLS
/// Secret used as the default certificate.
fn write_manifests(dir: &Path, backend: SocketAddr, cert: &str, key: &str) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let files = [
        (
            "class.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: sluice}\n\
             spec: {controller: sluice.dev/ingress-controller}\n"
                .to_owned(),
        ),
        (
            "service.yaml",
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: bench}}\n\
                 spec: {{ports: [{{name: http, port: 80, targetPort: {p}}}]}}\n---\n\
                 apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{name: web-1, namespace: bench, labels: {{kubernetes.io/service-name: web}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: {p}}}]\n\
                 endpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]\n",
                p = backend.port(),
                ip = backend.ip(),
            ),
        ),
        (
            "ingress.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: bench}\n\
             spec:\n  ingressClassName: sluice\n  rules:\n  - http:\n      paths:\n\
             \x20     - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n"
                .to_owned(),
        ),
        (
            "secret.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: bench-cert, namespace: bench}}\n\
                 type: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
                base64(cert.as_bytes()),
                base64(key.as_bytes())
            ),
        ),
    ];
    for (name, text) in files {
        fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Samples of one (proxy, test) cell.
#[derive(Default)]
struct Cell {
    runs: Vec<LoadResult>,
    cpu_us_per_req: Vec<f64>,
    cpu_util: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

fn max(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, f64::max)
}

impl Cell {
    fn rps(&self) -> f64 {
        median(self.runs.iter().map(|r| r.rps).collect())
    }
    fn best_rps(&self) -> f64 {
        max(self.runs.iter().map(|r| r.rps))
    }
    fn p50_us(&self) -> f64 {
        median(
            self.runs
                .iter()
                .map(|r| r.p50.as_secs_f64() * 1e6)
                .collect(),
        )
    }
    fn p99_us(&self) -> f64 {
        median(
            self.runs
                .iter()
                .map(|r| r.p99.as_secs_f64() * 1e6)
                .collect(),
        )
    }
    fn best_p99_us(&self) -> f64 {
        self.runs
            .iter()
            .map(|r| r.p99.as_secs_f64() * 1e6)
            .fold(f64::MAX, f64::min)
    }
    fn cpu_us(&self) -> f64 {
        median(self.cpu_us_per_req.clone())
    }
    fn util(&self) -> f64 {
        median(self.cpu_util.clone())
    }
}

/// `sluice-bench ingress [--sluice BIN] [--rounds R] [--duration SECS] [--no-haproxy]`
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    for tool in ["taskset", "wrk", "h2load", "nginx"] {
        if !tool_exists(tool) {
            return Err(format!("{tool} not found (bench/run ingress installs it)"));
        }
    }
    let haproxy = o.haproxy && tool_exists("haproxy");
    let scratch = std::env::temp_dir().join(format!("sluice-bench-ingress-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let result = run_in(&o, haproxy, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn run_in(o: &Options, haproxy: bool, dir: &Path) -> Result<(), String> {
    // One ECDSA P-256 certificate for every proxy.
    let cert = rcgen::generate_simple_self_signed(vec!["bench.test".to_owned()])
        .map_err(|e| format!("certificate: {e}"))?;
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let (cert_path, key_path, combined) = (
        dir.join("tls.crt"),
        dir.join("tls.key"),
        dir.join("combined.pem"),
    );
    fs::write(&cert_path, &cert_pem).map_err(|e| e.to_string())?;
    fs::write(&key_path, &key_pem).map_err(|e| e.to_string())?;
    fs::write(&combined, format!("{cert_pem}{key_pem}")).map_err(|e| e.to_string())?;

    let backend: SocketAddr = format!("127.0.0.1:{}", free_port()?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = pinned(LOAD_CPU, &me);
    cmd.args(["ingress-backend", &backend.to_string()]);
    let _backend = spawn(
        "backend",
        &mut cmd,
        &dir.join("backend.log"),
        (backend.port(), 0),
    )?;

    let mut procs: Vec<Proc> = Vec::new();

    // sluice-ingress.
    let manifests = dir.join("manifests");
    write_manifests(&manifests, backend, &cert_pem, &key_pem)?;
    let ports = (free_port()?, free_port()?);
    let mut cmd = pinned(PROXY_CPU, &o.sluice);
    cmd.env("RUST_LOG", "warn")
        .arg("--manifests")
        .arg(&manifests)
        .args(["--http-addr", &format!("127.0.0.1:{}", ports.0)])
        .args(["--https-addr", &format!("127.0.0.1:{}", ports.1)])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--default-ssl-certificate", "bench/bench-cert"])
        .args(["--worker-threads", "1", "--access-log", "off"]);
    procs.push(spawn("sluice", &mut cmd, &dir.join("sluice.log"), ports)?);

    // nginx.
    let ports = (free_port()?, free_port()?);
    let setup = PeerSetup {
        http_port: ports.0,
        https_port: ports.1,
        backend,
        cert: &cert_path,
        key: &key_path,
        combined: &combined,
        dir,
    };
    let conf = dir.join("nginx.conf");
    fs::write(&conf, nginx_conf(&setup)).map_err(|e| e.to_string())?;
    let mut cmd = pinned(PROXY_CPU, Path::new("nginx"));
    cmd.arg("-p").arg(dir).arg("-c").arg(&conf);
    procs.push(spawn("nginx", &mut cmd, &dir.join("nginx.log"), ports)?);

    if haproxy {
        let ports = (free_port()?, free_port()?);
        let setup = PeerSetup {
            http_port: ports.0,
            https_port: ports.1,
            ..setup
        };
        let conf = dir.join("haproxy.cfg");
        fs::write(&conf, haproxy_conf(&setup)).map_err(|e| e.to_string())?;
        let mut cmd = pinned(PROXY_CPU, Path::new("haproxy"));
        cmd.arg("-db").arg("-f").arg(&conf);
        procs.push(spawn("haproxy", &mut cmd, &dir.join("haproxy.log"), ports)?);
    }

    for p in &mut procs {
        let log = dir.join(format!("{}.log", p.name));
        wait_serving(p, &log)?;
    }
    eprintln!(
        "proxies on CPU {PROXY_CPU}: {}; backend and load on CPU {LOAD_CPU}; {} rounds of {} s per test",
        procs.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        o.rounds,
        o.secs
    );

    // Warm-up: connections to the backend, caches, allocator.
    for p in &procs {
        crate::ingress_load::run(
            Test::H1KeepAlive,
            p.http_port,
            p.https_port,
            2,
            LOAD_CPU,
            dir,
        )?;
    }

    let mut cells: Vec<Vec<Cell>> = procs
        .iter()
        .map(|_| Test::ALL.iter().map(|_| Cell::default()).collect())
        .collect();
    let mut tls_notes: Vec<String> = vec![String::new(); procs.len()];
    for round in 0..o.rounds {
        for (ti, &test) in Test::ALL.iter().enumerate() {
            // Alternate who goes first.
            let n = procs.len();
            for k in 0..n {
                let pi = (k + round) % n;
                let p = &procs[pi];
                let pid = p.child.id();
                let cpu0 = cpu_secs(pid);
                let t0 = Instant::now();
                let r = crate::ingress_load::run(
                    test,
                    p.http_port,
                    p.https_port,
                    o.secs,
                    LOAD_CPU,
                    dir,
                )?;
                let wall = t0.elapsed().as_secs_f64();
                let cpu = cpu_secs(pid) - cpu0;
                let total = (r.requests + r.errors).max(1) as f64;
                eprintln!(
                    "round {} {:<8} {:<36} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  errors {}  cpu {:.0}%  {:.1} µs/req",
                    round + 1,
                    p.name,
                    test.name(),
                    r.rps,
                    r.p50.as_secs_f64() * 1e6,
                    r.p99.as_secs_f64() * 1e6,
                    r.errors,
                    cpu / wall * 100.0,
                    cpu / total * 1e6
                );
                if !r.tls.is_empty() {
                    tls_notes[pi].clone_from(&r.tls);
                }
                let cell = &mut cells[pi][ti];
                cell.cpu_us_per_req.push(cpu / total * 1e6);
                cell.cpu_util.push(cpu / wall * 100.0);
                cell.runs.push(r);
            }
        }
    }
    for p in &mut procs {
        probe(p.http_port).map_err(|e| format!("{} after the run: {e}", p.name))?;
    }
    print_report(&procs, &cells, &tls_notes, o);
    Ok(())
}

/// A table row: label and the measure it shows.
type Row = (&'static str, fn(&Cell) -> f64);

fn print_report(procs: &[Proc], cells: &[Vec<Cell>], tls: &[String], o: &Options) {
    let names: Vec<&str> = procs.iter().map(|p| p.name).collect();
    println!(
        "\n## ingress: {} rounds × {} s per test, one worker each on CPU {PROXY_CPU}, load + backend on CPU {LOAD_CPU}\n",
        o.rounds, o.secs
    );
    let mut header = String::from("| test | measure |");
    let mut rule = String::from("| --- | --- |");
    for n in &names {
        header.push_str(&format!(" {n} |"));
        rule.push_str(" --- |");
    }
    for n in names.iter().skip(1) {
        header.push_str(&format!(" sluice / {n} |"));
        rule.push_str(" --- |");
    }
    println!("{header}\n{rule}");
    for (ti, test) in Test::ALL.iter().enumerate() {
        let rows: [Row; 7] = [
            ("req/s (median)", Cell::rps),
            ("req/s (best)", Cell::best_rps),
            ("p50 µs (median)", Cell::p50_us),
            ("p99 µs (median)", Cell::p99_us),
            ("p99 µs (best)", Cell::best_p99_us),
            ("proxy CPU µs / request", Cell::cpu_us),
            ("proxy CPU % of a core", Cell::util),
        ];
        for (label, f) in rows {
            let mut line = format!("| {} | {label} |", test.name());
            let vals: Vec<f64> = cells.iter().map(|c| f(&c[ti])).collect();
            for v in &vals {
                line.push_str(&format!(" {} |", fmt_val(*v)));
            }
            for v in vals.iter().skip(1) {
                line.push_str(&format!(" {:.2} |", vals[0] / v.max(1e-9)));
            }
            println!("{line}");
        }
    }
    let mut line = String::from("| all | peak RSS (VmHWM, process tree) |");
    let rss: Vec<u64> = procs.iter().map(|p| peak_rss_kib(p.child.id())).collect();
    for r in &rss {
        line.push_str(&format!(" {:.1} MiB |", *r as f64 / 1024.0));
    }
    for r in rss.iter().skip(1) {
        line.push_str(&format!(" {:.2} |", rss[0] as f64 / (*r).max(1) as f64));
    }
    println!("{line}\n");
    for (n, t) in names.iter().zip(tls) {
        println!("{n} TLS (h2load): {t}");
    }
}

fn fmt_val(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
