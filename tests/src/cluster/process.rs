//! Child processes that die with the test process: the control plane's
//! components and the node agent's pods.
//!
//! Every child is forked by one long-lived launcher thread with
//! `PR_SET_PDEATHSIG = SIGKILL`. The kernel delivers that signal when the
//! *thread* that forked the child exits, so forking from short-lived threads
//! (tokio's blocking pool, a test's own thread) would kill children early;
//! the launcher thread lives until the process does. A shared cluster sits
//! in a `static` whose destructor never runs, so this is also what stops
//! kube-apiserver and etcd when a test binary ends or panics.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Request = (Command, mpsc::Sender<io::Result<Child>>);

fn launcher() -> &'static std::sync::Mutex<mpsc::Sender<Request>> {
    static LAUNCHER: OnceLock<std::sync::Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("sluice-launcher".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl is async-signal-safe; it runs in the child
                    // between fork and exec and touches no memory of ours.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the launcher thread");
        std::sync::Mutex::new(tx)
    })
}

/// Spawns `cmd` from the launcher thread, so the child is SIGKILLed when
/// this process exits, however it exits.
pub fn spawn(cmd: Command) -> io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    launcher()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the launcher thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the launcher thread is gone"))?
}

/// Sends `signal` to a child's pid (ignoring "no such process").
pub fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a pid we spawned and have not yet reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// Stops a child: SIGTERM, then SIGKILL after `grace`. Reaps it.
pub fn stop(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A program the harness keeps running, restartable with the same
/// arguments; its output goes (appended, so restarts keep the history) to
/// one log file.
#[derive(Debug)]
pub struct Supervised {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Supervised {
    /// A program that is not started yet.
    pub fn new(name: &'static str, program: PathBuf, args: Vec<String>, log: PathBuf) -> Self {
        Self {
            name,
            program,
            args,
            log,
            child: None,
        }
    }

    /// Its name (as in log messages).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Starts it unless it is running.
    pub fn start(&mut self) -> io::Result<()> {
        if self.running() {
            return Ok(());
        }
        let out = open_log(&self.log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.child = Some(spawn(cmd)?);
        Ok(())
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, grace);
        }
    }

    /// SIGKILL, no grace (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The last `lines` lines of a text file ("" if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
