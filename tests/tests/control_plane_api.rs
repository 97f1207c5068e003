//! `tero-control-plane`'s admin API and Sync over both transports: HTTP
//! JSON (and protobuf for Sync) and gRPC, with every error path a client
//! meets: authentication, validation naming the field, optimistic
//! concurrency, unknown ids and unknown routes.
//!
//! Each test runs its own control plane on SQLite in a temporary directory.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use serde_json::{Value, json};
use tero_e2e::control_plane::{ControlPlane, request_bytes, request_json};
use tero_e2e::wait_for;
use tero_proto::controlplane as cp;
use tero_proto::controlplane::admin_service_client::AdminServiceClient;
use tero_proto::policy::policy_service_client::PolicyServiceClient;
use tero_proto::policy::{Policy, SyncRequest, SyncResponse};
use tero_sdk::policy::{policy_set_hash, validate};
use tonic::Code;
use tonic::transport::Channel;

const PROTOBUF: &str = "application/x-protobuf";

// ---------------------------------------------------------------- helpers

fn start(name: &str) -> ControlPlane {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    ControlPlane::start(dir, name)
}

/// A valid metric policy (drops metrics whose name matches `regex`).
fn metric_policy(id: &str, regex: &str) -> Value {
    json!({
        "id": id,
        "name": format!("policy {id}"),
        "metric": {"match": [{"metricField": 1, "regex": regex}], "keep": false}
    })
}

fn create(cp: &ControlPlane, body: Value) -> Value {
    let (status, created) = cp.api("POST", "/api/v1/policies", Some(&body));
    assert_eq!(status, 200, "create {body}: {created}");
    created
}

/// A proto3 JSON 64-bit integer (a string) or a plain number, as i64.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {v}")),
        Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("not an i64: {v}")),
        other => panic!("not a number: {other}"),
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["policies"]
        .as_array()
        .unwrap_or_else(|| panic!("no policies in {list}"))
        .iter()
        .map(|p| p["policy"]["id"].as_str().expect("id").to_owned())
        .collect()
}

/// `{code, message, ...}` of an error body, asserting the status and code.
fn assert_error(got: (u16, Value), status: u16, code: &str) -> Value {
    let (s, body) = got;
    assert_eq!(s, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error explains itself: {body}"
    );
    body
}

fn kv(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// JSON ClientMetadata of an edge.
fn edge_meta(instance: &str, service: &str) -> Value {
    json!({"resourceAttributes": [
        kv("service.instance.id", instance),
        kv("service.name", service),
        kv("service.namespace", "shop"),
        kv("service.version", "1.2.3"),
    ]})
}

/// A JSON Sync with `token`; returns `(status, body)`.
fn sync(cp: &ControlPlane, token: &str, body: &Value) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    request_json(
        "POST",
        &cp.url("/v1/policy/sync"),
        &[("authorization", &bearer)],
        Some(body),
    )
}

fn sync_ok(cp: &ControlPlane, token: &str, body: &Value) -> SyncResponse {
    let (status, resp) = sync(cp, token, body);
    assert_eq!(status, 200, "sync: {resp}");
    serde_json::from_value(resp).expect("a SyncResponse")
}

fn policy_ids(resp: &SyncResponse) -> Vec<&str> {
    resp.policies.iter().map(|p| p.id.as_str()).collect()
}

/// Creates an edge key; returns `(id, secret)`.
fn key(cp: &ControlPlane, name: &str) -> (String, String) {
    let (status, body) = cp.api("POST", "/api/v1/keys", Some(&json!({"name": name})));
    assert_eq!(status, 200, "create key: {body}");
    (
        body["key"]["id"].as_str().expect("key id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// The edge as `GET /api/v1/edges` lists it, once the registry has flushed.
fn wait_for_edge(cp: &ControlPlane, instance: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(Duration::from_secs(10), "the edge in /api/v1/edges", || {
        let (status, body) = cp.api("GET", "/api/v1/edges", None);
        assert_eq!(status, 200, "list edges: {body}");
        body["edges"]
            .as_array()?
            .iter()
            .find(|e| e["instanceId"] == instance)
            .filter(|e| check(e))
            .cloned()
    })
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

async fn channel(cp: &ControlPlane) -> Channel {
    Channel::from_shared(cp.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect over h2c")
}

fn metadata(status: &tonic::Status, key: &str) -> Option<String> {
    status
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn policy_pb(v: Value) -> Policy {
    let mut v = v;
    v["enabled"] = true.into();
    serde_json::from_value(v).expect("a Policy")
}

fn meta_pb(instance: &str, service: &str) -> tero_proto::policy::ClientMetadata {
    serde_json::from_value(edge_meta(instance, service)).expect("ClientMetadata")
}

// ------------------------------------------------------- HTTP: policies

#[test]
fn http_policy_lifecycle_with_revisions_history_and_conflicts() {
    let cp = start("lifecycle");
    let body = json!({
        "policy": {"id": "drop-debug", "name": "drop debug",
                   "metric": {"match": [{"metricField": 1, "regex": "^debug_"}], "keep": false}},
        "reason": "too noisy"
    });
    let created = create(&cp, body.clone());
    assert_eq!(created["policy"]["id"], "drop-debug");
    assert_eq!(
        created["policy"]["enabled"], true,
        "enabled defaults to true"
    );
    assert_eq!(int(&created["revision"]), 1);
    assert_eq!(created["createdBy"], "admin");
    assert_eq!(created["updatedBy"], "admin");
    assert!(int(&created["createdAtUnixMs"]) > 0);
    assert_eq!(created["scope"]["matchers"], json!([]));

    let (status, got) = cp.api("GET", "/api/v1/policies/drop-debug", None);
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, created, "get returns what create returned");

    // The same id again.
    let err = assert_error(
        cp.api("POST", "/api/v1/policies", Some(&body)),
        409,
        "ALREADY_EXISTS",
    );
    assert!(
        err["message"].as_str().unwrap().contains("drop-debug"),
        "{err}"
    );

    // Update against the current revision.
    let mut changed = body["policy"].clone();
    changed["description"] = "debug metrics".into();
    let (status, updated) = cp.api(
        "PUT",
        "/api/v1/policies/drop-debug",
        Some(&json!({"policy": changed, "expectedRevision": "1", "reason": "describe"})),
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(int(&updated["revision"]), 2);
    assert_eq!(updated["policy"]["description"], "debug metrics");
    assert_eq!(
        updated["policy"]["createdAtUnixNano"], created["policy"]["createdAtUnixNano"],
        "an update keeps the creation time"
    );

    // A stale revision: 409 ABORTED with the current revision.
    let stale = assert_error(
        cp.api(
            "PUT",
            "/api/v1/policies/drop-debug",
            Some(&json!({"policy": changed, "expectedRevision": 1})),
        ),
        409,
        "ABORTED",
    );
    assert_eq!(int(&stale["currentRevision"]), 2, "{stale}");

    // No expected revision at all.
    let missing = assert_error(
        cp.api(
            "PUT",
            "/api/v1/policies/drop-debug",
            Some(&json!({"policy": changed})),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(missing["field"], "expected_revision", "{missing}");

    // The URL and the body disagree on the id.
    let mismatch = assert_error(
        cp.api(
            "PUT",
            "/api/v1/policies/drop-debug",
            Some(&json!({"policy": metric_policy("other", "x"), "expectedRevision": "2"})),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(mismatch["field"], "policy.id", "{mismatch}");

    // Disable, then enable: each a revision; a stale one is refused.
    let (status, disabled) = cp.api("POST", "/api/v1/policies/drop-debug/disable", None);
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["policy"]["enabled"], false);
    assert_eq!(int(&disabled["revision"]), 3);
    let stale_enable = assert_error(
        cp.api(
            "POST",
            "/api/v1/policies/drop-debug/enable",
            Some(&json!({"expectedRevision": "2"})),
        ),
        409,
        "ABORTED",
    );
    assert_eq!(int(&stale_enable["currentRevision"]), 3);
    let (status, enabled) = cp.api(
        "POST",
        "/api/v1/policies/drop-debug/enable",
        Some(&json!({"expectedRevision": "3", "reason": "back on"})),
    );
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["policy"]["enabled"], true);
    assert_eq!(int(&enabled["revision"]), 4);
    assert_eq!(
        enabled["policy"]["description"], "debug metrics",
        "enable keeps the content"
    );

    // Delete: a stale revision is refused, the current one deletes.
    let stale_delete = assert_error(
        cp.api(
            "DELETE",
            "/api/v1/policies/drop-debug?expected_revision=3",
            None,
        ),
        409,
        "ABORTED",
    );
    assert_eq!(int(&stale_delete["currentRevision"]), 4);
    let (status, deleted) = cp.api(
        "DELETE",
        "/api/v1/policies/drop-debug?expected_revision=4&reason=obsolete",
        None,
    );
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(int(&deleted["revision"]), 5);
    assert_error(
        cp.api("GET", "/api/v1/policies/drop-debug", None),
        404,
        "NOT_FOUND",
    );
    assert_error(
        cp.api("DELETE", "/api/v1/policies/drop-debug", None),
        404,
        "NOT_FOUND",
    );
    assert_error(
        cp.api(
            "PUT",
            "/api/v1/policies/drop-debug",
            Some(&json!({"policy": changed, "expectedRevision": "5"})),
        ),
        404,
        "NOT_FOUND",
    );

    // History survives the deletion, newest first.
    let (status, history) = cp.api("GET", "/api/v1/policies/drop-debug/history", None);
    assert_eq!(status, 200, "{history}");
    let revisions = history["revisions"].as_array().expect("revisions");
    let summary: Vec<(i64, &str, &str)> = revisions
        .iter()
        .map(|r| {
            (
                int(&r["revision"]),
                r["action"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (5, "delete", "obsolete"),
            (4, "enable", "back on"),
            (3, "disable", ""),
            (2, "update", "describe"),
            (1, "create", "too noisy"),
        ]
    );
    assert!(revisions.iter().all(|r| r["author"] == "admin"));
    assert!(revisions.iter().all(|r| r["policyId"] == "drop-debug"));
    assert!(
        revisions[0].get("policy").is_none_or(Value::is_null),
        "a deletion carries no policy: {}",
        revisions[0]
    );
    assert_eq!(revisions[1]["policy"]["enabled"], true);
    assert_eq!(revisions[2]["policy"]["enabled"], false);
    assert_eq!(revisions[4]["policy"]["description"], "");

    // Ids never seen: every per-policy route says NOT_FOUND.
    for (method, path) in [
        ("GET", "/api/v1/policies/nope"),
        ("DELETE", "/api/v1/policies/nope"),
        ("POST", "/api/v1/policies/nope/enable"),
        ("POST", "/api/v1/policies/nope/disable"),
        ("GET", "/api/v1/policies/nope/history"),
        ("GET", "/api/v1/policies/nope/deployment"),
    ] {
        let err = assert_error(cp.api(method, path, None), 404, "NOT_FOUND");
        assert!(
            err["message"].as_str().unwrap().contains("nope"),
            "{method} {path}: {err}"
        );
    }

    // Re-creating a deleted id continues its revision numbers.
    let again = create(&cp, body);
    assert_eq!(int(&again["revision"]), 6);
}

#[test]
fn http_list_filters_by_label_target_and_state_and_pages() {
    let cp = start("listing");
    let with_labels = |mut p: Value, labels: &[(&str, &str)]| {
        p["labels"] = labels.iter().map(|(k, v)| kv(k, v)).collect();
        json!({ "policy": p })
    };
    create(
        &cp,
        with_labels(
            metric_policy("a-metric", "^a"),
            &[("team", "payments"), ("tier", "1")],
        ),
    );
    create(
        &cp,
        with_labels(metric_policy("b-metric", "^b"), &[("team", "search")]),
    );
    create(
        &cp,
        with_labels(
            json!({"id": "c-log", "name": "c",
                   "log": {"match": [{"logField": 1, "regex": "x"}], "keep": "none"}}),
            &[("team", "payments")],
        ),
    );
    create(
        &cp,
        json!({"policy": {"id": "d-trace", "name": "d", "enabled": false,
                          "trace": {"match": [{"traceField": 1, "exact": "x"}]}}}),
    );
    create(&cp, json!({"policy": metric_policy("e-metric", "^e")}));

    let list = |query: &str| {
        let (status, body) = cp.api("GET", &format!("/api/v1/policies{query}"), None);
        assert_eq!(status, 200, "{query}: {body}");
        body
    };
    let all = list("");
    assert_eq!(
        ids(&all),
        ["a-metric", "b-metric", "c-log", "d-trace", "e-metric"]
    );
    assert_eq!(all["nextPageToken"], "");
    assert_eq!(ids(&list("?label=team%3Dpayments")), ["a-metric", "c-log"]);
    assert_eq!(ids(&list("?label=team=payments")), ["a-metric", "c-log"]);
    assert_eq!(
        ids(&list("?label=team%3Dpayments&label=tier")),
        ["a-metric"],
        "labels are ANDed; a bare key asks for presence"
    );
    assert_eq!(ids(&list("?label=team")), ["a-metric", "b-metric", "c-log"]);
    assert_eq!(ids(&list("?label=team%3Dnobody")), Vec::<String>::new());
    assert_eq!(
        ids(&list("?target=metric")),
        ["a-metric", "b-metric", "e-metric"]
    );
    assert_eq!(ids(&list("?target=log")), ["c-log"]);
    assert_eq!(ids(&list("?target=trace")), ["d-trace"]);
    assert_eq!(ids(&list("?enabled=false")), ["d-trace"]);
    assert_eq!(
        ids(&list("?enabled=true&target=trace")),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&list("?target=metric&label=team%3Dpayments&enabled=true")),
        ["a-metric"]
    );

    // Pages of two, following the tokens; filters hold across pages.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(&format!("?page_size=2&page_token={token}"));
        pages += 1;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2, "{page}");
        seen.extend(page_ids);
        token = page["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids(&all));
    let first = list("?pageSize=2&target=metric");
    assert_eq!(ids(&first), ["a-metric", "b-metric"]);
    let token = first["nextPageToken"].as_str().unwrap();
    assert!(!token.is_empty(), "{first}");
    let second = list(&format!("?pageSize=2&target=metric&pageToken={token}"));
    assert_eq!(ids(&second), ["e-metric"]);
    assert_eq!(second["nextPageToken"], "");
    // A page that is exactly full at the end has no next token.
    let exact = list("?page_size=3&target=metric");
    assert_eq!(ids(&exact), ["a-metric", "b-metric", "e-metric"]);
    assert_eq!(exact["nextPageToken"], "", "{exact}");

    // Bad query parameters name themselves.
    for (query, field) in [
        ("?target=profiles", "target"),
        ("?enabled=maybe", "enabled"),
        ("?page_size=many", "page_size"),
        ("?colour=blue", "colour"),
    ] {
        let err = assert_error(
            cp.api("GET", &format!("/api/v1/policies{query}"), None),
            400,
            "INVALID_ARGUMENT",
        );
        assert_eq!(err["field"], field, "{query}: {err}");
    }
}

#[test]
fn http_invalid_policies_and_scopes_name_the_policy_and_the_field() {
    let cp = start("invalid");
    // Each case: the policy, and the field the SDK validator names first.
    let bad_regex = metric_policy("bad-regex", "([bad");
    let mut no_name = metric_policy("no-name", "^x");
    no_name["name"] = "".into();
    let no_target = json!({"id": "no-target", "name": "n"});
    let empty_match =
        json!({"id": "empty-match", "name": "n", "metric": {"match": [], "keep": false}});
    let mut two_errors = metric_policy("two-errors", "([bad");
    two_errors["name"] = " ".into();
    for policy in [bad_regex, no_name, no_target, empty_match, two_errors] {
        let id = policy["id"].as_str().unwrap().to_owned();
        let invalid = validate(&policy_pb(policy.clone())).expect_err("the SDK refuses it too");
        let sdk_field = format!("policy.{}", invalid.errors[0].field_path());
        let err = assert_error(
            cp.api(
                "POST",
                "/api/v1/policies",
                Some(&json!({ "policy": policy })),
            ),
            400,
            "INVALID_ARGUMENT",
        );
        assert_eq!(err["policyId"], id.as_str(), "{err}");
        assert_eq!(err["field"], sdk_field.as_str(), "{err}");
        // Every problem is in the message, in the SDK's words.
        let message = err["message"].as_str().unwrap();
        for e in &invalid.errors {
            assert!(message.contains(&e.to_string()), "{e} in {message}");
        }
    }
    // The exact paths, so a change in the SDK's naming is noticed here.
    let field_of = |policy: Value| {
        cp.api(
            "POST",
            "/api/v1/policies",
            Some(&json!({ "policy": policy })),
        )
        .1["field"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        field_of(metric_policy("r", "([bad")),
        "policy.metric.match[0].regex"
    );
    assert_eq!(field_of(json!({"id": "t", "name": "t"})), "policy.target");
    let mut unnamed = metric_policy("n", "x");
    unnamed.as_object_mut().unwrap().remove("name");
    assert_eq!(field_of(unnamed), "policy.name");

    // No id: the error has no policy to name, but the field.
    let mut anonymous = metric_policy("", "x");
    anonymous.as_object_mut().unwrap().remove("id");
    let err = assert_error(
        cp.api(
            "POST",
            "/api/v1/policies",
            Some(&json!({ "policy": anonymous })),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err["field"], "policy.id", "{err}");
    assert!(err.get("policyId").is_none(), "{err}");

    // No policy at all.
    let err = assert_error(
        cp.api("POST", "/api/v1/policies", Some(&json!({"reason": "x"}))),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err["field"], "policy", "{err}");

    // Scopes.
    let scoped = |matchers: Value| json!({"policy": metric_policy("scoped", "^x"), "scope": {"matchers": matchers}});
    for (matchers, field) in [
        (
            json!([{"key": "service.name", "operator": "SCOPE_OPERATOR_IN", "values": []}]),
            "scope.matchers[0].values",
        ),
        (
            json!([{"key": "service.name", "operator": "SCOPE_OPERATOR_IN", "values": ["a"]},
                   {"key": "service.name", "operator": "SCOPE_OPERATOR_NOT_IN"}]),
            "scope.matchers[1].values",
        ),
        (
            json!([{"key": "region", "operator": "SCOPE_OPERATOR_EXISTS", "values": ["eu"]}]),
            "scope.matchers[0].values",
        ),
        (
            json!([{"key": " ", "operator": "SCOPE_OPERATOR_EXISTS"}]),
            "scope.matchers[0].key",
        ),
        (
            json!([{"key": "label.", "operator": "SCOPE_OPERATOR_EXISTS"}]),
            "scope.matchers[0].key",
        ),
    ] {
        let err = assert_error(
            cp.api("POST", "/api/v1/policies", Some(&scoped(matchers.clone()))),
            400,
            "INVALID_ARGUMENT",
        );
        assert_eq!(err["field"], field, "{matchers}: {err}");
        assert_eq!(err["policyId"], "scoped", "{err}");
    }

    // Bodies that are not the request at all (an operator number no enum
    // value has fails already in decoding).
    let unknown_operator = serde_json::to_vec(&scoped(
        json!([{"key": "service.name", "operator": 42, "values": ["a"]}]),
    ))
    .unwrap();
    for body in [
        &b"{not json"[..],
        b"[1, 2]",
        b"{\"policy\": 7}",
        &unknown_operator,
    ] {
        let bearer = cp.bearer();
        let r = request_bytes(
            "POST",
            &cp.url("/api/v1/policies"),
            &[("authorization", &bearer)],
            Some(body),
        )
        .expect("request");
        assert_eq!(r.status, 400, "{}", r.text());
        let err: Value = serde_json::from_slice(&r.body).expect("a JSON error");
        assert_eq!(err["code"], "INVALID_ARGUMENT", "{err}");
    }

    // An invalid update is refused the same way and changes nothing.
    create(&cp, json!({"policy": metric_policy("good", "^g")}));
    let err = assert_error(
        cp.api(
            "PUT",
            "/api/v1/policies/good",
            Some(&json!({"policy": metric_policy("good", "([bad"), "expectedRevision": "1"})),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err["field"], "policy.metric.match[0].regex", "{err}");
    assert_eq!(err["policyId"], "good", "{err}");
    let (_, good) = cp.api("GET", "/api/v1/policies/good", None);
    assert_eq!(int(&good["revision"]), 1, "{good}");

    // Nothing invalid was stored or audited.
    let (_, list) = cp.api("GET", "/api/v1/policies", None);
    assert_eq!(ids(&list), ["good"]);
    let (_, audit) = cp.api("GET", "/api/v1/audit", None);
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");
}

/// Issue 16: a regex that parses but compiles to an automaton over the
/// per-policy budget, and an id with control characters, are refused with
/// the field named (the API used to accept both).
#[test]
fn http_oversized_regexes_and_control_characters_in_ids_are_refused() {
    let cp = start("budget");
    let err = assert_error(
        cp.api(
            "POST",
            "/api/v1/policies",
            Some(&json!({ "policy": metric_policy("huge", r"(\w{1000}){1000}") })),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err["field"], "policy.metric.match[0].regex", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("too large"),
        "{err}"
    );
    let err = assert_error(
        cp.api(
            "POST",
            "/api/v1/policies",
            Some(&json!({ "policy": metric_policy("clear\u{1b}[2J", "^x") })),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err["field"], "policy.id", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("control characters"),
        "{err}"
    );
    let (_, list) = cp.api("GET", "/api/v1/policies", None);
    assert!(ids(&list).is_empty(), "nothing stored: {list}");
}

// ----------------------------------------------------------- HTTP: auth

#[test]
fn http_auth_needs_the_admin_token_and_keys_only_sync_until_revoked() {
    let cp = start("auth");
    create(&cp, json!({"policy": metric_policy("secret", "^s")}));
    let (key_id, secret) = key(&cp, "fleet");
    let edge_bearer = format!("Bearer {secret}");
    let wrong = "Bearer not-the-token".to_owned();
    let routes = [
        ("GET", "/api/v1/policies"),
        ("POST", "/api/v1/policies"),
        ("GET", "/api/v1/policies/secret"),
        ("PUT", "/api/v1/policies/secret"),
        ("DELETE", "/api/v1/policies/secret"),
        ("POST", "/api/v1/policies/secret/disable"),
        ("GET", "/api/v1/policies/secret/history"),
        ("GET", "/api/v1/policies/secret/deployment"),
        ("GET", "/api/v1/policies/secret/stats"),
        ("GET", "/api/v1/edges"),
        ("GET", "/api/v1/edges/some-edge"),
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/keys"),
        ("DELETE", &format!("/api/v1/keys/{key_id}")),
        ("GET", "/api/v1/audit"),
    ];
    let body = json!({"policy": metric_policy("secret", "^changed"), "expectedRevision": "1", "name": "k"});
    for (method, path) in routes {
        for (headers, status, code) in [
            (vec![], 401, "UNAUTHENTICATED"),
            (
                vec![("authorization", wrong.as_str())],
                401,
                "UNAUTHENTICATED",
            ),
            (
                vec![("authorization", "Basic YWRtaW46YWRtaW4=")],
                401,
                "UNAUTHENTICATED",
            ),
            (vec![("authorization", "Bearer ")], 401, "UNAUTHENTICATED"),
            (
                vec![("authorization", edge_bearer.as_str())],
                403,
                "PERMISSION_DENIED",
            ),
        ] {
            let payload = serde_json::to_vec(&body).unwrap();
            let r = request_bytes(
                method,
                &cp.url(path),
                &headers,
                (method != "GET" && method != "DELETE").then_some(&payload[..]),
            )
            .expect("request");
            assert_eq!(
                r.status,
                status,
                "{method} {path} {headers:?}: {}",
                r.text()
            );
            let err: Value = serde_json::from_slice(&r.body).expect("a JSON error");
            assert_eq!(err["code"], code, "{method} {path}: {err}");
            let keys: Vec<&String> = err.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["code", "message"], "no data leaks: {err}");
            if status == 401 {
                assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            }
        }
    }
    // Nothing above changed anything.
    let (_, got) = cp.api("GET", "/api/v1/policies/secret", None);
    assert_eq!(int(&got["revision"]), 1, "{got}");
    let (_, keys) = cp.api("GET", "/api/v1/keys", None);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys["keys"][0]["id"], key_id.as_str());
    assert_eq!(keys["keys"][0]["name"], "fleet");
    assert!(
        secret.starts_with(keys["keys"][0]["prefix"].as_str().unwrap()),
        "the prefix is the start of the secret"
    );
    assert!(
        !keys.to_string().contains(&secret),
        "the secret is never listed"
    );

    // Sync: the key and the admin token pass; nothing else does.
    let req = json!({"clientMetadata": edge_meta("edge-1", "checkout")});
    assert_eq!(policy_ids(&sync_ok(&cp, &secret, &req)), ["secret"]);
    assert_eq!(policy_ids(&sync_ok(&cp, &cp.admin_token, &req)), ["secret"]);
    for headers in [vec![], vec![("authorization", wrong.as_str())]] {
        let (status, err) = request_json("POST", &cp.url("/v1/policy/sync"), &headers, Some(&req));
        assert_eq!(status, 401, "{err}");
        assert_eq!(err["code"], "UNAUTHENTICATED");
        assert!(err.get("policies").is_none(), "{err}");
    }
    // A key never issued, in the right format.
    let forged = format!("tero_ek_{}", "0".repeat(64));
    assert_error(sync(&cp, &forged, &req), 401, "UNAUTHENTICATED");

    // Revoked: Sync refuses the key at once (it was cached by the syncs above).
    let (status, revoked) = cp.api("DELETE", &format!("/api/v1/keys/{key_id}"), None);
    assert_eq!(status, 200, "{revoked}");
    assert!(int(&revoked["revokedAtUnixMs"]) > 0, "{revoked}");
    assert_error(sync(&cp, &secret, &req), 401, "UNAUTHENTICATED");
    // Revoking again is harmless and keeps the first time.
    let (status, again) = cp.api("DELETE", &format!("/api/v1/keys/{key_id}"), None);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["revokedAtUnixMs"], revoked["revokedAtUnixMs"]);
    assert_error(
        cp.api("DELETE", "/api/v1/keys/key_nope", None),
        404,
        "NOT_FOUND",
    );
    let (_, active) = cp.api("GET", "/api/v1/keys", None);
    assert_eq!(active["keys"], json!([]), "{active}");
    let (_, all) = cp.api("GET", "/api/v1/keys?include_revoked=true", None);
    assert_eq!(all["keys"][0]["id"], key_id.as_str(), "{all}");
    // A key needs a name.
    let err = assert_error(
        cp.api("POST", "/api/v1/keys", Some(&json!({"name": "  "}))),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err["field"], "name");
    // A new key works while the old one stays refused.
    let (_, fresh) = key(&cp, "fleet-2");
    sync_ok(&cp, &fresh, &req);
    assert_error(sync(&cp, &secret, &req), 401, "UNAUTHENTICATED");
}

#[test]
fn http_unknown_paths_and_methods_and_probes() {
    let cp = start("routes");
    for path in ["/nope", "/api/v1/nope", "/api/v2/policies", "/v1/policy"] {
        let (status, err) = cp.api("GET", path, None);
        assert_eq!(status, 404, "{path}: {err}");
        assert_eq!(err["code"], "NOT_FOUND", "{path}: {err}");
        assert!(err["message"].as_str().unwrap().contains(path), "{err}");
        // Without credentials too: an unknown route is not a secret.
        let (status, err) = request_json("GET", &cp.url(path), &[], None);
        assert_eq!((status, err["code"].as_str()), (404, Some("NOT_FOUND")));
    }
    let r = request_bytes("GET", &cp.url("/nope"), &[], None).unwrap();
    assert_eq!(r.header("content-type"), Some("application/json"));
    // A known path with a method it does not serve.
    let r = request_bytes(
        "PATCH",
        &cp.url("/api/v1/policies"),
        &[("authorization", &cp.bearer())],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 405, "{}", r.text());
    // The probes need no credentials.
    let r = request_bytes("GET", &cp.url("/healthz"), &[], None).unwrap();
    assert_eq!((r.status, r.text().trim()), (200, "ok"));
    let r = request_bytes("GET", &cp.url("/readyz"), &[], None).unwrap();
    assert_eq!((r.status, r.text().trim()), (200, "ready"));
}

#[test]
fn http_audit_log_records_who_did_what_to_which_target() {
    let cp = start("audit");
    create(
        &cp,
        json!({"policy": metric_policy("p1", "^a"), "reason": "first"}),
    );
    let (status, _) = cp.api(
        "PUT",
        "/api/v1/policies/p1",
        Some(&json!({"policy": metric_policy("p1", "^b"), "expectedRevision": "1"})),
    );
    assert_eq!(status, 200);
    let (status, _) = cp.api("POST", "/api/v1/policies/p1/disable", None);
    assert_eq!(status, 200);
    let (key_id, _) = key(&cp, "fleet");
    let (status, _) = cp.api("DELETE", &format!("/api/v1/keys/{key_id}"), None);
    assert_eq!(status, 200);
    let (status, _) = cp.api("DELETE", "/api/v1/policies/p1", None);
    assert_eq!(status, 200);
    // Refused requests leave no trace.
    let (status, _) = cp.api(
        "PUT",
        "/api/v1/policies/p1",
        Some(&json!({"policy": metric_policy("p1", "^c"), "expectedRevision": "9"})),
    );
    assert_eq!(status, 404);

    let (status, audit) = cp.api("GET", "/api/v1/audit", None);
    assert_eq!(status, 200, "{audit}");
    let events = audit["events"].as_array().expect("events");
    let summary: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("admin", "policy.create", "p1"),
            ("admin", "policy.update", "p1"),
            ("admin", "policy.disable", "p1"),
            ("admin", "api_key.create", key_id.as_str()),
            ("admin", "api_key.revoke", key_id.as_str()),
            ("admin", "policy.delete", "p1"),
        ]
    );
    let seqs: Vec<i64> = events.iter().map(|e| int(&e["seq"])).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(events.iter().all(|e| int(&e["atUnixMs"]) > 0));
    let detail: Value =
        serde_json::from_str(events[0]["detail"].as_str().unwrap()).expect("detail is JSON");
    assert_eq!(detail["reason"], "first", "{detail}");
    assert_eq!(detail["policy"]["id"], "p1", "{detail}");
    let key_detail = events[3]["detail"].as_str().unwrap();
    assert!(key_detail.contains("fleet"), "{key_detail}");

    // Filtered by target, and continued after a sequence number.
    let (_, for_key) = cp.api("GET", &format!("/api/v1/audit?target={key_id}"), None);
    let actions: Vec<&str> = for_key["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["api_key.create", "api_key.revoke"]);
    let (_, after) = cp.api(
        "GET",
        &format!("/api/v1/audit?after_seq={}&page_size=2", seqs[1]),
        None,
    );
    let after_seqs: Vec<i64> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| int(&e["seq"]))
        .collect();
    assert_eq!(after_seqs, seqs[2..4]);
}

// ----------------------------------------------------------- HTTP: Sync

#[test]
fn http_sync_answers_json_and_protobuf_with_one_hash() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cp = ControlPlane::start_with(dir, "sync", None, &["--sync-interval-secs", "7"]);
    create(&cp, json!({"policy": metric_policy("a", "^a")}));
    create(&cp, json!({"policy": metric_policy("b", "^b")}));
    let (_, secret) = key(&cp, "fleet");
    let req = json!({"clientMetadata": edge_meta("edge-1", "checkout"), "fullSync": true});

    let json_resp = sync_ok(&cp, &secret, &req);
    assert_eq!(policy_ids(&json_resp), ["a", "b"]);
    assert_eq!(json_resp.hash, policy_set_hash(&json_resp.policies));
    assert_eq!(json_resp.recommended_sync_interval_seconds, 7);
    assert_eq!(json_resp.sync_type, 1);
    assert_eq!(json_resp.error_message, "");
    assert!(json_resp.sync_timestamp_unix_nano > 0);
    assert!(json_resp.policies.iter().all(|p| p.enabled));
    // The raw JSON: tero.policy.v1 enums are numbers.
    let (_, raw) = sync(&cp, &secret, &req);
    assert_eq!(raw["syncType"], 1, "{raw}");
    assert_eq!(raw["recommendedSyncIntervalSeconds"], 7, "{raw}");
    assert_eq!(raw["policies"][0]["metric"]["match"][0]["metricField"], 1);

    // Protobuf in, protobuf out.
    let bearer = format!("Bearer {secret}");
    let request: SyncRequest = serde_json::from_value(req.clone()).unwrap();
    let r = request_bytes(
        "POST",
        &cp.url("/v1/policy/sync"),
        &[
            ("authorization", &bearer),
            ("content-type", PROTOBUF),
            ("accept", PROTOBUF),
        ],
        Some(&request.encode_to_vec()),
    )
    .expect("protobuf sync");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(PROTOBUF));
    let mut pb = SyncResponse::decode(r.body.as_slice()).expect("a protobuf SyncResponse");
    assert_eq!(pb.hash, json_resp.hash);
    assert!(pb.sync_timestamp_unix_nano >= json_resp.sync_timestamp_unix_nano);
    pb.sync_timestamp_unix_nano = json_resp.sync_timestamp_unix_nano;
    assert_eq!(pb, json_resp, "the two encodings carry the same response");
    // Protobuf in, JSON out (no Accept).
    let r = request_bytes(
        "POST",
        &cp.url("/v1/policy/sync"),
        &[("authorization", &bearer), ("content-type", PROTOBUF)],
        Some(&request.encode_to_vec()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let mixed: SyncResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(mixed.hash, json_resp.hash);
    // JSON in, protobuf out.
    let r = request_bytes(
        "POST",
        &cp.url("/v1/policy/sync"),
        &[("authorization", &bearer), ("accept", PROTOBUF)],
        Some(&serde_json::to_vec(&req).unwrap()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        SyncResponse::decode(r.body.as_slice()).unwrap().hash,
        json_resp.hash
    );

    // The hash follows the content.
    let (status, _) = cp.api(
        "PUT",
        "/api/v1/policies/b",
        Some(&json!({"policy": metric_policy("b", "^bb"), "expectedRevision": "1"})),
    );
    assert_eq!(status, 200);
    let changed = sync_ok(&cp, &secret, &req);
    assert_ne!(changed.hash, json_resp.hash);
    assert_eq!(changed.hash, policy_set_hash(&changed.policies));
    let b = changed.policies.iter().find(|p| p.id == "b").unwrap();
    assert_eq!(
        serde_json::to_value(b).unwrap()["metric"]["match"][0]["regex"],
        "^bb"
    );
    // Disabled policies are not delivered; enabling brings them back.
    let (status, _) = cp.api("POST", "/api/v1/policies/a/disable", None);
    assert_eq!(status, 200);
    let without_a = sync_ok(&cp, &secret, &req);
    assert_eq!(policy_ids(&without_a), ["b"]);
    assert_eq!(without_a.hash, policy_set_hash(&without_a.policies));
    let (status, _) = cp.api("POST", "/api/v1/policies/a/enable", None);
    assert_eq!(status, 200);
    assert_eq!(policy_ids(&sync_ok(&cp, &secret, &req)), ["a", "b"]);
    // Deleting empties the set; the empty set has a hash too.
    for id in ["a", "b"] {
        let (status, _) = cp.api("DELETE", &format!("/api/v1/policies/{id}"), None);
        assert_eq!(status, 200);
    }
    let empty = sync_ok(&cp, &secret, &req);
    assert!(empty.policies.is_empty());
    assert_eq!(empty.hash, policy_set_hash(&[]));

    // Errors: the wrong method, and bodies that are no SyncRequest.
    let r = request_bytes(
        "GET",
        &cp.url("/v1/policy/sync"),
        &[("authorization", &bearer)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 405, "{}", r.text());
    for (body, content_type) in [
        (&b"{not json"[..], "application/json"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b"{\"clientMetadata\": 5}", "application/json"),
        (b"\xff\xff\xff\xff", PROTOBUF),
    ] {
        let r = request_bytes(
            "POST",
            &cp.url("/v1/policy/sync"),
            &[("authorization", &bearer), ("content-type", content_type)],
            Some(body),
        )
        .unwrap();
        assert_eq!(r.status, 400, "{body:?}: {}", r.text());
        let err: Value = serde_json::from_slice(&r.body).expect("a JSON error");
        assert_eq!(err["code"], "INVALID_ARGUMENT", "{err}");
        assert_eq!(err["field"], "body", "{err}");
    }
    // An empty protobuf body is a valid (empty) SyncRequest.
    let r = request_bytes(
        "POST",
        &cp.url("/v1/policy/sync"),
        &[("authorization", &bearer), ("content-type", PROTOBUF)],
        Some(b""),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn http_sync_delivers_each_edge_its_scoped_set() {
    let cp = start("scoping");
    create(
        &cp,
        json!({
            "policy": metric_policy("checkout-only", "^c"),
            "scope": {"matchers": [{"key": "service.name", "operator": "SCOPE_OPERATOR_IN", "values": ["checkout"]}]}
        }),
    );
    create(
        &cp,
        json!({
            "policy": metric_policy("not-cart", "^n"),
            "scope": {"matchers": [{"key": "service.name", "operator": "SCOPE_OPERATOR_NOT_IN", "values": ["cart"]}]}
        }),
    );
    create(
        &cp,
        json!({
            "policy": metric_policy("payments-team", "^p"),
            "scope": {"matchers": [{"key": "label.team", "operator": "SCOPE_OPERATOR_IN", "values": ["payments"]}]}
        }),
    );
    create(&cp, json!({"policy": metric_policy("everyone", "^e")}));
    let (status, got) = cp.api("GET", "/api/v1/policies/checkout-only", None);
    assert_eq!(status, 200);
    assert_eq!(
        got["scope"]["matchers"][0]["operator"], "SCOPE_OPERATOR_IN",
        "controlplane enums are names in JSON: {got}"
    );
    let (_, secret) = key(&cp, "fleet");

    let for_edge = |meta: Value| sync_ok(&cp, &secret, &json!({ "clientMetadata": meta }));
    let checkout = for_edge(edge_meta("c-1", "checkout"));
    assert_eq!(
        policy_ids(&checkout),
        ["checkout-only", "everyone", "not-cart"]
    );
    let cart = for_edge(edge_meta("cart-1", "cart"));
    assert_eq!(policy_ids(&cart), ["everyone"]);
    let mut payments_meta = edge_meta("cart-2", "cart");
    payments_meta["labels"] = json!([kv("team", "payments")]);
    assert_eq!(
        policy_ids(&for_edge(payments_meta)),
        ["everyone", "payments-team"]
    );
    let anonymous = for_edge(json!({}));
    assert_eq!(policy_ids(&anonymous), ["everyone", "not-cart"]);
    // Each set hashes as itself; replicas of one service share a hash.
    for resp in [&checkout, &cart, &anonymous] {
        assert_eq!(resp.hash, policy_set_hash(&resp.policies));
    }
    assert_ne!(checkout.hash, cart.hash);
    assert_eq!(for_edge(edge_meta("c-2", "checkout")).hash, checkout.hash);
    // An edge declaring only the log stage gets no metric policies.
    let logs_only = for_edge(json!({
        "resourceAttributes": [kv("service.name", "checkout")],
        "supportedPolicyStages": [1]
    }));
    assert!(logs_only.policies.is_empty(), "{:?}", logs_only.policies);

    // Re-scoping moves the policy.
    let (status, moved) = cp.api(
        "PUT",
        "/api/v1/policies/checkout-only",
        Some(&json!({
            "policy": metric_policy("checkout-only", "^c"),
            "scope": {"matchers": [{"key": "service.name", "values": ["cart"]}]},
            "expectedRevision": "1"
        })),
    );
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        policy_ids(&for_edge(edge_meta("cart-1", "cart"))),
        ["checkout-only", "everyone"],
        "an unspecified operator means IN"
    );
    assert_eq!(
        policy_ids(&for_edge(edge_meta("c-1", "checkout"))),
        ["everyone", "not-cart"]
    );
}

#[test]
fn http_sync_reports_stats_errors_and_the_fleet_view() {
    let cp = start("fleet");
    create(&cp, json!({"policy": metric_policy("counted", "^c")}));
    create(&cp, json!({"policy": metric_policy("broken", "^b")}));
    let (key_id, secret) = key(&cp, "fleet");

    // Edge 1 polls twice, reporting counters and errors for one policy.
    let first = sync_ok(
        &cp,
        &secret,
        &json!({"clientMetadata": edge_meta("edge-1", "checkout")}),
    );
    let hash = first.hash.clone();
    let report = |hits: i64, misses: i64| {
        json!({
            "clientMetadata": edge_meta("edge-1", "checkout"),
            "lastSuccessfulHash": hash,
            "policyStatuses": [
                {"id": "counted", "matchHits": hits.to_string(), "matchMisses": misses},
                {"id": "broken", "matchHits": "0", "matchMisses": "0",
                 "errors": ["metric: match[0]: unsupported here"]}
            ]
        })
    };
    sync_ok(&cp, &secret, &report(5, 7));
    sync_ok(&cp, &secret, &report(3, 0));
    // Negative deltas are ignored rather than subtracted.
    sync_ok(&cp, &secret, &report(-100, -100));

    // Counters are stored before the answer: no waiting needed.
    let (status, stats) = cp.api("GET", "/api/v1/policies/counted/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["policyId"], "counted");
    assert_eq!(int(&stats["total"]["hits"]), 8, "{stats}");
    assert_eq!(int(&stats["total"]["misses"]), 7, "{stats}");
    let buckets = stats["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty() && buckets.len() <= 2, "{stats}");
    let summed: i64 = buckets.iter().map(|b| int(&b["hits"])).sum();
    assert_eq!(summed, 8);
    assert!(int(&stats["fromUnixMs"]) < int(&stats["toUnixMs"]));
    // A window in the past holds nothing; a backwards window is refused.
    let (_, past) = cp.api(
        "GET",
        "/api/v1/policies/counted/stats?from_unix_ms=1000&to_unix_ms=2000",
        None,
    );
    assert_eq!(int(&past["total"]["hits"]), 0, "{past}");
    assert_eq!(past["buckets"], json!([]));
    let err = assert_error(
        cp.api(
            "GET",
            "/api/v1/policies/counted/stats?from_unix_ms=2000&to_unix_ms=1000",
            None,
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err["field"], "from_unix_ms");
    let (_, quiet) = cp.api("GET", "/api/v1/policies/broken/stats", None);
    assert_eq!(int(&quiet["total"]["hits"]), 0, "{quiet}");

    // Edge 2 runs the current set cleanly; edge 3 reports an old hash.
    sync_ok(
        &cp,
        &secret,
        &json!({"clientMetadata": edge_meta("edge-2", "checkout"), "lastSuccessfulHash": hash}),
    );
    sync_ok(
        &cp,
        &cp.admin_token,
        &json!({"clientMetadata": edge_meta("edge-3", "cart"), "lastSuccessfulHash": "0ld"}),
    );

    // The fleet view, once the registry has flushed.
    let edge = wait_for_edge(&cp, "edge-1", |e| e["appliedHash"] == hash.as_str());
    assert_eq!(edge["transport"], "TRANSPORT_POLL", "{edge}");
    assert_eq!(edge["state"], "EDGE_STATE_CONNECTED", "{edge}");
    assert_eq!(edge["desiredHash"], hash.as_str(), "{edge}");
    assert_eq!(edge["serviceName"], "checkout");
    assert_eq!(edge["serviceNamespace"], "shop");
    assert_eq!(edge["serviceVersion"], "1.2.3");
    assert_eq!(edge["apiKeyId"], key_id.as_str());
    assert_eq!(edge["replica"], "fleet");
    assert_eq!(edge["lastFailedHash"], "");
    assert!(int(&edge["firstSeenUnixMs"]) <= int(&edge["lastSeenUnixMs"]));
    assert_eq!(
        edge["policyErrors"],
        json!([{"policyId": "broken", "errors": ["metric: match[0]: unsupported here"]}]),
        "only policies with errors are listed: {edge}"
    );
    assert_eq!(
        edge["clientMetadata"]["resourceAttributes"][1],
        kv("service.name", "checkout")
    );
    let edge3 = wait_for_edge(&cp, "edge-3", |_| true);
    assert_eq!(edge3["apiKeyId"], "", "an admin token is no key: {edge3}");
    wait_for_edge(&cp, "edge-2", |_| true);

    // One edge by id; unknown ids are NOT_FOUND.
    let (status, one) = cp.api("GET", "/api/v1/edges/edge-1", None);
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["instanceId"], "edge-1");
    assert_eq!(one["policyErrors"], edge["policyErrors"]);
    assert_error(
        cp.api("GET", "/api/v1/edges/edge-404", None),
        404,
        "NOT_FOUND",
    );
    // Filters and paging.
    let (_, by_service) = cp.api("GET", "/api/v1/edges?service_name=checkout", None);
    let listed: Vec<&str> = by_service["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["edge-1", "edge-2"]);
    let (_, page) = cp.api("GET", "/api/v1/edges?page_size=2", None);
    assert_eq!(page["edges"].as_array().unwrap().len(), 2);
    assert_eq!(page["nextPageToken"], "edge-2", "{page}");
    let (_, rest) = cp.api("GET", "/api/v1/edges?page_size=2&page_token=edge-2", None);
    assert_eq!(rest["edges"][0]["instanceId"], "edge-3");
    assert_eq!(rest["nextPageToken"], "");
    assert_error(
        cp.api("GET", "/api/v1/edges?include_gone=perhaps", None),
        400,
        "INVALID_ARGUMENT",
    );

    // Deployment: every edge is targeted; the error counts as a failure.
    let (status, broken) = cp.api("GET", "/api/v1/policies/broken/deployment", None);
    assert_eq!(status, 200, "{broken}");
    assert_eq!(broken["policyId"], "broken");
    assert_eq!(broken["targeted"], 3, "{broken}");
    assert_eq!(
        broken["failed"],
        json!([{"instanceId": "edge-1", "errors": ["metric: match[0]: unsupported here"]}])
    );
    assert_eq!(broken["applied"], 1, "edge-2: {broken}");
    assert_eq!(broken["pending"], 1, "edge-3: {broken}");
    let (_, counted) = cp.api("GET", "/api/v1/policies/counted/deployment", None);
    assert_eq!(counted["failed"], json!([]), "{counted}");
    assert_eq!(
        (
            &counted["targeted"],
            &counted["applied"],
            &counted["pending"]
        ),
        (&json!(3), &json!(2), &json!(1)),
        "{counted}"
    );

    // Edge 1 reports the errors gone: the failure clears.
    sync_ok(
        &cp,
        &secret,
        &json!({"clientMetadata": edge_meta("edge-1", "checkout"), "lastSuccessfulHash": hash}),
    );
    wait_for_edge(&cp, "edge-1", |e| e["policyErrors"] == json!([]));
    let (_, healed) = cp.api("GET", "/api/v1/policies/broken/deployment", None);
    assert_eq!(healed["failed"], json!([]), "{healed}");
    assert_eq!(healed["applied"], 2, "{healed}");

    // A change makes applied edges pending until they report the new hash.
    let (status, _) = cp.api("POST", "/api/v1/policies/broken/disable", None);
    assert_eq!(status, 200);
    let (_, counted) = cp.api("GET", "/api/v1/policies/counted/deployment", None);
    assert_eq!(
        (&counted["applied"], &counted["pending"]),
        (&json!(0), &json!(3)),
        "{counted}"
    );
    let (_, disabled) = cp.api("GET", "/api/v1/policies/broken/deployment", None);
    assert_eq!(
        disabled["targeted"], 0,
        "a disabled policy runs nowhere: {disabled}"
    );
}

// ------------------------------------------------------------------ gRPC

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_admin_service_mirrors_http_including_errors() {
    let cp = start("grpc-admin");
    let token = cp.admin_token.clone();
    let mut admin = AdminServiceClient::new(channel(&cp).await);
    let policy = policy_pb(metric_policy("via-grpc", "^g"));

    let created = admin
        .create_policy(authed(
            cp::CreatePolicyRequest {
                policy: Some(policy.clone()),
                scope: None,
                reason: "grpc".into(),
            },
            &token,
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.revision, 1);
    assert_eq!(created.created_by, "admin");
    assert!(created.policy.as_ref().unwrap().enabled);
    // The same object over HTTP.
    let (status, over_http) = cp.api("GET", "/api/v1/policies/via-grpc", None);
    assert_eq!(status, 200);
    let from_http: cp::ManagedPolicy = serde_json::from_value(over_http).unwrap();
    assert_eq!(from_http, created);
    let got = admin
        .get_policy(authed(
            cp::GetPolicyRequest {
                id: "via-grpc".into(),
            },
            &token,
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, created);

    // Duplicate.
    let err = admin
        .create_policy(authed(
            cp::CreatePolicyRequest {
                policy: Some(policy.clone()),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // Update, then a stale update.
    let mut changed = policy.clone();
    changed.description = "changed".into();
    let update = |expected_revision: u64| cp::UpdatePolicyRequest {
        policy: Some(changed.clone()),
        scope: None,
        expected_revision,
        reason: String::new(),
    };
    let updated = admin
        .update_policy(authed(update(1), &token))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.revision, 2);
    let stale = admin
        .update_policy(authed(update(1), &token))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert_eq!(
        metadata(&stale, "tero-current-revision").as_deref(),
        Some("2")
    );
    let missing = admin
        .update_policy(authed(update(0), &token))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    assert_eq!(
        metadata(&missing, "tero-field").as_deref(),
        Some("expected_revision")
    );

    // Invalid policy and invalid scope name their field.
    let invalid = admin
        .create_policy(authed(
            cp::CreatePolicyRequest {
                policy: Some(policy_pb(metric_policy("bad", "([bad"))),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
    assert_eq!(
        metadata(&invalid, "tero-field").as_deref(),
        Some("policy.metric.match[0].regex")
    );
    assert_eq!(metadata(&invalid, "tero-policy-id").as_deref(), Some("bad"));
    assert!(invalid.message().contains("([bad"), "{invalid:?}");
    let bad_scope = admin
        .create_policy(authed(
            cp::CreatePolicyRequest {
                policy: Some(policy_pb(metric_policy("scoped", "^s"))),
                scope: Some(cp::Scope {
                    matchers: vec![cp::ScopeMatcher {
                        key: "service.name".into(),
                        operator: cp::ScopeOperator::In as i32,
                        values: vec![],
                    }],
                }),
                reason: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_scope.code(), Code::InvalidArgument);
    assert_eq!(
        metadata(&bad_scope, "tero-field").as_deref(),
        Some("scope.matchers[0].values")
    );
    let bad_operator = admin
        .create_policy(authed(
            cp::CreatePolicyRequest {
                policy: Some(policy_pb(metric_policy("scoped", "^s"))),
                scope: Some(cp::Scope {
                    matchers: vec![cp::ScopeMatcher {
                        key: "service.name".into(),
                        operator: 42,
                        values: vec!["a".into()],
                    }],
                }),
                reason: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_operator.code(), Code::InvalidArgument);
    assert_eq!(
        metadata(&bad_operator, "tero-field").as_deref(),
        Some("scope.matchers[0].operator")
    );
    assert_eq!(
        metadata(&bad_operator, "tero-policy-id").as_deref(),
        Some("scoped")
    );
    let no_policy = admin
        .create_policy(authed(cp::CreatePolicyRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(no_policy.code(), Code::InvalidArgument);
    assert_eq!(
        metadata(&no_policy, "tero-field").as_deref(),
        Some("policy")
    );

    // Not found, and a missing id.
    let nope = admin
        .get_policy(authed(cp::GetPolicyRequest { id: "nope".into() }, &token))
        .await
        .unwrap_err();
    assert_eq!(nope.code(), Code::NotFound, "{nope:?}");
    let blank = admin
        .get_policy(authed(cp::GetPolicyRequest { id: " ".into() }, &token))
        .await
        .unwrap_err();
    assert_eq!(blank.code(), Code::InvalidArgument);
    assert_eq!(metadata(&blank, "tero-field").as_deref(), Some("id"));

    // Authentication: missing, wrong, and an edge key.
    let anonymous = admin
        .get_policy(tonic::Request::new(cp::GetPolicyRequest {
            id: "via-grpc".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    let wrong = admin
        .list_policies(authed(cp::ListPoliciesRequest::default(), "wrong"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let (_, secret) = key(&cp, "fleet");
    let edge = admin
        .list_policies(authed(cp::ListPoliciesRequest::default(), &secret))
        .await
        .unwrap_err();
    assert_eq!(edge.code(), Code::PermissionDenied, "{edge:?}");
    let mint = admin
        .create_api_key(authed(
            cp::CreateApiKeyRequest {
                name: "more".into(),
            },
            &secret,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        mint.code(),
        Code::PermissionDenied,
        "an edge key mints no keys"
    );

    // Enable/disable, list with the optional `enabled`, history, delete.
    let disabled = admin
        .set_policy_enabled(authed(
            cp::SetPolicyEnabledRequest {
                id: "via-grpc".into(),
                enabled: false,
                expected_revision: 2,
                reason: String::new(),
            },
            &token,
        ))
        .await
        .expect("disable")
        .into_inner();
    assert_eq!(disabled.revision, 3);
    assert!(!disabled.policy.unwrap().enabled);
    create(&cp, json!({"policy": metric_policy("other", "^o")}));
    let list = |enabled: Option<bool>| cp::ListPoliciesRequest {
        enabled,
        ..Default::default()
    };
    let ids_of = |r: cp::ListPoliciesResponse| -> Vec<String> {
        r.policies
            .into_iter()
            .map(|p| p.policy.unwrap().id)
            .collect()
    };
    let off = admin
        .list_policies(authed(list(Some(false)), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids_of(off), ["via-grpc"]);
    let on = admin
        .list_policies(authed(list(Some(true)), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids_of(on), ["other"]);
    let all = admin
        .list_policies(authed(list(None), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids_of(all), ["other", "via-grpc"]);
    let history = admin
        .get_policy_history(authed(
            cp::GetPolicyHistoryRequest {
                id: "via-grpc".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<(u64, String)> = history
        .revisions
        .into_iter()
        .map(|r| (r.revision, r.action))
        .collect();
    assert_eq!(
        actions,
        [
            (3, "disable".to_owned()),
            (2, "update".to_owned()),
            (1, "create".to_owned())
        ]
    );
    let stale_delete = admin
        .delete_policy(authed(
            cp::DeletePolicyRequest {
                id: "via-grpc".into(),
                expected_revision: 1,
                reason: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(stale_delete.code(), Code::Aborted);
    assert_eq!(
        metadata(&stale_delete, "tero-current-revision").as_deref(),
        Some("3")
    );
    let deleted = admin
        .delete_policy(authed(
            cp::DeletePolicyRequest {
                id: "via-grpc".into(),
                expected_revision: 3,
                reason: String::new(),
            },
            &token,
        ))
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.revision, 4);
    let (status, _) = cp.api("GET", "/api/v1/policies/via-grpc", None);
    assert_eq!(status, 404);

    // Keys and the audit log over gRPC.
    let made = admin
        .create_api_key(authed(
            cp::CreateApiKeyRequest {
                name: "grpc-key".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let made_key = made.key.unwrap();
    assert!(made.secret.starts_with(&made_key.prefix));
    let revoked = admin
        .revoke_api_key(authed(
            cp::RevokeApiKeyRequest {
                id: made_key.id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at_unix_ms > 0);
    let keys = admin
        .list_api_keys(authed(cp::ListApiKeysRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 1, "the revoked key is not listed");
    let audit = admin
        .list_audit_events(authed(
            cp::ListAuditEventsRequest {
                target: made_key.id.clone(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = audit.events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["api_key.create", "api_key.revoke"]);
    let edge_404 = admin
        .get_edge(authed(
            cp::GetEdgeRequest {
                instance_id: "nobody".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(edge_404.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sync_agrees_with_http_and_checks_keys() {
    let cp = start("grpc-sync");
    create(
        &cp,
        json!({
            "policy": metric_policy("checkout-only", "^c"),
            "scope": {"matchers": [{"key": "service.name", "operator": "SCOPE_OPERATOR_IN", "values": ["checkout"]}]}
        }),
    );
    create(&cp, json!({"policy": metric_policy("everyone", "^e")}));
    let (key_id, secret) = key(&cp, "fleet");
    let mut client = PolicyServiceClient::new(channel(&cp).await);
    let request = |instance: &str, service: &str| SyncRequest {
        client_metadata: Some(meta_pb(instance, service)),
        full_sync: true,
        ..Default::default()
    };

    for service in ["checkout", "cart"] {
        let grpc = client
            .sync(authed(request("g-1", service), &secret))
            .await
            .expect("sync")
            .into_inner();
        let http = sync_ok(
            &cp,
            &secret,
            &json!({"clientMetadata": edge_meta("h-1", service), "fullSync": true}),
        );
        assert_eq!(grpc.hash, http.hash, "{service}");
        assert_eq!(grpc.policies, http.policies, "{service}");
        assert_eq!(grpc.hash, policy_set_hash(&grpc.policies));
        assert_eq!(grpc.recommended_sync_interval_seconds, 30);
        assert_eq!(grpc.sync_type, 1);
        assert!(grpc.sync_timestamp_unix_nano > 0);
    }
    let checkout = client
        .sync(authed(request("g-1", "checkout"), &secret))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy_ids(&checkout), ["checkout-only", "everyone"]);

    // Statistics and the fleet view through gRPC Sync.
    let mut report = request("g-1", "checkout");
    report.last_successful_hash = checkout.hash.clone();
    report.policy_statuses = vec![tero_proto::policy::PolicySyncStatus {
        id: "everyone".into(),
        match_hits: 11,
        match_misses: 2,
        ..Default::default()
    }];
    client.sync(authed(report, &secret)).await.expect("report");
    let (_, stats) = cp.api("GET", "/api/v1/policies/everyone/stats", None);
    assert_eq!(int(&stats["total"]["hits"]), 11, "{stats}");
    assert_eq!(int(&stats["total"]["misses"]), 2, "{stats}");
    let edge = wait_for_edge(&cp, "g-1", |e| e["appliedHash"] == checkout.hash.as_str());
    assert_eq!(edge["transport"], "TRANSPORT_POLL");
    assert_eq!(edge["state"], "EDGE_STATE_CONNECTED");
    assert_eq!(edge["apiKeyId"], key_id.as_str());

    // Credentials.
    let anonymous = client
        .sync(tonic::Request::new(request("g-1", "checkout")))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    let wrong = client
        .sync(authed(request("g-1", "checkout"), "tero_ek_nope"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    client
        .sync(authed(request("g-1", "checkout"), &cp.admin_token))
        .await
        .expect("the admin token may sync");
    let (status, _) = cp.api("DELETE", &format!("/api/v1/keys/{key_id}"), None);
    assert_eq!(status, 200);
    let revoked = client
        .sync(authed(request("g-1", "checkout"), &secret))
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated, "{revoked:?}");
}

// ------------------------------------------- gRPC: health and reflection

/// A prost codec for hand-written messages (tonic-prost is no dependency
/// of the tests; the wire format is all that matters).
struct Codec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> Default for Codec<E, D> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

struct Enc<E>(PhantomData<fn() -> E>);
struct Dec<D>(PhantomData<fn() -> D>);

impl<E: Message + Send + 'static, D: Message + Default + Send + 'static> tonic::codec::Codec
    for Codec<E, D>
{
    type Encode = E;
    type Decode = D;
    type Encoder = Enc<E>;
    type Decoder = Dec<D>;
    fn encoder(&mut self) -> Enc<E> {
        Enc(PhantomData)
    }
    fn decoder(&mut self) -> Dec<D> {
        Dec(PhantomData)
    }
}

impl<E: Message> tonic::codec::Encoder for Enc<E> {
    type Item = E;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: E,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl<D: Message + Default> tonic::codec::Decoder for Dec<D> {
    type Item = D;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<D>, tonic::Status> {
        D::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

#[derive(Clone, PartialEq, Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, Message)]
struct HealthCheckResponse {
    /// 1: SERVING.
    #[prost(int32, tag = "1")]
    status: i32,
}

#[derive(Clone, PartialEq, Message)]
struct ReflectionRequest {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(string, optional, tag = "4")]
    file_containing_symbol: Option<String>,
    #[prost(string, optional, tag = "7")]
    list_services: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ReflectionResponse {
    #[prost(message, optional, tag = "4")]
    file_descriptor_response: Option<FileDescriptorResponse>,
    #[prost(message, optional, tag = "6")]
    list_services_response: Option<ListServiceResponse>,
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptorResponse {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file_descriptor_proto: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    service: Vec<ServiceName>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceName {
    #[prost(string, tag = "1")]
    name: String,
}

async fn health(grpc: &mut tonic::client::Grpc<Channel>, service: &str) -> Result<i32, Code> {
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(HealthCheckRequest {
            service: service.into(),
        }),
        http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check"),
        Codec::<HealthCheckRequest, HealthCheckResponse>::default(),
    )
    .await
    .map(|r| r.into_inner().status)
    .map_err(|s| s.code())
}

async fn reflect(
    grpc: &mut tonic::client::Grpc<Channel>,
    request: ReflectionRequest,
) -> Result<ReflectionResponse, tonic::Status> {
    grpc.ready().await.expect("ready");
    let mut stream = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter([request])),
            http::uri::PathAndQuery::from_static(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            ),
            Codec::<ReflectionRequest, ReflectionResponse>::default(),
        )
        .await
        .expect("reflection stream")
        .into_inner();
    Ok(stream.message().await?.expect("one message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_reflection_and_unknown_methods() {
    let cp = start("grpc-meta");
    let mut grpc = tonic::client::Grpc::new(channel(&cp).await);
    for service in [
        "",
        "tero.controlplane.v1.AdminService",
        "tero.policy.v1.PolicyService",
        "tero.controlplane.v1.EdgeService",
    ] {
        assert_eq!(health(&mut grpc, service).await, Ok(1), "{service:?}");
    }
    assert_eq!(
        health(&mut grpc, "tero.nope.v1.Nope").await,
        Err(Code::NotFound)
    );

    let listed = reflect(
        &mut grpc,
        ReflectionRequest {
            list_services: Some(String::new()),
            ..Default::default()
        },
    )
    .await
    .expect("list services");
    let names: Vec<String> = listed
        .list_services_response
        .expect("a service list")
        .service
        .into_iter()
        .map(|s| s.name)
        .collect();
    for want in [
        "tero.controlplane.v1.AdminService",
        "tero.policy.v1.PolicyService",
        "tero.controlplane.v1.EdgeService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let file = reflect(
        &mut grpc,
        ReflectionRequest {
            file_containing_symbol: Some("tero.controlplane.v1.AdminService".into()),
            ..Default::default()
        },
    )
    .await
    .expect("the file of AdminService");
    let files = file
        .file_descriptor_response
        .expect("descriptors")
        .file_descriptor_proto;
    let descriptors: Vec<prost_types_like::FileName> = files
        .iter()
        .map(|f| prost_types_like::FileName::decode(f.as_slice()).expect("a FileDescriptorProto"))
        .collect();
    assert!(
        descriptors
            .iter()
            .any(|d| d.name == "tero/controlplane/v1/admin.proto"),
        "{descriptors:?}"
    );
    let unknown = reflect(
        &mut grpc,
        ReflectionRequest {
            file_containing_symbol: Some("tero.nope.v1.Nope".into()),
            ..Default::default()
        },
    )
    .await
    .expect_err("an unknown symbol");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // Methods nobody serves: Unimplemented, not an HTTP 404 page.
    for path in [
        "/tero.nope.v1.Nope/Call",
        "/tero.controlplane.v1.AdminService/NoSuchMethod",
    ] {
        grpc.ready().await.unwrap();
        let err = grpc
            .unary(
                tonic::Request::new(HealthCheckRequest::default()),
                http::uri::PathAndQuery::from_static(path),
                Codec::<HealthCheckRequest, HealthCheckResponse>::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{path}: {err:?}");
    }
}

/// Just enough of `google.protobuf.FileDescriptorProto` to read its name.
mod prost_types_like {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileName {
        #[prost(string, tag = "1")]
        pub name: String,
    }
}

#[test]
fn http_update_without_enabled_keeps_the_state_and_stats_need_a_known_policy() {
    let cp = start("cp-enabled-state");
    create(&cp, json!({ "policy": metric_policy("quiet", "^debug_") }));
    let (status, disabled) = cp.api("POST", "/api/v1/policies/quiet/disable", Some(&json!({})));
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["policy"]["enabled"], false);

    // A PUT that says nothing about `enabled` (re-applying the same file)
    // leaves the operator's disable in place.
    let mut edited = metric_policy("quiet", "^debug_|^test_");
    edited["description"] = json!("also test metrics");
    let (status, updated) = cp.api(
        "PUT",
        "/api/v1/policies/quiet",
        Some(&json!({ "policy": edited, "expectedRevision": disabled["revision"] })),
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["policy"]["enabled"], false, "{updated}");
    assert_eq!(updated["policy"]["description"], "also test metrics");

    // Saying it explicitly does change it.
    let mut enabled = edited.clone();
    enabled["enabled"] = json!(true);
    let (status, updated) = cp.api(
        "PUT",
        "/api/v1/policies/quiet",
        Some(&json!({ "policy": enabled, "expectedRevision": updated["revision"] })),
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["policy"]["enabled"], true);

    // Statistics of a policy that never existed: 404; of a deleted one: kept.
    assert_error(
        cp.api("GET", "/api/v1/policies/never/stats", None),
        404,
        "NOT_FOUND",
    );
    let (status, _) = cp.api("DELETE", "/api/v1/policies/quiet", None);
    assert_eq!(status, 200);
    let (status, stats) = cp.api("GET", "/api/v1/policies/quiet/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["policyId"], "quiet");
}

#[test]
fn http_sync_counts_a_named_report_once() {
    let cp = start("cp-named-reports");
    create(
        &cp,
        json!({ "policy": metric_policy("counted", "^debug_") }),
    );
    let bearer = cp.bearer();
    let body = json!({
        "clientMetadata": edge_meta("edge-named-1", "checkout"),
        "policyStatuses": [{"id": "counted", "matchHits": "5", "matchMisses": "1"}],
    });
    let named = |id: &str| {
        request_json(
            "POST",
            &cp.url("/v1/policy/sync"),
            &[("authorization", &bearer), ("tero-stats-report", id)],
            Some(&body),
        )
    };
    // The same report three times (a retry after a lost answer, say): once.
    for _ in 0..3 {
        let (status, resp) = named("session-a/1");
        assert_eq!(status, 200, "{resp}");
    }
    // The next report of that session, and a new session: counted.
    assert_eq!(named("session-a/2").0, 200);
    assert_eq!(named("session-b/1").0, 200);
    // An older seq of a session is a late retry: not counted again.
    assert_eq!(named("session-a/1").0, 200);
    // Unnamed polls are counted every time, as the protocol defines.
    assert_eq!(sync(&cp, &cp.admin_token, &body).0, 200);
    let (_, stats) = cp.api("GET", "/api/v1/policies/counted/stats", None);
    assert_eq!(int(&stats["total"]["hits"]), 5 * 4, "{stats}");
    assert_eq!(int(&stats["total"]["misses"]), 4, "{stats}");

    for bad in ["no-slash", "s/0", "/3", "s/x"] {
        let (status, resp) = named(bad);
        let body = assert_error((status, resp), 400, "INVALID_ARGUMENT");
        assert_eq!(body["field"], "tero-stats-report", "{body}");
    }
    let (_, stats) = cp.api("GET", "/api/v1/policies/counted/stats", None);
    assert_eq!(
        int(&stats["total"]["hits"]),
        5 * 4,
        "refused requests store nothing"
    );
}

/// `POST /api/v1/inventory`, the HTTP twin of `InventoryService/Report`:
/// a key required, a refusal naming the field, JSON and protobuf bodies,
/// and a report retried under the same (session, seq) acknowledged again.
#[test]
fn http_inventory_reports_need_a_key_and_take_json_or_protobuf() {
    let cp = start("inventory-http");
    let (_, secret) = key(&cp, "fleet");
    let edge_bearer = format!("Bearer {secret}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let report = json!({
        "clientMetadata": edge_meta("inv-1", "ledger"),
        "session": "abc",
        "seq": "1",
        "windowStartUnixMs": (now_ms - 60_000).to_string(),
        "windowEndUnixMs": now_ms.to_string(),
        "scrapes": "4",
        "scrapesInventoried": "1",
        "families": [{"name": "ledger_entries_total", "type": "counter", "series": "3"}],
    });
    let post = |headers: &[(&str, &str)], body: &Value| {
        request_json("POST", &cp.url("/api/v1/inventory"), headers, Some(body))
    };

    assert_error(post(&[], &report), 401, "UNAUTHENTICATED");
    let refused = assert_error(
        post(
            &[("authorization", &edge_bearer)],
            &json!({"session": "abc"}),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("client_metadata")),
        "{refused}"
    );
    let (status, body) = request_bytes(
        "POST",
        &cp.url("/api/v1/inventory"),
        &[("authorization", &edge_bearer), ("content-type", PROTOBUF)],
        Some(b"\xff\xff not protobuf"),
    )
    .map(|r| (r.status, r.text()))
    .expect("request");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a protobuf InventoryReport"), "{body}");

    let (status, ack) = post(&[("authorization", &edge_bearer)], &report);
    assert_eq!((status, ack["seq"].as_str()), (200, Some("1")), "{ack}");
    // The same report again, as protobuf: an edge retrying over the other
    // transport after a lost answer.
    let pb: cp::InventoryReport = serde_json::from_value(report.clone()).expect("report");
    let resent = request_bytes(
        "POST",
        &cp.url("/api/v1/inventory"),
        &[("authorization", &edge_bearer), ("content-type", PROTOBUF)],
        Some(&pb.encode_to_vec()),
    )
    .expect("request");
    assert_eq!(resent.status, 200, "{}", resent.text());

    let (status, inventory) = cp.api("GET", "/api/v1/inventory/ledger", None);
    assert_eq!(status, 200, "{inventory}");
    assert_eq!(inventory["instances"], json!(["inv-1"]), "{inventory}");
    assert_eq!(
        inventory["families"][0]["name"], "ledger_entries_total",
        "{inventory}"
    );
}

#[test]
fn http_policies_are_taken_in_the_authoring_form_too() {
    let cp = start("cp-authoring");
    // What `tero policy get -o json`/`-o yaml` shows and what a policy file
    // holds: enum names, bare paths, scalar literals, a map of labels.
    let authoring = json!({
        "id": "probes",
        "name": "Drop probe latency",
        "labels": {"team": "web"},
        "metric": {
            "match": [
                {"metric_field": "name", "exact": "http_server_request_duration_seconds"},
                {"datapoint_attribute": "route", "regex": "^/healthz$"},
                {"datapoint_attribute": "code", "equals": 200}
            ],
            "keep": false
        }
    });
    let created = create(&cp, json!({ "policy": authoring }));
    let policy = &created["policy"];
    assert_eq!(policy["enabled"], true, "{created}");
    assert_eq!(policy["labels"][0]["key"], "team", "{created}");
    let m = &policy["metric"]["match"];
    assert_eq!(m[0]["metricField"], 1, "{created}");
    assert_eq!(
        m[1]["datapointAttribute"]["path"],
        json!(["route"]),
        "{created}"
    );
    assert_eq!(int(&m[2]["equals"]["intValue"]), 200, "{created}");

    // Updates too, and the proto3 JSON form keeps working alongside.
    let mut edited = authoring.clone();
    edited["metric"]["match"][1]["regex"] = json!("^/(healthz|readyz)$");
    let (status, updated) = cp.api(
        "PUT",
        "/api/v1/policies/probes",
        Some(&json!({ "policy": edited, "expectedRevision": created["revision"] })),
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["policy"]["metric"]["match"][1]["regex"],
        "^/(healthz|readyz)$"
    );
    create(&cp, json!({ "policy": metric_policy("wire", "^x_") }));

    // A policy wrong in both forms: the authoring decoder names the field.
    let err = assert_error(
        cp.api(
            "POST",
            "/api/v1/policies",
            Some(&json!({"policy": {
                "id": "typo",
                "name": "t",
                "metric": {"match": [{"metric_field": "nmae", "exact": "x"}], "keep": false}
            }})),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err["policyId"], "typo", "{err}");
    assert_eq!(err["field"], "policy.metric.match[0].metric_field", "{err}");
    assert!(err["message"].as_str().unwrap().contains("nmae"), "{err}");
}
