//! Integration tests through the HTTP API against real Postgres, OpenBao, moto, Alertmanager and Chromium.

mod alerts;
mod backends;
mod bounds;
mod browser;
mod canary;
mod conformance;
mod dashboard;
mod detectors;
mod faults;
mod helpers;
mod ingest;
mod limits;
mod openapi;
mod otlp;
mod process;
mod response;
mod restart;
mod review;
mod rotation;
mod simulate;
mod startup;
mod vault_policy;
mod web;
