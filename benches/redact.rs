//! The per-event cost of redaction, as ingest runs it: the params (keys, values, decoded forms,
//! random tokens, split credentials) and the identifiers, for the shapes agents send.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use serde_json::{Value, json};
use vigil::redact::Redactor;
use vigil_test_support::testing::six_params;

/// What a busier tool sends: ids, hashes, a URL, a path and a paragraph of text.
fn rich() -> Value {
    json!({
        "request_id": "550e8400-e29b-41d4-a716-446655440000",
        "commit": "e83c5163316f89bfbd7d9ab23ca2e25604af2909",
        "url": "https://api.example.com/v1/customers/cus_123/invoices?limit=20&starting_after=in_456",
        "path": "/home/alice/projects/vigil/src/redact/mod.rs",
        "created_at": "2026-11-26T12:00:00.000Z",
        "headers": {"accept": "application/json", "user-agent": "agent/1.4.2 (linux; x86_64)"},
        "body": "Summarise the quarterly report for the finance team and flag any invoice over 10,000 EUR \
                 that is more than 30 days overdue. Use the customer's preferred language.".repeat(4),
    })
}

/// A 48 KiB base64 image, the largest thing a parameter usually holds.
fn image() -> Value {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data: String = std::iter::once("iVBORw0KGgo".to_owned())
        .chain((0..48 * 1024).map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (B64[(state % 64) as usize] as char).to_string()
        }))
        .collect();
    json!({"name": "chart.png", "content": data})
}

fn bench(c: &mut Criterion) {
    let redactor = Redactor::new(b"bench-fingerprint-key-0123456789");
    let cases = [
        ("ordinary params (6)", six_params(3)),
        ("rich params (7, 1 KiB of text)", rich()),
        ("base64 image (48 KiB)", image()),
        (
            "a secret, base64'd and split",
            json!({"blob": "Z2hwX0ZBS0UwMTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dg",
                   "a": "ghp_FAKE0123456789abc", "b": "defghijklmnopqrstuv", "note": "ok"}),
        ),
    ];
    let mut group = c.benchmark_group("redact");
    for (name, params) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut p = params.clone();
                let mut tool = "github.create_issue".to_owned();
                let mut id = "01HZX3K9Q8V7T6R5P4N3M2K1J0".to_owned();
                let found = (
                    redactor.redact_json("params", &mut p),
                    redactor.redact_ident("tool", &mut tool),
                    redactor.redact_ident("event_id", &mut id),
                );
                black_box((p, found))
            })
        });
    }
    // The clone alone, to subtract.
    let params = six_params(3);
    group.bench_function("clone of the ordinary params", |b| b.iter(|| black_box(params.clone())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
