//! Integration tests through the HTTP API against real Postgres, OpenBao, moto, Alertmanager and Chromium.

mod alerts;
mod backends;
mod browser;
mod canary;
mod dashboard;
mod detectors;
mod faults;
mod helpers;
mod ingest;
mod openapi;
mod otlp;
mod otlp_transport;
mod process;
mod response;
mod restart;
mod review;
mod rotation;
mod simulate;
mod startup;
mod vault_policy;
mod web;
