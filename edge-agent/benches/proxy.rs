//! The proxy end to end on loopback: scrape latency through `tero-edge`
//! against a direct scrape of the same upstream, and the Edge's peak memory
//! under many concurrent large scrapes.
//!
//! `cargo bench -p tero-edge --bench proxy`
//!
//! Starts an in-process upstream (hyper) serving a 10 MiB realistic
//! exposition at `/metrics` and a 100 MiB one at `/metrics/big` (the 10 MiB
//! body ten times, streamed), and the real `tero-edge` binary with 1,000
//! policies in front of it. Prints:
//! - latency: median and p90 of direct and proxied scrapes, interleaved in
//!   one run, and their ratio (target ≤ 1.5);
//! - memory: peak RSS (VmHWM) of `tero-edge` after N concurrent 100 MiB
//!   scrapes (target < 64 MiB at N = 50), next to its RSS when idle.
//!
//! Environment: `PROXY_BENCH_ROUNDS` (default 30), `PROXY_BENCH_CONCURRENCY`
//! (default 50).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tero_edge::synthetic;

const CHUNK: usize = 64 * 1024;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn serve_upstream(body: Bytes) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let path = req.uri().path().to_owned();
                    let repeat = if path.ends_with("/big") { 10 } else { 1 };
                    let body = body.clone();
                    let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..repeat)
                        .flat_map(|_| {
                            let body = body.clone();
                            (0..body.len())
                                .step_by(CHUNK)
                                .map(move |s| {
                                    Ok(Frame::data(body.slice(s..(s + CHUNK).min(body.len()))))
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    async move {
                        // `/render` formats the exposition per request, as
                        // an exporter's client library does.
                        let body: BenchBody = if path.ends_with("/render") {
                            // Rendered on a blocking thread and streamed
                            // while it is formatted, like an exporter.
                            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
                            tokio::task::spawn_blocking(move || {
                                synthetic::render(10 * 1024 * 1024, 400, CHUNK, &mut |piece| {
                                    let _ = tx.blocking_send(Bytes::copy_from_slice(piece));
                                });
                            });
                            let frames = stream::unfold(rx, |mut rx| async move {
                                let piece = rx.recv().await?;
                                Some((Ok(Frame::data(piece)), rx))
                            });
                            StreamBody::new(frames).boxed_unsync()
                        } else {
                            StreamBody::new(stream::iter(chunks)).boxed_unsync()
                        };
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(body)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;
type BenchBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// GETs `url` and reads the whole body; returns its size and the time.
async fn scrape(client: &HttpClient, url: &str) -> (usize, Duration) {
    let started = Instant::now();
    let req = Request::get(url)
        .header("accept", "text/plain;version=0.0.4")
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.expect("scrape request");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let mut body = resp.into_body();
    let mut size = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            size += data.len();
        }
    }
    (size, started.elapsed())
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// User plus system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // the 12th and 13th of them, in clock ticks (100 Hz on Linux).
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rounds = env_usize("PROXY_BENCH_ROUNDS", 30);
    let concurrency = env_usize("PROXY_BENCH_CONCURRENCY", 50);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = Bytes::from(synthetic::exposition(10 * 1024 * 1024, 400));
    let upstream = runtime.block_on(serve_upstream(body.clone()));

    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.yaml");
    std::fs::write(&policies, synthetic::policies_yaml(1_000)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "listen_address": "127.0.0.1",
            "listen_port": port,
            "upstream_url": format!("http://{upstream}"),
            "log_level": "warn",
            "prometheus": {
                "max_input_bytes_per_scrape": 0,
                "max_output_bytes_per_scrape": 0,
                "scrape_timeout_secs": 600,
                "max_concurrent_scrapes": 256
            },
            "policy_providers": [{"id": "bench", "type": "file", "path": policies}]
        })
        .to_string(),
    )
    .unwrap();
    let edge = Kill(
        Command::new(env!("CARGO_BIN_EXE_tero-edge"))
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tero-edge"),
    );
    let pid = edge.0.id();
    let edge_url = format!("http://127.0.0.1:{port}");

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    runtime.block_on(async {
        // Ready once policies are loaded.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let req = Request::get(format!("{edge_url}/_ready"))
                .body(Empty::new())
                .unwrap();
            if let Ok(r) = client.request(req).await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "tero-edge did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let idle_rss = proc_status_kib(pid, "VmRSS:");

    // Latency, interleaved so both see the same machine state.
    for (label, path) in [
        (
            "static upstream: a pre-rendered buffer served at memory speed",
            "/metrics",
        ),
        (
            "rendering upstream: the exposition formatted per request",
            "/metrics/render",
        ),
    ] {
        let direct_url = format!("http://{upstream}{path}");
        let proxied_url = format!("{edge_url}{path}");
        let (mut direct, mut proxied) = (Vec::new(), Vec::new());
        let (mut direct_bytes, mut proxied_bytes) = (0, 0);
        let mut edge_cpu = Duration::ZERO;
        runtime.block_on(async {
            for _ in 0..3 {
                scrape(&client, &direct_url).await;
                scrape(&client, &proxied_url).await;
            }
            for _ in 0..rounds {
                let (n, t) = scrape(&client, &direct_url).await;
                direct_bytes = n;
                direct.push(t);
                let cpu = cpu_time(pid);
                let (n, t) = scrape(&client, &proxied_url).await;
                edge_cpu += cpu_time(pid).saturating_sub(cpu);
                proxied_bytes = n;
                proxied.push(t);
            }
        });
        direct.sort();
        proxied.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("latency, {label} ({rounds} rounds, 10 MiB, 1,000 policies, identity encoding):");
        println!(
            "  direct   median {:7.2} ms  p90 {:7.2} ms  ({} bytes)",
            ms(percentile(&direct, 0.5)),
            ms(percentile(&direct, 0.9)),
            direct_bytes
        );
        println!(
            "  proxied  median {:7.2} ms  p90 {:7.2} ms  ({} bytes, {:.1}% of input)",
            ms(percentile(&proxied, 0.5)),
            ms(percentile(&proxied, 0.9)),
            proxied_bytes,
            100.0 * proxied_bytes as f64 / direct_bytes as f64
        );
        println!(
            "  tero-edge CPU per proxied scrape {:.1} ms",
            ms(edge_cpu) / rounds as f64
        );
        println!(
            "  ratio proxied/direct: median {:.2}  p90 {:.2}  (target <= 1.5)",
            percentile(&proxied, 0.5).as_secs_f64() / percentile(&direct, 0.5).as_secs_f64(),
            percentile(&proxied, 0.9).as_secs_f64() / percentile(&direct, 0.9).as_secs_f64()
        );
    }

    // Memory under concurrent 100 MiB scrapes.
    let started = Instant::now();
    let total: usize = runtime.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let client = client.clone();
                let url = format!("{edge_url}/metrics/big");
                tokio::spawn(async move { scrape(&client, &url).await.0 })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("scrape task");
        }
        total
    });
    let elapsed = started.elapsed();
    let peak = proc_status_kib(pid, "VmHWM:");
    println!(
        "memory ({concurrency} concurrent scrapes of {} MiB each, {:.1} GiB through the Edge in {:.1} s):",
        body.len() * 10 / (1024 * 1024),
        total as f64 / (1u64 << 30) as f64,
        elapsed.as_secs_f64()
    );
    println!(
        "  tero-edge RSS idle {:.1} MiB, peak {:.1} MiB (target < 64 MiB)",
        idle_rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    drop(edge);
}
