#![doc = include_str!("README.md")]

mod defaults;
mod handle;
mod http;
mod log;
mod meta;
mod patch;
mod resources;
mod routing;
mod schema;
mod selectors;
mod server;
mod status;
mod store;
mod watch;
mod writes;

use std::time::Duration;

pub use handle::FakeApiServer;
pub use log::{RequestRecord, Verb};

/// Settings of a [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct FakeApiConfig {
    /// Interval between BOOKMARK events on watches that sent
    /// `allowWatchBookmarks=true` (a real server sends about one a minute;
    /// the default here is 1 s so tests see them).
    pub bookmark_interval: Duration,
    /// How many changes are kept for watch replay. A watch resuming from a
    /// resourceVersion whose successors were dropped gets 410 Expired.
    pub history_limit: usize,
    /// Upper bound on a watch's life, applied on top of the client's
    /// `timeoutSeconds` (which kube-rs sets to 290 s). `None`: only the
    /// client's timeout applies.
    pub max_watch_timeout: Option<Duration>,
}

impl Default for FakeApiConfig {
    fn default() -> Self {
        FakeApiConfig {
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            max_watch_timeout: None,
        }
    }
}
