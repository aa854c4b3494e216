//! The IPVS VM: run commands, and whole batches of tests, inside a throwaway
//! qemu VM that boots Debian's stock kernel.
//!
//! The host kernel has no IPVS and no dummy links, so every test that needs
//! them runs inside the VM started by `tests/vm/sluice-vm` (see
//! `tests/vm/README.md`). The guest sees the host's `/` read-only at the same
//! paths (under a tmpfs overlay, so writes succeed and vanish), so the test
//! binary cargo built on the host runs there unchanged, as root.
//!
//! The usual shape of a VM-tier test file is one host test that boots the VM
//! once and, inside it, re-runs the same test binary with `--ignored`:
//!
//! ```no_run
//! #[test]
//! fn in_the_ipvs_vm() {
//!     sluice_tests::vm::run_guest_tests("guest_");
//! }
//!
//! #[test]
//! #[ignore = "runs inside the IPVS VM"]
//! fn guest_ipvs_is_there() {
//!     sluice_tests::vm::assert_in_vm();
//!     assert!(std::path::Path::new("/proc/net/ip_vs").exists());
//! }
//! ```

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Set to `1` in the environment of every command the VM runs.
pub const IN_VM_ENV: &str = "SLUICE_IN_VM";

/// Exit status `sluice-vm` uses when the VM itself failed: it did not boot,
/// timed out, or stopped without reporting the command's status.
pub const HARNESS_FAILURE: i32 = 125;

/// Set this (to anything non-empty) to make [`availability`] report the VM as
/// unavailable, e.g. for a quick host-only `cargo test`. Under `CI=true` that
/// still fails [`run_guest_tests`].
pub const DISABLE_ENV: &str = "SLUICE_VM_DISABLE";

/// Overrides the default guest-test timeout of [`run_guest_tests`], in seconds.
pub const TIMEOUT_ENV: &str = "SLUICE_VM_TIMEOUT";

/// Variables [`run_guest_tests`] forwards from the host test's environment to
/// the guest test binary when they are set (besides `SLUICE_*` and
/// `PROPTEST_*`, which are forwarded by prefix).
const FORWARDED_ENV: &[&str] = &[
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "RUST_LOG",
    "RUST_MIN_STACK",
    "CARGO_MANIFEST_DIR",
    "CARGO_PKG_NAME",
    "CARGO_CRATE_NAME",
];

/// One VM at a time per process: the machine has two cores and each VM has
/// two vCPUs under TCG, so parallel VMs only make every one of them slower.
static VM_LOCK: Mutex<()> = Mutex::new(());

/// Takes the per-process "one VM at a time" lock that [`run`] holds while
/// its VM runs. Hold it while booting the VM some other way (e.g. running
/// [`script_path`] directly); do not call [`run`] while holding it.
pub fn lock_vm() -> MutexGuard<'static, ()> {
    VM_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Returns true when this process runs inside the IPVS VM (`SLUICE_IN_VM=1`).
pub fn in_vm() -> bool {
    std::env::var_os(IN_VM_ENV).is_some_and(|v| v == "1")
}

/// Panics unless this process runs inside the IPVS VM.
///
/// Call it first in every `guest_` test: those tests create links, IPVS
/// services and namespaces, and must never do that to the host, e.g. when
/// someone runs `cargo test -- --ignored` outside the VM.
///
/// # Panics
///
/// Outside the VM (see [`in_vm`]).
pub fn assert_in_vm() {
    assert!(
        in_vm(),
        "this test changes kernel state and runs only inside the IPVS VM \
         (SLUICE_IN_VM=1); run it through sluice_tests::vm::run_guest_tests \
         or tests/vm/sluice-vm"
    );
}

/// The path of the `sluice-vm` script (`tests/vm/sluice-vm` in the source
/// tree), found from this crate's manifest directory so that test binaries of
/// every crate in the workspace can use it.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vm")
        .join("sluice-vm")
}

/// Tells whether this process can boot the VM: `Ok(())` if so, otherwise the
/// reason it cannot.
///
/// It needs the `sluice-vm` script and bash, root (the script installs missing
/// packages with apt-get and the guest runs as root over the host's files),
/// and `qemu-system-x86_64` installed or installable with apt-get. It is never
/// available inside the VM itself, nor when `SLUICE_VM_DISABLE` is set.
pub fn availability() -> Result<(), String> {
    if in_vm() {
        return Err("already inside the IPVS VM (SLUICE_IN_VM=1)".into());
    }
    if std::env::var_os(DISABLE_ENV).is_some_and(|v| !v.is_empty()) {
        return Err(format!("{DISABLE_ENV} is set"));
    }
    let script = script_path();
    if !script.is_file() {
        return Err(format!("the VM script {} is missing", script.display()));
    }
    if find_in_path("bash").is_none() {
        return Err("bash is not installed".into());
    }
    match effective_uid() {
        Some(0) => {}
        Some(uid) => {
            return Err(format!(
                "not root (uid {uid}): the IPVS VM harness needs root to install its \
                 packages and to export the host filesystem to a root guest"
            ));
        }
        None => return Err("cannot tell whether this process runs as root".into()),
    }
    if find_in_path("qemu-system-x86_64").is_none() && find_in_path("apt-get").is_none() {
        return Err(
            "qemu-system-x86_64 is not installed and there is no apt-get to install it".into(),
        );
    }
    Ok(())
}

/// For host tests that boot the VM themselves (with [`run`]): returns true if
/// the VM is available; otherwise prints `SKIPPED: <what>: <reason>` on
/// stderr and returns false, so the caller returns early.
///
/// # Panics
///
/// When the VM is unavailable under `CI=true`: in CI a skip is a failure.
pub fn available_or_skip(what: &str) -> bool {
    match availability() {
        Ok(()) => true,
        Err(reason) if is_ci() => {
            panic!(
                "{what}: the IPVS VM is unavailable under CI=true (a skip is a failure): {reason}"
            )
        }
        Err(reason) => {
            say(&format!(
                "SKIPPED: {what}: the IPVS VM is unavailable: {reason}"
            ));
            false
        }
    }
}

/// How to run a command in the VM; `VmOptions::default()` gives the script's
/// defaults (2 vCPUs, 1024 MiB, 600 s, output echoed).
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Kill the VM (and report [`HARNESS_FAILURE`]) after this long,
    /// boot included.
    pub timeout: Duration,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub mem_mb: u32,
    /// Extra environment for the command, on top of `SLUICE_IN_VM=1`. Names
    /// must be valid shell identifiers.
    pub env: Vec<(String, String)>,
    /// Echo the command's output (with `println!`/`eprintln!`, so libtest
    /// captures it, and `--nocapture` shows it live) while it runs.
    pub echo: bool,
    /// Give the guest a network interface on qemu's user network
    /// (`sluice-vm --host-net`): `172.30.255.15/24`, where `172.30.255.2`
    /// is the host's loopback, so a guest can reach the test cluster's API
    /// server (`crate::cluster::VM_HOST_ADDR`). Nothing else is reachable.
    pub host_network: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            cpus: 2,
            mem_mb: 1024,
            env: Vec::new(),
            echo: true,
            host_network: false,
        }
    }
}

impl VmOptions {
    /// Sets [`VmOptions::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds one variable to [`VmOptions::env`].
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets [`VmOptions::echo`].
    pub fn echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// Sets [`VmOptions::host_network`].
    pub fn host_network(mut self, on: bool) -> Self {
        self.host_network = on;
        self
    }
}

/// The outcome of [`run`].
#[derive(Debug, Clone)]
pub struct VmRun {
    /// How `sluice-vm` exited: the command's own status, or
    /// [`HARNESS_FAILURE`] when the VM failed.
    pub status: ExitStatus,
    /// What the command printed (stdout and stderr, interleaved as the guest
    /// console saw them), without boot noise or carriage returns.
    pub output: String,
    /// What the harness itself printed on stderr: errors, the boot log when
    /// the VM failed, and the `boot+run+poweroff took ...` timing line.
    pub harness: String,
    /// Wall time of the whole run, boot and poweroff included.
    pub elapsed: Duration,
}

impl VmRun {
    /// The exit code (`None` if `sluice-vm` was killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// True if the command ran and exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// True if the VM itself failed (exit status [`HARNESS_FAILURE`] or
    /// killed), rather than the command.
    pub fn harness_failed(&self) -> bool {
        self.code().is_none_or(|c| c == HARNESS_FAILURE)
    }

    /// The harness's timing line (`boot+run+poweroff took ...`), if any.
    pub fn timing(&self) -> Option<&str> {
        self.harness
            .lines()
            .find(|l| l.contains("boot+run+poweroff took"))
    }
}

/// Runs `args` (a program and its arguments, not a shell string) as root
/// inside the VM, in the caller's working directory, and waits for it.
///
/// Output is captured into the returned [`VmRun`] and, if `opts.echo`,
/// echoed as it arrives. The harness's `boot+run+poweroff took ...` line is
/// always written to stderr, past libtest's output capture. One VM runs at a time per process. An `Err` means
/// `sluice-vm` could not be started (or `args` is empty); a VM that failed
/// to boot is an `Ok` whose [`VmRun::harness_failed`] is true.
pub fn run(args: &[&str], opts: &VmOptions) -> io::Result<VmRun> {
    if args.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "vm::run needs a command",
        ));
    }
    let mut cmd = Command::new("bash");
    cmd.arg(script_path())
        .arg("--timeout")
        .arg(opts.timeout.as_secs().max(1).to_string())
        .arg("--cpus")
        .arg(opts.cpus.to_string())
        .arg("--mem")
        .arg(opts.mem_mb.to_string());
    for (name, value) in &opts.env {
        cmd.arg("--env").arg(format!("{name}={value}"));
    }
    if opts.host_network {
        cmd.arg("--host-net");
    }
    cmd.arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let _one_vm_at_a_time = lock_vm();
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let echo = opts.echo;
    let stdout = child.stdout.take().map(|out| {
        thread::spawn(move || {
            collect_lines(out, |l| {
                if echo {
                    println!("{l}")
                }
            })
        })
    });
    let stderr = child.stderr.take().map(|err| {
        thread::spawn(move || {
            collect_lines(err, |l| {
                if l.contains("boot+run+poweroff took") {
                    // Past libtest's capture: the VM timing always shows.
                    say(l);
                } else if echo {
                    eprintln!("{l}")
                }
            })
        })
    });
    let status = child.wait()?;
    let join = |h: Option<thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    let output = join(stdout);
    let harness = join(stderr);
    Ok(VmRun {
        status,
        output,
        harness,
        elapsed: start.elapsed(),
    })
}

/// Runs this test binary's ignored tests whose names contain `filter` inside
/// the VM, one boot for the whole batch, and fails the calling test unless
/// they all pass and at least one ran.
///
/// Inside the VM it runs `CURRENT_EXE --ignored --test-threads=1 --nocapture
/// FILTER` with `SLUICE_IN_VM=1` (plus `RUST_BACKTRACE=1` unless set, and the
/// host's `RUST_LOG`, `CARGO_*` package variables, `SLUICE_*` and
/// `PROPTEST_*` variables). The guest tests must be
/// `#[ignore = "runs inside the IPVS VM"]` and named so `filter` matches them
/// (by convention they start with `guest_`). The timeout is 900 s, or
/// `SLUICE_VM_TIMEOUT` seconds.
///
/// If the VM is unavailable (see [`availability`]) it prints
/// `SKIPPED: <reason>` on stderr and returns, except under `CI=true`, where a
/// skip is a failure. Inside the VM it does nothing: the guest tests are run
/// by the host's call.
///
/// # Panics
///
/// When the guest run fails, reports no passing test, cannot be started, or
/// the VM is unavailable under `CI=true`; the message carries the guest's
/// output.
pub fn run_guest_tests(filter: &str) {
    run_guest_tests_with(filter, VmOptions::default());
}

/// [`run_guest_tests`] with options: `base`'s host network, memory and
/// CPUs, and its `env` added to the forwarded variables (the timeout is
/// still the guest-test timeout).
pub fn run_guest_tests_with(filter: &str, base: VmOptions) {
    if in_vm() {
        eprintln!("run_guest_tests({filter:?}): already inside the IPVS VM; nothing to do");
        return;
    }
    if !available_or_skip(&format!("guest tests matching {filter:?}")) {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("cannot locate the current test binary: {e}"),
    };
    let Some(exe) = exe.to_str().map(str::to_owned) else {
        panic!("the test binary path {} is not UTF-8", exe.display());
    };

    let mut opts = base.timeout(guest_timeout());
    let mut env = guest_env(std::env::vars());
    env.append(&mut opts.env);
    opts.env = env;
    let args = [
        exe.as_str(),
        "--ignored",
        "--test-threads=1",
        "--nocapture",
        filter,
    ];
    eprintln!(
        "run_guest_tests: booting the IPVS VM for `{}` tests matching {filter:?}",
        Path::new(&exe)
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let run = match run(&args, &opts) {
        Ok(run) => run,
        Err(e) => panic!("cannot start {}: {e}", script_path().display()),
    };
    let passed = passed_tests(&run.output);
    let verdict = if !run.success() {
        Some(match run.code() {
            Some(HARNESS_FAILURE) => "the IPVS VM failed (see the harness messages)".to_string(),
            Some(code) => format!("the guest tests failed (exit status {code})"),
            None => "sluice-vm was killed".to_string(),
        })
    } else if passed.is_none_or(|n| n == 0) {
        Some(format!(
            "no guest test passed: nothing matched {filter:?} among the ignored tests \
             (guest tests must be #[ignore = \"runs inside the IPVS VM\"] and match the filter)"
        ))
    } else {
        None
    };
    if let Some(verdict) = verdict {
        panic!(
            "{verdict}\n\n--- guest output ---\n{}\n--- sluice-vm ---\n{}",
            run.output.trim_end(),
            run.harness.trim_end()
        );
    }
    say(&format!(
        "run_guest_tests: {} guest test(s) matching {filter:?} passed in the IPVS VM",
        passed.unwrap_or(0),
    ));
}

/// Writes a line straight to the process's stderr, bypassing libtest's output
/// capture (which only sees `print!`/`eprint!`), so it shows in a plain
/// `cargo test` run.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// Sums the `N passed` of every libtest `test result:` line in `output`;
/// `None` if there is no such line.
fn passed_tests(output: &str) -> Option<u64> {
    let mut total = None;
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        for part in rest.split([';', '.']) {
            if let Some(n) = part.trim().strip_suffix(" passed")
                && let Ok(n) = n.trim().parse::<u64>()
            {
                *total.get_or_insert(0) += n;
            }
        }
    }
    total
}

/// The environment handed to guest tests: a subset of the host test's.
fn guest_env(host: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = host
        .filter(|(k, _)| {
            FORWARDED_ENV.contains(&k.as_str())
                || k.starts_with("PROPTEST_")
                || (k.starts_with("SLUICE_") && !k.starts_with("SLUICE_VM_") && k != IN_VM_ENV)
        })
        .filter(|(k, _)| is_shell_name(k))
        .collect();
    if !env.iter().any(|(k, _)| k == "RUST_BACKTRACE") {
        env.push(("RUST_BACKTRACE".into(), "1".into()));
    }
    env.sort();
    env
}

fn guest_timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(Duration::from_secs(900), Duration::from_secs)
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The effective uid, from `/proc/self/status` (no libc needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Reads `r` line by line (lossy UTF-8, `\r` dropped), calling `each` on every
/// line, and returns everything read.
fn collect_lines(r: impl Read, mut each: impl FnMut(&str)) -> String {
    let mut all = String::new();
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
                each(&line);
                all.push_str(&line);
                all.push('\n');
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_passed_tests_across_result_lines() {
        let out = "running 2 tests\n\
                   test guest_a ... ok\n\
                   test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.00s\n\
                   test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n";
        assert_eq!(passed_tests(out), Some(3));
        assert_eq!(
            passed_tests(
                "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 9 filtered out; finished in 0.00s"
            ),
            Some(0)
        );
        assert_eq!(passed_tests("hello\n"), None);
    }

    #[test]
    fn guest_env_forwards_only_the_chosen_variables() {
        let host = [
            ("RUST_LOG", "debug"),
            ("HOME", "/root"),
            ("SLUICE_FOO", "1"),
            ("SLUICE_VM_CACHE", "/x"),
            ("SLUICE_IN_VM", "0"),
            ("PROPTEST_CASES", "10"),
            ("CARGO_MANIFEST_DIR", "/work/main/tests"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = guest_env(host.into_iter());
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "CARGO_MANIFEST_DIR",
                "PROPTEST_CASES",
                "RUST_BACKTRACE",
                "RUST_LOG",
                "SLUICE_FOO"
            ]
        );
    }

    #[test]
    fn shell_names() {
        assert!(is_shell_name("RUST_LOG"));
        assert!(is_shell_name("_x1"));
        assert!(!is_shell_name("1x"));
        assert!(!is_shell_name("A-B"));
        assert!(!is_shell_name(""));
    }

    #[test]
    fn the_script_is_found_from_the_manifest_dir() {
        assert!(script_path().is_file(), "{}", script_path().display());
    }
}
