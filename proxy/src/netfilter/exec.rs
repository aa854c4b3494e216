//! Running the netfilter tools (`ipset`, `iptables-restore`, …).
//!
//! Everything goes through [`CommandRunner`], so the same code can drive the
//! host, a network namespace (`ip netns exec NAME …`) or a fake.

use std::io::Write;
use std::process::{Command, Stdio};

/// A tool run that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started (missing binary, permissions).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error from the OS.
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("{program} {args} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its arguments, space-joined (for the message).
        args: String,
        /// The exit status as printed by the OS (`exit status: 2`).
        status: String,
        /// The exit code, if it exited normally.
        code: Option<i32>,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
}

/// What a successful run printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error (warnings, statistics).
    pub stderr: String,
}

/// Runs one program with arguments and optional standard input.
pub trait CommandRunner: Send + Sync {
    /// Runs `program args…`, feeding it `stdin`; an unsuccessful exit is an
    /// [`ExecError::Failed`].
    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, ExecError>;
}

/// Runs the real tools, optionally through a wrapper command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemRunner {
    wrapper: Vec<String>,
}

/// A network-namespace name that `ip netns` would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network namespace name {0:?}")]
pub struct InvalidNetnsName(pub String);

impl SystemRunner {
    /// Runs the tools directly, in the caller's namespaces.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the tools in the named network namespace through
    /// `ip netns exec NAME`. The name must be 1–64 characters of
    /// `[A-Za-z0-9_.-]`, not starting with `-` or `.`.
    pub fn in_netns(name: &str) -> Result<Self, InvalidNetnsName> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with(['-', '.'])
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(InvalidNetnsName(name.to_owned()));
        }
        Ok(Self {
            wrapper: vec!["ip".into(), "netns".into(), "exec".into(), name.into()],
        })
    }
}

impl CommandRunner for SystemRunner {
    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, ExecError> {
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| ExecError::Spawn {
            program: program.to_owned(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        // Write stdin from a thread so a chatty child cannot deadlock us on a
        // full stdout pipe while we are still writing.
        let writer = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.to_vec();
                Some(std::thread::spawn(move || pipe.write_all(&data)))
            }
            _ => None,
        };
        let out = child.wait_with_output().map_err(spawn_err)?;
        let write_result = writer.map(|w| w.join());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(ExecError::Failed {
                program: program.to_owned(),
                args: args.join(" "),
                status: out.status.to_string(),
                code: out.status.code(),
                stderr: stderr.trim().to_owned(),
            });
        }
        if let Some(Ok(Err(e))) = write_result {
            return Err(spawn_err(e));
        }
        Ok(ExecOutput { stdout, stderr })
    }
}
