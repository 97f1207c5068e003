//! Shadow (dry-run) policies: delivered, evaluated and counted, never
//! enforced, so that a policy's effect is measured before it runs for real.
//!
//! The marker is a policy label rather than a field of the wire schema, so
//! that the reference `tero.policy.v1` schema is unchanged. A client that
//! does not know the label would enforce the policy; that is why clients
//! declare [`SHADOW_CAPABILITY`] and control planes deliver shadow policies
//! only to clients that did (see [`declares_shadow`]).
//!
//! Every signal runs in shadow. A shadow log or trace policy is evaluated
//! read-only on the record as it arrived: its keep (sampling and rate
//! limits included) is decided and counted, its transforms are not applied
//! and a shadow trace policy never writes the tracestate.

use tero_proto::otel::any_value::Value;
use tero_proto::policy::{ClientMetadata, ExtensionCapability, Policy};

/// The label key that selects a policy's mode.
pub const SHADOW_LABEL: &str = "tero.mode";
/// The value of [`SHADOW_LABEL`] that makes a policy a shadow policy.
pub const SHADOW_VALUE: &str = "shadow";
/// The `ExtensionCapability.type` of a client that runs shadow policies
/// as shadows.
pub const SHADOW_CAPABILITY: &str = "tero.shadow";

/// Whether `policy` is a shadow policy: a `tero.mode` label with the
/// string value `shadow`. Any such label wins over another `tero.mode`
/// label, since counting without dropping is the safe reading.
pub fn is_shadow(policy: &Policy) -> bool {
    policy.labels.iter().any(|kv| {
        kv.key == SHADOW_LABEL
            && matches!(
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(Value::StringValue(s)) if s == SHADOW_VALUE
            )
    })
}

/// What edges do with a policy, in one word shared by every surface that
/// shows it (`tero policy list`, `tero issues accept --mode`, the edge's
/// `/_edge/policies`): `disabled`, `shadow` (counted as would-drop, never
/// enforced) or `active`.
pub fn mode_word(enabled: bool, shadow: bool) -> &'static str {
    match (enabled, shadow) {
        (false, _) => "disabled",
        (true, true) => "shadow",
        (true, false) => "active",
    }
}

/// Whether a client with this metadata declared that it runs shadow
/// policies without enforcing them.
pub fn declares_shadow(meta: &ClientMetadata) -> bool {
    meta.supported_extensions
        .iter()
        .any(|e| e.r#type == SHADOW_CAPABILITY)
}

/// The capability a client puts in `ClientMetadata.supported_extensions`.
pub fn shadow_capability() -> ExtensionCapability {
    ExtensionCapability {
        r#type: SHADOW_CAPABILITY.to_owned(),
        min_version: String::new(),
        config: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tero_proto::otel::{AnyValue, KeyValue};

    fn labelled(key: &str, value: Value) -> Policy {
        Policy {
            labels: vec![KeyValue {
                key: key.into(),
                value: Some(AnyValue { value: Some(value) }),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_the_exact_string_label_marks_a_shadow() {
        assert!(is_shadow(&labelled(
            "tero.mode",
            Value::StringValue("shadow".into())
        )));
        assert!(!is_shadow(&labelled(
            "tero.mode",
            Value::StringValue("enforce".into())
        )));
        assert!(!is_shadow(&labelled(
            "mode",
            Value::StringValue("shadow".into())
        )));
        assert!(!is_shadow(&labelled("tero.mode", Value::BoolValue(true))));
        assert!(!is_shadow(&Policy::default()));
    }

    #[test]
    fn the_capability_is_recognised_by_type() {
        let mut meta = ClientMetadata::default();
        assert!(!declares_shadow(&meta));
        meta.supported_extensions.push(shadow_capability());
        assert!(declares_shadow(&meta));
    }
}

/// The engine's shadow semantics.
#[cfg(test)]
mod engine_tests {
    use crate::engine::{
        Decision, Engine, FieldValue, MetricSelector, MetricView, SeriesDecision, StatsDelta,
        StatsRegistry,
    };
    use crate::policy::{Format, parse_policies};
    use tero_proto::policy::{MetricField, Policy};

    struct Series(&'static str, &'static str);

    impl MetricView for Series {
        fn get(&self, s: &MetricSelector) -> Option<FieldValue<'_>> {
            match s {
                MetricSelector::Field(MetricField::Name) => Some(FieldValue::str(self.0)),
                MetricSelector::DatapointAttribute(p) if p.len() == 1 && p[0] == "route" => {
                    Some(FieldValue::str(self.1))
                }
                _ => None,
            }
        }
    }

    /// A metric policy on a name prefix (and a route, if given).
    fn metric(id: &str, prefix: &str, route: Option<&str>, keep: bool, shadow: bool) -> Policy {
        let route = route.map_or(String::new(), |r| {
            format!("    - datapoint_attribute: [route]\n      exact: {r}\n")
        });
        let labels = if shadow {
            "labels: {tero.mode: shadow}\n"
        } else {
            ""
        };
        let yaml = format!(
            "id: {id}\nname: {id}\n{labels}metric:\n  match:\n    - metric_field: name\n      starts_with: {prefix}\n{route}  keep: {keep}\n"
        );
        let mut loaded = parse_policies(&yaml, Format::Yaml).expect("test policy parses");
        assert!(loaded.rejected.is_empty(), "{yaml}");
        loaded.policies.remove(0)
    }

    fn stats(engine: &Engine, id: &str) -> StatsDelta {
        engine
            .policies()
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.runtime.stats.peek())
            .unwrap_or_default()
    }

    const SERIES: [Series; 6] = [
        Series("http_requests", "/"),
        Series("http_requests", "/debug"),
        Series("http_latency", "/"),
        Series("go_gc", "/"),
        Series("go_threads", "/debug"),
        Series("process_cpu", "/"),
    ];

    fn enforced() -> Vec<Policy> {
        vec![
            metric("e-go", "go_", None, false, false),
            metric("e-http", "http_", None, true, false),
            metric("e-http-debug", "http_", Some("/debug"), false, false),
        ]
    }

    /// Shadows that would win every tie if they were enforced: lower ids,
    /// drops, overlapping the enforced policies.
    fn shadows() -> Vec<Policy> {
        vec![
            metric("a-http", "http_", None, false, true),
            metric("a-keep-go", "go_", None, true, true),
            metric("b-process", "process_", None, false, true),
        ]
    }

    #[test]
    fn a_shadow_drop_counts_but_never_drops() {
        let engine = Engine::compile(
            &[metric("s", "http_", None, false, true)],
            &StatsRegistry::new(),
        );
        assert_eq!(engine.shadow_metric_policy_count(), 1);
        assert_eq!(engine.metric_policy_count(), 1, "the data path must run");
        let info = &engine.policies()[0];
        assert!(info.shadow && info.errors.is_empty());
        let d = engine.decide_metric(&Series("http_requests", "/"));
        assert_eq!(
            (d.keep, d.winner),
            (true, None),
            "no enforced policy decided"
        );
        let s = d.shadow.expect("the shadow would drop it");
        assert_eq!(engine.shadow_id(s), "s");
        assert!(engine.evaluate_metric(&Series("http_requests", "/")));
        assert_eq!(
            engine.decide_metric(&Series("go_gc", "/")),
            SeriesDecision {
                keep: true,
                winner: None,
                shadow: None
            }
        );
        engine.shadow_stats(s).record_drop(1, 42);
        let st = stats(&engine, "s");
        assert_eq!((st.match_hits, st.match_misses), (2, 0));
        assert_eq!((st.records_dropped, st.bytes_dropped), (1, 42));
    }

    #[test]
    fn shadows_compete_among_themselves_like_enforced_policies() {
        let engine = Engine::compile(
            &[
                metric("a-keep", "http_", None, true, true),
                metric("b-drop", "http_", None, false, true),
                metric("c-drop", "http_", None, false, true),
            ],
            &StatsRegistry::new(),
        );
        let d = engine.decide_metric(&Series("http_requests", "/"));
        assert!(d.keep);
        assert_eq!(d.shadow.map(|s| engine.shadow_id(s)), Some("b-drop"));
        let counts = |id| {
            let s = stats(&engine, id);
            (s.match_hits, s.match_misses)
        };
        assert_eq!(counts("b-drop"), (1, 0), "the winner hits");
        assert_eq!(counts("a-keep"), (0, 1), "the others miss");
        assert_eq!(counts("c-drop"), (0, 1));

        let keeps = Engine::compile(
            &[metric("k", "http_", None, true, true)],
            &StatsRegistry::new(),
        );
        let d = keeps.decide_metric(&Series("http_requests", "/"));
        assert_eq!(d.shadow, None, "a shadow keep would drop nothing");
        assert_eq!(stats(&keeps, "k").match_hits, 1);
    }

    #[test]
    fn enforced_policies_decide_and_count_exactly_as_without_shadows() {
        let alone = Engine::compile(&enforced(), &StatsRegistry::new());
        let mut all = enforced();
        all.extend(shadows());
        let with = Engine::compile(&all, &StatsRegistry::new());
        assert_eq!(with.shadow_metric_policy_count(), 3);
        for series in &SERIES {
            let a = alone.decide_metric(series);
            let w = with.decide_metric(series);
            assert_eq!((a.keep, a.winner), (w.keep, w.winner), "{}", series.0);
            assert_eq!(a.shadow, None);
        }
        for id in ["e-go", "e-http", "e-http-debug"] {
            assert_eq!(stats(&alone, id), stats(&with, id), "{id}");
        }
        let would_drop: Vec<Option<&str>> = SERIES
            .iter()
            .map(|s| with.decide_metric(s).shadow.map(|i| with.shadow_id(i)))
            .collect();
        assert_eq!(
            would_drop,
            [
                Some("a-http"),
                Some("a-http"),
                Some("a-http"),
                None,
                None,
                Some("b-process")
            ]
        );
    }

    #[test]
    fn record_scrape_counts_every_active_metric_policy_once() {
        let mut set = enforced();
        set.extend(shadows());
        let mut off = metric("z-off", "x_", None, false, false);
        off.enabled = false;
        set.push(off);
        let mut broken = metric("z-broken", "x_", None, false, false);
        broken.name.clear();
        broken.id.clear();
        set.push(broken);
        let engine = Engine::compile(&set, &StatsRegistry::new());
        for _ in 0..3 {
            engine.record_scrape();
        }
        for id in [
            "e-go",
            "e-http",
            "e-http-debug",
            "a-http",
            "a-keep-go",
            "b-process",
        ] {
            assert_eq!(stats(&engine, id).scrapes, 3, "{id}");
        }
        assert_eq!(stats(&engine, "z-off").scrapes, 0, "disabled");
        assert_eq!(stats(&engine, "").scrapes, 0, "invalid");
        // Scrapes are a delta like every counter.
        let info = engine.policies().iter().find(|p| p.id == "a-http");
        let runtime = &info.expect("loaded").runtime;
        assert_eq!(runtime.stats.take().scrapes, 3);
        assert_eq!(runtime.stats.peek().scrapes, 0);
    }

    /// A log record with a body and flat attributes.
    #[derive(Default)]
    struct Log {
        body: String,
        attributes: Vec<(String, String)>,
    }

    impl crate::engine::LogView for Log {
        fn get(&self, selector: &crate::engine::LogSelector) -> Option<FieldValue<'_>> {
            use crate::engine::LogSelector;
            match selector {
                LogSelector::Field(tero_proto::policy::LogField::Body) => {
                    Some(FieldValue::str(&self.body))
                }
                LogSelector::LogAttribute(p) => self
                    .attributes
                    .iter()
                    .find(|(k, _)| Some(k) == p.first())
                    .map(|(_, v)| FieldValue::str(v)),
                _ => None,
            }
        }
    }

    impl crate::engine::LogViewMut for Log {
        fn remove(&mut self, _: &crate::engine::LogSelector) -> bool {
            false
        }
        fn set(&mut self, selector: &crate::engine::LogSelector, value: &str, _: bool) -> bool {
            match selector {
                crate::engine::LogSelector::LogAttribute(p) => {
                    self.attributes.push((p[0].clone(), value.to_owned()));
                    true
                }
                _ => false,
            }
        }
        fn rename(&mut self, _: &crate::engine::LogSelector, _: &str, _: bool) -> bool {
            false
        }
    }

    struct Span(String);

    impl crate::engine::SpanView for Span {
        fn get(&self, selector: &crate::engine::TraceSelector) -> Option<FieldValue<'_>> {
            match selector {
                crate::engine::TraceSelector::Field(tero_proto::policy::TraceField::Name) => {
                    Some(FieldValue::str("health"))
                }
                crate::engine::TraceSelector::Field(tero_proto::policy::TraceField::TraceId) => {
                    Some(FieldValue::Bytes(std::borrow::Cow::Owned(vec![0x42; 16])))
                }
                crate::engine::TraceSelector::Field(tero_proto::policy::TraceField::TraceState) => {
                    Some(FieldValue::str(&self.0)).filter(|_| !self.0.is_empty())
                }
                _ => None,
            }
        }
    }

    impl crate::engine::SpanViewMut for Span {
        fn set_trace_state(&mut self, trace_state: String) {
            self.0 = trace_state;
        }
    }

    #[test]
    fn log_and_trace_shadows_count_would_drops_and_change_nothing() {
        let yaml = "id: a-shadow\nname: l\nlabels: {tero.mode: shadow}\nlog:\n  match:\n    - log_field: body\n      regex: debug\n  keep: none\n  transform:\n    add:\n      - log_attribute: shadowed\n        value: yes\n---\nid: b-enforced\nname: e\nlog:\n  match:\n    - log_field: body\n      exists: true\n  keep: all\n  transform:\n    add:\n      - log_attribute: seen\n        value: yes\n---\nid: t\nname: t\nlabels: {tero.mode: shadow}\ntrace:\n  match:\n    - trace_field: name\n      exact: health\n  keep:\n    percentage: 0\n";
        let loaded = parse_policies(yaml, Format::Yaml).expect("parses");
        assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
        let engine = Engine::compile(&loaded.policies, &StatsRegistry::new());
        for info in engine.policies() {
            assert!(info.errors.is_empty(), "{}: {:?}", info.id, info.errors);
        }
        let mut debug = Log {
            body: "debug: cache miss".into(),
            ..Default::default()
        };
        let outcome = engine.decide_log(&mut debug);
        assert_eq!(outcome.decision, Decision::Keep, "the shadow never drops");
        let shadow = outcome.shadow.expect("the shadow would drop it");
        engine.shadow_log_stats(shadow).record_drop(1, 17);
        assert_eq!(
            debug.attributes,
            vec![("seen".to_owned(), "yes".to_owned())],
            "enforced transforms run, shadow transforms do not"
        );
        let st = stats(&engine, "a-shadow");
        assert_eq!(
            (st.match_hits, st.records_dropped, st.bytes_dropped),
            (1, 1, 17)
        );

        let mut info = Log {
            body: "served".into(),
            ..Default::default()
        };
        let outcome = engine.decide_log(&mut info);
        assert_eq!((outcome.decision, outcome.shadow), (Decision::Keep, None));
        assert_eq!(stats(&engine, "b-enforced").match_hits, 2);

        let mut span = Span(String::new());
        let outcome = engine.decide_span(&mut span);
        assert_eq!(outcome.decision, Decision::NoMatch);
        assert!(outcome.shadow.is_some(), "0 % would drop the span");
        assert_eq!(span.0, "", "a shadow never writes the tracestate");
        engine.record_batch(crate::policy::Signal::Trace);
        assert_eq!(stats(&engine, "t").scrapes, 1);
        assert_eq!(stats(&engine, "a-shadow").scrapes, 0);
    }
}
