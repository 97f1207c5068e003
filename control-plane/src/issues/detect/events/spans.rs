//! Span patterns of health checks, synthetic and bot traffic: a trace
//! policy that keeps none of them, except the failing ones.
//!
//! Matchers: the span name exactly; the route, as `http.route` exactly when
//! the spans carry that attribute (or nothing says which they carry and the
//! route has no masked ids), else as an anchored regex on `url.path` (ids
//! masked in the route become bounded patterns); and the user agent's
//! product (`kube-probe/`, version left out so an upgrade still matches) as
//! `contains` on `user_agent.original` or `http.user_agent`, whichever the
//! spans carry (`user_agent.original` when nothing says). Bot and synthetic
//! traffic usually hits ordinary routes, so for them the user agent is
//! required whenever the pattern has one; for health checks it is added
//! only when name and route alone would also match another span pattern.
//! The check: no other span pattern of the service may have the same name
//! and route (and user agent, when matched).
//!
//! Failing spans are kept: `span_status` ERROR with `exists: false` (spec
//! §3.6, "status differs from ERROR") is one more matcher, so a failing
//! health check still reaches the backend. Only the matched spans go: child
//! spans of the same requests (a database ping under `/healthz`) are other
//! patterns.

use tero_proto::controlplane::{Classification, EventType};
use tero_proto::policy::{TraceMatcher, trace_matcher};

use super::super::{Finding, domain};
use super::estimate::{self, Removal, Signal};
use super::matcher::{body_regex, has_placeholder};
use super::recommend::{Recommendation, not_error, span_attribute, span_name};
use super::{
    Candidate, ClassifiedEvent, Ctx, cost_severity, event_evidence, kind, no_policy, short,
};

fn kind_of(c: &Classification) -> Option<&'static str> {
    match (c.verdict.as_str(), c.category.as_str()) {
        ("waste", "health_check") => Some(kind::HEALTH_CHECK_SPANS),
        ("waste", "synthetic_test") => Some(kind::SYNTHETIC_SPANS),
        ("waste", "bot_traffic") => Some(kind::BOT_SPANS),
        _ => None,
    }
}

fn rank(kind: &str) -> u8 {
    match kind {
        kind::HEALTH_CHECK_SPANS => 0,
        kind::BOT_SPANS => 1,
        _ => 2,
    }
}

/// The span's template as evidence: name, and route when the name does not
/// already hold it.
pub fn template(e: &EventType) -> String {
    if e.route.is_empty() || e.name.contains(&e.route) {
        e.name.clone()
    } else {
        format!("{} {}", e.name, e.route)
    }
}

fn has_key(e: &EventType, key: &str) -> bool {
    e.attributes.iter().any(|p| p.key == key)
}

/// The route matcher and a description.
fn route_matcher(e: &EventType) -> Option<(TraceMatcher, String)> {
    if e.route.is_empty() {
        return None;
    }
    let known = !e.attributes.is_empty();
    if has_key(e, "http.route") || (!known && !has_placeholder(&e.route)) {
        return Some((
            span_attribute("http.route", trace_matcher::Match::Exact(e.route.clone())),
            format!("`http.route` = `{}`", e.route),
        ));
    }
    let key = if has_key(e, "http.target") && !has_key(e, "url.path") {
        "http.target"
    } else {
        "url.path"
    };
    // One token: the route's pattern, anchored; a target may carry a query.
    let regex = body_regex(&e.route, None).pattern;
    let regex = if key == "http.target" {
        regex.replacen(r"\s*$", r"(?:\?\S*)?$", 1)
    } else {
        regex
    };
    Some((
        span_attribute(key, trace_matcher::Match::Regex(regex)),
        format!("`{key}` matching the route `{}`", e.route),
    ))
}

/// The user agent's product without its version: `kube-probe/1.29` →
/// `kube-probe/`.
fn agent_product(agent: &str) -> Option<String> {
    let agent = agent.trim();
    if agent.is_empty() || has_placeholder(agent) {
        return None;
    }
    Some(match agent.split_once('/') {
        Some((product, _)) if !product.is_empty() => format!("{product}/"),
        _ => agent.to_owned(),
    })
}

fn agent_key(e: &EventType) -> Option<&'static str> {
    if has_key(e, "user_agent.original") {
        Some("user_agent.original")
    } else if has_key(e, "http.user_agent") {
        Some("http.user_agent")
    } else if e.attributes.is_empty() {
        Some("user_agent.original")
    } else {
        None
    }
}

/// Whether spans of `other` could match a policy on `name`, `route` and
/// (when given) the agent `product`.
fn could_match(other: &EventType, e: &EventType, route: bool, product: Option<&str>) -> bool {
    other.name == e.name
        && (!route || other.route == e.route)
        && product.is_none_or(|p| {
            other
                .user_agent
                .to_ascii_lowercase()
                .contains(&p.to_ascii_lowercase())
        })
}

#[derive(Debug)]
struct SpanMatch {
    matchers: Vec<TraceMatcher>,
    described: String,
}

fn span_match(e: &EventType, kind: &str, others: &[&EventType]) -> Result<SpanMatch, String> {
    if e.name.is_empty() {
        return Err("the spans have no name to match".into());
    }
    let mut matchers = vec![span_name(&e.name)];
    let mut parts = vec![format!("spans named `{}`", e.name)];
    let route = route_matcher(e);
    if let Some((m, d)) = &route {
        matchers.push(m.clone());
        parts.push(d.clone());
    }
    let product = agent_product(&e.user_agent);
    let clashes = |product: Option<&str>| {
        others
            .iter()
            .filter(|o| could_match(o, e, route.is_some(), product))
            .count()
    };
    let needs_agent = kind != kind::HEALTH_CHECK_SPANS || clashes(None) > 0;
    if needs_agent && let Some(product) = &product {
        let Some(key) = agent_key(e) else {
            return Err(format!(
                "the spans' user agent `{}` is what identifies them, but none of their \
                 attributes is a known user-agent attribute",
                e.user_agent
            ));
        };
        matchers.push(span_attribute(
            key,
            trace_matcher::Match::Contains(product.clone()),
        ));
        matchers.last_mut().expect("just pushed").case_insensitive = true;
        parts.push(format!("`{key}` containing `{product}`"));
    }
    let used_product = if needs_agent {
        product.as_deref()
    } else {
        None
    };
    let n = clashes(used_product);
    if n > 0 {
        return Err(format!(
            "{n} other span pattern(s) of the service share the name{} and could not be told \
             apart",
            if route.is_some() { " and route" } else { "" }
        ));
    }
    if kind != kind::HEALTH_CHECK_SPANS && used_product.is_none() && route.is_none() {
        return Err(format!(
            "only the span name `{}` identifies this {} traffic, and dropping every span of \
             that name would drop real requests too",
            e.name,
            if kind == kind::BOT_SPANS {
                "bot"
            } else {
                "synthetic"
            }
        ));
    }
    matchers.push(not_error());
    Ok(SpanMatch {
        matchers,
        described: format!("{}, unless their status is ERROR", parts.join(", ")),
    })
}

pub(super) fn detect(ctx: &Ctx, event: &ClassifiedEvent) -> Option<Candidate> {
    let c = ctx.confident(event)?;
    let kind = kind_of(c)?;
    let volume = ctx.volume(event, Signal::Span)?;
    let e = &event.event;
    let errors = e.errors.min(e.count);
    let removal = Removal::Fraction(if e.count == 0 {
        1.0
    } else {
        1.0 - errors as f64 / e.count as f64
    });
    let estimate = estimate::estimate(volume, removal, 0.0, ctx.prices);
    let severity = cost_severity(ctx, estimate.cost_per_month);
    let others = ctx.others(event, Signal::Span);
    let what = match kind {
        kind::HEALTH_CHECK_SPANS => "Health-check spans",
        kind::BOT_SPANS => "Bot-traffic spans",
        _ => "Synthetic-traffic spans",
    };
    let template = template(e);
    let mut summary = format!(
        "{} classified the spans `{}`{} as {} (confidence {:.2}): {}. They are about {} \
         spans/day ({}/day, {:.1}% of the service's spans).",
        if c.classifier.is_empty() {
            "The classifier"
        } else {
            c.classifier.as_str()
        },
        short(&template),
        if e.user_agent.is_empty() {
            String::new()
        } else {
            format!(" (user agent `{}`)", e.user_agent)
        },
        c.category,
        c.confidence,
        c.rationale.trim_end_matches('.'),
        estimate::round(volume.records_per_day),
        super::human_bytes(estimate::round(volume.bytes_per_day)),
        volume.share * 100.0,
    );
    let mut evidence = event_evidence(event, &volume, template.clone());
    if !e.user_agent.is_empty() {
        evidence.notes.push(format!("user agent: {}", e.user_agent));
    }
    if !e.span_kind.is_empty() {
        evidence.notes.push(format!("span kind: {}", e.span_kind));
    }
    evidence
        .notes
        .push(format!("errors: {errors} of {} sampled spans", e.count));
    let recommended = match span_match(e, kind, &others) {
        Ok(m) => {
            summary.push_str(&format!(
                " The trace policy keeps 0% of {}: failing spans ({errors} of {} sampled) still \
                 reach the backend. It removes about {} spans/day, ${:.2}/month.",
                m.described, e.count, estimate.records_per_day, estimate.cost_per_month
            ));
            evidence.notes.push(format!("matcher: {}", m.described));
            let rec = Recommendation {
                kind,
                service: ctx.service(),
                subject: &e.fingerprint,
                name: format!("Drop {} spans `{}`", c.category, short(&template)),
                why: format!("{} are not worth tracing; failing ones are kept.", what),
            };
            Some(rec.trace(m.matchers, 0.0))
        }
        Err(why) => {
            summary.push_str(&no_policy(&why));
            None
        }
    };
    let finding = Finding {
        kind,
        domain: domain::COST,
        severity: severity.as_str(),
        title: format!("{what} in {}: `{}`", ctx.service(), short(&template)),
        summary,
        service: ctx.service().to_owned(),
        subject: e.fingerprint.clone(),
        evidence,
        provenance: ctx.provenance(
            kind,
            Vec::new(),
            Some((c, event.run_id)),
            super::sorted_unique(e.edges.iter().cloned()),
        ),
        estimate,
        recommended,
        absorbed: Vec::new(),
    };
    Some(Candidate {
        finding,
        rank: rank(kind),
    })
}

#[cfg(test)]
mod tests {
    use tero_proto::controlplane::AttributeProfile;

    use super::*;

    fn span(name: &str, route: &str, agent: &str, keys: &[&str]) -> EventType {
        EventType {
            kind: "span".into(),
            name: name.into(),
            route: route.into(),
            user_agent: agent.into(),
            attributes: keys
                .iter()
                .map(|k| AttributeProfile {
                    key: k.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn agent_products_drop_their_version() {
        assert_eq!(
            agent_product("kube-probe/1.29").as_deref(),
            Some("kube-probe/")
        );
        assert_eq!(agent_product("GoogleHC").as_deref(), Some("GoogleHC"));
        assert_eq!(agent_product(""), None);
        assert_eq!(agent_product("<redacted>"), None);
    }

    #[test]
    fn bots_on_ordinary_routes_need_their_user_agent() {
        let bot = span("GET /products", "/products", "Googlebot/2.1", &[]);
        let people = span("GET /products", "/products", "", &[]);
        let m = span_match(&bot, kind::BOT_SPANS, &[&people]).unwrap();
        assert!(
            m.described
                .contains("`user_agent.original` containing `Googlebot/`")
        );

        // Spans that carry another user-agent key: that one is matched.
        let bot = span(
            "GET /products",
            "/products",
            "Googlebot/2.1",
            &["http.user_agent"],
        );
        let m = span_match(&bot, kind::BOT_SPANS, &[&people]).unwrap();
        assert!(m.described.contains("`http.user_agent`"), "{}", m.described);

        // Attributes known, none of them a user agent: nothing to match on.
        let bot = span(
            "GET /products",
            "/products",
            "Googlebot/2.1",
            &["http.route"],
        );
        assert!(span_match(&bot, kind::BOT_SPANS, &[&people]).is_err());

        // A bot by name only would drop everyone's spans of that name.
        let bot = span("GET /products", "", "", &[]);
        assert!(span_match(&bot, kind::BOT_SPANS, &[]).is_err());
    }

    #[test]
    fn health_checks_add_the_agent_only_to_tell_patterns_apart() {
        let probe = span(
            "GET /healthz",
            "/healthz",
            "kube-probe/1.29",
            &["http.route"],
        );
        let m = span_match(&probe, kind::HEALTH_CHECK_SPANS, &[]).unwrap();
        assert!(!m.described.contains("user_agent"), "{}", m.described);
        let lb = span(
            "GET /healthz",
            "/healthz",
            "ELB-HealthChecker/2.0",
            &["http.route"],
        );
        let err = span_match(&probe, kind::HEALTH_CHECK_SPANS, &[&lb]).unwrap_err();
        assert!(err.contains("known user-agent attribute"), "{err}");
        let probe = span(
            "GET /healthz",
            "/healthz",
            "kube-probe/1.29",
            &["http.route", "user_agent.original"],
        );
        let m = span_match(&probe, kind::HEALTH_CHECK_SPANS, &[&lb]).unwrap();
        assert!(m.described.contains("kube-probe/"), "{}", m.described);
    }

    #[test]
    fn masked_routes_match_the_path() {
        let e = span("GET", "/status/<num>", "", &["url.path"]);
        let (m, d) = route_matcher(&e).unwrap();
        assert!(d.contains("url.path"), "{d}");
        let Some(trace_matcher::Match::Regex(r)) = m.r#match else {
            panic!("a regex")
        };
        assert!(r.starts_with('^') && r.ends_with('$'), "{r}");
    }
}
