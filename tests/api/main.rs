//! Integration tests through the HTTP API against real Postgres and real OpenBao.

mod canary;
mod helpers;
mod ingest;
mod process;
mod restart;
mod rotation;
mod simulate;
