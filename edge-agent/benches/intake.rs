//! The push intake end to end on loopback: 1 MiB OTLP/HTTP protobuf log
//! pushes through `tero-edge` with log policies, against the same edge
//! relaying with none, and the Edge's peak memory under many concurrent
//! pushes.
//!
//! `cargo bench -p tero-edge --bench intake`
//!
//! Starts an in-process sink (hyper) that reads every body and answers an
//! empty `ExportLogsServiceResponse`, and two real `tero-edge` processes in
//! front of it: one with `INTAKE_BENCH_POLICIES` log policies, one with
//! none. The request and the policies are `tero_otlp::synthetic`'s (default
//! 1,000 policies), the workload of the codec's own benchmark.
//! Prints, for each, the throughput of pushes sent `INTAKE_BENCH_CLIENTS`
//! at a time (default 4; interleaved rounds so both see the same machine
//! state), their ratio (target ≥ 0.7), and the peak RSS (VmHWM) of the
//! filtering edge after `INTAKE_BENCH_CONCURRENCY` (default 50) concurrent
//! pushes (target < 64 MiB).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tero_otlp::synthetic::{log_policies, log_request};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn serve_sink() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Response::builder()
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(Bytes::new()))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn push(client: &HttpClient, url: &str, body: Bytes) {
    let req = Request::post(url)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(body))
        .unwrap();
    let resp = client.request(req).await.expect("push");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let _ = resp.into_body().collect().await;
}

/// `rounds` batches of `clients` concurrent pushes; the time taken.
async fn pushes(
    client: &HttpClient,
    url: &str,
    body: &Bytes,
    clients: usize,
    rounds: usize,
) -> Duration {
    let started = Instant::now();
    for _ in 0..rounds {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
                tokio::spawn(async move { push(&client, &url, body).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("push task");
        }
    }
    started.elapsed()
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

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_edge(
    dir: &std::path::Path,
    name: &str,
    sink: std::net::SocketAddr,
    policies: Option<&std::path::Path>,
) -> (Kill, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let providers = policies
        .map(|p| serde_json::json!([{"id": "bench", "type": "file", "path": p}]))
        .unwrap_or_else(|| serde_json::json!([]));
    let config = dir.join(format!("{name}.json"));
    std::fs::write(
        &config,
        serde_json::json!({
            "listen_address": "127.0.0.1",
            "listen_port": port,
            "upstream_url": format!("http://{sink}"),
            "log_level": "warn",
            "max_body_size": 2 * 1024 * 1024,
            "intake": {"max_concurrent_requests": 256, "upstream_timeout_secs": 60},
            "policy_providers": providers,
        })
        .to_string(),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tero-edge"))
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tero-edge");
    (Kill(child), format!("http://127.0.0.1:{port}"))
}

async fn wait_ready(client: &HttpClient, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = Request::get(format!("{url}/_ready"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(r) = client.request(req).await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "tero-edge did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    let n_policies = env_usize("INTAKE_BENCH_POLICIES", 1_000);
    let clients = env_usize("INTAKE_BENCH_CLIENTS", 4);
    let rounds = env_usize("INTAKE_BENCH_ROUNDS", 25);
    let concurrency = env_usize("INTAKE_BENCH_CONCURRENCY", 50);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = Bytes::from(log_request(1024 * 1024));
    let sink = runtime.block_on(serve_sink());
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.json");
    std::fs::write(&policies, log_policies(n_policies)).unwrap();
    let (filtering, filtering_url) = start_edge(dir.path(), "filtering", sink, Some(&policies));
    let (_relaying, relaying_url) = start_edge(dir.path(), "relaying", sink, None);
    let pid = filtering.0.id();

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let (mut filtered, mut relayed) = (Duration::ZERO, Duration::ZERO);
    runtime.block_on(async {
        wait_ready(&client, &filtering_url).await;
        wait_ready(&client, &relaying_url).await;
        let f = format!("{filtering_url}/v1/logs");
        let r = format!("{relaying_url}/v1/logs");
        pushes(&client, &f, &body, clients, 2).await;
        pushes(&client, &r, &body, clients, 2).await;
        for _ in 0..rounds {
            filtered += pushes(&client, &f, &body, clients, 1).await;
            relayed += pushes(&client, &r, &body, clients, 1).await;
        }
    });
    let mb = (body.len() * clients * rounds) as f64 / 1e6;
    let (f_rate, r_rate) = (mb / filtered.as_secs_f64(), mb / relayed.as_secs_f64());
    println!(
        "throughput ({rounds} rounds of {clients} concurrent {:.2} MB OTLP protobuf log pushes):",
        body.len() as f64 / 1e6
    );
    println!("  {n_policies} log policies  {f_rate:8.1} MB/s");
    println!("  no policies     {r_rate:8.1} MB/s");
    println!("  ratio {:.2} (target >= 0.7)", f_rate / r_rate);

    let started = Instant::now();
    runtime.block_on(async {
        let f = format!("{filtering_url}/v1/logs");
        pushes(&client, &f, &body, concurrency, 1).await;
    });
    println!(
        "memory ({concurrency} concurrent 1 MiB pushes in {:.2} s): tero-edge peak RSS {:.1} MiB (target < 64 MiB)",
        started.elapsed().as_secs_f64(),
        proc_status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
}
