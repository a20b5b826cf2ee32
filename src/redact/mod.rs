//! Redaction: replaces credential-looking values in what agents send, before anything is stored
//! or logged.
//!
//! Agents pass API keys, bearer tokens and passwords as tool parameters all the time. Vigil must
//! never store, log or display them (ARCHITECTURE.md, "Security of Vigil itself"), yet a
//! responder needs to know *that* a secret leaked, where, and whether it is the same secret as
//! last time. So every secret becomes `[REDACTED:<rule>:<fingerprint>]`, where the fingerprint
//! is an HMAC under a server key: equal secrets give equal fingerprints, and without the key a
//! fingerprint cannot be checked against guesses.
//!
//! Everything an agent sends is scanned: values, object keys, the tool name and the ids
//! ([`Redactor::redact_ident`]); encoded forms (base64, hex, percent-encoding: [`decode`]);
//! random-looking tokens under any name; and a credential split across two adjacent string
//! values of one object or array.
//!
//! Each replacement is reported as a [`Redaction`]; ingest turns each into a `secret_in_payload`
//! finding. Redacting is idempotent, so replaying already-redacted events changes nothing.
//!
//! Pure: no I/O, no clock. The rules themselves live in [`rules`].

#[cfg(test)]
mod corpus;
mod decode;
mod rules;

#[cfg(any(test, feature = "test-support"))]
pub use decode::encode_base64;

use std::fmt;
use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use self::rules::Context;
pub use self::rules::RULE_NAMES;
use crate::event::push_key;

/// Finds and replaces secrets. Holds the fingerprint key, so it is deliberately not `Debug`-
/// derived: `{:?}` prints `Redactor { .. }`.
#[derive(Clone)]
pub struct Redactor {
    /// HMAC-SHA256 already keyed: cloning it per fingerprint skips re-hashing the key.
    mac: Hmac<Sha256>,
}

/// One secret that was replaced. Holds no part of the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Redaction {
    /// The rule that matched: one of [`RULE_NAMES`], e.g. `aws_access_key`, `jwt`, `high_entropy`.
    pub rule: &'static str,
    /// Where it was found: `params.headers.authorization`, `params.items[2]`, `credential_ref`.
    /// Keys that are not plain identifiers are quoted: `params["x.y"]`.
    pub path: String,
    /// The first 16 hex digits of HMAC-SHA256(key, secret): correlates repeats of one secret
    /// across events without revealing it.
    pub fingerprint: String,
}

/// Rounds of [`Redactor::redact_string`] before giving up on a fixpoint. Each round replaces
/// at least one secret, so only contrived input needs more than two; the cap bounds the work
/// an attacker can cause with it.
const MAX_ROUNDS: usize = 4;

/// Hex digits of the HMAC kept in a fingerprint: 64 bits tell secrets apart for correlation,
/// and a short value keeps markers readable.
const FINGERPRINT_HEX_LEN: usize = 16;

const MARKER_PREFIX: &str = "[REDACTED:";

/// Objects with at most this many string values are searched for a credential split across
/// any two of them (240 ordered pairs at most); larger ones across neighbours only.
const MAX_SPLIT_VALUES: usize = 16;

impl Redactor {
    /// `key` is the server's fingerprint key; any length works, 32 random bytes are plenty.
    #[must_use]
    pub fn new(key: &[u8]) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
        Redactor { mac }
    }

    /// Replaces, in place, every credential-looking substring of every string in `value`
    /// (recursing into objects and arrays) by `[REDACTED:<rule>:<fingerprint>]`. Object keys are
    /// scanned as values are (a key that is a secret is renamed), and are the context for their
    /// values: a random string under `api_key` is redacted on sight, one under `request_id`
    /// only if it has a credential's format. `path` names `value` itself (e.g. `"params"`).
    /// Returns one [`Redaction`] per replaced secret, in the order the document is traversed.
    #[must_use = "each redaction must become a secret_in_payload finding"]
    pub fn redact_json(&self, path: &str, value: &mut Value) -> Vec<Redaction> {
        let mut redactions = Vec::new();
        // One buffer for the whole walk: a path is only copied out when a secret is found.
        let mut path = path.to_owned();
        let context = Context::of_name(&path);
        self.walk(context, &mut path, value, &mut redactions);
        redactions
    }

    /// Like [`Redactor::redact_json`] for one string field; `name` is both the context (a
    /// field called `password` is treated as one) and the path of every redaction.
    #[must_use = "each redaction must become a secret_in_payload finding"]
    pub fn redact_text(&self, name: &str, text: &mut String) -> Vec<Redaction> {
        let mut redactions = Vec::new();
        self.redact_string(Context::of_name(name), name, text, &mut redactions);
        redactions
    }

    /// For an identifier (`tool`, `event_id`): a value holding a secret is replaced *whole* by
    /// `[REDACTED:<rule>:<fingerprint of the whole value>]`. The same value always gives the
    /// same marker, so a retried event is still a duplicate of the first, and two different
    /// values stay different (the fingerprint is 64 bits); the marker fits every identifier's
    /// length bound. `name` is the context and the path.
    #[must_use = "each redaction must become a secret_in_payload finding"]
    pub fn redact_ident(&self, name: &str, text: &mut String) -> Vec<Redaction> {
        let Some(hit) = rules::scan(Context::of_name(name), text).into_iter().next() else {
            return Vec::new();
        };
        let fingerprint = self.fingerprint(text);
        *text = format!("{MARKER_PREFIX}{}:{fingerprint}]", hit.rule);
        vec![Redaction {
            rule: hit.rule,
            path: name.to_owned(),
            fingerprint,
        }]
    }

    fn walk(&self, context: Context, path: &mut String, value: &mut Value, out: &mut Vec<Redaction>) {
        match value {
            Value::String(text) => self.redact_string(context, path, text, out),
            Value::Array(items) => {
                for index in 1..items.len() {
                    let [a, b] = &mut items[index - 1..=index] else {
                        unreachable!("a window of two")
                    };
                    if let (Value::String(a), Value::String(b)) = (a, b)
                        && rules::may_start_split(a)
                    {
                        let name = |i: usize| format!("{path}[{i}]");
                        self.split_secret(a, b, || (name(index - 1), name(index)), out);
                    }
                }
                for (index, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    write!(path, "[{index}]").expect("writing to a String cannot fail");
                    // An element is named by its array: `"api_keys": ["…", "…"]`.
                    self.walk(context, path, item, out);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                self.redact_keys(path, map, out);
                self.split_secrets(path, map, out);
                // `{"name": "DB_PASSWORD", "value": "…"}` (Kubernetes env, HAR and Postman
                // headers, AWS tags): the real name of `value` is a sibling's value.
                let value_name = ["value", "Value"]
                    .iter()
                    .any(|v| map.contains_key(*v))
                    .then(|| {
                        ["name", "key", "Name", "Key"]
                            .iter()
                            .find_map(|n| map.get(*n)?.as_str())
                    })
                    .flatten()
                    .map(|name| context.child(name));
                for (key, item) in map.iter_mut() {
                    let len = path.len();
                    push_key(path, key);
                    let child = match value_name {
                        Some(named) if key == "value" || key == "Value" => named,
                        _ => context.child(key),
                    };
                    self.walk(child, path, item, out);
                    path.truncate(len);
                }
            }
            // Numbers and booleans carry no secrets worth the type change of replacing them.
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Renames every key that holds a secret (judged as a value under no name: a key is a
    /// name, so only a secret's own shape gives it away).
    fn redact_keys(&self, path: &str, map: &mut Map<String, Value>, out: &mut Vec<Redaction>) {
        let secret_keys: Vec<String> = map
            .keys()
            .filter(|key| !rules::scan(Context::default(), key).is_empty())
            .cloned()
            .collect();
        for key in secret_keys {
            let value = map.remove(&key).expect("the key was just listed");
            let mut renamed = key;
            let mut found = Vec::new();
            self.redact_string(Context::default(), "", &mut renamed, &mut found);
            let mut key_path = path.to_owned();
            push_key(&mut key_path, &renamed);
            out.extend(found.into_iter().map(|r| Redaction {
                path: key_path.clone(),
                ..r
            }));
            // Two keys that differ only in their secrets stay apart (their fingerprints differ);
            // an agent that also sent the marker itself as a key loses that entry.
            map.insert(renamed, value);
        }
    }

    /// A credential split across two string values of one object, in either order (a JSON
    /// object's order is not kept: `{"token_end", "token_start"}` sorts backwards). Every
    /// ordered pair of up to [`MAX_SPLIT_VALUES`] string values is tried, whose first part
    /// holds or ends with the start of a known format; in larger objects, neighbours in key
    /// order only.
    fn split_secrets(&self, path: &str, map: &mut Map<String, Value>, out: &mut Vec<Redaction>) {
        let keys: Vec<String> = map
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(rules::may_be_split_part))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.len() < 2 {
            return;
        }
        let pairs: Vec<(usize, usize)> = if keys.len() <= MAX_SPLIT_VALUES {
            (0..keys.len())
                .flat_map(|i| (0..keys.len()).filter(move |&j| j != i).map(move |j| (i, j)))
                .collect()
        } else {
            (1..keys.len()).flat_map(|i| [(i - 1, i), (i, i - 1)]).collect()
        };
        for (i, j) in pairs {
            let (first, second) = (&keys[i], &keys[j]);
            let (Some(Value::String(a)), Some(Value::String(b))) = (map.get(first), map.get(second)) else {
                continue;
            };
            if !rules::may_start_split(a) {
                continue;
            }
            let (mut a, mut b) = (a.clone(), b.clone());
            let name = |key: &str| {
                let mut p = path.to_owned();
                push_key(&mut p, key);
                p
            };
            if self.split_secret(&mut a, &mut b, || (name(first), name(second)), out) {
                map.insert(first.clone(), Value::String(a));
                map.insert(second.clone(), Value::String(b));
            }
        }
    }

    /// Redacts a credential that starts in `a` and ends in `b`, in both; `paths` names them.
    /// Returns whether anything was redacted.
    fn split_secret(
        &self,
        a: &mut String,
        b: &mut String,
        paths: impl FnOnce() -> (String, String),
        out: &mut Vec<Redaction>,
    ) -> bool {
        let Some((rule, span)) = rules::split(a, b) else {
            return false;
        };
        let mut joined = String::with_capacity(a.len() + b.len());
        joined.push_str(a);
        joined.push_str(b);
        let fingerprint = self.fingerprint(&joined[span.clone()]);
        let marker = format!("{MARKER_PREFIX}{rule}:{fingerprint}]");
        let junction = a.len();
        a.replace_range(span.start.., &marker);
        b.replace_range(..span.end - junction, &marker);
        let (first, second) = paths();
        out.push(Redaction {
            rule,
            path: format!("{first} + {second}"),
            fingerprint,
        });
        true
    }

    fn redact_string(&self, context: Context, path: &str, text: &mut String, out: &mut Vec<Redaction>) {
        // Replacing a secret can change what its neighbours look like: `sk-…` that ran into a
        // PEM block was one overlapping match, and is a clean one once the block is a marker.
        // So scan again until nothing changes (the output is a fixpoint, hence redacting twice
        // is a no-op). Nearly always one round finds nothing, or two rounds settle it.
        let mut found: Vec<(usize, Redaction)> = Vec::new(); // (marker position, redaction)
        for _ in 0..MAX_ROUNDS {
            let hits = rules::scan(context, text);
            if hits.is_empty() {
                break;
            }
            let mut redacted = String::with_capacity(text.len());
            let mut copied = 0;
            // (end of a replaced secret, total growth of the text up to there), to move the
            // markers of earlier rounds along with the text around them.
            let mut shifts: Vec<(usize, isize)> = Vec::with_capacity(hits.len());
            for hit in hits {
                // A secret found decoded is fingerprinted decoded: the same key, plain or
                // base64, gets the same marker.
                let fingerprint = self.fingerprint(hit.decoded.as_deref().unwrap_or(&text[hit.span.clone()]));
                redacted.push_str(&text[copied..hit.span.start]);
                let position = redacted.len();
                write!(redacted, "{MARKER_PREFIX}{}:{fingerprint}]", hit.rule)
                    .expect("writing to a String cannot fail");
                copied = hit.span.end;
                shifts.push((hit.span.end, redacted.len() as isize - copied as isize));
                found.push((
                    position,
                    Redaction {
                        rule: hit.rule,
                        path: path.to_owned(),
                        fingerprint,
                    },
                ));
            }
            redacted.push_str(&text[copied..]);
            let earlier = found.len() - shifts.len();
            for (position, _) in &mut found[..earlier] {
                // Markers never overlap a hit, so an old marker lies wholly after some prefix
                // of this round's hits.
                let shift = shifts
                    .iter()
                    .take_while(|(end, _)| *end <= *position)
                    .last()
                    .map_or(0, |&(_, s)| s);
                *position = position.saturating_add_signed(shift);
            }
            *text = redacted;
        }
        found.sort_by_key(|(position, _)| *position);
        out.extend(found.into_iter().map(|(_, redaction)| redaction));
    }

    fn fingerprint(&self, secret: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(secret.as_bytes());
        let digest = mac.finalize().into_bytes();
        hex::encode(&digest[..FINGERPRINT_HEX_LEN / 2])
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"vigil-test-fingerprint-key";

    // Fake credentials, written as `$NAME` in test inputs. Split with concat! so that secret
    // scanners do not mistake this file for a leak.
    const CANARIES: &[(&str, &str)] = &[
        // AWS's own documentation examples.
        ("$AWS_ID", concat!("AKIA", "IOSFODNN7EXAMPLE")),
        ("$AWS_SECRET", concat!("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY")),
        ("$GHP", concat!("ghp_", "FAKE0123456789abcdefghijklmnopqrstuv")),
        (
            "$GH_PAT",
            concat!(
                "github_pat_",
                "11FAKE0000000000000000_FAKEfake0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"
            ),
        ),
        (
            "$SLACK_HOOK",
            concat!(
                "https://hooks.slack",
                ".com/services/T00000000/B00000000/FAKEFAKEFAKEFAKEFAKEFAKE"
            ),
        ),
        (
            "$SLACK",
            concat!("xoxb-", "000000000000-0000000000000-FAKEfakeFAKEfakeFAKEfake"),
        ),
        (
            "$OPENAI_PROJ",
            concat!("sk-", "proj-FAKEfake0123456789FAKEfake0123456789abcdefXYZ"),
        ),
        (
            "$OPENAI",
            concat!("sk-", "FAKEfake0123456789FAKEfake0123456789FAKEfake0123"),
        ),
        (
            "$ANTHROPIC",
            concat!("sk-", "ant-api03-FAKEfake0123456789FAKEfake0123456789_FAKE-fake"),
        ),
        ("$STRIPE", concat!("sk_", "live_", "FAKE0123456789fakeFAKE01")),
        (
            "$JWT",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmYWtlIn0.FAKEsigFAKEsigFAKEsig0123456789",
        ),
        (
            "$PEM",
            concat!(
                "-----BEGIN RSA PRIVATE ",
                "KEY-----\nMIIEFAKEFAKEFAKE\nFAKEFAKE==\n-----END RSA PRIVATE KEY-----"
            ),
        ),
        ("$TOKEN", "Zk9qR2xXb3BtT1N4dkF3YjE2"),
        ("$PASSWORD", "hunter22"),
    ];

    /// Redacts `input` (JSON, with `$CANARY` placeholders) at path `params`, and checks the
    /// output (with fingerprints elided: `[REDACTED:rule]`), the redactions as `path: rule`,
    /// that no canary survives in the output or in the redactions' `Debug`, and that a second
    /// pass changes nothing.
    #[track_caller]
    fn check(input: &str, expected_output: &str, expected_redactions: &[&str]) {
        let (input, used) = substitute(input);
        let mut value: Value = serde_json::from_str(&input).expect("test input is JSON");
        let redactor = Redactor::new(KEY);
        let redactions = redactor.redact_json("params", &mut value);
        assert_redacted(
            &redactor,
            &value.to_string(),
            expected_output,
            &redactions,
            expected_redactions,
            &used,
        );

        let before = value.clone();
        let again = redactor.redact_json("params", &mut value);
        assert_eq!(again, [], "a second pass found more");
        assert_eq!(value, before, "a second pass changed the output");
    }

    /// [`check`] for [`Redactor::redact_text`]; `input` and `expected_output` are raw text.
    #[track_caller]
    fn check_text(name: &str, input: &str, expected_output: &str, expected_redactions: &[&str]) {
        let (mut text, used) = substitute_raw(input);
        let redactor = Redactor::new(KEY);
        let redactions = redactor.redact_text(name, &mut text);
        let (output, expected) = (
            Value::from(text.as_str()).to_string(),
            Value::from(expected_output).to_string(),
        );
        assert_redacted(&redactor, &output, &expected, &redactions, expected_redactions, &used);

        let before = text.clone();
        assert_eq!(redactor.redact_text(name, &mut text), [], "a second pass found more");
        assert_eq!(text, before, "a second pass changed the output");
    }

    #[track_caller]
    fn assert_redacted(
        redactor: &Redactor,
        output_json: &str,
        expected_json: &str,
        redactions: &[Redaction],
        expected_redactions: &[&str],
        used: &[&str],
    ) {
        let elided = FINGERPRINTS.replace_all(output_json, "[REDACTED:$rule]");
        let actual: Value = serde_json::from_str(&elided).expect("output is JSON");
        let expected = FINGERPRINTS.replace_all(expected_json, "[REDACTED:$rule]");
        let expected: Value = serde_json::from_str(&expected).expect("expected output is JSON");
        assert_eq!(actual, expected, "\nactual output: {actual}\n");

        let actual: Vec<String> = redactions.iter().map(|r| format!("{}: {}", r.path, r.rule)).collect();
        assert_eq!(actual, expected_redactions);
        for r in redactions {
            assert!(RULE_NAMES.contains(&r.rule), "{} is missing from RULE_NAMES", r.rule);
            let marker = format!("[REDACTED:{}:{}]", r.rule, r.fingerprint);
            assert!(output_json.contains(&marker), "{marker} is not in the output");
        }

        let debug = format!("{redactions:?} {redactor:?}");
        for canary in used {
            let escaped = Value::from(*canary).to_string();
            let escaped = escaped.trim_matches('"');
            assert!(!output_json.contains(escaped), "{canary} leaked into the output");
            assert!(!debug.contains(canary), "{canary} leaked into Debug");
        }
    }

    static FINGERPRINTS: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\[REDACTED:(?<rule>[a-z_]+):[0-9a-f]{16}\]").unwrap());

    /// Replaces `$CANARY`s with their JSON-escaped values; returns the canaries used.
    fn substitute(input: &str) -> (String, Vec<&'static str>) {
        substitute_with(input, |canary| {
            let json = Value::from(canary).to_string();
            json[1..json.len() - 1].to_owned()
        })
    }

    fn substitute_raw(input: &str) -> (String, Vec<&'static str>) {
        substitute_with(input, str::to_owned)
    }

    fn substitute_with(input: &str, encode: impl Fn(&str) -> String) -> (String, Vec<&'static str>) {
        let mut canaries = CANARIES.to_vec();
        // `$OPENAI_PROJ` before `$OPENAI`.
        canaries.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
        let mut text = input.to_owned();
        let mut used = Vec::new();
        for (name, canary) in canaries {
            if text.contains(name) {
                text = text.replace(name, &encode(canary));
                used.push(canary);
            }
        }
        (text, used)
    }

    #[test]
    fn every_known_credential_format_is_redacted_whatever_its_name() {
        let cases = [
            ("$AWS_ID", "aws_access_key"),
            ("$GHP", "github_token"),
            ("$GH_PAT", "github_token"),
            ("$SLACK", "slack_token"),
            ("$SLACK_HOOK", "slack_webhook"),
            ("$OPENAI", "openai_key"),
            ("$OPENAI_PROJ", "openai_key"),
            ("$ANTHROPIC", "anthropic_key"),
            ("$STRIPE", "stripe_key"),
            ("$JWT", "jwt"),
            ("$PEM", "private_key"),
        ];
        for (canary, rule) in cases {
            check(
                &format!(r#"{{"note": "{canary}"}}"#),
                &format!(r#"{{"note": "[REDACTED:{rule}]"}}"#),
                &[&format!("params.note: {rule}")],
            );
        }
    }

    #[test]
    fn known_formats_are_cut_out_of_surrounding_text() {
        check(
            r#"{"command": "export GITHUB_TOKEN=$GHP && gh pr list --repo rust-lang/rust"}"#,
            r#"{"command": "export GITHUB_TOKEN=[REDACTED:github_token] && gh pr list --repo rust-lang/rust"}"#,
            &["params.command: github_token"],
        );
        check(
            r#"{"log": "used $AWS_ID and $ANTHROPIC, then $OPENAI"}"#,
            r#"{"log": "used [REDACTED:aws_access_key] and [REDACTED:anthropic_key], then [REDACTED:openai_key]"}"#,
            &[
                "params.log: aws_access_key",
                "params.log: anthropic_key",
                "params.log: openai_key",
            ],
        );
        check(
            r#"{"file": "config:\n$PEM\nend"}"#,
            r#"{"file": "config:\n[REDACTED:private_key]\nend"}"#,
            &["params.file: private_key"],
        );
        // The key runs into the block, so the first round sees one overlapping match; the
        // second finds the key. Redactions still come in document order.
        check(
            r#"{"log": "x $OPENAI$PEM y $GHP"}"#,
            r#"{"log": "x [REDACTED:openai_key][REDACTED:private_key] y [REDACTED:github_token]"}"#,
            &[
                "params.log: openai_key",
                "params.log: private_key",
                "params.log: github_token",
            ],
        );
        // A block cut off before its END line (a truncated log) is still a private key.
        check(
            r#"{"stdout": "key follows -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"}"#,
            r#"{"stdout": "key follows [REDACTED:private_key]"}"#,
            &["params.stdout: private_key"],
        );
    }

    #[test]
    fn secrets_in_free_text_assignments_are_redacted_and_the_rest_kept() {
        check(
            r#"{"command": "curl -H 'Authorization: Bearer $TOKEN' https://api.example.com/v1/me"}"#,
            r#"{"command": "curl -H 'Authorization: Bearer [REDACTED:high_entropy]' https://api.example.com/v1/me"}"#,
            &["params.command: high_entropy"],
        );
        check(
            r#"{"url": "https://api.example.com/v1/data?api_key=$TOKEN&page=2"}"#,
            r#"{"url": "https://api.example.com/v1/data?api_key=[REDACTED:high_entropy]&page=2"}"#,
            &["params.url: high_entropy"],
        );
        check(
            r#"{"dsn": "postgres://app:$PASSWORD@db.internal:5432/prod"}"#,
            r#"{"dsn": "postgres://app:[REDACTED:url_password]@db.internal:5432/prod"}"#,
            &["params.dsn: url_password"],
        );
        check(
            r#"{"args": "mysql -u root --password=$PASSWORD prod"}"#,
            r#"{"args": "mysql -u root --password=[REDACTED:password] prod"}"#,
            &["params.args: password"],
        );
        check(
            r#"{"body": "{\"user\": \"alice\", \"password\": \"correct horse battery\"}"}"#,
            r#"{"body": "{\"user\": \"alice\", \"password\": \"[REDACTED:password]\"}"}"#,
            &["params.body: password"],
        );
        check(
            r#"{"config": "database:\n  user: admin\n  password: $PASSWORD\n"}"#,
            r#"{"config": "database:\n  user: admin\n  password: [REDACTED:password]\n"}"#,
            &["params.config: password"],
        );
        check(
            r#"{"command": "kubectl create secret generic db --from-literal=password=Sup3r-S3cret"}"#,
            r#"{"command": "kubectl create secret generic db --from-literal=password=[REDACTED:password]"}"#,
            &["params.command: password"],
        );
        check(
            r#"{"env": "AWS_REGION=us-east-1\nAWS_SECRET_ACCESS_KEY=$AWS_SECRET\n"}"#,
            r#"{"env": "AWS_REGION=us-east-1\nAWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_key]\n"}"#,
            &["params.env: aws_secret_key"],
        );
    }

    #[test]
    fn values_under_credential_names_are_redacted_by_shape() {
        // The auth scheme stays: it tells a responder what kind of credential leaked.
        check(
            r#"{"headers": {"Authorization": "Bearer $TOKEN", "x-api-key": "$TOKEN"}}"#,
            r#"{"headers": {"Authorization": "Bearer [REDACTED:high_entropy]", "x-api-key": "[REDACTED:high_entropy]"}}"#,
            &[
                "params.headers.Authorization: high_entropy",
                "params.headers.x-api-key: high_entropy",
            ],
        );
        // A known format wins over the generic rule for the same value.
        check(
            r#"{"authorization": "Bearer $JWT"}"#,
            r#"{"authorization": "Bearer [REDACTED:jwt]"}"#,
            &["params.authorization: jwt"],
        );
        check(
            r#"{"aws": {"secret_access_key": "$AWS_SECRET"}, "client_secret": "$TOKEN", "sessionToken": "$TOKEN"}"#,
            r#"{"aws": {"secret_access_key": "[REDACTED:aws_secret_key]"}, "client_secret": "[REDACTED:high_entropy]", "sessionToken": "[REDACTED:high_entropy]"}"#,
            &[
                "params.aws.secret_access_key: aws_secret_key",
                "params.client_secret: high_entropy",
                "params.sessionToken: high_entropy",
            ],
        );
        // A neutral name inherits from a credential-named parent; `username` does not.
        check(
            r#"{"credentials": {"username": "alice_the_admin", "value": "$TOKEN"}}"#,
            r#"{"credentials": {"username": "alice_the_admin", "value": "[REDACTED:high_entropy]"}}"#,
            &["params.credentials.value: high_entropy"],
        );
        // Only the random cookie value goes; `theme=dark` and analytics ids stay.
        check(
            r#"{"Cookie": "theme=dark; sid=$TOKEN; _ga=GA1.2.1234567.1700000000"}"#,
            r#"{"Cookie": "theme=dark; sid=[REDACTED:high_entropy]; _ga=GA1.2.1234567.1700000000"}"#,
            &["params.Cookie: high_entropy"],
        );
        // Name/value pairs: the sibling `name` is the value's real name.
        check(
            r#"{"env": [{"name": "DB_PASSWORD", "value": "$PASSWORD"}, {"name": "LOG_LEVEL", "value": "verbose"}], "headers": [{"key": "Authorization", "value": "Bearer $TOKEN"}]}"#,
            r#"{"env": [{"name": "DB_PASSWORD", "value": "[REDACTED:password]"}, {"name": "LOG_LEVEL", "value": "verbose"}], "headers": [{"key": "Authorization", "value": "Bearer [REDACTED:high_entropy]"}]}"#,
            &["params.env[0].value: password", "params.headers[0].value: high_entropy"],
        );
        check(
            r#"{"api_keys": ["$TOKEN", "$STRIPE"]}"#,
            r#"{"api_keys": ["[REDACTED:high_entropy]", "[REDACTED:stripe_key]"]}"#,
            &["params.api_keys[0]: high_entropy", "params.api_keys[1]: stripe_key"],
        );
    }

    #[test]
    fn password_like_names_redact_even_guessable_values() {
        check(
            r#"{"db": {"passphrase": "correct horse battery staple", "password": "$PASSWORD"}}"#,
            r#"{"db": {"passphrase": "[REDACTED:password]", "password": "[REDACTED:password]"}}"#,
            &["params.db.passphrase: password", "params.db.password: password"],
        );
        check(
            r#"{"headers": {"Authorization": "Basic dXNlcjpwYXNz"}, "pin_secret": "123456"}"#,
            r#"{"headers": {"Authorization": "Basic [REDACTED:password]"}, "pin_secret": "[REDACTED:password]"}"#,
            &["params.headers.Authorization: password", "params.pin_secret: password"],
        );
        // Too short to be worth a finding, and placeholders that only name a secret.
        check(
            r#"{"a": {"password": "abc"}, "b": {"password": "${DB_PASSWORD}"}, "c": {"password": "********"}, "d": {"password": "<your-password>"}, "e": {"secret": "{{ vault.db }}"}, "f": {"pwd": "/home/alice/project"}}"#,
            r#"{"a": {"password": "abc"}, "b": {"password": "${DB_PASSWORD}"}, "c": {"password": "********"}, "d": {"password": "<your-password>"}, "e": {"secret": "{{ vault.db }}"}, "f": {"pwd": "/home/alice/project"}}"#,
            &[],
        );
    }

    #[test]
    fn ordinary_parameters_are_left_alone() {
        let quiet = [
            r#"{"repo": "rust-lang/rust", "branch": "feature/redact-secrets", "url": "https://github.com/rust-lang/rust/pull/12345"}"#,
            r#"{"id": "550e8400-e29b-41d4-a716-446655440000", "request_id": "req_8f14e45fceea167a5a36dedd4bea2543"}"#,
            r#"{"session_id": "a8f3e9c1b7d24f6e9a0b1c2d3e4f5a6b", "sessionId": "9b2c7e1f4a8d3e6b0c5f2a9d7e4b1c8f"}"#,
            r#"{"count": 42, "ratio": 0.5, "dry_run": true, "limit": null, "token_count": "123456789012345678"}"#,
            r#"{"query": "What is the weather in Paris tomorrow? Use the key: location and the token: city.", "title": "Rotate keys"}"#,
            r#"{"commit": "e83c5163316f89bfbd7d9ab23ca2e25604af2909", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}"#,
            r#"{"content": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "encoding": "base64"}"#,
            r#"{"bucket": "invoices", "key": "2024/05/a8f3e9c1b7d2/invoice.pdf", "sort_key": "Zk9qR2xXb3BtT1N4dkF3YjE2"}"#,
            r#"{"next_page_token": "CiAKGjBpNDd2Nmp6aGx0ZGhzbDRrNjVrNnZ4YWJ3cw", "max_tokens": 1024, "token_type": "Bearer", "expires_in": 3600}"#,
            r#"{"secret_name": "prod/db/password", "api_key_id": "key-1234", "keyword": "rust secrets manager", "author": "Ada Lovelace"}"#,
            r#"{"public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFAKEFAKEFAKE", "token_url": "https://login.example.com/oauth2/v2.0/token"}"#,
            r#"{"api_key": "{{ secrets.OPENAI }}", "token": "$GITHUB_TOKEN", "auth": "oauth2", "secret": "<your-secret-here>"}"#,
            r#"{"email": "alice@example.com", "user": "alice", "created_at": "2024-05-01T10:00:00Z"}"#,
            r#"{"message": "the token expired, please re-authenticate", "note": "password: reset requested"}"#,
            r#"{"model": "sk-learn-classification-demo-2024", "task": "disk-usage-report-for-the-month"}"#,
            r#"{"auth": {"type": "bearer", "token_url": "https://auth.example.com/token", "scopes": ["repo", "read:org"]}}"#,
            r#"{"endpoint": "https://example.com:8443@internal/path", "api_key": "2024-05-01T10:00:00.000Z"}"#,
            r#"{"code": "password = get_password()\nconst secret = config.secret;\napi_key = settings.OPENAI_API_KEY"}"#,
            r#"{"sql": "SELECT id FROM users WHERE api_key = $1 AND password_hash IS NOT NULL"}"#,
            r#"{"text": "Password: forgotten? Reset it from the login page.", "html": "<input type=\"password\" name=\"password\">"}"#,
            r#"{"authorization": "Bearer", "diff": "+AWS_SECRET_ACCESS_KEY=${{ secrets.AWS }}"}"#,
            r#"{"content": "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----"}"#,
        ];
        for input in quiet {
            check(input, input, &[]);
        }
    }

    #[test]
    fn large_random_payloads_do_not_trip_the_format_rules() {
        // Base64 images and file contents are common parameters; a rule that fires by chance
        // inside one would make noise on every upload.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let standard: String = (0..200_000).map(|_| B64[(next() % 64) as usize] as char).collect();
        let url_safe: String = (0..200_000).map(|_| B64URL[(next() % 64) as usize] as char).collect();
        let input = serde_json::json!({ "content": standard, "data": url_safe }).to_string();
        check(&input, &input, &[]);
    }

    #[test]
    fn arbitrary_text_never_panics_and_redacts_idempotently() {
        // Fragments chosen to collide: keywords, separators, quotes, markers, multi-byte
        // characters next to the byte offsets the rules slice at.
        const FRAGMENTS: &[&str] = &[
            "password",
            "token",
            "api_key",
            "Authorization",
            "secret",
            "cookie",
            "aws",
            "=",
            ": ",
            "\"",
            "'",
            "\\\"",
            " ",
            "\n",
            ";",
            "&",
            "Bearer ",
            "://",
            "@",
            "user:",
            "sk-",
            "ghp_",
            "AKIA",
            "eyJ",
            ".",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
            "[REDACTED:jwt:0123456789abcdef]",
            "Zk9qR2xXb3BtT1N4dkF3YjE2",
            "IOSFODNN7EXAMPLE",
            "hunter22",
            "é",
            "🔑",
            "ключ",
            "0",
            "Q",
            "_",
            "-",
        ];
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let redactor = Redactor::new(KEY);
        for _ in 0..5_000 {
            let len = next() % 24;
            let mut text: String = (0..len)
                .map(|_| FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize])
                .collect();
            let name = ["note", "password", "token", "Cookie", "aws", "value"][(next() % 6) as usize];
            let original = text.clone();
            let _ = redactor.redact_text(name, &mut text);
            let once = text.clone();
            let again = redactor.redact_text(name, &mut text);
            assert_eq!(
                (again, &text),
                (vec![], &once),
                "not idempotent for {name}: {original:?}"
            );
        }
    }

    #[test]
    fn paths_name_nested_objects_and_array_elements() {
        check(
            r#"{"headers": {"x.api.key": "$TOKEN"}, "items": ["a", "b", "$GHP"], "nested": {"deep": [{"token": "$TOKEN"}]}}"#,
            r#"{"headers": {"x.api.key": "[REDACTED:high_entropy]"}, "items": ["a", "b", "[REDACTED:github_token]"], "nested": {"deep": [{"token": "[REDACTED:high_entropy]"}]}}"#,
            &[
                r#"params.headers["x.api.key"]: high_entropy"#,
                "params.items[2]: github_token",
                "params.nested.deep[0].token: high_entropy",
            ],
        );
    }

    #[test]
    fn existing_markers_are_left_as_they_are() {
        let input = r#"{"token": "[REDACTED:high_entropy:0123456789abcdef]", "note": "Bearer [REDACTED:jwt:0123456789abcdef]", "cmd": "PASSWORD=[REDACTED:password:0123456789abcdef] run", "log": "[REDACTED:aws_secret_key:0123456789abcdef]"}"#;
        check(input, input, &[]);
    }

    #[test]
    fn redact_text_uses_the_field_name_as_context() {
        check_text("credential_ref", "vault:kv/prod/stripe", "vault:kv/prod/stripe", &[]);
        check_text(
            "credential_ref",
            "$STRIPE",
            "[REDACTED:stripe_key]",
            &["credential_ref: stripe_key"],
        );
        check_text("password", "$PASSWORD", "[REDACTED:password]", &["password: password"]);
        check_text(
            "error",
            "403 for key $AWS_ID: signature mismatch",
            "403 for key [REDACTED:aws_access_key]: signature mismatch",
            &["error: aws_access_key"],
        );
    }

    #[test]
    fn fingerprints_correlate_one_secret_under_one_key_only() {
        let secret = "AKIAIOSFODNN7EXAMPLE";
        let fingerprints = |key: &[u8]| {
            let mut value = serde_json::json!({ "a": secret, "b": [secret], "c": "AKIAI44QH8DHBEXAMPLE" });
            let fps: Vec<String> = Redactor::new(key)
                .redact_json("p", &mut value)
                .into_iter()
                .map(|r| r.fingerprint)
                .collect();
            fps
        };
        let first = fingerprints(KEY);
        assert_eq!(first.len(), 3);
        assert_eq!(first[0], first[1], "the same secret twice");
        assert_ne!(first[0], first[2], "two secrets");
        assert_eq!(first, fingerprints(KEY), "stable across redactors");
        let other = fingerprints(b"another-key");
        assert_ne!(first[0], other[0], "a different key");

        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
        mac.update(secret.as_bytes());
        let full = hex::encode(mac.finalize().into_bytes());
        assert_eq!(first[0], full[..16]);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let redactor = Redactor::new(b"super-secret-hmac-key");
        assert_eq!(format!("{redactor:?}"), "Redactor { .. }");
        assert!(!format!("{redactor:#?}").contains("super-secret"));
    }

    /// Standard base64 with padding, for building encoded canaries.
    fn base64_of(bytes: &[u8]) -> String {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn url_safe_unpadded(standard: &str) -> String {
        standard.trim_end_matches('=').replace('+', "-").replace('/', "_")
    }

    fn percent_all(text: &str) -> String {
        text.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    /// Redacts `{key: value}` and returns the output and the redactions as `path: rule`;
    /// asserts a second pass changes nothing.
    fn redact_one(key: &str, value: &str) -> (Value, Vec<String>) {
        let redactor = Redactor::new(KEY);
        let mut params = serde_json::json!({ key: value });
        let found = redactor.redact_json("params", &mut params);
        let once = params.clone();
        assert_eq!(
            redactor.redact_json("params", &mut params),
            [],
            "a second pass found more"
        );
        assert_eq!(params, once, "a second pass changed the output");
        (
            params,
            found.iter().map(|r| format!("{}: {}", r.path, r.rule)).collect(),
        )
    }

    #[test]
    fn encoded_secrets_are_found_decoded_and_the_encoded_value_redacted() {
        let ghp = CANARIES.iter().find(|(n, _)| *n == "$GHP").unwrap().1;
        let aws = CANARIES.iter().find(|(n, _)| *n == "$AWS_ID").unwrap().1;
        let standard = base64_of(ghp.as_bytes());
        let encodings = [
            ("base64", standard.clone()),
            ("base64 unpadded", standard.trim_end_matches('=').to_owned()),
            ("base64url", url_safe_unpadded(&standard)),
            (
                "base64 of a sentence",
                base64_of(format!("deploy with {ghp} please").as_bytes()),
            ),
            ("hex", hex::encode(ghp)),
            ("upper-case hex", hex::encode_upper(ghp)),
            ("percent-encoded", percent_all(ghp)),
            ("base64 of hex", base64_of(hex::encode(ghp).as_bytes())),
            ("base64 of percent-encoding", base64_of(percent_all(ghp).as_bytes())),
        ];
        let redactor = Redactor::new(KEY);
        let plain = redactor.fingerprint(ghp);
        for (what, encoded) in &encodings {
            let (output, found) = redact_one("note", encoded);
            assert_eq!(found, ["params.note: github_token"], "{what}");
            assert_eq!(
                output["note"],
                format!("[REDACTED:github_token:{plain}]"),
                "{what}: the whole encoded value, fingerprinted as the plain secret"
            );
        }
        // In running text, only the encoded span goes.
        let (output, found) = redact_one("q", &format!("key=%41KIA{}&page=2", &aws[4..]));
        assert_eq!(found, ["params.q: aws_access_key"]);
        let output = output["q"].as_str().unwrap();
        assert!(
            output.starts_with("key=[REDACTED:aws_access_key:") && output.ends_with("]&page=2"),
            "{output}"
        );
        let (output, _) = redact_one("cmd", &format!("echo {} | base64 -d", url_safe_unpadded(&standard)));
        let output = output["cmd"].as_str().unwrap();
        assert!(
            output.starts_with("echo [REDACTED:github_token:") && output.ends_with("] | base64 -d"),
            "{output}"
        );
    }

    #[test]
    fn keys_and_identifiers_holding_secrets_are_redacted() {
        let ghp = CANARIES.iter().find(|(n, _)| *n == "$GHP").unwrap().1;
        let redactor = Redactor::new(KEY);
        let mut params = serde_json::json!({ ghp: "x", "nested": { format!("h-{ghp}"): {"note": 1} }, "plain": "ok" });
        let found = redactor.redact_json("params", &mut params);
        let text = params.to_string();
        assert!(!text.contains(ghp), "{text}");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found.iter().all(|r| r.rule == "github_token" && !r.path.contains(ghp)),
            "{found:?}"
        );
        assert_eq!(params["plain"], "ok");
        let again = params.clone();
        assert_eq!(redactor.redact_json("params", &mut params), []);
        assert_eq!(params, again);

        // A tool name or an event id is replaced whole, by a fingerprint of the whole value:
        // a retry gets the same marker, another value another one.
        for name in ["tool", "event_id"] {
            let mut first = format!("run-{ghp}");
            let found = redactor.redact_ident(name, &mut first);
            assert_eq!(found.len(), 1);
            assert_eq!((found[0].rule, found[0].path.as_str()), ("github_token", name));
            assert_eq!(first, format!("[REDACTED:github_token:{}]", found[0].fingerprint));
            let mut retry = format!("run-{ghp}");
            let _ = redactor.redact_ident(name, &mut retry);
            assert_eq!(retry, first);
            let mut other = format!("run2-{ghp}");
            let _ = redactor.redact_ident(name, &mut other);
            assert_ne!(other, first);
            assert_eq!(redactor.redact_ident(name, &mut first), [], "idempotent");
        }
        // Ordinary names and ids stay, random ids included.
        for (name, value) in [
            ("tool", "github.create_issue"),
            ("event_id", "01HZX3K9Q8V7T6R5P4N3M2K1J0"),
            ("event_id", "V1StGXR8_Z5jdHi6B-myT"),
            ("event_id", "550e8400-e29b-41d4-a716-446655440000"),
        ] {
            let mut text = value.to_owned();
            assert_eq!(redactor.redact_ident(name, &mut text), [], "{name} {value}");
        }
        // A random token as a tool name is a secret; as an event id, a random id.
        let mut tool = "q8Vt3ZkPn2Lx7RbW4sYc9HdJ6mTf1GaQe5UoKi0N".to_owned();
        assert_eq!(redactor.redact_ident("tool", &mut tool)[0].rule, "high_entropy");
    }

    #[test]
    fn a_credential_split_across_adjacent_values_is_redacted_in_both() {
        let ghp = CANARIES.iter().find(|(n, _)| *n == "$GHP").unwrap().1;
        let aws = CANARIES.iter().find(|(n, _)| *n == "$AWS_ID").unwrap().1;
        let redactor = Redactor::new(KEY);
        for (a, b) in [("part1", "part2"), ("token_start", "token_end"), ("x", "y")] {
            let mut params = serde_json::json!({ a: &ghp[..20], b: &ghp[20..], "other": "kept" });
            let found = redactor.redact_json("params", &mut params);
            let text = params.to_string();
            assert!(
                !text.contains(&ghp[..20]) && !text.contains(&ghp[20..]),
                "{a}/{b}: {text}"
            );
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].rule, "github_token");
            assert_eq!(found[0].fingerprint, redactor.fingerprint(ghp));
            assert!(found[0].path.contains(" + "), "{}", found[0].path);
            assert_eq!(params["other"], "kept");
            let again = params.clone();
            assert_eq!(redactor.redact_json("params", &mut params), []);
            assert_eq!(params, again);
        }
        // In an array, and with text around the halves.
        let mut params =
            serde_json::json!({"args": ["--key", format!("id {}", &aws[..9]), format!("{} end", &aws[9..])]});
        let found = redactor.redact_json("params", &mut params);
        assert_eq!(found.len(), 1, "{params}");
        assert_eq!(found[0].path, "params.args[1] + params.args[2]");
        let args = params["args"].as_array().unwrap();
        assert!(args[1].as_str().unwrap().starts_with("id [REDACTED:aws_access_key:"));
        assert!(args[2].as_str().unwrap().ends_with("] end"));
        // A whole credential next to an ordinary word is one secret, not a split one.
        let (output, found) = redact_one("a", ghp);
        assert_eq!(found, ["params.a: github_token"], "{output}");
        let mut params = serde_json::json!({"a": ghp, "b": "suffix123"});
        let found = redactor.redact_json("params", &mut params);
        assert_eq!(found.len(), 1);
        assert_eq!(params["b"], "suffix123");
    }

    #[test]
    fn random_tokens_are_redacted_under_any_name_and_random_ids_under_id_names_are_not() {
        let token = "q8Vt3ZkPn2Lx7RbW4sYc9HdJ6mTf1GaQe5UoKi0N";
        for key in ["note", "value", "data", "x"] {
            let (_, found) = redact_one(key, token);
            assert_eq!(found, [format!("params.{key}: high_entropy")]);
        }
        let (output, found) = redact_one("message", &format!("please deploy with {token}, thanks"));
        assert_eq!(found, ["params.message: high_entropy"]);
        assert!(
            output["message"]
                .as_str()
                .unwrap()
                .starts_with("please deploy with [REDACTED:high_entropy:")
        );
        for key in [
            "id",
            "request_id",
            "sha256",
            "etag",
            "next_page_token",
            "cursor",
            "nonce",
        ] {
            let (_, found) = redact_one(key, token);
            assert_eq!(found, Vec::<String>::new(), "{key}");
        }
    }

    #[test]
    fn redactor_can_be_shared_across_shard_workers() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Redactor>();
    }
}
