use super::*;

fn miner() -> Miner {
    Miner::new(MinerConfig::default()).expect("default config is valid")
}

#[test]
fn covers_accepts_what_the_wildcards_allow_and_nothing_else() {
    assert!(covers("user <*> logged in", "user alice logged in"));
    assert!(covers("user=<*> ok", "user=bob ok"));
    assert!(covers("<*>.example.com up", "node1.example.com up"));
    assert!(covers("a b", "a b"));
    assert!(!covers("user=<*> ok", "name=bob ok"));
    assert!(!covers("user <*> logged in", "user alice logged out"));
    assert!(!covers("user <*>", "user alice logged"));
    assert!(!covers("user alice", "user <*>"));
    // A generalised template covers the miner's own lines of it.
    let mut m = miner();
    m.observe("svc", "GET /a/1 took 3 ms by alice", None, 0);
    let t = m
        .observe("svc", "GET /a/2 took 9 ms by bob", None, 0)
        .expect("room for the line")
        .clone();
    assert!(t.text.contains("<*>"), "{}", t.text);
    let mut fresh = miner();
    let other = fresh
        .observe("svc", "GET /a/7 took 1 ms by carol", None, 0)
        .expect("room for the line")
        .clone();
    assert_ne!(t.fingerprint, other.fingerprint);
    assert!(covers(&t.text, &other.text), "{} / {}", t.text, other.text);
}

fn fp_of(m: &mut Miner, service: &str, body: &str) -> String {
    m.observe(service, body, None, 0)
        .map(|t| t.fingerprint.clone())
        .unwrap_or_default()
}

#[test]
fn pinned_fingerprint() {
    // Changing this value invalidates every cached classification.
    assert_eq!(
        fingerprint("checkout", "User <num> logged in from <ip>"),
        "41aaefc5bf636801"
    );
    assert_ne!(
        fingerprint("checkout", "a"),
        fingerprint("checkou", "ta"),
        "the separator keeps service and text apart"
    );
}

#[test]
fn config_is_validated() {
    let bad = |f: fn(&mut MinerConfig)| {
        let mut c = MinerConfig::default();
        f(&mut c);
        Miner::new(c).err()
    };
    assert_eq!(bad(|c| c.depth = 2), Some(ConfigError::Depth(2)));
    assert!(matches!(
        bad(|c| c.similarity = f64::NAN),
        Some(ConfigError::Similarity(_))
    ));
    assert_eq!(
        bad(|c| c.similarity = 0.0),
        Some(ConfigError::Similarity(0.0))
    );
    assert_eq!(
        bad(|c| c.max_children = 1),
        Some(ConfigError::MaxChildren(1))
    );
    assert_eq!(
        bad(|c| c.max_clusters = 0),
        Some(ConfigError::MaxClusters(0))
    );
    assert_eq!(
        bad(|c| c.max_examples = 101),
        Some(ConfigError::MaxExamples(101))
    );
    assert_eq!(bad(|_| {}), None);
    let parsed: MinerConfig =
        serde_json::from_str(r#"{"depth":5}"#).expect("partial config parses");
    assert_eq!(parsed.depth, 5);
    assert_eq!(parsed.max_clusters, 10_000);
}

#[test]
fn lines_join_and_generalise_with_a_stable_fingerprint() {
    let mut m = miner();
    let first = m
        .observe(
            "api",
            "login accepted for alice from 10.0.0.1",
            Some("INFO"),
            20,
        )
        .cloned()
        .expect("room");
    assert_eq!(first.text, "login accepted for alice from <ip>");
    assert_eq!(first.fingerprint, fingerprint("api", &first.text));
    let t = m
        .observe(
            "api",
            "login accepted for bob from 10.0.0.2",
            Some("WARN"),
            10,
        )
        .cloned()
        .expect("room");
    assert_eq!(t.fingerprint, first.fingerprint);
    assert_eq!(t.text, "login accepted for <*> from <ip>");
    assert_eq!(t.text_fingerprint(), fingerprint("api", &t.text));
    assert_eq!((t.count, t.first_seen, t.last_seen), (2, 10, 20));
    assert_eq!(t.severity.as_deref(), Some("INFO"));
    assert_eq!(
        t.examples,
        [
            "login accepted for alice from <ip>",
            "login accepted for bob from <ip>"
        ]
    );
    assert_eq!(t.bytes, 74);
    // Another service, another template.
    let other = fp_of(&mut m, "web", "login accepted for alice from 10.0.0.1");
    assert_ne!(other, first.fingerprint);
    assert_eq!(m.len(), 2);
}

#[test]
fn dissimilar_lines_start_new_templates() {
    let mut m = miner();
    let a = fp_of(&mut m, "s", "cache miss for key one two");
    let b = fp_of(&mut m, "s", "cache miss three four five six");
    let c = fp_of(&mut m, "s", "cache hit for key one two");
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(m.len(), 3);
}

#[test]
fn examples_are_redacted_distinct_and_bounded() {
    let mut m = miner();
    for (i, body) in [
        "login ok password=hunter2 mail=a@b.io",
        "login ok password=hunter2 mail=a@b.io",
        "login ok password=swordfish mail=c@d.io",
        "login ok password=x mail=e@f.io",
        "login ok password=y mail=g@h.io",
    ]
    .iter()
    .enumerate()
    {
        m.observe("auth", body, None, i as i64);
    }
    let t = m.templates().next().expect("one template");
    assert_eq!(t.text, "login ok password=<redacted> mail=<email>");
    assert_eq!(t.count, 5);
    assert_eq!(
        t.examples,
        ["login ok password=<redacted> mail=<email>"],
        "redacted copies of one line are one example"
    );
    assert!(m.templates().all(|t| !t.text.contains("hunter2")));
}

#[test]
fn secrets_never_reach_template_text() {
    let mut m = miner();
    let t = m
        .observe("s", "auth with token=abc123 for user 7", None, 0)
        .cloned()
        .expect("room");
    assert_eq!(t.text, "auth with token=<redacted> for user <num>");
}

#[test]
fn lines_differing_only_in_a_redacted_value_share_a_template() {
    let mut m = miner();
    let a = fp_of(&mut m, "s", "password=hunter2");
    let b = fp_of(&mut m, "s", "password=swordfish");
    assert_eq!(a, b);
    assert_eq!(m.len(), 1);
    let t = m.get(&a).expect("live");
    assert_eq!((t.text.as_str(), t.count), ("password=<redacted>", 2));
}

#[test]
fn full_miner_counts_overflow() {
    let mut m = Miner::new(MinerConfig {
        max_clusters: 2,
        ..MinerConfig::default()
    })
    .expect("valid");
    assert!(m.observe("s", "alpha one", None, 0).is_some());
    assert!(m.observe("s", "beta one two", None, 0).is_some());
    assert!(m.observe("s", "gamma one two three", None, 0).is_none());
    assert!(m.observe("other", "alpha one", None, 0).is_none());
    // Known templates still count.
    assert!(m.observe("s", "alpha one", None, 0).is_some());
    assert_eq!(m.len(), 2);
    assert_eq!(
        m.overflow(),
        Overflow {
            count: 2,
            bytes: 28
        }
    );
    let d = m.take_delta();
    assert_eq!(d.overflow.count, 2);
    assert_eq!(m.take_delta().overflow.count, 0);
}

#[test]
fn max_children_sends_new_words_to_the_wildcard_branch() {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let mine = |max_children| {
        let mut m = Miner::new(MinerConfig {
            max_children,
            ..MinerConfig::default()
        })
        .expect("valid");
        for w in words {
            m.observe("s", &format!("{w} job finished ok"), None, 0);
        }
        m.templates().map(|t| t.text.clone()).collect::<Vec<_>>()
    };
    assert_eq!(mine(100).len(), 6, "one branch per first word");
    assert_eq!(
        mine(3),
        [
            "alpha job finished ok",
            "bravo job finished ok",
            "<*> job finished ok"
        ]
    );
}

#[test]
fn covering_templates_merge_into_the_older() {
    let mut m = miner();
    let a = fp_of(&mut m, "s", "x y a1 b1 c1 d1");
    let b = fp_of(&mut m, "s", "x y a2 b2 c2 d2");
    assert_ne!(a, b, "2 of 6 positions equal: below the threshold");
    m.take_delta();
    assert_eq!(fp_of(&mut m, "s", "x y a2 b2 c2 d2"), b);
    // Each line is closer to a, which generalises until it covers b.
    assert_eq!(fp_of(&mut m, "s", "x y a3 b3 c1 d1"), a);
    assert_eq!(fp_of(&mut m, "s", "x y a4 b4 c4 d1"), a);
    assert_eq!(fp_of(&mut m, "s", "x y a5 b5 c5 d5"), a);
    assert_eq!(m.len(), 1);
    let t = m.get(&b).expect("merged fingerprint resolves");
    assert_eq!(t.fingerprint, a);
    assert_eq!(t.text, "x y <*> <*> <*> <*>");
    assert_eq!(t.merged_from, std::slice::from_ref(&b));
    assert_eq!(t.count, 6);
    let d = m.take_delta();
    assert_eq!(
        d.merges,
        [Merge {
            from: b.clone(),
            into: a.clone()
        }]
    );
    assert_eq!(d.templates.len(), 1);
    assert_eq!(
        d.templates[0].count, 4,
        "b's line of this window moved to a"
    );
    assert!(d.templates[0].changed && !d.templates[0].created);
    // b's lines now land in a.
    assert_eq!(fp_of(&mut m, "s", "x y a2 b2 c2 d2"), a);
}

#[test]
fn deltas_report_counts_since_the_last_take() {
    let mut m = miner();
    m.observe("s", "GET /a/1 200", None, 5);
    m.observe("s", "GET /a/2 200", None, 7);
    let d = m.take_delta();
    assert_eq!(d.templates.len(), 1);
    let t = &d.templates[0];
    assert_eq!((t.count, t.first_seen, t.last_seen), (2, 5, 7));
    assert!(t.created);
    assert_eq!(m.take_delta(), Delta::default());
    m.observe("s", "GET /a/3 200", None, 9);
    let d = m.take_delta();
    assert_eq!(d.templates[0].count, 1);
    assert!(!d.templates[0].created && !d.templates[0].changed);
    let json = serde_json::to_string(&d).expect("serialises");
    assert_eq!(serde_json::from_str::<Delta>(&json).expect("parses"), d);
}

#[test]
fn template_serde_round_trip() {
    let mut m = miner();
    let t = m
        .observe("s", "disk /dev/sda1 at 91%", Some("WARN"), 1)
        .cloned()
        .expect("room");
    let json = serde_json::to_string(&t).expect("serialises");
    assert!(!json.contains("merged_from"));
    assert_eq!(serde_json::from_str::<Template>(&json).expect("parses"), t);
}

#[test]
fn empty_and_huge_bodies() {
    let mut m = miner();
    assert!(m.observe("s", "", None, 0).is_some());
    assert!(m.observe("s", "   ", None, 0).is_some());
    assert_eq!(m.len(), 1);
    let huge = "word ".repeat(100_000);
    let t = m.observe("s", &huge, None, 0).cloned().expect("room");
    assert_eq!(t.bytes, huge.len() as u64);
    assert!(t.text.len() < 1024);
    assert!(t.examples[0].len() <= MAX_EXAMPLE_BYTES);
}
