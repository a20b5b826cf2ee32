//! Integration tests through the HTTP API against real Postgres and real OpenBao.

mod canary;
mod detectors;
mod helpers;
mod ingest;
mod rotation;
