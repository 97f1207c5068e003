//! The control plane's edge-facing endpoints (Sync over gRPC and HTTP,
//! Subscribe, inventory and log reports) under a hostile edge key.
