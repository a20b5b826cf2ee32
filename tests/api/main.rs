//! Integration tests through the HTTP API against real Postgres and real OpenBao.

mod canary;
mod helpers;
mod ingest;
mod openapi;
mod otlp;
mod process;
mod restart;
mod rotation;
mod startup;
