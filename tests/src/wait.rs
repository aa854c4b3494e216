//! Polling until a condition holds, for tests that watch a process or the
//! kernel converge.

use std::time::{Duration, Instant};

/// Polls `cond` every `poll` until it holds; panics after `limit` with
/// `what` and whatever `detail` returns then (say, the kernel's table),
/// so a timeout shows the state it stopped in.
pub fn wait_until(
    what: &str,
    limit: Duration,
    poll: Duration,
    mut cond: impl FnMut() -> bool,
    detail: impl Fn() -> String,
) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}{}",
            detail()
        );
        std::thread::sleep(poll);
    }
}
