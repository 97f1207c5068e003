//! The three targets of a policy (metric, log, trace): their matchers,
//! keep, transforms and sampling, decoded field by field.

use super::*;

impl Decoder {
    // ---- metric ----

    pub(super) fn metric_target(&mut self, v: &Json) -> Option<pb::MetricTarget> {
        let root: Loc = Vec::new();
        let mut obj = self.object(v, &root, None)?;
        let mut target = pb::MetricTarget {
            keep: true,
            ..Default::default()
        };
        for (loc, mut m) in self.matchers(&mut obj) {
            target.r#match.push(self.metric_matcher(&mut m, &loc));
            self.warn_unknown(&m, &loc);
        }
        match obj.get("keep") {
            None | Some(Json::Null) => {}
            Some(Json::Bool(b)) => target.keep = *b,
            Some(Json::String(s)) if matches!(s.to_ascii_lowercase().as_str(), "true" | "all") => {
                target.keep = true
            }
            Some(Json::String(s))
                if matches!(s.to_ascii_lowercase().as_str(), "false" | "none") =>
            {
                target.keep = false
            }
            Some(other) => self.err(
                &root,
                Some("keep"),
                format!("metric keep must be true or false, found {other}"),
            ),
        }
        self.warn_unknown(&obj, &root);
        Some(target)
    }

    pub(super) fn metric_matcher(&mut self, obj: &mut Obj<'_>, loc: &Loc) -> pb::MetricMatcher {
        use pb::metric_matcher::Field as F;
        let keys = [
            "metric_field",
            "datapoint_attribute",
            "resource_attribute",
            "scope_attribute",
            "metric_type",
            "aggregation_temporality",
        ];
        let field = self
            .one_of(obj, &keys, loc, "field selector")
            .map(|(key, v)| match key {
                "metric_field" => F::MetricField(self.enumeration::<pb::MetricField>(v, loc, key)),
                "datapoint_attribute" => F::DatapointAttribute(self.path(v, loc, key)),
                "resource_attribute" => F::ResourceAttribute(self.path(v, loc, key)),
                "scope_attribute" => F::ScopeAttribute(self.path(v, loc, key)),
                "metric_type" => F::MetricType(self.enumeration::<pb::MetricType>(v, loc, key)),
                _ => F::AggregationTemporality(
                    self.enumeration::<pb::AggregationTemporality>(v, loc, key),
                ),
            });
        let mut r#match = self
            .match_spec(obj, loc)
            .map(|s| into_match!(s, pb::metric_matcher::Match));
        // Enum selectors carry their operand; an omitted match is `exists: true`.
        if r#match.is_none()
            && matches!(field, Some(F::MetricType(_) | F::AggregationTemporality(_)))
        {
            r#match = Some(pb::metric_matcher::Match::Exists(true));
        }
        let (negate, case_insensitive) = self.flags(obj, loc);
        pb::MetricMatcher {
            field,
            r#match,
            negate,
            case_insensitive,
        }
    }

    // ---- log ----

    pub(super) fn log_target(&mut self, v: &Json) -> Option<pb::LogTarget> {
        let root: Loc = Vec::new();
        let mut obj = self.object(v, &root, None)?;
        let mut target = pb::LogTarget::default();
        for (loc, mut m) in self.matchers(&mut obj) {
            target.r#match.push(self.log_matcher(&mut m, &loc));
            self.warn_unknown(&m, &loc);
        }
        if let Some(v) = obj.get("keep") {
            target.keep = match v {
                Json::String(s) => s.clone(),
                Json::Null => String::new(),
                // `keep: 0` / `keep: 100` in YAML: a percentage without the sign
                // is ambiguous; keep the literal so validation names it.
                other => other.to_string(),
            };
        }
        if let Some(v) = obj.get("sample_key").filter(|v| !v.is_null()) {
            let loc = vec![PathSeg::Key("sample_key")];
            if let Some(mut o) = self.object(v, &loc, None) {
                let field = self.log_selector(&mut o, &loc, LOG_SELECTORS);
                target.sample_key = Some(pb::LogSampleKey {
                    field: field.map(log_sel::sample_key),
                });
                self.warn_unknown(&o, &loc);
            }
        }
        if let Some(v) = obj.get("transform").filter(|v| !v.is_null()) {
            target.transform = self.log_transform(v);
        }
        self.warn_unknown(&obj, &root);
        Some(target)
    }

    pub(super) fn log_selector(
        &mut self,
        obj: &mut Obj<'_>,
        loc: &Loc,
        keys: &[&'static str],
    ) -> Option<log_sel::Sel> {
        let (key, v) = self.one_of(obj, keys, loc, "field selector")?;
        let key = key.trim_start_matches("from_");
        Some(match key {
            "log_field" => {
                log_sel::Sel::Field(self.enumeration::<pb::LogField>(v, loc, "log_field"))
            }
            "log_attribute" => log_sel::Sel::Log(self.path(v, loc, "log_attribute")),
            "resource_attribute" => log_sel::Sel::Resource(self.path(v, loc, "resource_attribute")),
            _ => log_sel::Sel::Scope(self.path(v, loc, "scope_attribute")),
        })
    }

    pub(super) fn log_matcher(&mut self, obj: &mut Obj<'_>, loc: &Loc) -> pb::LogMatcher {
        let field = self
            .log_selector(obj, loc, LOG_SELECTORS)
            .map(log_sel::matcher);
        let r#match = self
            .match_spec(obj, loc)
            .map(|s| into_match!(s, pb::log_matcher::Match));
        let (negate, case_insensitive) = self.flags(obj, loc);
        pb::LogMatcher {
            field,
            r#match,
            negate,
            case_insensitive,
        }
    }

    pub(super) fn log_transform(&mut self, v: &Json) -> Option<pb::LogTransform> {
        let tloc = vec![PathSeg::Key("transform")];
        let mut obj = self.object(v, &tloc, None)?;
        let mut t = pb::LogTransform::default();
        for (stage, items) in [
            ("remove", obj.get("remove")),
            ("redact", obj.get("redact")),
            ("rename", obj.get("rename")),
            ("add", obj.get("add")),
        ] {
            let items = match items {
                None | Some(Json::Null) => continue,
                Some(Json::Array(items)) => items,
                Some(other) => {
                    self.err(
                        &tloc,
                        Some(stage),
                        format!("expected a list, found {}", kind(other)),
                    );
                    continue;
                }
            };
            for (i, item) in items.iter().enumerate() {
                let loc = at(&tloc, PathSeg::Index(stage, i));
                let Some(mut o) = self.object(item, &loc, None) else {
                    continue;
                };
                match stage {
                    "remove" => {
                        let field = self
                            .log_selector(&mut o, &loc, LOG_SELECTORS)
                            .map(log_sel::remove);
                        t.remove.push(pb::LogRemove { field });
                    }
                    "redact" => {
                        let field = self
                            .log_selector(&mut o, &loc, LOG_SELECTORS)
                            .map(log_sel::redact);
                        let replacement = match o.get("replacement") {
                            Some(v) => self.string(v, &loc, "replacement"),
                            // The spec's default; proto3 cannot tell unset from empty,
                            // so authoring files get it filled in explicitly.
                            None => DEFAULT_REDACTION.to_owned(),
                        };
                        let regex = o
                            .get("regex")
                            .filter(|v| !v.is_null())
                            .map(|v| self.string(v, &loc, "regex"));
                        t.redact.push(pb::LogRedact {
                            field,
                            replacement,
                            regex,
                        });
                    }
                    "rename" => {
                        let keys = [
                            "from_log_field",
                            "from_log_attribute",
                            "from_resource_attribute",
                            "from_scope_attribute",
                            "log_field",
                            "log_attribute",
                            "resource_attribute",
                            "scope_attribute",
                        ];
                        let from = self.log_selector(&mut o, &loc, &keys).map(log_sel::rename);
                        let to = o
                            .get("to")
                            .map(|v| self.string(v, &loc, "to"))
                            .unwrap_or_default();
                        let upsert = o
                            .get("upsert")
                            .map(|v| self.boolean(v, &loc, "upsert"))
                            .unwrap_or(false);
                        t.rename.push(pb::LogRename { from, to, upsert });
                    }
                    _ => {
                        let field = self
                            .log_selector(&mut o, &loc, LOG_SELECTORS)
                            .map(log_sel::add);
                        let value = o
                            .get("value")
                            .map(|v| self.string(v, &loc, "value"))
                            .unwrap_or_default();
                        let upsert = o
                            .get("upsert")
                            .map(|v| self.boolean(v, &loc, "upsert"))
                            .unwrap_or(false);
                        t.add.push(pb::LogAdd {
                            field,
                            value,
                            upsert,
                        });
                    }
                }
                self.warn_unknown(&o, &loc);
            }
        }
        self.warn_unknown(&obj, &tloc);
        Some(t)
    }

    // ---- trace ----

    pub(super) fn trace_target(&mut self, v: &Json) -> Option<pb::TraceTarget> {
        let root: Loc = Vec::new();
        let mut obj = self.object(v, &root, None)?;
        let mut target = pb::TraceTarget::default();
        for (loc, mut m) in self.matchers(&mut obj) {
            target.r#match.push(self.trace_matcher(&mut m, &loc));
            self.warn_unknown(&m, &loc);
        }
        if let Some(v) = obj.get("keep").filter(|v| !v.is_null()) {
            target.keep = self.sampling_config(v);
        }
        self.warn_unknown(&obj, &root);
        Some(target)
    }

    pub(super) fn sampling_config(&mut self, v: &Json) -> Option<pb::TraceSamplingConfig> {
        let loc = vec![PathSeg::Key("keep")];
        let mut cfg = pb::TraceSamplingConfig::default();
        match v {
            // Shorthand: `keep: 25` or `keep: "25%"`.
            Json::Number(_) | Json::String(_) => {
                let text = v
                    .as_str()
                    .map(|s| s.trim().trim_end_matches('%').to_owned())
                    .unwrap_or_else(|| v.to_string());
                match text.parse::<f32>() {
                    Ok(p) => cfg.percentage = p,
                    Err(_) => {
                        self.err(
                            &loc,
                            Some("percentage"),
                            format!("expected a percentage, found {v}"),
                        );
                        return None;
                    }
                }
            }
            Json::Object(map) => {
                let mut obj = Obj::new(map);
                match obj.get("percentage").filter(|v| !v.is_null()) {
                    Some(p) => cfg.percentage = self.double(p, &loc, "percentage")? as f32,
                    // Defaulting to 0 % would silently drop every span.
                    None => self.err(&loc, Some("percentage"), "required"),
                }
                if let Some(m) = obj.get("mode").filter(|v| !v.is_null()) {
                    cfg.mode = Some(self.enumeration::<pb::SamplingMode>(m, &loc, "mode"));
                }
                if let Some(p) = obj.get("sampling_precision").filter(|v| !v.is_null()) {
                    cfg.sampling_precision = Some(
                        u32::try_from(self.u64_value(p, &loc, "sampling_precision"))
                            .unwrap_or(u32::MAX),
                    );
                }
                if let Some(s) = obj.get("hash_seed").filter(|v| !v.is_null()) {
                    match u32::try_from(self.u64_value(s, &loc, "hash_seed")) {
                        Ok(seed) => cfg.hash_seed = Some(seed),
                        Err(_) => {
                            self.err(&loc, Some("hash_seed"), "hash_seed must fit in 32 bits")
                        }
                    }
                }
                if let Some(f) = obj.get("fail_closed").filter(|v| !v.is_null()) {
                    cfg.fail_closed = Some(self.boolean(f, &loc, "fail_closed"));
                }
                self.warn_unknown(&obj, &loc);
            }
            other => {
                self.err(
                    &loc,
                    None,
                    format!(
                        "trace keep must be a sampling config object, found {}",
                        kind(other)
                    ),
                );
                return None;
            }
        }
        Some(cfg)
    }

    pub(super) fn trace_matcher(&mut self, obj: &mut Obj<'_>, loc: &Loc) -> pb::TraceMatcher {
        use pb::trace_matcher::Field as F;
        let keys = [
            "trace_field",
            "span_attribute",
            "resource_attribute",
            "scope_attribute",
            "span_kind",
            "span_status",
            "event_name",
            "event_attribute",
            "link_trace_id",
        ];
        let field = self
            .one_of(obj, &keys, loc, "field selector")
            .map(|(key, v)| match key {
                "trace_field" => F::TraceField(self.enumeration::<pb::TraceField>(v, loc, key)),
                "span_attribute" => F::SpanAttribute(self.path(v, loc, key)),
                "resource_attribute" => F::ResourceAttribute(self.path(v, loc, key)),
                "scope_attribute" => F::ScopeAttribute(self.path(v, loc, key)),
                "span_kind" => F::SpanKind(self.enumeration::<pb::SpanKind>(v, loc, key)),
                "span_status" => F::SpanStatus(self.enumeration::<pb::SpanStatusCode>(v, loc, key)),
                "event_name" => F::EventName(self.string(v, loc, key)),
                "event_attribute" => F::EventAttribute(self.path(v, loc, key)),
                _ => F::LinkTraceId(self.string(v, loc, key)),
            });
        let mut r#match = self
            .match_spec(obj, loc)
            .map(|s| into_match!(s, pb::trace_matcher::Match));
        if r#match.is_none() && matches!(field, Some(F::SpanKind(_) | F::SpanStatus(_))) {
            r#match = Some(pb::trace_matcher::Match::Exists(true));
        }
        let (negate, case_insensitive) = self.flags(obj, loc);
        pb::TraceMatcher {
            field,
            r#match,
            negate,
            case_insensitive,
        }
    }
}
