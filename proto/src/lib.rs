//! Wire types for the `tero.policy.v1` policy format and sync protocol.
//!
//! Everything here is generated from the `.proto` files next to this crate:
//! prost messages (binary protobuf), pbjson serde impls (proto3 JSON with
//! camelCase names, 64-bit integers as strings and enums as numbers on output;
//! names or numbers and either field spelling on input) and the tonic
//! `PolicyService` client and server. Nothing is hand-written but re-exports,
//! so the wire format cannot drift from the definitions.

#![allow(clippy::all, missing_docs)]

pub mod opentelemetry {
    pub mod proto {
        pub mod resource {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.resource.v1.rs"
                ));
            }
        }
        pub mod logs {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/opentelemetry.proto.logs.v1.rs"));
            }
        }
        pub mod trace {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/opentelemetry.proto.trace.v1.rs"));
            }
        }
        pub mod metrics {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.metrics.v1.rs"
                ));
            }
        }
        /// The OTLP/gRPC export services (messages, clients, servers).
        pub mod collector {
            pub mod logs {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/opentelemetry.proto.collector.logs.v1.rs"
                    ));
                }
            }
            pub mod trace {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/opentelemetry.proto.collector.trace.v1.rs"
                    ));
                }
            }
            pub mod metrics {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/opentelemetry.proto.collector.metrics.v1.rs"
                    ));
                }
            }
        }
        pub mod common {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.common.v1.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.common.v1.serde.rs"
                ));
            }
        }
    }
}

pub mod tero {
    pub mod policy {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/tero.policy.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/tero.policy.v1.serde.rs"));
        }
    }
    pub mod controlplane {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/tero.controlplane.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/tero.controlplane.v1.serde.rs"));
        }
    }
}

/// The encoded `FileDescriptorSet` of every message and service above, for
/// gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

pub use opentelemetry::proto::common::v1 as otel;
/// OTLP's logs, traces and metrics (binary protobuf only: OTLP JSON is not
/// proto3 JSON, ids are hex, so tero-otlp handles it).
pub use opentelemetry::proto::{
    collector as otlp_collector, logs::v1 as otlp_logs, metrics::v1 as otlp_metrics,
    resource::v1 as otlp_resource, trace::v1 as otlp_trace,
};
pub use tero::controlplane::v1 as controlplane;
pub use tero::policy::v1 as policy;
