//! Redaction of arbitrary agent JSON with planted credentials: never panics, removes every
//! planted credential wherever it sits (value, neutral key, array), and is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use vigil::redact::Redactor;

/// Credential shapes the rules must always catch. Their bodies are random like real keys
/// (a xorshift stream seeded by the fuzz input), so each run plants different ones.
fn planted(seed: &[u8]) -> Vec<String> {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut state = seed
        .iter()
        .fold(0x9E37_79B9_7F4A_7C15_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3))
        | 1;
    let mut pick = |set: &[u8], n: usize| -> String {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                set[(state % set.len() as u64) as usize] as char
            })
            .collect()
    };
    vec![
        format!("ghp_{}", pick(ALNUM, 36)),
        format!("AKIA{}", pick(UPPER, 16)),
        format!("sk-ant-api03-{}", pick(ALNUM, 80)),
    ]
}

fuzz_target!(|data: &[u8]| {
    let redactor = Redactor::new(b"fuzz-redaction-key");
    let secrets = planted(data);
    let agent: Value = serde_json::from_slice(data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(data).into_owned()));
    let mut doc = json!({
        "agent": agent,
        "note": secrets[0],
        "items": [secrets[1], {"x": format!("prefix {} suffix", secrets[2])}],
    });
    let first = redactor.redact_json("params", &mut doc);
    let text = doc.to_string();
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret} survived redaction: {text}");
    }
    assert!(first.len() >= secrets.len());
    let again = doc.clone();
    let second = redactor.redact_json("params", &mut doc);
    assert!(second.is_empty(), "redaction is not idempotent: {second:?}");
    assert_eq!(doc, again);

    let mut line = String::from_utf8_lossy(data).into_owned();
    let _ = redactor.redact_text("note", &mut line);
    let once = line.clone();
    assert!(redactor.redact_text("note", &mut line).is_empty());
    assert_eq!(line, once);
});
