//! What the random-token and decoding rules cost and catch, measured on generated corpora:
//! realistic benign values (which must be kept) and planted secrets (which must be caught).
//! `cargo test --lib redact::corpus -- --nocapture` prints the rates.

use super::Redactor;
use super::decode::encode_base64 as base64;
use serde_json::{Value, json};

const KEY: &[u8] = b"vigil-test-fingerprint-key";
const SAMPLES: usize = 2_000;

/// A deterministic xorshift generator: the corpora are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| alphabet[self.below(alphabet.len())] as char).collect()
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const HEX: &[u8] = b"0123456789abcdef";
const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const NANOID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const WORDS: &[&str] = &[
    "report",
    "invoice",
    "customer",
    "order",
    "deploy",
    "service",
    "account",
    "billing",
    "summary",
    "quarterly",
    "user",
    "profile",
    "handler",
    "factory",
    "request",
    "response",
    "cache",
    "index",
    "search",
    "result",
    "payment",
    "shipping",
    "address",
    "manager",
    "config",
    "update",
    "create",
    "delete",
    "status",
    "project",
    "team",
    "release",
    "draft",
    "final",
    "review",
    "ticket",
];

fn capitalised(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// One benign value of each kind; the kinds Vigil keeps under any name.
fn benign(rng: &mut Rng, kind: &str) -> String {
    let word = |rng: &mut Rng| rng.pick(WORDS).to_owned();
    match kind {
        "uuid" => {
            let h = rng.string(HEX, 32);
            format!("{}-{}-4{}-a{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..])
        }
        "UUID upper case" => benign(rng, "uuid").to_ascii_uppercase(),
        "sha1 / git SHA" => rng.string(HEX, 40),
        "sha256 hex" => rng.string(HEX, 64),
        "SHA-256 upper-case hex" => rng.string(HEX, 64).to_ascii_uppercase(),
        "docker digest" => format!("sha256:{}", rng.string(HEX, 64)),
        "numeric id" => (rng.next() >> 1).to_string(),
        "ULID" => rng.string(CROCKFORD, 26),
        "timestamp" => format!(
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+01:00",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1000)
        ),
        "base64 PNG" => {
            let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
            let len = 40 + rng.below(3000);
            png.extend(rng.bytes(len));
            base64(&png, false)
        }
        "data URI JPEG" => {
            let mut jpeg = b"\xFF\xD8\xFF\xE0\0\x10JFIF".to_vec();
            let len = 60 + rng.below(400);
            jpeg.extend(rng.bytes(len));
            format!("data:image/jpeg;base64,{}", base64(&jpeg, false))
        }
        "base64 JSON cursor" => base64(
            format!(r#"{{"offset":{},"limit":{}}}"#, rng.below(100_000), 50).as_bytes(),
            rng.below(2) == 0,
        ),
        "file path" => format!(
            "/home/{}/projects/{}/src/{}{}/{}_{}.rs",
            word(rng),
            word(rng),
            capitalised(&word(rng)),
            rng.below(10),
            word(rng),
            word(rng)
        ),
        "Windows path" => format!(
            r"C:\Users\{}\Documents\{} Q{} {} {}.xlsx",
            capitalised(&word(rng)),
            capitalised(&word(rng)),
            1 + rng.below(4),
            2020 + rng.below(7),
            capitalised(&word(rng))
        ),
        "URL" => format!(
            "https://docs.example.com/{}/d/{}/edit?usp=sharing&ts={}",
            word(rng),
            rng.string(NANOID, 33),
            rng.next() % 10_000_000_000
        ),
        "prose" => (0..12).map(|_| word(rng)).collect::<Vec<_>>().join(" ") + ".",
        "camelCase identifier" => format!(
            "{}{}{}V{}{}",
            word(rng),
            capitalised(&word(rng)),
            capitalised(&word(rng)),
            rng.below(10),
            capitalised(&word(rng))
        ),
        "compact code name" => format!(
            "{}Q{}FY{}{}",
            capitalised(&word(rng)),
            1 + rng.below(4),
            2020 + rng.below(7),
            capitalised(&word(rng))
        ),
        "kubernetes pod" => format!(
            "{}-{}-{}",
            word(rng),
            rng.string(HEX, 10),
            rng.string(b"bcdfghjklmnpqrstvwxz2456789", 5)
        ),
        "email" => format!("{}.{}@{}.example.com", word(rng), word(rng), word(rng)),
        "semver" => format!(
            "{}.{}.{}-rc.{}+build.{}",
            rng.below(10),
            rng.below(30),
            rng.below(30),
            rng.below(9),
            rng.below(9999)
        ),
        other => unreachable!("no kind {other}"),
    }
}

/// Kinds that look exactly like a random token and are redacted under a name that says
/// nothing (the cost), but kept under a name that says what they are.
fn random_by_design(rng: &mut Rng, kind: &str) -> String {
    match kind {
        "nanoid" => rng.string(NANOID, 21),
        "base64 SHA-256 digest" => base64(&rng.bytes(32), false),
        "Stripe-style object id" => format!("pi_{}", rng.string(BASE62, 24)),
        other => unreachable!("no kind {other}"),
    }
}

/// Counts values of `kind` that come out of redaction unchanged, under `key`.
fn kept(redactor: &Redactor, key: &str, values: impl Iterator<Item = String>) -> (usize, usize, Vec<String>) {
    let (mut kept, mut total, mut examples) = (0, 0, Vec::new());
    for value in values {
        total += 1;
        let mut params = json!({ key: value });
        let found = redactor.redact_json("params", &mut params);
        if found.is_empty() {
            kept += 1;
        } else if examples.len() < 3 {
            examples.push(value);
        }
    }
    (kept, total, examples)
}

#[test]
fn benign_values_are_kept_under_any_name() {
    let redactor = Redactor::new(KEY);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let kinds = [
        "uuid",
        "UUID upper case",
        "sha1 / git SHA",
        "sha256 hex",
        "SHA-256 upper-case hex",
        "docker digest",
        "numeric id",
        "ULID",
        "timestamp",
        "base64 PNG",
        "data URI JPEG",
        "base64 JSON cursor",
        "file path",
        "Windows path",
        "URL",
        "prose",
        "camelCase identifier",
        "compact code name",
        "kubernetes pod",
        "email",
        "semver",
    ];
    println!("benign values under the neutral key `note`, kept / total:");
    for kind in kinds {
        let (kept, total, examples) = kept(&redactor, "note", (0..SAMPLES).map(|_| benign(&mut rng, kind)));
        println!("  {kind:<24} {kept}/{total}");
        assert_eq!(kept, total, "{kind} redacted, e.g. {examples:?}");
    }
    println!("random by design: kept under `note` / kept under an id-like name:");
    for (kind, name) in [
        ("nanoid", "request_id"),
        ("base64 SHA-256 digest", "sha256"),
        ("Stripe-style object id", "payment_intent_id"),
    ] {
        let (neutral, total, _) = kept(
            &redactor,
            "note",
            (0..SAMPLES).map(|_| random_by_design(&mut rng, kind)),
        );
        let (named, _, examples) = kept(&redactor, name, (0..SAMPLES).map(|_| random_by_design(&mut rng, kind)));
        println!("  {kind:<24} {neutral}/{total} under note, {named}/{total} under {name}");
        assert_eq!(named, total, "{kind} under {name}: {examples:?}");
        assert!(
            neutral * 10 < total,
            "{kind} is indistinguishable from a token: {neutral}/{total} kept"
        );
    }
}

/// Builds one planted secret of `kind` as `params`, and the strings that must not survive.
fn planted(rng: &mut Rng, kind: &str) -> (Value, Vec<String>) {
    // Fake credentials of known formats, random each time.
    let ghp = format!("ghp_{}", rng.string(BASE62, 36));
    let aws = format!("AKIA{}", rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
    let slack = format!(
        "xoxb-{}-{}-{}",
        rng.string(b"0123456789", 12),
        rng.string(b"0123456789", 13),
        rng.string(BASE62, 24)
    );
    let secret = [ghp, aws, slack][rng.below(3)].clone();
    match kind {
        "random token, 20 chars"
        | "random token, 24 chars"
        | "random token, 32 chars"
        | "random token, 40 chars"
        | "random token, 64 chars" => {
            let len: usize = kind
                .trim_start_matches("random token, ")
                .trim_end_matches(" chars")
                .parse()
                .unwrap();
            let token = rng.string(BASE62, len);
            (json!({"note": token}), vec![token])
        }
        "random token in prose" => {
            let token = rng.string(BASE62, 40);
            (json!({"message": format!("use {token} for the deploy")}), vec![token])
        }
        "base64 of 32 random bytes" => {
            let token = base64(&rng.bytes(32), rng.below(2) == 0);
            (json!({"value": token}), vec![token])
        }
        "known format, base64" => {
            let encoded = base64(secret.as_bytes(), false);
            (json!({"data": encoded}), vec![secret, encoded])
        }
        "known format, base64url unpadded" => {
            let encoded = base64(secret.as_bytes(), true);
            (json!({"data": encoded}), vec![secret, encoded])
        }
        "known format, hex" => {
            let encoded = hex::encode(&secret);
            (json!({"data": encoded}), vec![secret, encoded])
        }
        "known format, percent-encoded" => {
            let encoded: String = secret.bytes().map(|b| format!("%{b:02x}")).collect();
            (json!({"q": format!("token={encoded}&x=1")}), vec![secret, encoded])
        }
        "known format, split in two" => {
            let at = 3 + rng.below(secret.len() - 6);
            let (a, b) = secret.split_at(at);
            let keys = [("a", "b"), ("first", "second"), ("token_start", "token_end")][rng.below(3)];
            (json!({keys.0: a, keys.1: b, "note": "kept"}), vec![secret.clone()])
        }
        "known format as a key" => (json!({ secret.clone(): 1 }), vec![secret]),
        other => unreachable!("no kind {other}"),
    }
}

#[test]
fn planted_secrets_are_caught() {
    let redactor = Redactor::new(KEY);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    // The floor each kind must reach, in thousandths.
    let kinds = [
        ("random token, 20 chars", 980),
        ("random token, 24 chars", 980),
        ("random token, 32 chars", 990),
        ("random token, 40 chars", 995),
        ("random token, 64 chars", 999),
        ("random token in prose", 995),
        ("base64 of 32 random bytes", 990),
        ("known format, base64", 1000),
        ("known format, base64url unpadded", 1000),
        ("known format, hex", 1000),
        ("known format, percent-encoded", 1000),
        ("known format, split in two", 1000),
        ("known format as a key", 1000),
    ];
    println!("planted secrets, caught / total:");
    for (kind, floor) in kinds {
        let (mut caught, mut missed) = (0, Vec::new());
        for _ in 0..SAMPLES {
            let (mut params, secrets) = planted(&mut rng, kind);
            let found = redactor.redact_json("params", &mut params);
            let text = params.to_string();
            if !found.is_empty() && secrets.iter().all(|s| !text.contains(s.as_str())) {
                caught += 1;
            } else if missed.len() < 3 {
                missed.push(secrets[0].clone());
            }
            let once = params.clone();
            assert_eq!(redactor.redact_json("params", &mut params), [], "{kind}: idempotent");
            assert_eq!(params, once);
        }
        println!("  {kind:<34} {caught}/{SAMPLES}");
        assert!(
            caught * 1000 >= floor * SAMPLES,
            "{kind}: {caught}/{SAMPLES}, e.g. missed {missed:?}"
        );
    }
}
