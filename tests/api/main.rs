//! Integration tests through the HTTP API against real Postgres, OpenBao and moto.

mod backends;
mod canary;
mod helpers;
mod ingest;
mod openapi;
mod otlp;
mod process;
mod restart;
mod rotation;
mod startup;
