//! The tool-call event, Vigil's unit of observation, and the rules that turn an untrusted
//! JSON object from an agent runtime into one.
//!
//! Parse, don't validate: every identifier is a newtype whose only constructor checks it, so
//! code past ingest never re-checks a length or a character set.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// Why an event (or one of its fields) was refused; `field` is relative to the event
/// (`tool`, `params`), the caller prefixes the event's position in the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// A printable identifier: no control characters, bounded length. Agents control these
/// strings, so the bound protects memory and the character rule protects logs and pages.
fn parse_ident(field: &str, s: &str, max: usize) -> Result<String, FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if s.chars().count() > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(field, "must not contain control characters"));
    }
    Ok(s.to_owned())
}

macro_rules! ident_newtype {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(s: &str) -> Result<Self, FieldError> {
                parse_ident(stringify!($name), s, $max).map(Self)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

ident_newtype!(
    /// The name of a tool as the runtime knows it, e.g. `github.create_issue`.
    ToolName,
    200
);
ident_newtype!(
    /// The runtime's id for one call; unique per tenant, the idempotency key.
    EventId,
    128
);

/// A tenant id: 1–64 of `[a-z0-9_-]`. Narrower than other identifiers because it appears in
/// Vault paths, metric-free logs and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new("id", "must be 1-64 characters of a-z, 0-9, '_' or '-'"))
        }
    }
}

/// The number of partitions tenants hash to; fixed, as partitions are what replicas own.
pub const PARTITIONS: u16 = 64;

impl TenantId {
    /// The partition the tenant belongs to: the first byte of SHA-256 of its id, modulo
    /// [`PARTITIONS`] (64 divides 256, so each partition gets an even share). Stable across
    /// versions and processes, unlike `std`'s hasher.
    pub fn partition(&self) -> u16 {
        use sha2::Digest;
        u16::from(sha2::Sha256::digest(self.0.as_bytes())[0]) % PARTITIONS
    }
}

impl TryFrom<String> for TenantId {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Error,
    /// The downstream refused authorisation: the signal of a revoked or stolen key.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "error" => Some(Outcome::Error),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// One tool call, validated. Free-text fields may still hold credentials until the
/// redactor has run; ingest redacts before anything is stored or logged.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallEvent {
    pub event_id: EventId,
    pub timestamp: DateTime<Utc>,
    pub tool: ToolName,
    /// The call's arguments: always a JSON object (empty when the runtime sent none).
    pub params: Value,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub duration_ms: Option<i64>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub credential_ref: Option<String>,
}

/// Limits and clock for [`ToolCallEvent::parse`]; time is a parameter so tests and replays
/// decide what "now" is.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    pub now: DateTime<Utc>,
    /// How far in the future a timestamp may be (clock skew between runtime and Vigil).
    pub max_future: Duration,
    /// Events older than this are refused: they could not be kept anyway.
    pub retention: Duration,
}

/// Serialized size limit of `params`.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;

#[cfg(any(test, feature = "test-support"))]
impl ToolCallEvent {
    /// A call for tests: `tool` at `at` with `params`, ending in `outcome`, nothing optional.
    pub fn sample(id: &str, tool: &str, at: DateTime<Utc>, params: Value, outcome: Outcome) -> Self {
        ToolCallEvent {
            event_id: EventId::parse(id).unwrap(),
            timestamp: at,
            tool: ToolName::parse(tool).unwrap(),
            params,
            outcome,
            error_code: None,
            duration_ms: None,
            agent_id: None,
            session_id: None,
            credential_ref: None,
        }
    }
}

impl ToolCallEvent {
    /// Builds an event from one element of a batch, checking every rule of the API contract.
    /// Returns the `tenant_id` the event claims, if any, for the caller to compare with the
    /// token's tenant.
    pub fn parse(raw: &Value, limits: &EventLimits) -> Result<(Self, Option<String>), FieldError> {
        let obj = raw
            .as_object()
            .ok_or_else(|| FieldError::new("", "must be an object"))?;
        let event_id = EventId::parse(required_str(obj, "event_id")?).map_err(|e| rename(e, "event_id"))?;
        let tool = ToolName::parse(required_str(obj, "tool")?).map_err(|e| rename(e, "tool"))?;

        let ts_text = required_str(obj, "timestamp")?;
        // To the microsecond, the event log's precision: what the detectors learn from an
        // event is what a replay of the log reads back.
        let timestamp = DateTime::parse_from_rfc3339(ts_text)
            .map_err(|_| FieldError::new("timestamp", "must be an RFC 3339 timestamp with an offset"))?
            .with_timezone(&Utc)
            .trunc_subsecs(6);
        if timestamp > limits.now + limits.max_future {
            return Err(FieldError::new(
                "timestamp",
                format!("is more than {} seconds in the future", limits.max_future.num_seconds()),
            ));
        }
        if timestamp < limits.now - limits.retention {
            return Err(FieldError::new(
                "timestamp",
                format!("is older than the retention of {} days", limits.retention.num_days()),
            ));
        }

        let outcome_text = required_str(obj, "outcome")?;
        let outcome = Outcome::parse(outcome_text)
            .ok_or_else(|| FieldError::new("outcome", "must be one of success, error, denied"))?;

        let params = match obj.get("params") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => {
                let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
                if size > MAX_PARAMS_BYTES {
                    return Err(FieldError::new(
                        "params",
                        format!("must be at most {MAX_PARAMS_BYTES} bytes"),
                    ));
                }
                refuse_nul(v, &mut "params".to_owned())?;
                v.clone()
            }
            Some(_) => return Err(FieldError::new("params", "must be an object")),
        };

        let duration_ms = match obj.get("duration_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .filter(|d| *d >= 0)
                    .ok_or_else(|| FieldError::new("duration_ms", "must be an integer >= 0"))?,
            ),
        };

        let tenant_id = optional_str(obj, "tenant_id", TenantId::MAX_LEN)?;
        let event = ToolCallEvent {
            event_id,
            timestamp,
            tool,
            params,
            outcome,
            error_code: optional_str(obj, "error_code", 64)?,
            duration_ms,
            agent_id: optional_str(obj, "agent_id", 128)?,
            session_id: optional_str(obj, "session_id", 128)?,
            credential_ref: optional_str(obj, "credential_ref", 256)?,
        };
        Ok((event, tenant_id))
    }
}

impl TenantId {
    pub const MAX_LEN: usize = 64;
}

/// Refuses the NUL character (U+0000) anywhere in `value`, in a string or in a key, naming
/// where it is (`params.note`, `params.list[2]`; for a key, the object holding it).
///
/// Postgres stores NUL neither in `text` nor in `jsonb`, so such an event could never be
/// written; refusing it here is what keeps it from failing a group commit that holds other
/// tenants' events. Refused rather than escaped: an escape would be lossy unless every reader
/// undid it, and no tool call has a use for the character. Identifiers and labels refuse it
/// with every other control character ([`parse_ident`]).
fn refuse_nul(value: &Value, path: &mut String) -> Result<(), FieldError> {
    const NUL: &str = "must not contain the NUL character (U+0000), which cannot be stored";
    match value {
        Value::String(s) if s.contains('\0') => Err(FieldError::new(path, NUL)),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                refuse_nul(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                if key.contains('\0') {
                    return Err(FieldError::new(
                        path,
                        "must not hold a key with the NUL character (U+0000), which cannot be stored",
                    ));
                }
                let len = path.len();
                push_key(path, key);
                refuse_nul(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Appends `.key` (just `key` to an empty path), or `["key"]` when the key would make the
/// dotted path ambiguous. Validation and redaction name places in `params` alike.
pub(crate) fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::from(key).to_string());
        path.push(']');
    }
}

fn rename(mut e: FieldError, field: &str) -> FieldError {
    e.field = field.to_owned();
    e
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(FieldError::new(field, "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

fn optional_str(obj: &Map<String, Value>, field: &str, max: usize) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_ident(field, s, max).map(Some),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

/// The characters agents' tool names separate words with: `github.list_issues`,
/// `admin_export_all_users`, `delete-user`, `fs/read`, `db:query`, MCP's `server__tool`.
const SEPARATORS: &[u8] = b"._-/:";

/// Glob over tool names: `*` matches any run of characters (dots included), `~` a word
/// boundary (one separator of [`SEPARATORS`], or the start or end of the name), everything
/// else matches itself. `github.*` matches `github.create_issue`; `*` matches every tool;
/// `*~admin~*` matches `admin.export`, `admin_export_all_users`, `mcp__admin_users` and
/// `ops/admin`, not `badminton.scores`.
pub fn glob_matches(pattern: &str, tool: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), tool.as_bytes());
    // reach[j]: the pattern so far matches exactly the first j bytes of the tool name.
    let mut reach = vec![false; t.len() + 1];
    reach[0] = true;
    for &c in p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            if !reach[j] {
                continue;
            }
            match c {
                b'*' => next[j..].iter_mut().for_each(|r| *r = true),
                b'~' => {
                    if j == 0 || j == t.len() {
                        next[j] = true;
                    }
                    if j < t.len() && SEPARATORS.contains(&t[j]) {
                        next[j + 1] = true;
                    }
                }
                _ if j < t.len() && t[j] == c => next[j + 1] = true,
                _ => {}
            }
        }
        reach = next;
    }
    reach[t.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> EventLimits {
        EventLimits {
            now: "2026-11-26T12:00:00Z".parse().unwrap(),
            max_future: Duration::minutes(5),
            retention: Duration::days(30),
        }
    }

    fn valid() -> Value {
        json!({"event_id": "e-1", "timestamp": "2026-11-26T11:59:00+01:00", "tool": "db.query",
               "outcome": "success", "params": {"q": 1}, "duration_ms": 12})
    }

    #[track_caller]
    fn check_refused(patch: Value, field: &str) {
        let mut raw = valid();
        for (k, v) in patch.as_object().unwrap() {
            raw[k] = v.clone();
        }
        let err = ToolCallEvent::parse(&raw, &limits()).unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }

    #[test]
    fn a_valid_event_parses_with_its_offset_normalised() {
        let (e, tenant) = ToolCallEvent::parse(&valid(), &limits()).unwrap();
        assert_eq!(e.timestamp, "2026-11-26T10:59:00Z".parse::<DateTime<Utc>>().unwrap());
        let fine = json!({"event_id": "e-2", "timestamp": "2026-11-26T11:59:00.123456789Z", "tool": "db.query",
                          "outcome": "success"});
        let (e, _) = ToolCallEvent::parse(&fine, &limits()).unwrap();
        assert_eq!(
            e.timestamp,
            "2026-11-26T11:59:00.123456Z".parse::<DateTime<Utc>>().unwrap(),
            "kept to the microsecond, as the log stores it"
        );
        assert_eq!(e.tool.as_ref(), "db.query");
        assert_eq!(tenant, None);
    }

    #[test]
    fn every_rule_names_its_field() {
        check_refused(json!({"event_id": null}), "event_id");
        check_refused(json!({"event_id": "x".repeat(129)}), "event_id");
        check_refused(json!({"tool": ""}), "tool");
        check_refused(json!({"tool": "a\u{0007}b"}), "tool");
        check_refused(json!({"tool": 5}), "tool");
        check_refused(json!({"timestamp": "yesterday"}), "timestamp");
        check_refused(json!({"timestamp": "2026-11-26T12:06:00Z"}), "timestamp");
        check_refused(json!({"timestamp": "2026-01-01T00:00:00Z"}), "timestamp");
        check_refused(json!({"outcome": "maybe"}), "outcome");
        check_refused(json!({"params": [1, 2]}), "params");
        check_refused(json!({"params": {"blob": "x".repeat(MAX_PARAMS_BYTES)}}), "params");
        check_refused(json!({"duration_ms": -1}), "duration_ms");
        check_refused(json!({"duration_ms": 1.5}), "duration_ms");
        check_refused(json!({"error_code": "x".repeat(65)}), "error_code");
        check_refused(json!({"agent_id": "x".repeat(129)}), "agent_id");
        check_refused(json!({"credential_ref": "x".repeat(257)}), "credential_ref");
    }

    /// Postgres cannot store U+0000: every string field refuses it, wherever it hides.
    #[test]
    fn the_nul_character_is_refused_in_every_field_and_named() {
        for field in [
            "event_id",
            "tool",
            "timestamp",
            "outcome",
            "error_code",
            "agent_id",
            "session_id",
            "credential_ref",
            "tenant_id",
        ] {
            check_refused(json!({ field: "a\u{0000}b" }), field);
        }
        check_refused(json!({"params": {"note": "a\u{0000}b"}}), "params.note");
        check_refused(json!({"params": {"a": {"b": ["ok", "\u{0000}"]}}}), "params.a.b[1]");
        check_refused(json!({"params": {"a b": {"c": "\u{0000}"}}}), r#"params["a b"].c"#);
        check_refused(json!({"params": {"k\u{0000}": 1}}), "params");
        check_refused(json!({"params": {"a": [{"k\u{0000}": 1}]}}), "params.a[0]");
    }

    #[test]
    fn a_key_with_nul_is_never_echoed_in_the_field() {
        let mut raw = valid();
        raw["params"] = json!({"x": {"tok\u{0000}en": true}});
        let err = ToolCallEvent::parse(&raw, &limits()).unwrap_err();
        assert_eq!(err.field, "params.x");
        assert!(!err.to_string().contains("tok"), "{err}");
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: a replica of another version must place a tenant where this one does.
        assert_eq!(TenantId::parse("acme").unwrap().partition(), 0x82 % 64);
        let mut seen = [0usize; PARTITIONS as usize];
        for i in 0..6400 {
            seen[usize::from(TenantId::parse(&format!("tenant-{i}")).unwrap().partition())] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn tenant_ids_are_narrow() {
        assert!(TenantId::parse("acme_prod-2").is_ok());
        for bad in ["", "Acme", "a b", "a/b", &"a".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs_match_tool_names() {
        for (pattern, tool, expect) in [
            ("github.*", "github.create_issue", true),
            ("github.*", "github", false),
            ("github.*", "gitlab.create_issue", false),
            ("*", "anything.at.all", true),
            ("db.query", "db.query", true),
            ("db.query", "db.query2", false),
            ("*.read", "storage.read", true),
            ("*.read", "storage.reader", false),
            ("s*e.*d", "storage.read", true),
            ("*~admin~*", "admin_export_all_users", true),
            ("*~admin~*", "mcp__admin_users", true),
            ("*~admin~*", "ops/admin", true),
            ("*~admin~*", "admin", true),
            ("*~admin~*", "badminton.scores", false),
            ("*~admin~*", "administer", false),
            ("~a", "a", true),
            ("a~b", "ab", false),
            ("é*~x", "é.x", true),
        ] {
            assert_eq!(glob_matches(pattern, tool), expect, "{pattern} vs {tool}");
        }
    }
}
