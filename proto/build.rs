//! Generates the Rust wire types from `proto/` without a system `protoc`:
//! `protox` (a pure-Rust protobuf compiler) produces the descriptor set, from
//! which prost emits the messages, tonic the services and pbjson the proto3
//! JSON mapping.

use std::env;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    "tero/policy/v1/policy.proto",
    "tero/policy/v1/tero_extensions.proto",
    "tero/controlplane/v1/admin.proto",
    "tero/controlplane/v1/edge.proto",
    "tero/controlplane/v1/inventory.proto",
    "tero/controlplane/v1/issues.proto",
    "tero/controlplane/v1/classify.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let descriptor_bytes = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("descriptors.bin"), &descriptor_bytes)?;

    let mut prost_config = prost_build::Config::new();
    // Deterministic map ordering keeps encoded bytes (and thus hashes) stable.
    prost_config.btree_map(["."]);
    // A snapshot's encoded SyncResponse is shared by every stream of a group:
    // `Bytes` makes handing it to each stream a reference-count bump.
    prost_config.bytes([".tero.controlplane.v1.Snapshot.sync_response"]);
    tonic_prost_build::configure()
        .emit_rerun_if_changed(false)
        .compile_fds_with_config(descriptors, prost_config)?;

    // Proto3 JSON as the sync endpoint speaks it: default values emitted,
    // enums as numbers (what reference servers send), unknown fields ignored
    // on input (the tolerant choice the spec recommends).
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .emit_fields()
        .use_integers_for_enums()
        .ignore_unknown_fields()
        .build(&[".tero.policy.v1", ".opentelemetry.proto.common.v1"])?;

    // Our own API: enum names on output read better for people and scripts,
    // and nothing on the wire depends on reference servers' habits.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .emit_fields()
        .ignore_unknown_fields()
        .build(&[".tero.controlplane.v1"])?;
    Ok(())
}
