//! Integration tests through the HTTP API against real Postgres, OpenBao, moto and Alertmanager.

mod alerts;
mod backends;
mod canary;
mod helpers;
mod ingest;
mod openapi;
mod otlp;
mod process;
mod response;
mod restart;
mod rotation;
mod startup;
