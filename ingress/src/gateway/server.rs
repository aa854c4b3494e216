//! Listeners and client connections.
//!
//! One task per connection serves HTTP/1.1 and HTTP/2 with hyper-util's
//! auto builder (h2c prior knowledge on cleartext, ALPN on TLS), with
//! upgrades. Next to hyper, a watchdog enforces the timeouts hyper does
//! not express the way an edge proxy needs them:
//!
//! * **request head** (slowloris): from the first byte after an idle
//!   period to the complete head of a request, at most
//!   [`Timeouts::header_read`](super::config::Timeouts); then the
//!   connection is dropped. (hyper's own `header_read_timeout` also runs
//!   while a keep-alive connection is idle, which would cap keep-alive at
//!   the head timeout, so it is disabled.) On HTTP/2 this bounds the time
//!   from the connection preface to the first request.
//! * **idle**: no bytes either way for
//!   [`Timeouts::idle`](super::config::Timeouts): a connection without
//!   requests in flight is shut down gracefully, one with requests in
//!   flight (a stalled client) is dropped.
//! * **TLS handshake**: bounded by the head timeout.
//!
//! **Idle memory.** A connection holds only its socket and a small task
//! until the client's first byte (`Connection::first_bytes`); the
//! parser, its buffers and the watchdog are made (and boxed) after it. A
//! plain connection that says nothing is closed after the idle timeout, a
//! TLS one after the head timeout. 10,000 such connections cost 1.7 kB
//! each (RELIABILITY.md; 3.4 kB with the parser made at accept).
//!
//! Graceful shutdown stops accepting, asks every connection to finish
//! (HTTP/1 closes after the response in flight, HTTP/2 sends GOAWAY) and
//! waits up to [`Timeouts::drain`](super::config::Timeouts).
//!
//! **HTTP/2 stream resets.** Every stream that ends without its response
//! (the client reset it after hyper accepted it, or the h2 layer reset it
//! for the client's protocol error) counts against the connection's
//! budget ([`Limits::max_stream_resets`](super::config::Limits)) while
//! such streams outnumber completed ones; over it, the IO wrapper writes a
//! GOAWAY ENHANCE_YOUR_CALM between two of hyper's frames
//! ([`super::wire::H2Frames`]) and ends the connection. Streams reset
//! before they were accepted (the textbook rapid reset) are the h2
//! layer's own budget, which answers the same way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::Shared;
use super::config::GatewayConfig;
use super::metrics::{Metrics, ResetCounters};
use super::service::{ConnCtx, GatewayService};
use super::upstream::slots;
use super::wire::{H2_PREFACE, H2Frames, RequestLineScan};

/// GOAWAY's error code for a peer that misbehaves (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Per-connection activity, shared by the IO wrapper, the request
/// handler and the watchdog.
#[derive(Debug)]
pub(crate) struct ConnState {
    epoch: Instant,
    last_activity_ms: AtomicU64,
    /// When the current request head started (ms + 1); 0 = none pending.
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
    h2: AtomicBool,
    /// Fingerprint of the latest HTTP/1 request line whose target had a
    /// `#` ([`super::wire::RequestLineScan`]); 0 = none.
    fragment: AtomicU64,
    /// HTTP/2 streams that ended without their response, and with it.
    resets: AtomicU32,
    completed: AtomicU32,
    max_resets: u32,
    /// Over the reset budget: the IO writes GOAWAY ENHANCE_YOUR_CALM.
    calm: AtomicBool,
    /// Where resets and GOAWAYs are counted (none for tunnels).
    counters: Option<ResetCounters>,
    /// The connection task's read waker, to get the GOAWAY written.
    io_waker: AtomicWaker,
    /// Slots for this connection's HTTP/1.1 upstream exchanges, made on
    /// first use (an HTTP/1 client never has two at once).
    upstream_slots: OnceLock<Arc<Semaphore>>,
    max_upstream: usize,
}

impl ConnState {
    /// A state without reset budget or upstream cap (tunnels, tests).
    pub(crate) fn new() -> Self {
        Self::with_limits(0, 0, None)
    }

    /// A client connection's state under `config`'s limits, counting into
    /// `metrics`.
    pub(crate) fn for_client(config: &GatewayConfig, metrics: &Metrics) -> Self {
        Self::with_limits(
            config.limits.max_stream_resets,
            config.upstream.max_connections_per_client,
            Some(metrics.reset_counters()),
        )
    }

    fn with_limits(max_resets: u32, max_upstream: usize, counters: Option<ResetCounters>) -> Self {
        Self {
            epoch: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            fragment: AtomicU64::new(0),
            resets: AtomicU32::new(0),
            completed: AtomicU32::new(0),
            max_resets,
            calm: AtomicBool::new(false),
            counters,
            io_waker: AtomicWaker::new(),
            upstream_slots: OnceLock::new(),
            max_upstream,
        }
    }

    /// The slots capping this connection's HTTP/1.1 upstream exchanges;
    /// `None` without a cap.
    pub(crate) fn upstream_slots(&self) -> Option<&Arc<Semaphore>> {
        (self.max_upstream > 0).then(|| {
            self.upstream_slots
                .get_or_init(|| slots::semaphore(self.max_upstream))
        })
    }

    #[cfg(test)]
    pub(crate) fn set_fragment(&self, f: u64) {
        self.fragment.store(f, Ordering::Relaxed);
    }

    /// Takes the fingerprint of a request line with a `#` seen since the
    /// last call.
    pub(crate) fn take_fragment(&self) -> Option<u64> {
        match self.fragment.swap(0, Ordering::Relaxed) {
            0 => None,
            f => Some(f),
        }
    }

    /// An HTTP/2 stream ended, `answered` or not; over the budget the
    /// connection is told to calm down.
    fn stream_ended(&self, answered: bool) {
        if answered {
            self.completed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let resets = self.resets.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(c) = &self.counters {
            c.resets.inc();
        }
        if self.max_resets > 0
            && resets > self.max_resets
            && resets > self.completed.load(Ordering::Relaxed)
            && !self.calm.swap(true, Ordering::AcqRel)
        {
            if let Some(c) = &self.counters {
                c.calm_goaways.inc();
            }
            self.io_waker.wake();
        }
    }

    /// Whether the connection went over its reset budget.
    pub(crate) fn calmed(&self) -> bool {
        self.calm.load(Ordering::Acquire)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived; true when they start a new HTTP/1 request head
    /// (none in flight, none pending).
    fn on_read(&self) -> bool {
        let now = self.now_ms();
        self.last_activity_ms.store(now, Ordering::Relaxed);
        if !self.h2.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            self.head_started_ms.store(now + 1, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn on_write(&self) {
        self.last_activity_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// A request head arrived: stops the head timer until the connection
    /// is idle again. The guard marks the request finished when dropped.
    pub(crate) fn request_started(self: &Arc<Self>, h2: bool) -> RequestGuard {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
        RequestGuard {
            state: self.clone(),
            h2,
            answered: false,
        }
    }

    /// What the watchdog should do now.
    fn check(&self, head_timeout: Duration, idle: Duration) -> Verdict {
        let now = self.now_ms();
        let head = self.head_started_ms.load(Ordering::Relaxed);
        if head != 0 && now.saturating_sub(head - 1) > ms(head_timeout) {
            return Verdict::HeadTimeout;
        }
        let last = self.last_activity_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) > ms(idle) {
            return if self.in_flight.load(Ordering::Relaxed) == 0 {
                Verdict::Idle
            } else {
                Verdict::Stalled
            };
        }
        Verdict::Fine
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fine,
    HeadTimeout,
    Idle,
    Stalled,
}

/// Marks a request finished on drop; an HTTP/2 request dropped before
/// [`RequestGuard::answered`] counts as a reset stream.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    state: Arc<ConnState>,
    h2: bool,
    answered: bool,
}

impl RequestGuard {
    /// The response went out whole (or failed on the upstream's side):
    /// the stream was not reset by or for the client.
    pub(crate) fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.state.on_write();
        if self.h2 {
            self.state.stream_ended(self.answered);
        }
    }
}

/// What the IO wrapper reads from the raw bytes ([`super::wire`]).
#[derive(Debug, Default)]
struct Wire {
    /// Bytes of the HTTP/2 preface matched so far; [`Wire::NOT_H2`] once
    /// the connection is known to be HTTP/1.
    preface: u8,
    line: RequestLineScan,
    /// Frames written, on an HTTP/2 connection.
    out: H2Frames,
    /// Bytes of the gateway's own GOAWAY written.
    goaway_sent: u8,
}

impl Wire {
    const NOT_H2: u8 = u8::MAX;

    fn is_h2(&self) -> bool {
        usize::from(self.preface) == H2_PREFACE.len()
    }

    fn on_read(&mut self, bytes: &[u8], head_started: bool, state: &ConnState) {
        if usize::from(self.preface) < H2_PREFACE.len() {
            for &b in bytes
                .iter()
                .take(H2_PREFACE.len() - usize::from(self.preface))
            {
                if b == H2_PREFACE[usize::from(self.preface)] {
                    self.preface += 1;
                } else {
                    self.preface = Self::NOT_H2;
                    break;
                }
            }
            if self.is_h2() {
                state.h2.store(true, Ordering::Relaxed);
            }
        }
        if self.is_h2() {
            return;
        }
        if head_started {
            self.line.start();
        }
        if let Some(f) = self.line.feed(bytes) {
            state.fragment.store(f, Ordering::Relaxed);
        }
    }
}

pin_project_lite::pin_project! {
    /// An IO object that records activity into a [`ConnState`], feeds the
    /// raw-byte scanners of [`super::wire`], and writes the gateway's own
    /// GOAWAY when the connection went over its reset budget.
    pub(crate) struct TrackedIo<T> {
        #[pin]
        inner: T,
        state: Arc<ConnState>,
        wire: Wire,
    }
}

impl<T> TrackedIo<T> {
    pub(crate) fn new(inner: T, state: Arc<ConnState>) -> Self {
        state.on_write();
        Self {
            inner,
            state,
            wire: Wire::default(),
        }
    }
}

/// Writes GOAWAY ENHANCE_YOUR_CALM (resuming a partial write) and flushes.
fn poll_goaway<T: AsyncWrite>(
    mut inner: Pin<&mut T>,
    cx: &mut Context<'_>,
    wire: &mut Wire,
) -> Poll<io::Result<()>> {
    let frame = H2Frames::goaway(ENHANCE_YOUR_CALM);
    while usize::from(wire.goaway_sent) < frame.len() {
        let n = ready!(
            inner
                .as_mut()
                .poll_write(cx, &frame[usize::from(wire.goaway_sent)..])
        )?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        wire.goaway_sent += u8::try_from(n).unwrap_or(u8::MAX);
    }
    inner.poll_flush(cx)
}

fn calmed_down() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 stream reset budget exceeded: GOAWAY ENHANCE_YOUR_CALM sent",
    )
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for TrackedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if this.wire.is_h2() && this.state.calmed() && this.wire.out.at_boundary() {
            // Nothing of hyper's is half written: say goodbye, then EOF.
            ready!(poll_goaway(this.inner.as_mut(), cx, this.wire))?;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        match r {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let head = this.state.on_read();
                this.wire.on_read(&buf.filled()[before..], head, this.state);
            }
            Poll::Pending if this.wire.is_h2() => this.state.io_waker.register(cx.waker()),
            _ => {}
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let mut buf = buf;
        let h2 = this.wire.is_h2();
        if h2 && this.state.calmed() {
            if this.wire.out.at_boundary() {
                ready!(poll_goaway(this.inner.as_mut(), cx, this.wire))?;
                return Poll::Ready(Err(calmed_down()));
            }
            // Finish hyper's frame first, then the GOAWAY.
            buf = &buf[..buf.len().min(this.wire.out.until_boundary())];
        }
        let r = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            this.state.on_write();
            if h2 {
                this.wire.out.feed(&buf[..n]);
            }
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.wire.is_h2() && self.state.calmed() {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            return self.poll_write(cx, first);
        }
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            this.state.on_write();
            if this.wire.is_h2() {
                let mut left = n;
                for b in bufs {
                    let take = left.min(b.len());
                    this.wire.out.feed(&b[..take]);
                    left -= take;
                    if left == 0 {
                        break;
                    }
                }
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Bound listeners, ready to serve.
pub struct Server {
    shared: Arc<Shared>,
    http: Option<TcpListener>,
    https: Option<TcpListener>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("http", &self.http_addr())
            .field("https", &self.https_addr())
            .finish()
    }
}

impl Server {
    pub(crate) async fn bind(shared: Arc<Shared>) -> io::Result<Self> {
        let http = match shared.config.http_addr {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let https = match shared.config.https_addr {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        Ok(Self {
            shared,
            http,
            https,
        })
    }

    /// The bound plain-HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound HTTPS address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves and the shutdown grace period has
    /// passed, then drains: stops accepting, shuts every connection down
    /// gracefully and waits for them (at most the drain timeout).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let builder = Arc::new(http_builder(&self.shared));
        let mut loops = Vec::new();
        for (listener, tls) in [(self.http, false), (self.https, true)] {
            let Some(listener) = listener else { continue };
            let shared = self.shared.clone();
            let builder = builder.clone();
            let stop = stop_rx.clone();
            let done = done_tx.clone();
            loops.push(tokio::spawn(accept_loop(
                listener, tls, shared, builder, stop, done,
            )));
        }
        drop(done_tx);
        shutdown.await;
        tokio::time::sleep(self.shared.config.timeouts.shutdown_grace).await;
        let _ = stop_tx.send(true);
        for l in loops {
            let _ = l.await;
        }
        let drain = self.shared.config.timeouts.drain + Duration::from_secs(1);
        let _ = tokio::time::timeout(drain, done_rx.recv()).await;
    }
}

fn http_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let limits = &shared.config.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams)
        // The h2 layer's own count of the streams it resets for protocol
        // errors, as a backstop to the gateway's budget (ConnState).
        .max_local_error_reset_streams(
            (limits.max_stream_resets > 0).then_some(limits.max_stream_resets as usize),
        );
    b
}

async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let acceptor = TlsAcceptor::from(shared.tls.clone());
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(peer);
        let conn = Connection {
            shared: shared.clone(),
            builder: builder.clone(),
            stop: stop.clone(),
            done: done.clone(),
            peer,
            local,
        };
        if tls {
            tokio::spawn(conn.serve_tls(tcp, acceptor.clone()));
        } else {
            tokio::spawn(conn.serve_plain(tcp));
        }
    }
}

struct Connection {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
    peer: SocketAddr,
    local: SocketAddr,
}

impl Connection {
    /// Waits, holding nothing but the socket, until the client sends its
    /// first bytes: false when `limit` passes or the server shuts down
    /// first. A connected client that says nothing costs a small task, not
    /// a parser with its buffers (the rest of the connection is boxed and
    /// made only after this).
    async fn first_bytes(&mut self, tcp: &TcpStream, limit: Duration) -> bool {
        // `peek`, not `readable`: tokio reports a fresh socket readable
        // before any byte came.
        let mut byte = [0u8; 1];
        tokio::select! {
            r = tcp.peek(&mut byte) => r.is_ok_and(|n| n > 0),
            _ = tokio::time::sleep(limit) => false,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }

    async fn serve_plain(mut self, tcp: TcpStream) {
        let metrics = self.shared.metrics.clone();
        metrics.connection_opened("http");
        // Silence until the idle timeout, as on a keep-alive connection.
        if self
            .first_bytes(&tcp, self.shared.config.timeouts.idle)
            .await
        {
            let state = Arc::new(ConnState::for_client(
                &self.shared.config,
                &self.shared.metrics,
            ));
            let io = TrackedIo::new(tcp, state.clone());
            Box::pin(self.drive(io, state, None)).await;
        }
        metrics.connection_closed("http");
    }

    async fn serve_tls(mut self, tcp: TcpStream, acceptor: TlsAcceptor) {
        let metrics = self.shared.metrics.clone();
        metrics.connection_opened("https");
        // The ClientHello within the head timeout, as the whole handshake.
        let limit = self.shared.config.timeouts.header_read;
        if self.first_bytes(&tcp, limit).await {
            Box::pin(self.handshake_and_drive(tcp, acceptor)).await;
        } else {
            metrics.tls_handshake(false);
            tracing::debug!(peer = %self.peer, "TLS handshake timed out");
        }
        metrics.connection_closed("https");
    }

    async fn handshake_and_drive(self, tcp: TcpStream, acceptor: TlsAcceptor) {
        let metrics = self.shared.metrics.clone();
        let handshake = tokio::time::timeout(
            self.shared.config.timeouts.header_read,
            acceptor.accept(tcp),
        )
        .await;
        match handshake {
            Ok(Ok(tls)) => {
                metrics.tls_handshake(true);
                let sni = tls
                    .get_ref()
                    .1
                    .server_name()
                    .unwrap_or("")
                    .to_ascii_lowercase()
                    .into_boxed_str();
                let state = Arc::new(ConnState::for_client(
                    &self.shared.config,
                    &self.shared.metrics,
                ));
                let io = TrackedIo::new(tls, state.clone());
                self.drive(io, state, Some(sni)).await;
            }
            Ok(Err(e)) => {
                metrics.tls_handshake(false);
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                metrics.tls_handshake(false);
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
            }
        }
    }

    /// Serves the connection; `sni` is `Some` (empty without SNI) on TLS.
    async fn drive<I>(mut self, io: I, state: Arc<ConnState>, sni: Option<Box<str>>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let timeouts = self.shared.config.timeouts;
        let svc = GatewayService::new(
            self.shared.clone(),
            Arc::new(ConnCtx {
                peer: self.peer,
                local: self.local,
                tls: sni.is_some(),
                sni: sni.filter(|s| !s.is_empty()),
                state: state.clone(),
            }),
        );
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        let tick = (timeouts.header_read.min(timeouts.idle) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut shutting_down: Option<(Instant, Duration)> = None;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.stop.wait_for(|s| *s), if shutting_down.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    shutting_down = Some((Instant::now(), timeouts.drain));
                }
                _ = tokio::time::sleep(tick) => {
                    if let Some((since, limit)) = shutting_down {
                        if since.elapsed() > limit {
                            break;
                        }
                        continue;
                    }
                    match state.check(timeouts.header_read, timeouts.idle) {
                        Verdict::Fine => {}
                        Verdict::HeadTimeout => {
                            tracing::debug!(peer = %self.peer, "request head timeout");
                            break;
                        }
                        Verdict::Stalled => {
                            tracing::debug!(peer = %self.peer, "connection stalled");
                            break;
                        }
                        Verdict::Idle => {
                            conn.as_mut().graceful_shutdown();
                            // An idle HTTP/1 connection closes at once; an
                            // HTTP/2 client gets a moment after GOAWAY.
                            shutting_down = Some((Instant::now(), timeouts.header_read));
                        }
                    }
                }
            }
        }
        drop(self.done);
    }
}

/// Copies an upgraded connection both ways until either side closes or
/// nothing moves for `idle`.
pub(crate) async fn tunnel<A, B>(client: A, upstream: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let state = Arc::new(ConnState::new());
    // The head timer is meaningless here.
    state.h2.store(true, Ordering::Relaxed);
    let mut client = TrackedIo::new(client, state.clone());
    let mut upstream = upstream;
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            r = copy.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(tick) => {
                if state.check(Duration::MAX, idle) != Verdict::Fine {
                    tracing::debug!("upgraded connection idle, closing");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_verdicts() {
        let s = Arc::new(ConnState::new());
        let long = Duration::from_secs(3600);
        assert_eq!(s.check(long, long), Verdict::Fine);
        assert_eq!(s.check(long, Duration::ZERO), Verdict::Fine);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.check(long, Duration::ZERO), Verdict::Idle);
        s.on_read();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.check(Duration::ZERO, long), Verdict::HeadTimeout);
        let g = s.request_started(false);
        assert_eq!(s.check(Duration::ZERO, long), Verdict::Fine);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.check(long, Duration::ZERO), Verdict::Stalled);
        drop(g);
        // HTTP/2: no head timer once a request has been seen.
        let _g = s.request_started(true);
        drop(_g);
        s.on_read();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.check(Duration::ZERO, long), Verdict::Fine);
    }
}
