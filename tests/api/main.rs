//! Integration tests through the HTTP API against real Postgres and real OpenBao.

mod canary;
mod helpers;
mod ingest;
mod otlp;
mod rotation;
