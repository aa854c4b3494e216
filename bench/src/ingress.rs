//! sluice-ingress against nginx (and HAProxy when installed) as the same
//! reverse proxy, on the same machine in the same run: one worker each,
//! pinned to CPU 0; the backend and the load generators pinned to CPU 1.
//!
//! Each round runs every test against every proxy, alternating which proxy
//! goes first, so slow drifts of a shared machine hit both. Reported: the
//! median and best requests/s, median p50/p99 latency, proxy CPU per
//! request (utime + stime of the proxy's process tree from
//! `/proc/PID/stat`), and peak RSS (`VmHWM`, summed over the tree).
//!
//! `--access-log on` has every proxy log every request to a file;
//! `--access-log both` runs each proxy twice, without and with its log
//! (`NAME+log`), and adds the paired per-round ratios (log on against
//! off, sluice against each peer) with their min, max and median.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ingress_backend::BODY;
use crate::ingress_load::{LoadResult, Target, Test};
use crate::ingress_peers::{PeerSetup, haproxy_conf, nginx_conf};

/// The CPU the proxies run on.
const PROXY_CPU: usize = 0;
/// The CPU the backend and the load generators run on.
const LOAD_CPU: usize = 1;

/// Which proxies log every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogMode {
    /// None (the default).
    Off,
    /// All.
    On,
    /// Each proxy twice: without and with its log.
    Both,
}

impl LogMode {
    /// The access log settings each proxy runs with.
    fn variants(self) -> &'static [bool] {
        match self {
            LogMode::Off => &[false],
            LogMode::On => &[true],
            LogMode::Both => &[false, true],
        }
    }
}

struct Options {
    sluice: PathBuf,
    rounds: usize,
    secs: u64,
    haproxy: bool,
    access_log: LogMode,
    h1_connections: u32,
    tests: Vec<Test>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        sluice: PathBuf::from("target/release/sluice-ingress"),
        rounds: 3,
        secs: 10,
        haproxy: true,
        access_log: LogMode::Off,
        h1_connections: 50,
        tests: Test::ALL.to_vec(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--sluice" => o.sluice = PathBuf::from(value()?),
            "--rounds" => o.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--duration" => o.secs = value()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--no-haproxy" => o.haproxy = false,
            "--access-log" => {
                o.access_log = match value()?.as_str() {
                    "off" => LogMode::Off,
                    "on" => LogMode::On,
                    "both" => LogMode::Both,
                    v => return Err(format!("--access-log {v}: off, on or both")),
                }
            }
            "--connections" => {
                o.h1_connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?;
            }
            "--tests" => {
                o.tests = value()?
                    .split(',')
                    .map(|t| Test::from_short(t).ok_or(format!("--tests {t}: h1, h2 or tls")))
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.rounds == 0 || o.secs == 0 || o.h1_connections == 0 || o.tests.is_empty() {
        return Err("--rounds, --duration, --connections and --tests must be positive".into());
    }
    Ok(o)
}

/// A proxy's display name: `NAME` or `NAME+log`.
fn proxy_name(base: &str, log: bool) -> &'static str {
    match (base, log) {
        ("sluice", false) => "sluice",
        ("sluice", true) => "sluice+log",
        ("nginx", false) => "nginx",
        ("nginx", true) => "nginx+log",
        ("haproxy", false) => "haproxy",
        _ => "haproxy+log",
    }
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
    /// The file its access log lines go to, when it logs.
    access_log: Option<PathBuf>,
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
    // Appending, so that truncating it between runs leaves no hole.
    let _ = fs::remove_file(log);
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
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
        access_log: None,
    })
}

/// Lines in the access log file `path` (every line of sluice's stderr and
/// HAProxy's stdout is one), which is then emptied for the next run.
fn take_log_lines(path: &Path) -> Result<u64, String> {
    let mut lines = 0u64;
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(lines)
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

/// `sluice-bench ingress [--sluice BIN] [--rounds R] [--duration SECS] [--no-haproxy]
/// [--access-log off|on|both] [--connections N] [--tests h1,h2,tls]`
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
    let manifests = dir.join("manifests");
    write_manifests(&manifests, backend, &cert_pem, &key_pem)?;
    for &log in o.access_log.variants() {
        // sluice-ingress: the access log (its default, `fields`) goes to
        // stderr, which is this file.
        let name = proxy_name("sluice", log);
        let ports = (free_port()?, free_port()?);
        let mut cmd = pinned(PROXY_CPU, &o.sluice);
        cmd.env(
            "RUST_LOG",
            if log {
                "warn,sluice_ingress::access=info"
            } else {
                "warn"
            },
        )
        .arg("--manifests")
        .arg(&manifests)
        .args(["--http-addr", &format!("127.0.0.1:{}", ports.0)])
        .args(["--https-addr", &format!("127.0.0.1:{}", ports.1)])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--default-ssl-certificate", "bench/bench-cert"])
        .args(["--worker-threads", "1"])
        .args(["--access-log", if log { "fields" } else { "off" }]);
        let out = dir.join(format!("{name}.log"));
        let mut p = spawn(name, &mut cmd, &out, ports)?;
        p.access_log = log.then_some(out);
        procs.push(p);
    }
    for &log in o.access_log.variants() {
        let name = proxy_name("nginx", log);
        let ports = (free_port()?, free_port()?);
        let setup = PeerSetup {
            http_port: ports.0,
            https_port: ports.1,
            backend,
            cert: &cert_path,
            key: &key_path,
            combined: &combined,
            dir,
            name,
            access_log: log,
        };
        let conf = dir.join(format!("{name}.conf"));
        fs::write(&conf, nginx_conf(&setup)).map_err(|e| e.to_string())?;
        let mut cmd = pinned(PROXY_CPU, Path::new("nginx"));
        cmd.arg("-p").arg(dir).arg("-c").arg(&conf);
        let mut p = spawn(name, &mut cmd, &dir.join(format!("{name}.log")), ports)?;
        p.access_log = log.then(|| dir.join(format!("{name}-access.log")));
        procs.push(p);
    }
    for &log in o.access_log.variants().iter().filter(|_| haproxy) {
        let name = proxy_name("haproxy", log);
        let ports = (free_port()?, free_port()?);
        let setup = PeerSetup {
            http_port: ports.0,
            https_port: ports.1,
            backend,
            cert: &cert_path,
            key: &key_path,
            combined: &combined,
            dir,
            name,
            access_log: log,
        };
        let conf = dir.join(format!("{name}.cfg"));
        fs::write(&conf, haproxy_conf(&setup)).map_err(|e| e.to_string())?;
        let mut cmd = pinned(PROXY_CPU, Path::new("haproxy"));
        cmd.arg("-db").arg("-f").arg(&conf);
        let out = dir.join(format!("{name}.log"));
        let mut p = spawn(name, &mut cmd, &out, ports)?;
        p.access_log = log.then_some(out);
        procs.push(p);
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

    let target = |p: &Proc, secs: u64| Target {
        http_port: p.http_port,
        https_port: p.https_port,
        secs,
        cpu: LOAD_CPU,
        h1_connections: o.h1_connections,
        scratch: dir,
    };
    // Warm-up: connections to the backend, caches, allocator.
    for p in &procs {
        crate::ingress_load::run(Test::H1KeepAlive, &target(p, 2))?;
        if let Some(log) = &p.access_log {
            take_log_lines(log)?;
        }
    }

    let mut cells: Vec<Vec<Cell>> = procs
        .iter()
        .map(|_| o.tests.iter().map(|_| Cell::default()).collect())
        .collect();
    let mut tls_notes: Vec<String> = vec![String::new(); procs.len()];
    for round in 0..o.rounds {
        for (ti, &test) in o.tests.iter().enumerate() {
            // Alternate who goes first.
            let n = procs.len();
            for k in 0..n {
                let pi = (k + round) % n;
                let p = &procs[pi];
                let pid = p.child.id();
                let cpu0 = cpu_secs(pid);
                let t0 = Instant::now();
                let r = crate::ingress_load::run(test, &target(p, o.secs))?;
                let wall = t0.elapsed().as_secs_f64();
                let cpu = cpu_secs(pid) - cpu0;
                let total = (r.requests + r.errors).max(1) as f64;
                // Lines logged per request wrk or h2load counted (slightly
                // above 1: requests cut at the end are logged too).
                let logged = match &p.access_log {
                    Some(log) => {
                        // Let buffered lines reach the file.
                        std::thread::sleep(Duration::from_millis(300));
                        format!("  log {:.3} lines/req", take_log_lines(log)? as f64 / total)
                    }
                    None => String::new(),
                };
                eprintln!(
                    "round {} {:<11} {:<36} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  errors {}  cpu {:.0}%  {:.1} µs/req{logged}",
                    round + 1,
                    p.name,
                    test.name(o.h1_connections),
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
    for (ti, test) in o.tests.iter().enumerate() {
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
            let mut line = format!("| {} | {label} |", test.name(o.h1_connections));
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
        if !t.is_empty() {
            println!("{n} TLS (h2load): {t}");
        }
    }
    print_paired_ratios(&names, cells, o);
}

/// Pairs whose same-round ratios are reported: (numerator, denominator).
const PAIRS: [(&str, &str); 6] = [
    ("sluice", "nginx"),
    ("sluice+log", "nginx+log"),
    ("sluice+log", "sluice"),
    ("nginx+log", "nginx"),
    ("sluice", "haproxy"),
    ("sluice+log", "haproxy+log"),
];

/// Per test and pair, the ratios of requests/s and of CPU per request of
/// runs in the same round (which ran back to back): min–max and median.
fn print_paired_ratios(names: &[&str], cells: &[Vec<Cell>], o: &Options) {
    println!(
        "\n| test | pair | req/s ratio per round (min–max) | median | CPU per request ratio (median) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (ti, test) in o.tests.iter().enumerate() {
        for (a, b) in PAIRS {
            let (Some(ia), Some(ib)) = (
                names.iter().position(|n| *n == a),
                names.iter().position(|n| *n == b),
            ) else {
                continue;
            };
            let (ca, cb) = (&cells[ia][ti], &cells[ib][ti]);
            let rps: Vec<f64> = ca
                .runs
                .iter()
                .zip(&cb.runs)
                .map(|(x, y)| x.rps / y.rps.max(1e-9))
                .collect();
            let cpu: Vec<f64> = ca
                .cpu_us_per_req
                .iter()
                .zip(&cb.cpu_us_per_req)
                .map(|(x, y)| x / y.max(1e-9))
                .collect();
            let lo = rps.iter().copied().fold(f64::MAX, f64::min);
            println!(
                "| {} | {a} / {b} | {lo:.2}–{:.2} | {:.2} | {:.2} |",
                test.name(o.h1_connections),
                max(rps.iter().copied()),
                median(rps),
                median(cpu)
            );
        }
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
