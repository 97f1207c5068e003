//! The OpenTelemetry Python SDK the push-intake tests drive real exporters
//! with (`tests/fixtures/otel/`).

use std::path::PathBuf;
use std::process::Command;

/// The interpreter with the SDK and its OTLP/HTTP and OTLP/gRPC exporters:
/// `TERO_OTEL_PYTHON` (`.ci/run` installs a venv) or a `python3` that can
/// import them. `None` means skip, with a notice; with
/// `TERO_REQUIRE_OTEL=1` a missing SDK fails the test instead.
pub fn python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("TERO_OTEL_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("python3")])
        .collect();
    let import = "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc";
    let found = candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", import])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("TERO_REQUIRE_OTEL").as_deref() != Ok("1"),
            "TERO_REQUIRE_OTEL=1 but no Python with the OpenTelemetry SDK: set TERO_OTEL_PYTHON \
             (pip install -r tests/fixtures/otel/requirements.txt)"
        );
        eprintln!(
            "skipped: no Python with the OpenTelemetry SDK (set TERO_OTEL_PYTHON; .ci/run installs it)"
        );
    }
    found
}

/// The path of a script in `tests/fixtures/otel/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/otel")
        .join(name)
}

/// A string `AnyValue`'s text.
pub fn text(value: Option<&tero_proto::otel::AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        tero_proto::otel::any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// A log record's string attribute `key`.
pub fn attribute<'a>(record: &'a tero_proto::otlp_logs::LogRecord, key: &str) -> Option<&'a str> {
    let kv = record.attributes.iter().find(|kv| kv.key == key)?;
    text(kv.value.as_ref())
}
