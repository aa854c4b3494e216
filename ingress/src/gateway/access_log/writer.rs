//! Where access log lines go, without a request ever waiting for them.
//!
//! A line is rendered on the worker thread that finished the request,
//! into that worker's buffer (one of a few shards picked per thread, so
//! its lock is uncontended). A full buffer (32 KiB, some 150 lines)
//! becomes a batch on a bounded queue; one background thread writes
//! batches out with one `write` each, and every 100 ms also collects the
//! partial buffers, so a line reaches the output within about 100 ms
//! when traffic is light. When the output stalls (a full pipe, a slow
//! disk) and the queue is full, a batch is dropped and its lines counted
//! in `sluice_ingress_access_log_dropped_lines_total`: the log loses
//! lines, requests lose nothing. The memory held is bounded by
//! (queue + shards) × batch size, 2.5 MiB by default.
//!
//! To stderr, batches are written under stderr's lock, so the process's
//! other log lines never land inside a batch.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak, mpsc};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::AccessRecord;
use super::line::{self, Clock, LineStyle};

/// Sizes and delays of an [`AccessLogWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// A worker's buffer becomes a batch when it holds this many bytes.
    pub batch_bytes: usize,
    /// Batches waiting for the output; beyond this, batches are dropped.
    pub queue_batches: usize,
    /// How often partial buffers are collected (the longest a line waits
    /// when traffic is light).
    pub flush_interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            batch_bytes: 32 * 1024,
            queue_batches: 64,
            flush_interval: Duration::from_millis(100),
        }
    }
}

/// A handle on an access log output and its background writer thread;
/// cheap to clone. The thread ends, after writing what is buffered, when
/// the last handle is dropped.
#[derive(Clone)]
pub struct AccessLogWriter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AccessLogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogWriter")
            .field("style", &self.inner.style)
            .field("options", &self.inner.options)
            .field("dropped", &self.inner.dropped.get())
            .finish()
    }
}

struct Inner {
    style: LineStyle,
    options: WriterOptions,
    shards: Box<[Shard]>,
    queue: SyncSender<Batch>,
    dropped: Counter,
}

/// One worker's buffer, alone on its cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Buffer>);

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    lines: u64,
    clock: Clock,
}

/// Lines on their way to the output; `done` is told once they are
/// written (a flush waits on it).
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
    done: Option<SyncSender<()>>,
}

/// The output of the background thread.
pub type Output = Box<dyn Write + Send>;

impl AccessLogWriter {
    /// Lines in `style` to the process's stderr (where `tracing` wrote
    /// them before; `kubectl logs` reads them there).
    pub fn stderr(style: LineStyle) -> std::io::Result<Self> {
        Self::new(style, Box::new(std::io::stderr()), WriterOptions::default())
    }

    /// Lines in `style` to `output`, written by a new thread.
    pub fn new(style: LineStyle, output: Output, options: WriterOptions) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::sync_channel(options.queue_batches.max(1));
        let shards = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let inner = Arc::new(Inner {
            style,
            options,
            shards: (0..shards).map(|_| Shard::default()).collect(),
            queue,
            dropped: Counter::default(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_batches(rx, weak, output, options.flush_interval))?;
        Ok(Self { inner })
    }

    /// Registers `sluice_ingress_access_log_dropped_lines_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sluice_ingress_access_log_dropped_lines",
            "Access log lines dropped because the output did not keep up",
            self.inner.dropped.clone(),
        );
    }

    /// Lines dropped so far.
    pub fn dropped_lines(&self) -> u64 {
        self.inner.dropped.get()
    }

    /// Renders the line for `r` into this thread's buffer; never blocks
    /// on the output.
    pub(crate) fn log(&self, r: &AccessRecord, ms: f64) {
        let inner = &*self.inner;
        let full = {
            let mut b = inner.shard();
            let b = &mut *b;
            line::render(&mut b.bytes, &mut b.clock, inner.style, r, ms);
            b.lines += 1;
            (b.bytes.len() >= inner.options.batch_bytes).then(|| b.take(inner.options.batch_bytes))
        };
        if let Some(batch) = full {
            inner.send(batch);
        }
    }

    /// Hands every buffered line to the writer thread and waits up to
    /// `timeout` for them to be written; whether they were. For tests
    /// and shutdown: requests never call it.
    pub fn flush(&self, timeout: Duration) -> bool {
        let inner = &*self.inner;
        for s in inner.shards.iter() {
            let batch = s.lock().take(0);
            inner.send(batch);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let mut marker = Batch {
            bytes: Vec::new(),
            lines: 0,
            done: Some(tx),
        };
        let deadline = Instant::now() + timeout;
        loop {
            match inner.queue.try_send(marker) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    marker = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// Each thread's shard index (threads numbered as they first log).
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

impl Inner {
    fn shard(&self) -> MutexGuard<'_, Buffer> {
        self.shards[thread_slot() % self.shards.len()].lock()
    }

    /// Queues `batch`, or drops and counts it when the queue is full.
    fn send(&self, batch: Batch) {
        if batch.lines == 0 {
            return;
        }
        if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) =
            self.queue.try_send(batch)
        {
            self.dropped.inc_by(b.lines);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for s in self.shards.iter() {
            let batch = s.lock().take(0);
            self.send(batch);
        }
    }
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while rendering leaves at worst a partial line.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Buffer {
    /// The buffered lines as a batch; the buffer starts over with room
    /// for `capacity` bytes.
    fn take(&mut self, capacity: usize) -> Batch {
        Batch {
            bytes: std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity)),
            lines: std::mem::take(&mut self.lines),
            done: None,
        }
    }
}

/// The background thread: writes batches as they come, and every
/// `interval` the partial buffers too, until every handle is gone.
fn write_batches(rx: Receiver<Batch>, inner: Weak<Inner>, mut out: Output, interval: Duration) {
    let mut last_sweep = Instant::now();
    loop {
        match rx.recv_timeout(interval) {
            Ok(batch) => write_batch(&mut out, &inner, batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_sweep.elapsed() >= interval {
            last_sweep = Instant::now();
            let Some(live) = inner.upgrade() else {
                continue;
            };
            let partial: Vec<Batch> = live.shards.iter().map(|s| s.lock().take(0)).collect();
            drop(live);
            for batch in partial.into_iter().filter(|b| b.lines > 0) {
                write_batch(&mut out, &inner, batch);
            }
        }
    }
}

fn write_batch(out: &mut Output, inner: &Weak<Inner>, batch: Batch) {
    if !batch.bytes.is_empty()
        && out.write_all(&batch.bytes).is_err()
        && let Some(live) = inner.upgrade()
    {
        live.dropped.inc_by(batch.lines);
    }
    if let Some(done) = batch.done {
        let _ = done.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::gateway::config::AccessLogFormat;

    const STYLE: LineStyle = LineStyle {
        format: AccessLogFormat::Fields,
        json_envelope: false,
    };

    fn record(i: usize) -> AccessRecord {
        AccessRecord {
            method: "GET".into(),
            host: "app.test".into(),
            path: format!("/r/{i}"),
            protocol: "HTTP/1.1",
            status: 200,
            complete: true,
            ..AccessRecord::default()
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_without_a_flush() {
        let out = Shared::default();
        // The default queue holds some 15,000 lines: none is dropped even
        // if the writer thread is not scheduled during the burst.
        let w =
            AccessLogWriter::new(STYLE, Box::new(out.clone()), WriterOptions::default()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let w = w.clone();
                s.spawn(move || (0..2500).for_each(|i| w.log(&record(t * 10_000 + i), 0.5)));
            }
        });
        // The sweep, not a flush, brings the last partial buffers out.
        let deadline = Instant::now() + Duration::from_secs(5);
        let count = || {
            out.0
                .lock()
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        };
        while count() < 10_000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut paths: Vec<usize> = text
            .lines()
            .map(|l| {
                assert!(l.ends_with(" attempts=0 complete=true"), "{l}");
                let p = l.split(" path=/r/").nth(1).unwrap();
                p.split(' ').next().unwrap().parse().unwrap()
            })
            .collect();
        paths.sort_unstable();
        let want: Vec<usize> = (0..4)
            .flat_map(|t| (0..2500).map(move |i| t * 10_000 + i))
            .collect();
        assert_eq!(paths, want);
        assert_eq!(w.dropped_lines(), 0);
    }

    /// An output that blocks until released.
    struct Stalled {
        released: Arc<AtomicBool>,
        inner: Shared,
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            while !self.released.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.inner.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_and_never_blocks_the_caller() {
        let released = Arc::new(AtomicBool::new(false));
        let out = Shared::default();
        let stalled = Stalled {
            released: released.clone(),
            inner: out.clone(),
        };
        let options = WriterOptions {
            batch_bytes: 1024,
            queue_batches: 4,
            flush_interval: Duration::from_millis(10),
        };
        let w = AccessLogWriter::new(STYLE, Box::new(stalled), options).unwrap();
        let t0 = Instant::now();
        for i in 0..20_000 {
            w.log(&record(i), 0.5);
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let dropped = w.dropped_lines();
        assert!(dropped > 15_000, "dropped {dropped}");
        released.store(true, Ordering::SeqCst);
        assert!(w.flush(Duration::from_secs(5)));
        let written = out
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        assert_eq!(written + dropped, 20_000);
    }

    #[test]
    fn write_errors_count_as_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let w = AccessLogWriter::new(STYLE, Box::new(Broken), WriterOptions::default()).unwrap();
        (0..10).for_each(|i| w.log(&record(i), 1.0));
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!(w.dropped_lines(), 10);
    }

    #[test]
    fn dropping_the_last_handle_writes_what_is_buffered() {
        let (mut reader, writer) = io::pipe().unwrap();
        let w = AccessLogWriter::new(
            STYLE,
            Box::new(writer),
            WriterOptions {
                flush_interval: Duration::from_secs(3600),
                ..WriterOptions::default()
            },
        )
        .unwrap();
        (0..3).for_each(|i| w.log(&record(i), 1.0));
        drop(w);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }
}
