//! The API client as kube-proxy and ingress-nginx users configure it, and
//! the host name the binaries default their identity to.
//!
//! Where the API server is, as client-go's `BuildConfigFromFlags`:
//! `--kubeconfig` (its current context), with `--master` overriding the
//! server; `--master` alone is the server with no credentials; neither is
//! the usual inference (`$KUBECONFIG`, `~/.kube/config`, else the
//! in-cluster service account). Requests are limited to `qps` per second
//! with bursts of `burst` (client-go's token bucket; kube-proxy's defaults
//! are 5 and 10), so a storm of Events cannot crowd out the watches.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How to reach the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--master`: the API server's URL, overriding the kubeconfig's.
    pub master: Option<String>,
    /// Requests per second (≤ 0: unlimited).
    pub qps: f32,
    /// Requests allowed at once above the rate.
    pub burst: u32,
}

impl Default for ClientOptions {
    /// kube-proxy's defaults: inferred config, 5 requests/s, bursts of 10.
    fn default() -> Self {
        Self {
            kubeconfig: None,
            master: None,
            qps: 5.0,
            burst: 10,
        }
    }
}

/// Why no client could be built. Each says which setting to look at.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("kubeconfig {path}: {source}", path = .path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// `--master` is not a URL.
    #[error("--master {url:?} is not a URL: {reason}")]
    Master {
        /// As given.
        url: String,
        /// Why.
        reason: String,
    },
    /// Neither a kubeconfig nor the in-cluster config was found.
    #[error(
        "no API server configuration (--kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster): {0}"
    )]
    Infer(#[source] kube::config::InferConfigError),
    /// The configuration is unusable (TLS material, proxy, ...).
    #[error("API client: {0}")]
    Build(#[source] kube::Error),
}

/// The client configuration [`ClientOptions`] name.
pub async fn config(opts: &ClientOptions) -> Result<kube::Config, ClientError> {
    let master = opts
        .master
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.parse::<http::Uri>().map_err(|e| ClientError::Master {
                url: m.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let mut config = match (&opts.kubeconfig, &master) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ClientError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|source| ClientError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        (None, Some(url)) => kube::Config::new(url.clone()),
        (None, None) => kube::Config::infer().await.map_err(ClientError::Infer)?,
    };
    if let Some(url) = master {
        config.cluster_url = url;
    }
    Ok(config)
}

/// A client for [`ClientOptions`], rate-limited by its `qps` and `burst`.
pub async fn client(opts: &ClientOptions) -> Result<kube::Client, ClientError> {
    let config = config(opts).await?;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(ClientError::Build)?;
    Ok(if opts.qps > 0.0 {
        builder
            .with_layer(&RateLimitLayer::new(opts.qps, opts.burst))
            .build()
    } else {
        builder.build()
    })
}

/// The kernel's host name, trimmed (`None` if unreadable or empty).
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// This node's name as kube-proxy derives it: `--hostname-override` if
/// given, else the host name in lower case.
pub fn node_name(hostname_override: Option<&str>) -> String {
    match hostname_override {
        Some(name) => name.to_owned(),
        None => hostname().unwrap_or_default().to_lowercase(),
    }
}

/// client-go's token bucket: `burst` tokens, refilled at `qps` per
/// second; a request takes one.
#[derive(Debug)]
struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(qps: f32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps: f64::from(qps),
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token at `now`, or says when one will be there.
    fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.qps;
            Err(now + Duration::from_secs_f64(wait))
        }
    }
}

/// A tower layer that holds requests to a token bucket's rate.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl RateLimitLayer {
    /// `qps` requests per second (> 0), bursts of `burst`.
    pub fn new(qps: f32, burst: u32) -> Self {
        Self {
            bucket: Arc::new(Mutex::new(TokenBucket::new(qps, burst, Instant::now()))),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
            reserved: false,
            sleep: None,
        }
    }
}

/// The service [`RateLimitLayer`] makes: ready once a token is taken.
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<Mutex<TokenBucket>>,
    /// A token is held for the next call.
    reserved: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S, R> tower::Service<R> for RateLimit<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.reserved {
            if let Some(sleep) = self.sleep.as_mut() {
                std::task::ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            let taken = self
                .bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(Instant::now());
            match taken {
                Ok(()) => self.reserved = true,
                Err(at) => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.reserved = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer, Service, ServiceExt};

    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5.0, 10, t0);
        for _ in 0..10 {
            assert_eq!(b.take(t0), Ok(()));
        }
        let next = b.take(t0).unwrap_err();
        assert_eq!(next - t0, Duration::from_millis(200));
        assert!(b.take(t0 + Duration::from_millis(199)).is_err());
        assert_eq!(b.take(t0 + Duration::from_millis(200)), Ok(()));
        // A long pause refills no more than the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        let layer = RateLimitLayer::new(10.0, 2);
        let mut svc = layer.layer(tower::service_fn(|x: u32| async move {
            Ok::<_, std::convert::Infallible>(x)
        }));
        let start = Instant::now();
        for i in 0..5 {
            assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
        }
        // 2 at once, then 3 at 100 ms each.
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test]
    async fn master_overrides_and_alone_is_the_server() {
        let opts = ClientOptions {
            master: Some("http://127.0.0.1:8081".into()),
            ..ClientOptions::default()
        };
        let c = config(&opts).await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "http://127.0.0.1:8081/");
        let bad = ClientOptions {
            master: Some("http://[::1".into()),
            ..ClientOptions::default()
        };
        let e = config(&bad).await.unwrap_err().to_string();
        assert!(
            e.starts_with("--master \"http://[::1\" is not a URL"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("sluice-kube-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kc = dir.join("kubeconfig");
        std::fs::write(
            &kc,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{name: k, cluster: {server: 'https://10.0.0.1:6443'}}]\n\
             users: [{name: u, user: {token: t}}]\n\
             contexts: [{name: c, context: {cluster: k, user: u}}]\n",
        )
        .unwrap();
        let from_file = ClientOptions {
            kubeconfig: Some(kc.clone()),
            ..ClientOptions::default()
        };
        let c = config(&from_file).await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://10.0.0.1:6443/");
        let both = ClientOptions {
            master: Some("https://10.0.0.2:6443".into()),
            ..from_file
        };
        let c = config(&both).await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://10.0.0.2:6443/");
        let missing = ClientOptions {
            kubeconfig: Some(dir.join("nope")),
            ..ClientOptions::default()
        };
        let e = config(&missing).await.unwrap_err().to_string();
        assert!(e.starts_with("kubeconfig "), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn node_name_prefers_the_override() {
        assert_eq!(node_name(Some("Node-A")), "Node-A");
        assert_eq!(
            node_name(None),
            hostname().unwrap_or_default().to_lowercase()
        );
    }
}
