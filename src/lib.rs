//! Vigil: learns each tenant's normal AI-agent tool use and, when a call breaks from it,
//! rotates exactly the credentials at risk. See ARCHITECTURE.md for the map.

#![forbid(unsafe_code)]

pub mod alert;
pub mod api;
pub mod app;
pub mod baseline;
pub(crate) mod cluster;
pub mod config;
pub mod dashboard;
pub mod detect;
pub mod event;
pub(crate) mod http;
pub(crate) mod ingest;
pub(crate) mod live;
pub mod metrics;
pub(crate) mod openapi;
pub mod policy;
pub mod redact;
pub mod respond;
pub mod restore;
pub mod review;
pub mod secrets;
pub(crate) mod server;
pub mod shard;
pub mod signed;
pub mod simulate;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// OTLP decoding and mapping, public for the fuzz crate (`fuzz/fuzz_targets/otlp.rs`).
pub use ingest::otlp;
