//! Integration tests through the HTTP API against real Postgres and real OpenBao.

mod alerts;
mod canary;
mod helpers;
mod ingest;
mod response;
mod rotation;
