//! Integration tests through the HTTP API against real Postgres and real OpenBao.

mod browser;
mod canary;
mod dashboard;
mod helpers;
mod ingest;
mod rotation;
mod web;
