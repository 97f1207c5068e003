//! A generated log corpus with known event types, shared by the template
//! tests and benchmark: 38 templates over 17 services (plain text, logfmt,
//! JSON, access logs, stack frames, quoted strings; pairs that share a
//! prefix and differ in a constant word or in length; one text in two
//! services; leading timestamps), filled with parameters from a
//! fixed-seed PRNG.

#![allow(dead_code)]

/// splitmix64: tiny, fixed, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn ipv4(&mut self) -> String {
        format!(
            "10.{}.{}.{}",
            self.below(256),
            self.below(256),
            self.range(1, 254)
        )
    }

    /// `n` hex digits, starting with a letter and ending with a digit so
    /// that the masker always reads them as hex.
    pub fn hex(&mut self, n: usize) -> String {
        const HEX: &[u8] = b"0123456789abcdef";
        let mut s = String::with_capacity(n);
        s.push((b'a' + self.below(6) as u8) as char);
        for _ in 1..n.saturating_sub(1) {
            s.push(HEX[self.below(16) as usize] as char);
        }
        s.push((b'0' + self.below(10) as u8) as char);
        s
    }

    pub fn uuid(&mut self) -> String {
        let h = format!("{:016x}{:016x}", self.next(), self.next());
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    pub fn ts(&mut self) -> String {
        format!(
            "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.range(1, 12),
            self.range(1, 28),
            self.below(24),
            self.below(60),
            self.below(60),
            self.below(1000)
        )
    }
}

const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];
const JOBS: &[&str] = &[
    "cleanup",
    "reindex",
    "billing-sync",
    "report-daily",
    "vacuum",
];
const REASONS: &[&str] = &[
    "card declined",
    "insufficient funds",
    "issuer unavailable",
    "fraud suspected by rules engine",
];
const CLASSES: &[&str] = &["OrderService", "CartService", "PaymentClient", "Inventory"];
const METHODS: &[&str] = &["place", "add", "charge", "reserve", "lambda$0"];
const THREADS: &[&str] = &[
    "main",
    "pool-1-thread-3",
    "http-nio-8080-exec-5",
    "worker-12",
];
const HOSTS: &[&str] = &[
    "api.internal",
    "inventory.svc.cluster.local",
    "10.2.3.4:8080",
];
const SERVICES: &[&str] = &["inventory", "search", "billing", "auth"];
const TEMPLATES_MAIL: &[&str] = &["welcome", "reset_link", "invoice", "shipping_update"];
const CLIENTS: &[&str] = &["web-app", "ios", "android", "cli"];
const GROUPS: &[&str] = &["orders-consumer", "billing", "audit-log"];
const TLS_ERRORS: &[&str] = &[
    "timeout",
    "bad_certificate",
    "unknown_ca",
    "protocol_version",
];
const FILES: &[&str] = &["app.js", "vendor.js", "style.css", "logo.png"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64)",
    "curl/8.4.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) Safari/605.1.15",
];

type Gen = fn(&mut Rng) -> String;

/// One event type: its service, severity and a line generator.
pub struct Spec {
    pub service: &'static str,
    pub severity: &'static str,
    pub generate: Gen,
}

fn ms(r: &mut Rng) -> u64 {
    r.range(1, 5000)
}

pub fn specs() -> Vec<Spec> {
    let s = |service, severity, generate: Gen| Spec {
        service,
        severity,
        generate,
    };
    vec![
        s("checkout", "INFO", |r| {
            format!("User {} logged in from {}", r.range(1000, 99999), r.ipv4())
        }),
        s("checkout", "INFO", |r| {
            format!("GET /api/orders/{} 200 {}ms", r.range(1, 1_000_000), ms(r))
        }),
        s("checkout", "INFO", |r| {
            format!("POST /api/orders 201 {}ms", ms(r))
        }),
        s("payments", "ERROR", |r| {
            format!(
                "Connection to db-{} timed out after {}s",
                r.range(1, 8),
                r.range(1, 60)
            )
        }),
        s("payments", "INFO", |r| {
            format!(
                "Connection to db-{} established in {}ms",
                r.range(1, 8),
                ms(r)
            )
        }),
        s("cache", "DEBUG", |r| {
            format!("cache miss key={}", r.hex(16))
        }),
        s("cache", "DEBUG", |r| format!("cache hit key={}", r.hex(16))),
        s("checkout", "INFO", |r| {
            format!(
                r#"{{"level":"info","msg":"order placed","order_id":{},"user":"{}","amount":{}.{:02}}}"#,
                r.range(1, 1_000_000),
                r.pick(NAMES),
                r.range(1, 500),
                r.below(100)
            )
        }),
        s("payments", "ERROR", |r| {
            format!(
                r#"{{"level":"error","msg":"payment failed","order_id":{},"reason":"{}"}}"#,
                r.range(1, 1_000_000),
                r.pick(REASONS)
            )
        }),
        s("storage", "ERROR", |r| {
            format!(
                r#"Failed to open file "/data/{} report {}.csv": permission denied"#,
                r.pick(NAMES),
                r.range(1, 99)
            )
        }),
        s("db", "DEBUG", |r| {
            format!(
                r#"Executing query "SELECT * FROM orders WHERE id = {}" took {}ms"#,
                r.range(1, 1_000_000),
                ms(r)
            )
        }),
        s("checkout", "ERROR", |r| {
            let class = r.pick(CLASSES);
            format!(
                "at com.example.{class}.{}({class}.java:{})",
                r.pick(METHODS),
                r.range(10, 900)
            )
        }),
        s("checkout", "ERROR", |r| {
            format!(
                r#"Exception in thread "{}" java.lang.IllegalStateException: order {} already shipped"#,
                r.pick(THREADS),
                r.range(1, 1_000_000)
            )
        }),
        s("gateway", "WARN", |r| {
            format!(
                "Retrying request to https://{}/v1/items/{}?page={}&sort={} (attempt {} of 5)",
                r.pick(HOSTS),
                r.range(1, 10_000),
                r.range(1, 50),
                r.pick(&["asc", "desc"]),
                r.range(1, 5)
            )
        }),
        s("gateway", "INFO", |_| "Health check passed".to_owned()),
        s("gateway", "WARN", |r| {
            format!(
                "Health check failed for {}-{}: status {}",
                r.pick(SERVICES),
                r.range(0, 9),
                r.pick(&["500", "502", "503"])
            )
        }),
        s("net", "DEBUG", |r| {
            format!(
                "Received {} bytes from {}:{}",
                r.range(1, 65536),
                r.ipv4(),
                r.range(1024, 65535)
            )
        }),
        s("api", "INFO", |r| {
            format!(
                "Request {} completed in {}.{:03}s with status {}",
                r.uuid(),
                r.below(10),
                r.below(1000),
                r.pick(&["200", "201", "404"])
            )
        }),
        s("scheduler", "INFO", |r| {
            format!("Scheduled job {} started at {}", r.pick(JOBS), r.ts())
        }),
        s("scheduler", "INFO", |r| {
            format!(
                "Scheduled job {} finished at {} duration={}ms",
                r.pick(JOBS),
                r.ts(),
                ms(r)
            )
        }),
        s("api", "INFO", |r| {
            format!(
                r#"level=info msg="request served" method=GET path=/api/items/{} status=200 duration={}ms"#,
                r.range(1, 10_000),
                ms(r)
            )
        }),
        s("api", "WARN", |r| {
            format!(
                r#"level=warn msg="slow request" method={} path=/api/items/{} duration={}ms"#,
                r.pick(&["GET", "POST", "PUT"]),
                r.range(1, 10_000),
                r.range(1000, 9000)
            )
        }),
        s("mailer", "INFO", |r| {
            format!(
                "Email sent to {}{}@example.com template={}",
                r.pick(NAMES),
                r.below(100),
                r.pick(TEMPLATES_MAIL)
            )
        }),
        s("auth", "INFO", |r| {
            format!(
                "Token refreshed for client {} expires_in={}s",
                r.pick(CLIENTS),
                r.range(60, 86400)
            )
        }),
        s("infra", "WARN", |r| {
            format!(
                "Disk usage on /dev/sda{} at {}%",
                r.range(1, 4),
                r.range(80, 99)
            )
        }),
        s("worker", "INFO", |r| {
            format!(
                "Worker {} processed batch {} with {} items in {}.{}s",
                r.range(1, 32),
                r.hex(8),
                r.range(1, 500),
                r.below(60),
                r.below(10)
            )
        }),
        s("kafka", "INFO", |r| {
            let n = r.range(1, 4);
            let parts: Vec<String> = (0..n).map(|_| r.below(64).to_string()).collect();
            format!(
                "Consumer group {} rebalanced partitions=[{}]",
                r.pick(GROUPS),
                parts.join(",")
            )
        }),
        s("tls", "ERROR", |r| {
            format!(
                "TLS handshake failed with {}: {}",
                r.ipv4(),
                r.pick(TLS_ERRORS)
            )
        }),
        s("payments", "INFO", |r| {
            format!(
                "Payment accepted for order {} amount={}.{:02} currency={}",
                r.range(1, 1_000_000),
                r.range(1, 999),
                r.below(100),
                r.pick(&["USD", "EUR"])
            )
        }),
        s("payments", "WARN", |r| {
            format!(
                "Payment declined for order {} amount={}.{:02} currency={}",
                r.range(1, 1_000_000),
                r.range(1, 999),
                r.below(100),
                r.pick(&["USD", "EUR"])
            )
        }),
        s("cache", "INFO", |r| {
            format!("Cache warmed with {} entries", r.range(1, 100_000))
        }),
        s("cache", "INFO", |r| {
            format!(
                "Cache warmed with {} entries in {}ms",
                r.range(1, 100_000),
                ms(r)
            )
        }),
        s("net", "INFO", |r| {
            format!(
                "Accepted connection from [2001:db8::{:x}]:{}",
                r.range(1, 0xffff),
                r.range(1024, 65535)
            )
        }),
        s("access", "INFO", |r| {
            format!(
                r#"{} - - [{:02}/Mar/2024:{:02}:{:02}:{:02} +0000] "GET /static/{} HTTP/1.1" {} {} "-" "{}""#,
                r.ipv4(),
                r.range(1, 28),
                r.below(24),
                r.below(60),
                r.below(60),
                r.pick(FILES),
                r.pick(&["200", "304"]),
                r.range(100, 100_000),
                r.pick(AGENTS)
            )
        }),
        s("auth", "WARN", |r| {
            format!(
                "Invalid password for user {} from {}",
                r.pick(NAMES),
                r.ipv4()
            )
        }),
        s("search", "INFO", |_| "Health check passed".to_owned()),
        s("spring", "INFO", |r| {
            format!(
                "{} INFO 1 --- [main] o.s.b.w.embedded.tomcat.TomcatWebServer : Tomcat started on port(s): {} (http)",
                r.ts(),
                r.range(8000, 9000)
            )
        }),
        s("spring", "WARN", |r| {
            format!(
                "{} WARN 1 --- [{}] o.h.engine.jdbc.spi.SqlExceptionHelper : SQL Error: {}, SQLState: {}",
                r.ts(),
                r.pick(THREADS),
                r.range(1000, 9999),
                r.pick(&["08S01", "40001", "23505"])
            )
        }),
    ]
}

/// Two event types that differ only by a word past the prefix tree's depth,
/// as frequent as the most frequent others: Drain merges them (a documented
/// limitation), kept apart from [`specs`] to measure what it costs.
pub fn late_word_specs() -> Vec<Spec> {
    let s = |service, severity, generate: Gen| Spec {
        service,
        severity,
        generate,
    };
    vec![
        s("shipping", "INFO", |r| {
            format!(
                "Order {} shipped to warehouse {}",
                r.range(1, 1_000_000),
                r.pick(&["north", "south", "east"])
            )
        }),
        s("shipping", "INFO", |r| {
            format!(
                "Order {} returned to warehouse {}",
                r.range(1, 1_000_000),
                r.pick(&["north", "south", "east"])
            )
        }),
    ]
}

/// One generated line and the index of its spec.
pub struct Line {
    pub spec: usize,
    pub service: &'static str,
    pub severity: &'static str,
    pub body: String,
}

/// `n` lines; spec `i` is drawn with weight `1 + i % 5`, so some event
/// types are five times as frequent as others.
pub fn corpus(seed: u64, n: usize) -> Vec<Line> {
    corpus_of(&specs(), seed, n)
}

/// As [`corpus`], from the given specs.
pub fn corpus_of(specs: &[Spec], seed: u64, n: usize) -> Vec<Line> {
    let weights: Vec<u64> = (0..specs.len()).map(|i| 1 + (i as u64 % 5)).collect();
    let total: u64 = weights.iter().sum();
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let mut x = r.below(total);
            let mut spec = 0;
            while x >= weights[spec] {
                x -= weights[spec];
                spec += 1;
            }
            let sp = &specs[spec];
            Line {
                spec,
                service: sp.service,
                severity: sp.severity,
                body: (sp.generate)(&mut r),
            }
        })
        .collect()
}
