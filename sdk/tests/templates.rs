//! The template miner against a generated corpus with known event types.

#[path = "templates/corpus.rs"]
mod corpus;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use corpus::{Line, corpus, corpus_of, late_word_specs, specs};
use tero_sdk::templates::{Miner, MinerConfig, Template, fingerprint, mask_line};

const LINES: usize = 20_000;

/// Mines `lines` and returns, per line, the fingerprint of the template
/// holding it at the end (clusters merged later resolve to the survivor).
fn mine(lines: &[&Line]) -> (Miner, Vec<String>) {
    mine_with(MinerConfig::default(), lines)
}

fn mine_with(config: MinerConfig, lines: &[&Line]) -> (Miner, Vec<String>) {
    let mut miner = Miner::new(config).expect("valid config");
    let mut assigned = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let t = miner
            .observe(l.service, &l.body, Some(l.severity), i as i64 * 10)
            .expect("far below max_clusters");
        assigned.push(t.fingerprint.clone());
    }
    let assigned = assigned
        .into_iter()
        .map(|fp| {
            miner
                .get(&fp)
                .map(|t| t.fingerprint.clone())
                .expect("every fingerprint resolves")
        })
        .collect();
    (miner, assigned)
}

fn pairs(n: u64) -> u128 {
    u128::from(n) * u128::from(n.saturating_sub(1)) / 2
}

/// Pairwise precision and recall: of the line pairs the miner put in one
/// template, the share that are one event type, and of the pairs of one
/// event type, the share the miner put in one template.
fn precision_recall(truth: &[usize], mined: &[String]) -> (f64, f64) {
    let mut cells: HashMap<(usize, &str), u64> = HashMap::new();
    let mut by_truth: HashMap<usize, u64> = HashMap::new();
    let mut by_mined: HashMap<&str, u64> = HashMap::new();
    for (t, m) in truth.iter().zip(mined) {
        *cells.entry((*t, m.as_str())).or_default() += 1;
        *by_truth.entry(*t).or_default() += 1;
        *by_mined.entry(m.as_str()).or_default() += 1;
    }
    let together: u128 = cells.values().map(|n| pairs(*n)).sum();
    let mined_pairs: u128 = by_mined.values().map(|n| pairs(*n)).sum();
    let true_pairs: u128 = by_truth.values().map(|n| pairs(*n)).sum();
    (
        together as f64 / mined_pairs as f64,
        together as f64 / true_pairs as f64,
    )
}

#[test]
fn templates_recover_the_event_types_of_a_generated_corpus() {
    let lines = corpus(7, LINES);
    let refs: Vec<&Line> = lines.iter().collect();
    let (miner, mined) = mine(&refs);
    let truth: Vec<usize> = lines.iter().map(|l| l.spec).collect();
    let (precision, recall) = precision_recall(&truth, &mined);
    println!(
        "templates: {} event types, {} lines -> {} templates; pairwise precision {precision:.4}, recall {recall:.4}",
        specs().len(),
        lines.len(),
        miner.len()
    );
    let mut texts: Vec<(&str, &str, u64)> = miner
        .templates()
        .map(|t| (t.service.as_str(), t.text.as_str(), t.count))
        .collect();
    texts.sort();
    for (service, text, count) in &texts {
        println!("  {count:>6}  {service:<10} {text}");
    }
    assert!(precision > 0.95, "precision {precision}");
    assert!(recall > 0.95, "recall {recall}");
    let total: u64 = miner.templates().map(|t| t.count).sum();
    assert_eq!(total, LINES as u64);
    assert_eq!(miner.overflow().count, 0);
    for t in miner.templates() {
        assert!(!t.examples.is_empty() && t.examples.len() <= 3);
        assert!(t.first_seen <= t.last_seen);
        assert!(t.severity.is_some());
        for ex in &t.examples {
            assert!(!ex.contains("@example.com"), "{ex}");
        }
    }
}

/// Drain's known blind spot, measured: two frequent event types that
/// differ by one word past the tree's depth merge, which costs precision; a
/// deeper tree separates them but splits event types whose third word
/// varies, which costs recall.
#[test]
fn a_constant_word_past_the_tree_depth_is_not_seen() {
    let mut all = specs();
    all.extend(late_word_specs());
    let lines = corpus_of(&all, 7, LINES);
    let refs: Vec<&Line> = lines.iter().collect();
    let truth: Vec<usize> = lines.iter().map(|l| l.spec).collect();
    for depth in [4, 5] {
        let config = MinerConfig {
            depth,
            ..MinerConfig::default()
        };
        let (miner, mined) = mine_with(config, &refs);
        let (precision, recall) = precision_recall(&truth, &mined);
        let merged = miner
            .templates()
            .any(|t| t.text == "Order <num> <*> to warehouse <*>");
        println!(
            "with the late-word pair, depth {depth}: {} templates for {} event types; precision {precision:.4}, recall {recall:.4}; pair merged: {merged}",
            miner.len(),
            all.len()
        );
        assert_eq!(merged, depth == 4);
        if depth == 4 {
            assert!(recall > 0.95, "recall {recall}");
        } else {
            assert!(precision > 0.95, "precision {precision}");
        }
    }
}

#[test]
fn mined_templates_read_as_expected() {
    let lines = corpus(11, 5_000);
    let refs: Vec<&Line> = lines.iter().collect();
    let (miner, _) = mine(&refs);
    let texts: BTreeSet<(&str, &str)> = miner
        .templates()
        .map(|t| (t.service.as_str(), t.text.as_str()))
        .collect();
    for expected in [
        ("checkout", "User <num> logged in from <ip>"),
        ("checkout", "GET /api/orders/<num> <num> <num>"),
        ("payments", "Connection to db-<*> timed out after <num>"),
        ("cache", "cache miss key=<hex>"),
        ("cache", "cache hit key=<hex>"),
        (
            "checkout",
            r#"{"level":"info", "msg":"order placed", "order_id":<num>, "user":"<*>", "amount":<num>}"#,
        ),
        ("checkout", "at com.example.<*>.java:<num>)"),
        ("kafka", "Consumer group <*> rebalanced partitions=[<*>]"),
        ("net", "Accepted connection from <ip>"),
        ("mailer", "Email sent to <email> template=<*>"),
        ("auth", "Invalid password for user <*> from <ip>"),
        ("gateway", "Health check passed"),
        ("search", "Health check passed"),
        (
            "spring",
            "<ts> INFO <num> --- [main] o.s.b.w.embedded.tomcat.TomcatWebServer : Tomcat started on port(s): <num> (http)",
        ),
    ] {
        assert!(
            texts.contains(&expected),
            "{expected:?} not among {texts:#?}"
        );
    }
}

/// Fingerprint and current text per event type (the template holding most
/// of its lines).
fn by_event_type(lines: &[&Line], miner: &Miner, mined: &[String]) -> BTreeMap<usize, Template> {
    let mut votes: HashMap<usize, HashMap<&str, usize>> = HashMap::new();
    for (l, m) in lines.iter().zip(mined) {
        *votes.entry(l.spec).or_default().entry(m).or_default() += 1;
    }
    votes
        .into_iter()
        .map(|(spec, v)| {
            let (fp, _) = v
                .into_iter()
                .max_by_key(|(fp, n)| (*n, *fp))
                .expect("at least one vote");
            (spec, miner.get(fp).cloned().expect("resolves"))
        })
        .collect()
}

#[test]
fn fingerprints_are_stable_across_runs_and_orders() {
    let lines = corpus(3, LINES);
    let forward: Vec<&Line> = lines.iter().collect();
    let backward: Vec<&Line> = lines.iter().rev().collect();
    let (m1, mined1) = mine(&forward);
    let (m2, mined2) = mine(&forward);
    assert_eq!(mined1, mined2, "the same stream, the same fingerprints");
    let run1: Vec<&Template> = m1.templates().collect();
    let run2: Vec<&Template> = m2.templates().collect();
    assert_eq!(run1, run2);

    let (m3, mined3) = mine(&backward);
    let mut mined3 = mined3;
    mined3.reverse();
    let a = by_event_type(&forward, &m1, &mined1);
    let b = by_event_type(&forward, &m3, &mined3);
    let mut same_fp = 0;
    for (spec, ta) in &a {
        let tb = &b[spec];
        // Every event type generalises to the same text in either order...
        assert_eq!(ta.text, tb.text, "event type {spec}");
        assert_eq!(ta.text_fingerprint(), tb.text_fingerprint());
        // ...and keeps its creation fingerprint when its lines mask alike,
        // whichever line came first.
        let masked: BTreeSet<String> = lines
            .iter()
            .filter(|l| l.spec == *spec)
            .map(|l| mask_line(&l.body).1)
            .collect();
        if masked.len() == 1 {
            assert_eq!(
                ta.fingerprint, tb.fingerprint,
                "event type {spec}: {}",
                ta.text
            );
            same_fp += 1;
        }
    }
    println!(
        "{same_fp} of {} event types mask to one line and keep their fingerprint in any order",
        a.len()
    );
    assert!(same_fp >= 15, "{same_fp}");

    // The pinned value of the fingerprint function, as the miner assigns it.
    let login = a
        .values()
        .find(|t| t.text == "User <num> logged in from <ip>");
    assert_eq!(
        login.map(|t| t.fingerprint.as_str()),
        Some("41aaefc5bf636801")
    );
    assert_eq!(
        fingerprint("checkout", "User <num> logged in from <ip>"),
        "41aaefc5bf636801"
    );
}

#[test]
fn deltas_add_up_to_the_totals() {
    let lines = corpus(5, 4_000);
    let mut miner = Miner::new(MinerConfig::default()).expect("valid");
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (i, chunk) in lines.chunks(500).enumerate() {
        for l in chunk {
            miner.observe(l.service, &l.body, None, i as i64);
        }
        let delta = miner.take_delta();
        for m in &delta.merges {
            let moved = counts.remove(&m.from).unwrap_or(0);
            *counts.entry(m.into.clone()).or_default() += moved;
        }
        for t in delta.templates {
            *counts.entry(t.fingerprint).or_default() += t.count;
        }
    }
    let totals: HashMap<String, u64> = miner
        .templates()
        .map(|t| (t.fingerprint.clone(), t.count))
        .collect();
    assert_eq!(counts, totals);
}

#[test]
fn bounded_miner_reports_overflow_on_the_corpus() {
    let lines = corpus(9, 5_000);
    let mut miner = Miner::new(MinerConfig {
        max_clusters: 10,
        ..MinerConfig::default()
    })
    .expect("valid");
    let mut placed = 0u64;
    for l in &lines {
        if miner.observe(l.service, &l.body, None, 0).is_some() {
            placed += 1;
        }
    }
    assert_eq!(miner.len(), 10);
    let overflow = miner.overflow();
    assert!(overflow.count > 0);
    assert_eq!(placed + overflow.count, lines.len() as u64);
    let counted: u64 = miner.templates().map(|t| t.count).sum();
    assert_eq!(counted, placed);
    let bytes: u64 = lines.iter().map(|l| l.body.len() as u64).sum();
    let kept: u64 = miner.templates().map(|t| t.bytes).sum();
    assert_eq!(kept + overflow.bytes, bytes);
}
