//! `tero sample-app`: the quickstart's sample application on its own, a
//! `/metrics` endpoint with realistic metrics and the waste Tero exists to
//! find (a debug family, a per-user counter). The Kubernetes example runs
//! it as `ghcr.io/tero-dev/sample-app` (deploy/docker/sample-app.Dockerfile).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Debug, Args)]
pub struct SampleAppArgs {
    /// Where to serve `/metrics` (every path answers the same exposition).
    #[arg(long, env = "TERO_SAMPLE_APP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn run(args: SampleAppArgs) -> anyhow::Result<()> {
    let server = serve(args.listen).await?;
    crate::outln!("sample application on http://{}/metrics", args.listen);
    super::quickstart::wait_for_signal().await;
    server.abort();
    Ok(())
}

/// Binds `addr` and serves the exposition on a task; the error names the
/// address when it cannot listen.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("the sample application cannot listen on {addr}"))?;
    let tick = Arc::new(AtomicU64::new(0));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tick = tick.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let n = tick.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let mut response = http::Response::new(Full::new(Bytes::from(metrics(n))));
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(
                                "text/plain; version=0.0.4; charset=utf-8",
                            ),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

/// A realistic exposition at scrape `tick`: request counters and a latency
/// histogram by route, process metrics, a debug family and a per-user
/// counter.
pub fn metrics(tick: u64) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64 * 1024);
    s.push_str("# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n");
    for (route, weight) in [
        ("/", 50),
        ("/api/orders", 30),
        ("/api/cart", 15),
        ("/healthz", 120),
    ] {
        for (code, share) in [("200", 97), ("404", 2), ("500", 1)] {
            let n = (tick + 1) * weight * share;
            let _ = writeln!(
                s,
                "http_requests_total{{route=\"{route}\",method=\"GET\",code=\"{code}\"}} {n}"
            );
        }
    }
    s.push_str("# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram\n");
    for route in ["/", "/api/orders", "/api/cart"] {
        let mut cumulative = 0;
        for (le, n) in [
            ("0.005", 40),
            ("0.01", 80),
            ("0.05", 200),
            ("0.1", 60),
            ("0.5", 15),
            ("1", 4),
            ("+Inf", 1),
        ] {
            cumulative += n * (tick + 1);
            let _ = writeln!(
                s,
                "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            s,
            "http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
            12.5 * (tick + 1) as f64
        );
        let _ = writeln!(
            s,
            "http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
        );
    }
    s.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 52428800\n");
    s.push_str("# HELP debug_cache_lookups_total Cache lookups by key (debug).\n# TYPE debug_cache_lookups_total counter\n");
    for key in 0..40 {
        let _ = writeln!(
            s,
            "debug_cache_lookups_total{{cache=\"sessions\",key=\"k{key:03}\"}} {}",
            tick * 3 + key
        );
    }
    s.push_str("# HELP app_user_requests_total Requests per user.\n# TYPE app_user_requests_total counter\n");
    for user in 0..200u64 {
        let _ = writeln!(
            s,
            "app_user_requests_total{{user_id=\"{:08x}-{:04x}\"}} {}",
            user.wrapping_mul(2_654_435_761) & 0xffff_ffff,
            user,
            tick + user % 7
        );
    }
    s
}
