//! Accepting connections when the process runs out of file descriptors.
//!
//! `accept` failing with EMFILE or ENFILE (or ENOBUFS/ENOMEM) leaves the
//! pending connection in the backlog: retrying at once fails again at once,
//! and a loop doing so spins a CPU until a descriptor frees up. Go's
//! net/http sleeps 5 ms, doubling up to 1 s; [`AcceptBackoff`] does the
//! same, and resets on the next success. Other errors (a connection reset
//! before it was accepted) concern one connection only: retry at once.

use std::io;
use std::time::Duration;

/// The first pause after running out of descriptors.
pub const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Whether an accept error means the process or system is out of a
/// resource (descriptors, buffers, memory), rather than one connection
/// having failed.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The pause before the next accept, after each result.
#[derive(Debug, Default, Clone)]
pub struct AcceptBackoff {
    pause: Option<Duration>,
}

impl AcceptBackoff {
    /// Records a successful accept.
    pub fn succeeded(&mut self) {
        self.pause = None;
    }

    /// Records a failed accept; returns how long to wait before the next
    /// (`None`: retry at once).
    pub fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if !is_resource_exhaustion(e) {
            return None;
        }
        let pause = self.pause.map_or(FIRST_PAUSE, |p| (p * 2).min(MAX_PAUSE));
        self.pause = Some(pause);
        Some(pause)
    }
}

/// Something connections are accepted from (a `TcpListener`; a test's
/// script of results).
pub trait Accept {
    /// The accepted connection.
    type Conn;

    /// Accepts the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Conn = (tokio::net::TcpStream, std::net::SocketAddr);

    async fn accept(&mut self) -> io::Result<Self::Conn> {
        tokio::net::TcpListener::accept(self).await
    }
}

/// Accepts the next connection, logging failures and pausing as
/// [`AcceptBackoff`] says, so that running out of descriptors neither
/// spins nor ends the server.
pub async fn accept<A: Accept>(listener: &mut A, backoff: &mut AcceptBackoff) -> A::Conn {
    loop {
        match listener.accept().await {
            Ok(conn) => {
                backoff.succeeded();
                return conn;
            }
            Err(e) => match backoff.failed(&e) {
                Some(pause) => {
                    tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "accept failed; pausing");
                    tokio::time::sleep(pause).await;
                }
                None => tracing::debug!(error = %e, "accept failed"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::time::Instant;

    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn pauses_double_up_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        assert_eq!(ms(b.failed(&os(libc::EMFILE))), Some(5));
        assert_eq!(ms(b.failed(&os(libc::ENFILE))), Some(10));
        for _ in 0..10 {
            b.failed(&os(libc::EMFILE));
        }
        assert_eq!(ms(b.failed(&os(libc::EMFILE))), Some(1000));
        // One connection's failure: no pause, and no reset either.
        assert_eq!(b.failed(&os(libc::ECONNABORTED)), None);
        b.succeeded();
        assert_eq!(ms(b.failed(&os(libc::ENOBUFS))), Some(5));
    }

    /// A listener that plays a script of results, then blocks.
    struct Script(VecDeque<io::Result<u32>>);

    impl Accept for Script {
        type Conn = u32;
        async fn accept(&mut self) -> io::Result<u32> {
            match self.0.pop_front() {
                Some(r) => r,
                None => std::future::pending().await,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accept_waits_out_descriptor_exhaustion_without_spinning() {
        let mut listener = Script(
            [
                Err(os(libc::EMFILE)),
                Err(os(libc::EMFILE)),
                Err(os(libc::ECONNABORTED)),
                Err(os(libc::EMFILE)),
                Ok(7),
                Err(os(libc::ENFILE)),
                Ok(8),
            ]
            .into(),
        );
        let mut backoff = AcceptBackoff::default();
        let start = Instant::now();
        assert_eq!(accept(&mut listener, &mut backoff).await, 7);
        // 5 + 10 + (the abort costs nothing) 20.
        assert_eq!(start.elapsed(), Duration::from_millis(35));
        let start = Instant::now();
        assert_eq!(accept(&mut listener, &mut backoff).await, 8);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(5),
            "reset by the success"
        );
    }
}
