//! The peers' configurations: the reverse proxy sluice-ingress is for the
//! benchmark's Ingress, written for nginx and HAProxy.
//!
//! Equivalence with sluice-ingress: one worker (process or thread), HTTP/1.1
//! with keep-alive to the backend, TCP_NODELAY both sides, the same
//! forwarding headers (`Host`, `X-Forwarded-For`/`-Proto`/`-Host`/`-Port`,
//! `X-Real-IP`), responses streamed (nginx `proxy_buffering off`, as
//! ingress-nginx does by default), the same certificate, TLS 1.2 + 1.3
//! with ALPN h2 and http/1.1. The access log is off, or on for every
//! request into a file: nginx as ingress-nginx configures it (its
//! `upstreaminfo` format, `access_log PATH upstreaminfo` without a buffer,
//! so one write per request), HAProxy with `option httplog` to its stdout.
//! Every value written here is a number or a path this benchmark made,
//! never outside input.

use std::net::SocketAddr;
use std::path::Path;

/// Ports and files a peer is configured with.
#[derive(Debug, Clone)]
pub struct PeerSetup<'a> {
    /// Cleartext listener port on 127.0.0.1.
    pub http_port: u16,
    /// TLS listener port on 127.0.0.1.
    pub https_port: u16,
    /// The backend.
    pub backend: SocketAddr,
    /// PEM certificate chain.
    pub cert: &'a Path,
    /// PEM private key.
    pub key: &'a Path,
    /// Certificate chain followed by the key (HAProxy's `crt`).
    pub combined: &'a Path,
    /// Directory for pid and log files.
    pub dir: &'a Path,
    /// Prefix of this instance's pid, log and temporary files in `dir`.
    pub name: &'a str,
    /// Whether every request is logged (to `dir/NAME-access.log`).
    pub access_log: bool,
}

/// ingress-nginx's default `log-format-upstream` (`upstreaminfo`), with
/// the variables its Lua code sets replaced by what they would hold here
/// (`$proxy_upstream_name` is `upstream-NAMESPACE-SERVICE-PORT`;
/// `$req_id` is nginx's `$request_id`).
const UPSTREAMINFO: &str = "'$remote_addr - $remote_user [$time_local] \"$request\" '
        '$status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" '
        '$request_length $request_time [bench-web-80] [] $upstream_addr '
        '$upstream_response_length $upstream_response_time $upstream_status $request_id'";

/// nginx as ingress-nginx would configure the route, trimmed to what the
/// benchmark exercises.
pub fn nginx_conf(s: &PeerSetup<'_>) -> String {
    let access_log = if s.access_log {
        format!(
            "access_log {}/{}-access.log upstreaminfo",
            s.dir.display(),
            s.name
        )
    } else {
        "access_log off".to_owned()
    };
    format!(
        "daemon off;
master_process on;
worker_processes 1;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{
    worker_connections 4096;
    multi_accept on;
}}
http {{
    log_format upstreaminfo {UPSTREAMINFO};
    {access_log};
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/{name}-body;
    proxy_temp_path {dir}/{name}-proxy;
    ssl_protocols TLSv1.2 TLSv1.3;
    upstream backend {{
        server {backend};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{http} default_server;
        listen 127.0.0.1:{https} ssl http2 default_server;
        server_name _;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
        }}
    }}
}}
",
        dir = s.dir.display(),
        name = s.name,
        backend = s.backend,
        http = s.http_port,
        https = s.https_port,
        cert = s.cert.display(),
        key = s.key.display(),
    )
}

/// HAProxy with one thread, keep-alive both sides, the same headers.
pub fn haproxy_conf(s: &PeerSetup<'_>) -> String {
    let (global_log, defaults_log) = if s.access_log {
        (
            "\n    log stdout format raw local0",
            "\n    log global\n    option httplog",
        )
    } else {
        ("", "")
    };
    format!(
        "global
    nbthread 1
    maxconn 4096
    tune.ssl.default-dh-param 2048{global_log}
defaults
    mode http{defaults_log}
    timeout connect 5s
    timeout client 75s
    timeout server 60s
    timeout http-keep-alive 75s
    option http-keep-alive
    http-reuse safe
frontend bench
    bind 127.0.0.1:{http}
    bind 127.0.0.1:{https} ssl crt {combined} alpn h2,http/1.1 ssl-min-ver TLSv1.2
    option forwardfor
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    default_backend backend
backend backend
    server pod {backend}
",
        http = s.http_port,
        https = s.https_port,
        combined = s.combined.display(),
        backend = s.backend,
    )
}
