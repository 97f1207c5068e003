use super::*;
use serde_json::json;

fn load(v: Value) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    Config::from_value(v, &|k| match k {
        "EDGE_KEY" => Some("secret".into()),
        "TERO_LISTEN_PORT" => None,
        _ => None,
    })
}

#[test]
fn redaction_masks_userinfo_query_values_and_fragments() {
    let cases = [
        ("http://app:8080/metrics", "http://app:8080/metrics"),
        (
            "http://user:s3cret@app:8080/metrics",
            "http://***@app:8080/metrics",
        ),
        ("http://t0ken@app/metrics", "http://***@app/metrics"),
        (
            "http://app/metrics?token=s3cret&module=x",
            "http://app/metrics?token=***&module=***",
        ),
        ("http://app/m?s3cret", "http://app/m?***"),
        ("http://app/m?a=1&&b=", "http://app/m?a=***&&b=***"),
        ("http://app/m#s3cret", "http://app/m#***"),
        // The path may hold an `@`; only the authority's is userinfo.
        ("http://app/x@y", "http://app/x@y"),
        ("http://u:p@a@app/m?k=v=w", "http://***@app/m?k=***"),
        // Not a URL at all: still no secret.
        ("u:s3cret@app?key=s3cret", "***@app?key=***"),
        ("", ""),
    ];
    for (url, shown) in cases {
        assert_eq!(redact_url(url), shown, "{url}");
    }
    let uri: Uri = "http://user:s3cret@app:8080/metrics?key=s3cret"
        .parse()
        .unwrap();
    assert_eq!(
        Redacted(&uri).to_string(),
        "http://***@app:8080/metrics?key=***"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    #[test]
    fn redaction_never_panics_and_hides_what_it_masks(
        text in "[ -~]{0,80}",
        user in "[A-Za-z0-9]{1,8}",
        secret in "[A-Z]{12}",
        name in "[a-z]{1,6}",
    ) {
        let _ = redact_url(&text);
        for url in [
            format!("http://{user}:{secret}@app:8080/metrics"),
            format!("http://{secret}@app/metrics?{name}=1"),
            format!("http://app/metrics?{name}={secret}&x={secret}"),
            format!("http://app/metrics?{secret}"),
            format!("http://app/metrics#{secret}"),
        ] {
            let shown = redact_url(&url);
            proptest::prop_assert!(!shown.contains(&secret), "{url} -> {shown}");
        }
    }
}

#[test]
fn config_errors_do_not_repeat_credentials() {
    let e = load(json!({"upstream_url": "ftp://user:s3cret@app/metrics?key=s3cret"}))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("upstream_url: "), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
    assert!(e.contains("***@app"), "{e}");
}

#[test]
fn connection_bounds_default_and_are_checked() {
    let (c, _) = load(json!({"upstream_url": "http://127.0.0.1:8080"})).unwrap();
    assert_eq!(c.max_connections, 256);
    assert_eq!(c.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.idle_timeout, Duration::from_secs(120));
    let (c, w) = load(json!({"upstream_url": "http://a:1", "max_connections": 8,
            "header_read_timeout_secs": 0.5, "idle_timeout_secs": 30}))
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        (c.max_connections, c.header_read_timeout, c.idle_timeout),
        (8, Duration::from_millis(500), Duration::from_secs(30))
    );
    for (key, value, message) in [
        (
            "max_connections",
            json!(0),
            "max_connections: must be between 1 and 100000",
        ),
        (
            "max_connections",
            json!(-1),
            "max_connections: invalid value",
        ),
        (
            "header_read_timeout_secs",
            json!(0),
            "header_read_timeout_secs: must be between 0.1 and 300 seconds",
        ),
        (
            "idle_timeout_secs",
            json!(1e20),
            "idle_timeout_secs: must be between 0.1 and 86400 seconds",
        ),
        (
            "idle_timeout_secs",
            json!("soon"),
            "idle_timeout_secs: invalid type",
        ),
    ] {
        let mut doc = json!({"upstream_url": "http://a:1"});
        doc[key] = value;
        let e = load(doc).unwrap_err().to_string();
        assert!(e.starts_with(message), "{key}: {e}");
    }
    let env = |k: &str| (k == "TERO_MAX_CONNECTIONS").then(|| "12".to_owned());
    let (c, _) = Config::from_value(json!({"upstream_url": "http://a:1"}), &env).unwrap();
    assert_eq!(c.max_connections, 12);
}

#[test]
fn defaults_and_metrics_path() {
    let (c, w) = load(json!({"upstream_url": "http://127.0.0.1:8080"})).unwrap();
    assert!(w.is_empty());
    assert_eq!(c.listen(), "0.0.0.0:9090");
    assert_eq!(c.upstream.to_string(), "http://127.0.0.1:8080/metrics");
    assert_eq!(c.log_level, "info");
    assert_eq!(c.prometheus.max_input_bytes_per_scrape, 10 * MIB);
    assert_eq!(c.prometheus.max_output_bytes_per_scrape, 10 * MIB);
    let (c, _) = load(json!({"upstream_url": "http://app:9100/custom?module=x"})).unwrap();
    assert_eq!(c.upstream.to_string(), "http://app:9100/custom?module=x");
}

#[test]
fn providers_and_env_substitution() {
    let (c, _) = load(json!({
        "upstream_url": "http://127.0.0.1:8080",
        "policy_providers": [
            {"id": "local", "type": "file", "path": "/etc/tero/policies.yaml"},
            {"id": "cp", "type": "http", "url": "http://cp:7070",
             "headers": [{"name": "Authorization", "value": "Bearer ${EDGE_KEY}"}],
             "poll_interval_secs": 15, "encoding": "protobuf"},
            {"id": "lit", "type": "file", "path": "/x/$${NOT_EXPANDED}/${MISSING:-dflt}"}
        ]
    }))
    .unwrap();
    assert_eq!(c.providers.len(), 3);
    match &c.providers[1] {
        ProviderConfig::Http(HttpProviderConfig {
            url,
            headers,
            poll_interval,
            encoding,
            ..
        }) => {
            assert_eq!(url.to_string(), "http://cp:7070/v1/policy/sync");
            assert_eq!(headers[0].value, "Bearer secret");
            assert_eq!(*poll_interval, Duration::from_secs(15));
            assert_eq!(*encoding, SyncEncoding::Protobuf);
        }
        other => panic!("{other:?}"),
    }
    match &c.providers[2] {
        ProviderConfig::File { path, .. } => {
            assert_eq!(path, &PathBuf::from("/x/${NOT_EXPANDED}/dflt"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn grpc_providers_poll_the_same_server_by_default() {
    let (c, _) = load(json!({
        "upstream_url": "http://127.0.0.1:8080",
        "policy_providers": [
            {"id": "cp", "type": "grpc", "url": "http://cp:7070",
             "headers": [{"name": "Authorization", "value": "Bearer k"}],
             "poll_interval_secs": 5, "state_dir": "/var/lib/tero"},
            {"id": "cp2", "type": "grpc", "url": "http://cp-a:7070",
             "poll_url": "http://cp-b:7070", "encoding": "json",
             "stats_interval_secs": 2, "reconnect_min_secs": 0.5, "reconnect_max_secs": 5}
        ]
    }))
    .unwrap();
    let ProviderConfig::Grpc(g) = &c.providers[0] else {
        panic!("{:?}", c.providers[0])
    };
    assert_eq!(c.providers[0].id(), "cp");
    assert_eq!(g.url.to_string(), "http://cp:7070/");
    assert_eq!(g.poll.url.to_string(), "http://cp:7070/v1/policy/sync");
    assert_eq!(
        g.poll.encoding,
        SyncEncoding::Protobuf,
        "the control plane speaks it"
    );
    assert_eq!(g.poll.poll_interval, Duration::from_secs(5));
    assert_eq!(g.poll.headers[0].value, "Bearer k");
    assert_eq!(g.poll.state_dir, Some(PathBuf::from("/var/lib/tero")));
    assert_eq!(
        (g.stats_interval, g.reconnect_min, g.reconnect_max),
        (
            Duration::from_secs(10),
            Duration::from_secs(1),
            Duration::from_secs(60)
        )
    );
    let ProviderConfig::Grpc(g) = &c.providers[1] else {
        panic!("{:?}", c.providers[1])
    };
    assert_eq!(g.poll.url.to_string(), "http://cp-b:7070/v1/policy/sync");
    assert_eq!(g.poll.encoding, SyncEncoding::Json);
    assert_eq!(
        (g.stats_interval, g.reconnect_min, g.reconnect_max),
        (
            Duration::from_secs(2),
            Duration::from_millis(500),
            Duration::from_secs(5)
        )
    );

    for (bad, key) in [
        (
            json!({"id": "g", "type": "grpc"}),
            "policy_providers[0].url",
        ),
        (
            json!({"id": "g", "type": "grpc", "url": "http://a", "stats_interval_secs": 0}),
            "policy_providers[0].stats_interval_secs",
        ),
        (
            json!({"id": "g", "type": "grpc", "url": "http://a", "reconnect_min_secs": 9, "reconnect_max_secs": 2}),
            "policy_providers[0].reconnect_max_secs",
        ),
        (
            json!({"id": "g", "type": "grpc", "url": "http://a", "poll_url": "ftp://b"}),
            "policy_providers[0].poll_url",
        ),
    ] {
        let err = load(json!({"upstream_url": "http://a:1", "policy_providers": [bad]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{err}");
    }
}

#[test]
fn keys_of_another_provider_type_warn() {
    let (_, w) = load(json!({
            "upstream_url": "http://a:1",
            "policy_providers": [
                {"id": "h", "type": "http", "url": "http://cp", "poll_url": "http://b", "stats_interval_secs": 5},
                {"id": "f", "type": "file", "path": "/p.yaml", "url": "http://cp"}
            ]
        }))
        .unwrap();
    let w: Vec<String> = w.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [
            "policy_providers[0].poll_url: http providers do not use it; ignored",
            "policy_providers[0].stats_interval_secs: http providers do not use it; ignored",
            "policy_providers[1].url: file providers do not use it; ignored",
        ]
    );
}

#[test]
fn unknown_keys_warn_with_their_path() {
    let (_, w) = load(json!({
        "upstream_url": "http://a:1",
        "colour": "blue",
        "prometheus": {"max_input_bytes_per_scrap": 1},
        "inventory": {"intervl_secs": 1},
        "policy_providers": [{"id": "f", "type": "file", "path": "p", "pth": 1}]
    }))
    .unwrap();
    let w: Vec<String> = w.into_iter().map(|w| w.0).collect();
    assert!(
        w.contains(&"colour: unknown key, ignored".to_string()),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|x| x.starts_with("prometheus.max_input_bytes_per_scrap")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|x| x.starts_with("policy_providers[0].pth")),
        "{w:?}"
    );
    assert!(
        w.contains(&"inventory.intervl_secs: unknown key, ignored".to_string()),
        "{w:?}"
    );
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (json!({}), "upstream_url"),
        (json!({"upstream_url": "ftp://x"}), "upstream_url"),
        (
            json!({"upstream_url": "http://a:1", "listen_port": "x"}),
            "listen_port",
        ),
        (
            json!({"upstream_url": "http://a:1", "prometheus": {"max_input_bytes_per_scrape": -1}}),
            "prometheus.max_input_bytes_per_scrape",
        ),
        (
            json!({"upstream_url": "http://a:1", "policy_providers": [{"id": "x", "type": "ftp"}]}),
            "policy_providers[0].type",
        ),
        (
            json!({"upstream_url": "http://a:1", "policy_providers": [{"id": "x", "type": "file"}]}),
            "policy_providers[0].path",
        ),
        (
            json!({"upstream_url": "http://a:1", "policy_providers": [{"type": "file", "path": "p"}]}),
            "policy_providers[0].id",
        ),
        (
            json!({"upstream_url": "http://a:1", "policy_providers": [
                    {"id": "h", "type": "http", "url": "http://x", "headers": [{"name": "A", "value": "${NOPE}"}]}]}),
            "policy_providers[0].headers[0].value",
        ),
    ];
    for (doc, key) in cases {
        let err = load(doc.clone()).unwrap_err().to_string();
        assert!(err.starts_with(key), "{doc}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn inventory_reports_to_the_first_grpc_provider_by_default() {
    let grpc = |id: &str| json!({"id": id, "type": "grpc", "url": "http://cp:7070"});
    let (c, w) = load(json!({"upstream_url": "http://a:1", "policy_providers": [
            {"id": "f", "type": "file", "path": "p"}, grpc("cp"), grpc("cp2")]}))
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        c.inventory,
        InventoryConfig {
            interval: Some(Duration::from_secs(300)),
            sample_every: Duration::from_secs(60),
            max_families: 2000,
            max_report_families: 1000,
            provider: Some("cp".into()),
        }
    );
    assert_eq!(
        c.inventory.destination(&c).map(|d| d.id().to_owned()),
        Some("cp".into())
    );

    let (c, _) = load(
        json!({"upstream_url": "http://a:1", "policy_providers": [grpc("cp"), grpc("cp2")],
            "inventory": {"interval_secs": 30, "max_families": 50, "provider": "cp2"}}),
    )
    .unwrap();
    assert_eq!(c.inventory.interval, Some(Duration::from_secs(30)));
    assert_eq!(c.inventory.sample_every, Duration::from_secs(30));
    assert_eq!(c.inventory.max_families, 50);
    assert_eq!(
        c.inventory.destination(&c).map(|d| d.id().to_owned()),
        Some("cp2".into())
    );

    // A grpc provider is preferred; an http one serves when it is alone.
    let http = |id: &str| json!({"id": id, "type": "http", "url": "http://cp:7070"});
    let (c, _) =
        load(json!({"upstream_url": "http://a:1", "policy_providers": [http("poll"), grpc("cp")]}))
            .unwrap();
    assert!(
        matches!(c.inventory.destination(&c), Some(ReportDestination::Grpc(g)) if g.poll.id == "cp")
    );
    let (c, w) =
        load(json!({"upstream_url": "http://a:1", "policy_providers": [http("poll")]})).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(
        matches!(c.inventory.destination(&c), Some(ReportDestination::Http(h)) if h.id == "poll")
    );
    let err = load(json!({"upstream_url": "http://a:1",
            "policy_providers": [{"id": "f", "type": "file", "path": "p"}],
            "inventory": {"provider": "f"}}))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("inventory.provider") && err.contains("grpc or http"),
        "{err}"
    );

    for off in [json!({"interval_secs": 0}), json!({"enabled": false})] {
        let (c, _) = load(json!({"upstream_url": "http://a:1", "policy_providers": [grpc("cp")], "inventory": off}))
                .unwrap();
        assert_eq!(c.inventory.interval, None);
        assert!(c.inventory.destination(&c).is_none());
    }
    let (c, w) = load(json!({"upstream_url": "http://a:1", "inventory": {}})).unwrap();
    assert_eq!(c.inventory.interval, None);
    assert_eq!(
        w[0].0,
        "inventory: no grpc or http provider to report to; inventory is off"
    );
    let (_, w) = load(json!({"upstream_url": "http://a:1"})).unwrap();
    assert!(w.is_empty(), "nothing asked for, nothing to say");

    let (c, _) = Config::from_value(
        json!({"upstream_url": "http://a:1", "policy_providers": [grpc("cp")]}),
        &|k| (k == "TERO_INVENTORY_INTERVAL_SECS").then(|| "120".into()),
    )
    .unwrap();
    assert_eq!(c.inventory.interval, Some(Duration::from_secs(120)));

    for (inventory, key) in [
        (json!({"interval_secs": -1}), "inventory.interval_secs"),
        (json!({"interval_secs": 0.5}), "inventory.interval_secs"),
        (
            json!({"interval_secs": 60, "sample_every_secs": 120}),
            "inventory.sample_every_secs",
        ),
        (json!({"max_families": 0}), "inventory.max_families"),
        (
            json!({"max_report_families": 100000}),
            "inventory.max_report_families",
        ),
        (json!({"provider": "nope"}), "inventory.provider"),
        (json!({"enabled": "yes"}), "inventory.enabled"),
    ] {
        let err = load(json!({"upstream_url": "http://a:1", "policy_providers": [grpc("cp")], "inventory": inventory}))
                .unwrap_err()
                .to_string();
        assert!(err.starts_with(key), "{err}");
    }
}

#[test]
fn logs_are_on_by_default_and_bounded() {
    let grpc = json!({"id": "cp", "type": "grpc", "url": "http://cp:7070"});
    let (c, w) =
        load(json!({"upstream_url": "http://a:1", "policy_providers": [grpc.clone()]})).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.logs, LogsConfig::default());
    assert_eq!(
        (c.logs.max_body_bytes, c.logs.max_records_per_request),
        (4 * MIB, 10_000)
    );

    let (c, w) = load(
        json!({"upstream_url": "http://a:1", "policy_providers": [grpc.clone()],
            "logs": {"enabled": true, "max_templates": 50, "max_body_bytes": 2048,
                     "max_records_per_request": 7, "max_report_templates": 3, "colour": 1}}),
    )
    .unwrap();
    assert_eq!(
        c.logs,
        LogsConfig {
            enabled: true,
            max_templates: 50,
            max_body_bytes: 2048,
            max_records_per_request: 7,
            max_report_templates: 3,
        }
    );
    assert_eq!(
        w.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
        ["logs.colour: unknown key, ignored"]
    );

    let (c, _) = Config::from_value(json!({"upstream_url": "http://a:1"}), &|k| {
        (k == "TERO_LOGS_ENABLED").then(|| "false".into())
    })
    .unwrap();
    assert!(!c.logs.enabled);

    // Written out for an Edge with nowhere to report: said at start-up.
    let (_, w) = load(json!({"upstream_url": "http://a:1", "logs": {"enabled": true}})).unwrap();
    assert!(w[0].0.contains("POST /_edge/logs answers 503"), "{w:?}");
    let (_, w) = load(json!({"upstream_url": "http://a:1", "logs": {"enabled": false}})).unwrap();
    assert!(w.is_empty(), "{w:?}");

    for (logs, key) in [
        (json!({"max_templates": 0}), "logs.max_templates"),
        (json!({"max_body_bytes": 10}), "logs.max_body_bytes"),
        (
            json!({"max_records_per_request": 0}),
            "logs.max_records_per_request",
        ),
        (
            json!({"max_report_templates": 100_000}),
            "logs.max_report_templates",
        ),
        (json!({"enabled": "yes"}), "logs.enabled"),
    ] {
        let err = load(
            json!({"upstream_url": "http://a:1", "policy_providers": [grpc.clone()], "logs": logs}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with(key), "{err}");
    }
}

#[test]
fn tero_environment_overrides() {
    let (c, _) = Config::from_value(json!({"upstream_url": "http://a:1"}), &|k| match k {
        "TERO_LISTEN_PORT" => Some("9191".into()),
        "TERO_PROMETHEUS_MAX_OUTPUT_BYTES_PER_SCRAPE" => Some("0".into()),
        "TERO_SERVICE_NAME" => Some("checkout".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(c.listen_port, 9191);
    assert_eq!(c.prometheus.max_output_bytes_per_scrape, 0);
    assert_eq!(c.service.name.as_deref(), Some("checkout"));
}

#[test]
fn tero_edge_push_configs_run_unchanged() {
    // The shape of a Tero Edge `edge-otlp` / `edge-datadog` config.
    let (c, w) = load(json!({
        "listen_address": "127.0.0.1",
        "listen_port": 8081,
        "upstream_url": "https://otlp.example.com",
        "logs_url": "https://http-intake.logs.example.com/api/v2/logs",
        "metrics_url": "https://api.example.com",
        "workspace_id": "benchmark",
        "log_level": "err",
        "max_body_size": 4194304,
        "max_upstream_retries": 3,
        "max_connections": 512,
        "tap_enabled": true,
        "service": {"name": "edge", "namespace": "ns", "version": "1"},
        "policy_providers": [
            {"id": "cp", "type": "http", "url": "http://cp:7070", "poll_interval": 60}
        ]
    }))
    .unwrap();
    assert_eq!(c.log_level, "error", "Tero Edge's `err`");
    assert_eq!(c.max_connections, 512);
    let i = &c.intake;
    assert_eq!(
        i.upstream,
        Some(PushTarget::Base(
            "https://otlp.example.com/".parse().unwrap()
        ))
    );
    assert_eq!(
        i.logs,
        Some(PushTarget::Exact(
            "https://http-intake.logs.example.com/api/v2/logs"
                .parse()
                .unwrap()
        ))
    );
    assert!(matches!(i.metrics, Some(PushTarget::Base(_))));
    assert_eq!(i.traces, None);
    assert_eq!(i.max_body_size, 4 * MIB);
    assert_eq!(i.max_decoded_bytes, 16 * MIB);
    assert!(i.tap_enabled && !i.tap_allow_remote);
    let ProviderConfig::Http(h) = &c.providers[0] else {
        panic!("{:?}", c.providers[0])
    };
    assert_eq!(h.poll_interval, Duration::from_secs(60));
    let w: Vec<String> = w.into_iter().map(|w| w.0).collect();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].starts_with("upstream_url: https:// is for the push intake"));
    assert!(w[1].starts_with("workspace_id: a Tero Edge setting this Edge does not use"));
    assert!(w[2].starts_with("max_upstream_retries: a Tero Edge setting"));
}

#[test]
fn push_limits_default_and_are_checked() {
    let (c, w) = load(json!({"upstream_url": "http://127.0.0.1:4318"})).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let i = &c.intake;
    assert_eq!((i.max_body_size, i.max_decoded_bytes), (MIB, 16 * MIB));
    assert_eq!(i.upstream_timeout, Duration::from_secs(8));
    assert_eq!(i.max_concurrent_requests, 64);
    assert_eq!(i.max_buffered_bytes, 16 * MIB);
    assert!(!i.tap_enabled);
    assert!(i.relay_other_paths, "as the Tero Edge does");
    // A raised body limit raises the decoded one with it.
    let (c, _) = load(json!({"upstream_url": "http://a:1", "max_body_size": 32 * MIB})).unwrap();
    assert_eq!(c.intake.max_decoded_bytes, 32 * MIB);
    assert_eq!(c.intake.max_buffered_bytes, 32 * MIB);
    let (c, _) = load(json!({"upstream_url": "http://a:1",
        "intake": {"upstream_timeout_secs": 2.5, "max_concurrent_requests": 3,
                   "log_samples_per_second": 0, "span_samples_per_second": 7,
                   "tap_allow_remote": true},
        "tap_enabled": true}))
    .unwrap();
    let i = &c.intake;
    assert_eq!(i.upstream_timeout, Duration::from_millis(2500));
    assert_eq!(
        (i.max_concurrent_requests, i.log_samples_per_second),
        (3, 0)
    );
    assert_eq!(i.span_samples_per_second, 7);
    assert_eq!(IntakeConfig::default().span_samples_per_second, 20);
    assert!(i.tap_allow_remote);
    for (doc, message) in [
        (
            json!({"max_body_size": 10}),
            "max_body_size: must be between 1024 and 1073741824 bytes",
        ),
        (
            json!({"max_body_size": 4 * MIB, "max_decoded_bytes": 2 * MIB}),
            "max_decoded_bytes: must not be below max_body_size (4194304)",
        ),
        (
            json!({"intake": {"upstream_timeout_secs": 0}}),
            "intake.upstream_timeout_secs: must be between 0.1 and 600 seconds",
        ),
        (
            json!({"intake": {"max_buffered_bytes": MIB / 2}}),
            "intake.max_buffered_bytes: must not be below max_body_size (1048576)",
        ),
        (
            json!({"intake": {"max_concurrent_requests": 0}}),
            "intake.max_concurrent_requests: must be between 1 and 100000",
        ),
        (
            json!({"logs_url": "ftp://x/y"}),
            "logs_url: \"ftp://x/y\" must be an absolute http:// or https:// URL",
        ),
        (json!({"tap_enabled": "yes"}), "tap_enabled: invalid type"),
        (
            json!({"intake": {"span_samples_per_second": 100_001}}),
            "intake.span_samples_per_second: must be between 0 (off) and 100000",
        ),
        (
            json!({"intake": {"log_samples_per_second": 100_001}}),
            "intake.log_samples_per_second: must be between 0 (off) and 100000",
        ),
    ] {
        let mut full = json!({"upstream_url": "http://a:1"});
        if let (Some(full), Some(doc)) = (full.as_object_mut(), doc.as_object()) {
            full.extend(doc.clone());
        }
        let e = load(full).unwrap_err().to_string();
        assert!(e.starts_with(message), "{e}");
    }
    let (_, w) =
        load(json!({"upstream_url": "http://a:1", "intake": {"tap_allow_remote": true}})).unwrap();
    assert_eq!(
        w[0].0,
        "intake.tap_allow_remote: the tap is off (tap_enabled: false); ignored"
    );
}
