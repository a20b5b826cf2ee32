//! What counts as a credential: the known key formats, the free-text `name=value` shapes, and
//! the name-driven heuristics for values that have no recognisable format.
//!
//! Everything here answers one question, "which byte ranges of this string are secrets, and by
//! which rule?" ([`scan`]). Replacing them and fingerprinting them is the caller's job, so the
//! rules can be tested without a key.
//!
//! The rules lean towards false negatives on ordinary parameters: a redaction rewrites the event
//! that baselines learn from and raises a `secret_in_payload` finding, so a rule that fires on
//! S3 object keys or pagination cursors would bury real leaks under noise.

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};

use super::decode::{self, Budget};

/// Every rule name a [`super::Redaction`] can carry. A fixed set, so it is safe as a metric label.
pub const RULE_NAMES: &[&str] = &[
    PRIVATE_KEY,
    JWT,
    ANTHROPIC_KEY,
    OPENAI_KEY,
    STRIPE_KEY,
    GITHUB_TOKEN,
    SLACK_WEBHOOK,
    SLACK_TOKEN,
    AWS_ACCESS_KEY,
    AWS_SECRET_KEY,
    URL_PASSWORD,
    PASSWORD,
    HIGH_ENTROPY,
];

const PRIVATE_KEY: &str = "private_key";
const JWT: &str = "jwt";
const ANTHROPIC_KEY: &str = "anthropic_key";
const OPENAI_KEY: &str = "openai_key";
const STRIPE_KEY: &str = "stripe_key";
const GITHUB_TOKEN: &str = "github_token";
const SLACK_WEBHOOK: &str = "slack_webhook";
const SLACK_TOKEN: &str = "slack_token";
const AWS_ACCESS_KEY: &str = "aws_access_key";
const AWS_SECRET_KEY: &str = "aws_secret_key";
const URL_PASSWORD: &str = "url_password";
/// A value under a password-like name that is not random enough for `high_entropy`: people
/// choose passwords, so their shape proves nothing; the name is the evidence.
const PASSWORD: &str = "password";
const HIGH_ENTROPY: &str = "high_entropy";

/// One secret found in a string: the byte range of the secret itself (without a surrounding
/// `Bearer ` or `name=`), and the rule that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub rule: &'static str,
    pub span: Range<usize>,
    /// For a secret found in a decoded form (base64, hex, percent-encoding), the decoded
    /// secret: it is what gets fingerprinted, so the marker correlates with the plain secret.
    pub decoded: Option<String>,
}

impl Hit {
    fn new(rule: &'static str, span: Range<usize>) -> Hit {
        Hit {
            rule,
            span,
            decoded: None,
        }
    }
}

/// How suspicious the name a value sits under makes that value. Ordered: a stronger name
/// lowers the bar a value must clear.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Sensitivity {
    #[default]
    None,
    /// `token`, `api_key`, `auth`, `credential`…: redact values that look random.
    Token,
    /// `password`, `secret`, `authorization`…: redact any real value, random or not.
    Password,
}

/// What the names on the way down to a value say about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Context {
    sensitivity: Sensitivity,
    /// Under an `aws…` name, a 40-character base64 value is a secret access key.
    aws: bool,
    /// Cookie headers are `k=v; k=v` lists whose values are session credentials.
    cookie: bool,
    /// The name says random values are expected here (`event_id`, `request_id`, `etag`,
    /// `next_page_token`, `sha256`): a random-looking value is not a secret by its shape alone.
    ident: bool,
}

impl Context {
    /// The context of a top-level field called `name` (or a root JSON value at path `name`).
    pub(crate) fn of_name(name: &str) -> Context {
        Context::default().child(name)
    }

    /// The context of the value stored under object key `key` inside a value with this context.
    pub(crate) fn child(self, key: &str) -> Context {
        let class = classify_name(key);
        match class.kind {
            NameKind::Sensitive(sensitivity) => Context {
                sensitivity,
                aws: class.aws || self.aws,
                cookie: class.cookie,
                ident: false,
            },
            NameKind::Metadata => Context {
                ident: class.ident,
                ..Context::default()
            },
            // `{"credentials": {"value": "…"}}`: a neutral name inherits from its parent, but
            // only as far as `Token`, so `{"secrets": {"owner": "alice"}}` keeps "alice".
            NameKind::Neutral => Context {
                sensitivity: self.sensitivity.min(Sensitivity::Token),
                aws: class.aws || self.aws,
                cookie: false,
                ident: class.ident || self.ident,
            },
        }
    }

    fn suspicious_name(self) -> bool {
        self.sensitivity > Sensitivity::None || self.aws || self.cookie
    }
}

/// Returns the secrets in `text`, sorted by position and not overlapping. On overlap the
/// earlier rule in [`RULES`] wins, so a JWT in `Authorization` is a `jwt`; the name heuristics
/// come last.
pub(crate) fn scan(ctx: Context, text: &str) -> Vec<Hit> {
    scan_within(ctx, text, &mut Budget::new())
}

/// [`scan`] with the decoding work left for this string and what it decodes into.
fn scan_within(ctx: Context, text: &str, budget: &mut Budget) -> Vec<Hit> {
    let suspicious_name = ctx.suspicious_name();
    // Nearly every string on the hot path is a short word, an id or a path: skip them before
    // touching any automaton. No pattern rule can match fewer than MIN_PATTERN_LEN bytes.
    if text.len() < MIN_SECRET_LEN || (!suspicious_name && text.len() < MIN_PATTERN_LEN) {
        return Vec::new();
    }
    let rules = &*RULES;
    // Candidates in rank order: rule by rule, each rule's matches left to right.
    let mut candidates = Vec::new();
    // `is_match` may stop at the first match and is about twice as fast as `matches` on the
    // clean strings that are nearly all of the traffic.
    if text.len() >= MIN_PATTERN_LEN && rules.set.is_match(text) {
        for rank in rules.set.matches(text).iter() {
            rules.list[rank].find_into(text, &mut candidates);
        }
    }
    // Encoded secrets: a specific rule found in the decoded form beats the name heuristics'
    // `high_entropy` for the same span.
    decode::hits(
        text,
        budget,
        |decoded, budget| scan_within(ctx, decoded, budget),
        &mut candidates,
    );
    if suspicious_name {
        candidates.extend(whole_value(ctx, text));
    }
    if !ctx.ident {
        random_tokens(text, &mut candidates);
    }
    if candidates.is_empty() {
        return Vec::new();
    }

    // Markers from an earlier pass contain `rule:hex`, which the free-text rule would read as
    // `name: value`: nothing may touch them.
    let markers: Vec<Range<usize>> = if text.contains(MARKER_PREFIX) {
        MARKER.find_iter(text).map(|m| m.range()).collect()
    } else {
        Vec::new()
    };
    let mut hits: Vec<Hit> = Vec::with_capacity(candidates.len());
    for hit in candidates {
        let overlaps = |taken: &Range<usize>| hit.span.start < taken.end && taken.start < hit.span.end;
        if !hit.span.is_empty() && !markers.iter().any(overlaps) && !hits.iter().any(|h| overlaps(&h.span)) {
            hits.push(hit);
        }
    }
    hits.sort_by_key(|hit| hit.span.start);
    hits
}

/// The longest string taken as one part of a split credential: the parts of a key are short.
const MAX_SPLIT_PART: usize = 512;

/// Whether a string value may be one half of a credential split across two values.
pub(crate) fn may_be_split_part(s: &str) -> bool {
    (1..=MAX_SPLIT_PART).contains(&s.len())
}

/// How every format rule's matches begin: a split credential's first part holds one of these,
/// or ends with the beginning of one (`AK` + `IA…`).
const FORMAT_PREFIXES: &[(&str, &[&str])] = &[
    (PRIVATE_KEY, &["-----BEGIN"]),
    (JWT, &["eyJ"]),
    (ANTHROPIC_KEY, &["sk-ant-"]),
    (OPENAI_KEY, &["sk-"]),
    (STRIPE_KEY, &["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"]),
    (GITHUB_TOKEN, &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
    (SLACK_WEBHOOK, &["https://hooks.slack.com/"]),
    (SLACK_TOKEN, &["xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "xapp-"]),
    (AWS_ACCESS_KEY, &["AKIA", "ASIA"]),
];

/// Whether `a` may be the first part of a split credential (a cheap test before
/// [`split`]).
pub(crate) fn may_start_split(a: &str) -> bool {
    may_be_split_part(a)
        && FORMAT_PREFIXES
            .iter()
            .flat_map(|(_, p)| p.iter())
            .any(|prefix| a.contains(prefix) || (1..prefix.len()).any(|k| a.ends_with(&prefix[..k])))
}

/// A credential of a known format that starts in `a` and ends in `b` (and that `a` does not
/// hold whole by itself): its rule and its span in `a + b`. Only the format rules count: two
/// ids side by side would often look like one random token.
pub(crate) fn split(a: &str, b: &str) -> Option<(&'static str, Range<usize>)> {
    if !may_be_split_part(a) || !may_be_split_part(b) {
        return None;
    }
    let junction = a.len();
    let mut joined = String::with_capacity(a.len() + b.len());
    joined.push_str(a);
    joined.push_str(b);
    let rules = &*RULES;
    if joined.len() < MIN_PATTERN_LEN || !rules.set.is_match(&joined) {
        return None;
    }
    let markers: Vec<Range<usize>> = MARKER.find_iter(&joined).map(|m| m.range()).collect();
    for rank in rules.set.matches(&joined).iter() {
        let rule = &rules.list[rank];
        let Kind::Format { max_len, accept } = rule.kind else {
            continue;
        };
        for m in rule.regex.find_iter(&joined) {
            let span = m.range();
            let crosses = span.start < junction && junction < span.end;
            let whole_in_a = || {
                rule.regex
                    .find_at(a, span.start)
                    .is_some_and(|own| own.start() == span.start && accept(own.as_str()))
            };
            let marked = || markers.iter().any(|k| k.start < span.end && span.start < k.end);
            if crosses && m.len() <= max_len && accept(m.as_str()) && !whole_in_a() && !marked() {
                return Some((rule.name, span));
            }
        }
    }
    None
}

/// The shortest value the name heuristics will redact (a password under a `password` name).
const MIN_SECRET_LEN: usize = 6;
/// The shortest string any pattern rule can match (`pwd=abcdef`).
const MIN_PATTERN_LEN: usize = 10;
/// The shortest value `high_entropy` will redact: shorter random strings are mostly ids.
const MIN_HIGH_ENTROPY_LEN: usize = 16;
const MARKER_PREFIX: &str = "[REDACTED:";

static MARKER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[REDACTED:[^\]\s]{0,128}\]").expect("marker regex is valid"));

// ---------------------------------------------------------------------------------------------
// Pattern rules

enum Kind {
    /// A fixed credential format; the whole match is the secret, if it is at most `max_len`
    /// bytes long and passes `accept` (the regex crate has no look-around).
    Format { max_len: usize, accept: fn(&str) -> bool },
    /// `scheme://user:password@host`; group 1 is the password.
    UrlPassword,
    /// `name=value`, `name: value`, `"name": "value"` in free text (command lines, query
    /// strings, JSON or env files passed as a string); the name decides as in [`whole_value`].
    Assignment,
}

struct PatternRule {
    name: &'static str,
    regex: Regex,
    kind: Kind,
}

struct Rules {
    /// One pass over the text says which rules can match at all; only those run again to find
    /// where. Most strings match none, so they cost one automaton scan.
    set: RegexSet,
    /// In priority order: on overlap, the earlier rule wins.
    list: Vec<PatternRule>,
}

/// Longer than any real token of these formats. Repetitions stay unbounded in the patterns
/// (`{20,}`, not `{20,300}`) because counted repetitions blow up the lazy DFA: measured, one
/// `{1,512}` made a 1 MB base64 parameter take a second instead of milliseconds. A match
/// longer than this is a run inside a blob (a base64url image that contains `-sk-`), not a key.
const MAX_TOKEN_LEN: usize = 300;

fn any(_: &str) -> bool {
    true
}

// `(?-u:\b)` is an ASCII word boundary: the Unicode one makes the lazy DFA give up on
// non-ASCII haystacks, and every format here is ASCII anyway.
static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let unbounded = usize::MAX;
    let specs: [(&'static str, &'static str, Kind); 11] = [
        (
            PRIVATE_KEY,
            // The whole block, armour included; a block cut off before its END line (a
            // truncated log) still runs to the end of the string.
            r"-----BEGIN[A-Z0-9 ]{0,32}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]{0,32}PRIVATE KEY(?: BLOCK)?-----|\z)",
            Kind::Format {
                max_len: unbounded,
                accept: any,
            },
        ),
        (
            JWT,
            r"(?-u:\b)eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            Kind::Format {
                max_len: unbounded,
                accept: any,
            },
        ),
        (
            // Listed before openai_key: `sk-ant-…` also matches the OpenAI pattern.
            ANTHROPIC_KEY,
            r"(?-u:\b)sk-ant-[A-Za-z0-9_-]{20,}",
            Kind::Format {
                max_len: MAX_TOKEN_LEN,
                accept: has_upper,
            },
        ),
        (
            OPENAI_KEY,
            r"(?-u:\b)sk-[A-Za-z0-9_-]{20,}",
            // Real keys are random mixed case; `sk-learn-classification-demo` is not one.
            Kind::Format {
                max_len: MAX_TOKEN_LEN,
                accept: |m| has_upper(m) && has_digit(m),
            },
        ),
        (
            STRIPE_KEY,
            r"(?-u:\b)(?:[rs]k_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,})",
            Kind::Format {
                max_len: MAX_TOKEN_LEN,
                accept: any,
            },
        ),
        (
            GITHUB_TOKEN,
            r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
            Kind::Format {
                max_len: MAX_TOKEN_LEN,
                accept: any,
            },
        ),
        (
            SLACK_WEBHOOK,
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,}",
            Kind::Format {
                max_len: unbounded,
                accept: any,
            },
        ),
        (
            SLACK_TOKEN,
            r"(?-u:\b)(?:xox[abprs]|xapp)-[A-Za-z0-9-]{10,}",
            Kind::Format {
                max_len: MAX_TOKEN_LEN,
                accept: any,
            },
        ),
        (
            AWS_ACCESS_KEY,
            r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
            Kind::Format {
                max_len: unbounded,
                accept: any,
            },
        ),
        (
            URL_PASSWORD,
            r"(?i)(?-u:\b)[a-z][a-z0-9+.-]*://[^\s/:@?#\[\]]*:([^\s/@?#\[\]]+)@",
            Kind::UrlPassword,
        ),
        (
            // Starts at the keyword so the literal prefilter can skip ahead; the rest of the
            // name is recovered backwards in code. Deliberately loose (`monkey=` matches):
            // classify_name decides. The value stops at query-string, shell and JSON
            // delimiters.
            "assignment",
            r#"(?i)((?:key|token|secret|pass|pwd|auth|cred|cookie)[a-z0-9_.-]*)(\\?["'])?[ \t]*([:=])[ \t]*(\\?["'])?(?:(?:bearer|basic|token)[ \t]+)?([^\s"'\\&;,\[\](){}<>#]+)"#,
            Kind::Assignment,
        ),
    ];
    let set = RegexSet::new(specs.iter().map(|(_, pattern, _)| *pattern)).expect("redaction patterns are valid");
    let list = specs
        .into_iter()
        .map(|(name, pattern, kind)| PatternRule {
            name,
            regex: Regex::new(pattern).expect("redaction patterns are valid"),
            kind,
        })
        .collect();
    Rules { set, list }
});

impl PatternRule {
    fn find_into(&self, text: &str, out: &mut Vec<Hit>) {
        match self.kind {
            Kind::Format { max_len, accept } => {
                for m in self.regex.find_iter(text) {
                    if m.len() <= max_len && accept(m.as_str()) {
                        out.push(Hit::new(self.name, m.range()));
                    }
                }
            }
            Kind::UrlPassword => {
                for caps in self.regex.captures_iter(text) {
                    let password = caps.get(1).expect("group 1 always takes part");
                    // `host:8080@` is a port, and `:****@` was masked by the sender already.
                    let port = password.len() <= 5 && password.as_str().bytes().all(|b| b.is_ascii_digit());
                    if !port && !is_placeholder(password.as_str()) {
                        out.push(Hit::new(self.name, password.range()));
                    }
                }
            }
            Kind::Assignment => {
                for caps in self.regex.captures_iter(text) {
                    out.extend(assignment(text, &caps));
                }
            }
        }
    }
}

/// How far back [`assignment`] looks for the start of a name.
const MAX_NAME_LEN: usize = 64;

/// Judges one `name=value` match from free text.
fn assignment(text: &str, caps: &Captures<'_>) -> Option<Hit> {
    let at = |i: usize| caps.get(i).map(|m| m.range());
    let tail = at(1)?;
    let head = text.as_bytes()[..tail.start]
        .iter()
        .rev()
        .take(MAX_NAME_LEN)
        .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        .count();
    let name_start = tail.start - head;
    let class = classify_name(&text[name_start..tail.end]);
    let NameKind::Sensitive(sensitivity) = class.kind else {
        return None;
    };
    let mut value = at(5)?;
    // `"password": "two words"`: the regex stops at the space; the quote says where the
    // value really ends.
    if let Some(open) = at(4) {
        let quote = char::from(text.as_bytes()[open.end - 1]);
        let rest = &text[value.start..];
        let limit = rest.find('\n').unwrap_or(rest.len()).min(MAX_QUOTED_LEN);
        if let Some(close) = rest.get(..limit).and_then(|r| r.find(quote)) {
            let close = if rest[..close].ends_with('\\') {
                close - 1
            } else {
                close
            };
            value.end = value.end.max(value.start + close);
        }
    }
    let candidate = &text[value.clone()];
    // In prose, `password: reset` is not a password; `password=…`, `"password": …`,
    // `password: '…'` and a YAML line `password: …` are.
    let separator = &text[at(3)?];
    let line_before = text[..name_start].rsplit('\n').next().unwrap_or_default();
    let line_after = text[value.end..].split('\n').next().unwrap_or_default();
    let yaml_line = separator == ":" && line_before.trim().is_empty() && line_after.trim().is_empty();
    let deliberate = separator == "=" || at(2).is_some() || at(4).is_some() || yaml_line;
    // `password = get_password()`, `secret: config.secret`: code names a secret without
    // holding it. Real passwords of that shape are missed here, but not under a JSON key.
    let code = is_made_of_words(candidate) && !candidate.contains(char::is_whitespace);
    let rule = if (class.aws || sensitivity == Sensitivity::Password) && is_aws_secret(candidate) {
        AWS_SECRET_KEY
    } else if looks_random(candidate) {
        HIGH_ENTROPY
    } else if sensitivity == Sensitivity::Password && deliberate && !code && looks_chosen(candidate) {
        PASSWORD
    } else {
        return None;
    };
    Some(Hit::new(rule, value))
}

/// How far a quoted free-text value may run before its closing quote.
const MAX_QUOTED_LEN: usize = 512;

// ---------------------------------------------------------------------------------------------
// Name heuristics

/// The hits that come from the value's name rather than its shape: the whole value (after an
/// auth scheme), or each cookie value.
fn whole_value(ctx: Context, text: &str) -> Vec<Hit> {
    if ctx.cookie && text.contains('=') {
        let mut hits = Vec::new();
        let mut start = 0;
        for pair in text.split(';') {
            if let Some(eq) = pair.find('=') {
                let span = trimmed(text, start + eq + 1..start + pair.len());
                if looks_random(&text[span.clone()]) {
                    hits.push(Hit::new(HIGH_ENTROPY, span));
                }
            }
            start += pair.len() + 1;
        }
        return hits;
    }

    let span = strip_scheme(text, trimmed(text, 0..text.len()));
    let value = &text[span.clone()];
    let rule = if (ctx.aws || ctx.sensitivity >= Sensitivity::Token) && is_aws_secret(value) {
        AWS_SECRET_KEY
    } else if ctx.sensitivity >= Sensitivity::Token && looks_random(value) {
        HIGH_ENTROPY
    } else if ctx.sensitivity == Sensitivity::Password && looks_chosen(value) {
        PASSWORD
    } else {
        return Vec::new();
    };
    vec![Hit::new(rule, span)]
}

/// `Bearer abc` → the range of `abc`: the scheme says how to use a credential, it is not one,
/// and keeping it tells a responder what kind of credential leaked.
fn strip_scheme(text: &str, span: Range<usize>) -> Range<usize> {
    let value = &text[span.clone()];
    if let Some((scheme, rest)) = value.split_once(|c: char| c.is_ascii_whitespace())
        && ["bearer", "basic", "token"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        let rest = rest.trim_start();
        return span.end - rest.len()..span.end;
    }
    span
}

fn trimmed(text: &str, span: Range<usize>) -> Range<usize> {
    let value = &text[span.clone()];
    let start = span.start + (value.len() - value.trim_start().len());
    let end = span.start + value.trim_end().len();
    start..end.max(start)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    /// Says nothing either way (`value`, `config`, `commit`): inherit from the parent.
    Neutral,
    /// Describes a secret without holding it (`token_type`, `secret_name`, `api_key_id`), or
    /// is plainly not one (`user_id`, `email`): never inherit suspicion through it.
    Metadata,
    Sensitive(Sensitivity),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameClass {
    kind: NameKind,
    aws: bool,
    cookie: bool,
    /// Random values are expected under this name ([`Context::ident`]).
    ident: bool,
}

/// Classifies a field name by its words (`X-Api-Key`, `accessToken`, `AWS_SECRET_ACCESS_KEY`),
/// not by substrings, so that `keyword`, `monkey`, `author` and `max_tokens` stay quiet.
fn classify_name(name: &str) -> NameClass {
    // This runs for every object key of every event, so it neither allocates nor compares
    // case-insensitively: one lowercase copy on the stack, then `match` on words.
    let name = &name.as_bytes()[..name.len().min(MAX_NAME_LEN)];
    let mut lower = [0u8; MAX_NAME_LEN];
    let lower = &mut lower[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let mut spans = [(0, 0); MAX_NAME_WORDS];
    let count = split_words(name, &mut spans);
    let mut words: [&[u8]; MAX_NAME_WORDS] = [&[]; MAX_NAME_WORDS];
    for (word, &(start, end)) in words.iter_mut().zip(&spans[..count]) {
        *word = &lower[start..end];
    }
    let words = &words[..count];

    let mut strongest = None;
    let mut last_sensitive = 0;
    let (mut aws, mut cookie, mut ident) = (false, false, false);
    for (i, word) in words.iter().enumerate() {
        let previous = i.checked_sub(1).map(|j| words[j]);
        aws |= word.starts_with(b"aws");
        cookie |= has(word, b"cookie");
        // `request_id`, `etag`; `next_page_token`, `public_key`: a token or key that is not a
        // credential is random by design.
        ident |= is_ident(word)
            || (matches!(*word, b"token" | b"tokens" | b"key" | b"keys")
                && previous.is_some_and(is_not_credential_modifier));
        if let Some(sensitivity) = sensitive_word(word, previous) {
            strongest = strongest.max(Some(sensitivity));
            last_sensitive = i;
        }
    }
    let kind = match strongest {
        // The head noun comes last in English names: `token_type` is a type, `user_token` a token.
        Some(_) if words[last_sensitive + 1..].iter().any(|w| is_metadata(w)) => NameKind::Metadata,
        Some(sensitivity) => NameKind::Sensitive(sensitivity),
        None if words.iter().any(|w| is_metadata(w)) => NameKind::Metadata,
        None => NameKind::Neutral,
    };
    NameClass {
        kind,
        aws,
        cookie,
        ident,
    }
}

const MAX_NAME_WORDS: usize = 12;

/// Splits on punctuation and camelCase humps (`APIKey` → `API`, `Key`); returns how many
/// `(start, end)` spans it wrote.
fn split_words(name: &[u8], spans: &mut [(usize, usize); MAX_NAME_WORDS]) -> usize {
    let mut count = 0;
    let mut start = None;
    for i in 0..=name.len() {
        let b = name.get(i).copied();
        let alnum = b.is_some_and(|b| b.is_ascii_alphanumeric());
        let hump = start.is_some_and(|s| i > s)
            && b.is_some_and(|b| b.is_ascii_uppercase())
            && (name[i - 1].is_ascii_lowercase()
                || (name[i - 1].is_ascii_uppercase() && name.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())));
        if let Some(s) = start
            && (!alnum || hump)
        {
            if count == MAX_NAME_WORDS {
                break;
            }
            spans[count] = (s, i);
            count += 1;
            start = None;
        }
        if alnum && start.is_none() {
            start = Some(i);
        }
    }
    count
}

/// How a lowercase word makes a name sensitive, given the word before it.
fn sensitive_word(word: &[u8], previous: Option<&[u8]>) -> Option<Sensitivity> {
    if has(word, b"password")
        || has(word, b"passwd")
        || has(word, b"passphrase")
        || has(word, b"secret")
        || matches!(
            word,
            b"pwd" | b"pass" | b"passcode" | b"authorization" | b"authorisation"
        )
    {
        return Some(Sensitivity::Password);
    }
    // `next_page_token`, `public_key`, `sort_key`: a token or key, but not a credential.
    if previous.is_some_and(is_not_credential_modifier) {
        return None;
    }
    let token = word.ends_with(b"token") || word.ends_with(b"tokens");
    let credential = word.starts_with(b"credential") || matches!(word, b"creds" | b"cred");
    let other = matches!(word, b"auth" | b"bearer" | b"jwt") || has(word, b"cookie");
    // A bare `key` is an S3 object key, a cache key or a dictionary key far more often than a
    // credential; it counts only when a qualifier says which kind (`api_key`, `accessKey`).
    let key = [&b"key"[..], b"keys"].iter().any(|k| match word.strip_suffix(*k) {
        Some([]) => previous.is_some_and(is_key_qualifier),
        Some(stem) => is_key_qualifier(stem),
        None => false,
    });
    (token || credential || other || key).then_some(Sensitivity::Token)
}

/// `contains` for a short word: `str::contains` sets up a Two-Way searcher per call, which
/// costs more than scanning a few bytes outright.
fn has(word: &[u8], needle: &[u8]) -> bool {
    word.len() >= needle.len() && word.windows(needle.len()).any(|w| w == needle)
}

fn is_key_qualifier(word: &[u8]) -> bool {
    matches!(
        word,
        b"api"
            | b"access"
            | b"private"
            | b"signing"
            | b"sign"
            | b"master"
            | b"encryption"
            | b"encrypt"
            | b"license"
            | b"licence"
            | b"ssh"
            | b"client"
            | b"auth"
            | b"app"
            | b"application"
            | b"account"
            | b"service"
            | b"subscription"
            | b"storage"
            | b"shared"
            | b"webhook"
            | b"consumer"
            | b"developer"
            | b"dev"
            | b"admin"
            | b"root"
            | b"session"
            | b"hmac"
            | b"aes"
            | b"crypto"
            | b"jwt"
            | b"ingest"
            | b"deploy"
            | b"write"
            | b"rest"
            | b"secret"
            | b"x"
    )
}

fn is_not_credential_modifier(word: &[u8]) -> bool {
    matches!(
        word,
        b"page"
            | b"next"
            | b"continuation"
            | b"pagination"
            | b"cursor"
            | b"sync"
            | b"public"
            | b"idempotency"
            | b"cache"
            | b"sort"
            | b"partition"
            | b"primary"
            | b"foreign"
            | b"hash"
            | b"range"
            | b"row"
            | b"routing"
            | b"dedup"
            | b"deduplication"
            | b"lock"
            | b"max"
            | b"min"
            | b"input"
            | b"output"
            | b"prompt"
            | b"completion"
            | b"total"
            | b"num"
            | b"object"
            | b"s3"
    )
}

/// Words that name values random by design: identifiers, digests, cursors, nonces.
fn is_ident(word: &[u8]) -> bool {
    matches!(
        word,
        b"id"
            | b"ids"
            | b"uuid"
            | b"uuids"
            | b"guid"
            | b"ulid"
            | b"etag"
            | b"hash"
            | b"hashes"
            | b"digest"
            | b"checksum"
            | b"md5"
            | b"sha"
            | b"sha1"
            | b"sha256"
            | b"sha512"
            | b"integrity"
            | b"nonce"
            | b"salt"
            | b"signature"
            | b"cursor"
            | b"continuation"
            | b"pagination"
            | b"idempotency"
            | b"fingerprint"
    )
}

/// Words that make a name *about* a secret rather than *holding* one, when they follow it.
fn is_metadata(word: &[u8]) -> bool {
    matches!(
        word,
        b"id"
            | b"ids"
            | b"name"
            | b"names"
            | b"type"
            | b"types"
            | b"kind"
            | b"ref"
            | b"reference"
            | b"arn"
            | b"url"
            | b"uri"
            | b"urls"
            | b"endpoint"
            | b"path"
            | b"file"
            | b"filename"
            | b"count"
            | b"length"
            | b"len"
            | b"size"
            | b"policy"
            | b"hint"
            | b"expiry"
            | b"expires"
            | b"expiration"
            | b"expire"
            | b"ttl"
            | b"at"
            | b"version"
            | b"format"
            | b"header"
            | b"field"
            | b"label"
            | b"provider"
            | b"enabled"
            | b"required"
            | b"mode"
            | b"method"
            | b"scheme"
            | b"prefix"
            | b"suffix"
            | b"usage"
            | b"limit"
            | b"user"
            | b"username"
            | b"login"
            | b"email"
            | b"domain"
            | b"host"
            | b"hostname"
            | b"region"
            | b"location"
            | b"rotation"
            | b"created"
            | b"updated"
            | b"fingerprint"
            | b"algorithm"
            | b"alg"
            | b"scope"
            | b"scopes"
            | b"audience"
            | b"issuer"
            | b"description"
            | b"status"
            | b"index"
            | b"strength"
            | b"reset"
            | b"source"
            | b"manager"
            | b"owner"
    )
}

// ---------------------------------------------------------------------------------------------
// Value heuristics

/// A random-looking single token: what API keys, session tokens and client secrets look like,
/// and what identifiers, paths, URLs, timestamps and prose do not.
fn looks_random(value: &str) -> bool {
    value.len() >= MIN_HIGH_ENTROPY_LEN
        && !value.contains(|c: char| c.is_whitespace())
        && !is_placeholder(value)
        && !value.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !value.contains("://")
        && !is_email(value)
        && !is_made_of_words(value)
        && (shannon_entropy(value) >= 3.0 || char_classes(value) >= 3)
}

/// The shortest random-looking token redacted under a name that says nothing (`note`):
/// shorter random strings are mostly ids and codes.
const MIN_TOKEN_LEN: usize = 20;
/// The longest: beyond this a random-looking run is a blob (an image, a file), not a key.
const MAX_TOKEN_LEN_ANYWHERE: usize = 256;

/// Random-looking tokens anywhere in `text`, whatever the name: runs of token characters
/// that [`looks_like_token`]. URLs (a run right after `://`) are left to `url_password` and
/// the `?name=value` rule.
fn random_tokens(text: &str, out: &mut Vec<Hit>) {
    if text.len() < MIN_TOKEN_LEN {
        return;
    }
    let bytes = text.as_bytes();
    let is_token = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'.' | b'~');
    let mut i = 0;
    while i < bytes.len() {
        if !is_token(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_token(bytes[i]) {
            i += 1;
        }
        let (before, run) = (&text[..start], &text[start..i]);
        // A URL's host and path (`/` is a token character, so the run starts at `//`), or a
        // data URI's content.
        let url = (before.ends_with(':') && run.starts_with("//")) || before.ends_with(";base64,");
        if !url && looks_like_token(run) {
            out.push(Hit::new(HIGH_ENTROPY, start..i));
        }
    }
}

/// A random token, judged without a name: 20–256 characters with at least two each of upper
/// and lower case (which spares hex digests, git SHAs, UUIDs, ULIDs, numeric ids and slugs),
/// in short case-switching humps rather than words (`getUserById2024` is four words and a
/// number; a random token switches every two characters or so), with a stretch of at least
/// [`MIN_RANDOM_SEGMENT`] characters between separators (`MyApp-Prod-2024-05-01` has none),
/// and not base64 of text (judged by its decoded content) or of a file (an image).
fn looks_like_token(whole: &str) -> bool {
    let run = whole.trim_matches(|c: char| matches!(c, '.' | '-' | '/' | '~' | '_' | '+'));
    if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN_ANYWHERE).contains(&run.len()) {
        return false;
    }
    let upper = run.bytes().filter(u8::is_ascii_uppercase).count();
    let lower = run.bytes().filter(u8::is_ascii_lowercase).count();
    let shape = Humps::of(run);
    upper >= 2
        && lower >= 2
        && shape.longest_segment >= MIN_RANDOM_SEGMENT
        && (shape.alnum as f64) < MAX_MEAN_HUMP * shape.humps as f64
        // Untrimmed: base64 may well start with `/` (a JPEG's `/9j/`).
        && !decode::is_text_or_file(whole)
}

/// Random base62 averages 2.2 characters per hump; 40 random characters average 3 or more
/// about once in 500, identifiers made of words 3.5 and up.
const MAX_MEAN_HUMP: f64 = 3.0;
/// The longest run of letters and digits a random token must have.
const MIN_RANDOM_SEGMENT: usize = 10;

/// A token's humps: maximal runs of lower case (after at most one capital: `Word`), of upper
/// case (`HTTP`, but `HTTPServer` is `HTTP` + `Server`) or of digits.
struct Humps {
    alnum: usize,
    humps: usize,
    longest_segment: usize,
}

impl Humps {
    fn of(run: &str) -> Humps {
        let bytes = run.as_bytes();
        let (mut alnum, mut humps, mut hump, mut segment, mut longest_segment) = (0, 0, 0, 0, 0);
        for (i, &b) in bytes.iter().enumerate() {
            if !b.is_ascii_alphanumeric() {
                hump = 0;
                segment = 0;
                continue;
            }
            alnum += 1;
            segment += 1;
            longest_segment = longest_segment.max(segment);
            let goes_on = hump > 0 && {
                let p = bytes[i - 1];
                let same = (p.is_ascii_lowercase() && b.is_ascii_lowercase())
                    || (p.is_ascii_digit() && b.is_ascii_digit())
                    || (p.is_ascii_uppercase()
                        && b.is_ascii_uppercase()
                        && !(hump > 1 && bytes.get(i + 1).is_some_and(u8::is_ascii_lowercase)));
                same || (hump == 1 && p.is_ascii_uppercase() && b.is_ascii_lowercase())
            };
            if !goes_on {
                humps += 1;
                hump = 0;
            }
            hump += 1;
        }
        Humps {
            alnum,
            humps,
            longest_segment,
        }
    }
}

/// Any real value under a password-like name: chosen passwords are short and wordy, so only
/// the obviously-not-a-password is spared.
fn looks_chosen(value: &str) -> bool {
    let path_like =
        (value.starts_with('/') || value.starts_with("~/") || value.starts_with("./")) && is_made_of_words(value);
    value.chars().count() >= MIN_SECRET_LEN && !is_placeholder(value) && !path_like
}

/// Values that stand for a secret without being one: templates, environment references,
/// masks and nulls.
fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    let mut chars = v.chars();
    let first = chars.next();
    v.is_empty()
        || v.starts_with('$')
        || (v.starts_with('%') && v.ends_with('%'))
        || (v.starts_with('<') && v.ends_with('>'))
        || v.contains("{{")
        || v.contains("${")
        || v.contains("***")
        || v.contains("•••")
        || v.starts_with(MARKER_PREFIX)
        || chars.all(|c| Some(c) == first)
        || [
            "null",
            "none",
            "undefined",
            "true",
            "false",
            "redacted",
            "[redacted]",
            "hidden",
            "masked",
            // An auth scheme with nothing after it.
            "bearer",
            "basic",
            "token",
        ]
        .iter()
        .any(|p| v.eq_ignore_ascii_case(p))
}

fn is_email(value: &str) -> bool {
    value
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.contains(['@', '/', ':']))
}

/// True for `reports/2024/q1.csv`, `order-2024-05-01`, `2024-05-01T10:00:00Z`: separated runs
/// that each read like a word or a number. A base64 key has separators too (`/`, `+`), but its
/// runs switch case and digits at random.
fn is_made_of_words(value: &str) -> bool {
    let mut runs = value
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|r| !r.is_empty());
    let mut count = 0;
    let all_wordy = runs.all(|run| {
        count += 1;
        is_wordy(run)
    });
    all_wordy && count >= 2
}

fn is_wordy(run: &str) -> bool {
    if run.len() <= 5 {
        return true;
    }
    // Letters then digits at most once (`sha256`, `v2`, `report2024`), in one of the three
    // cases people write words in.
    let split = run.find(|c: char| c.is_ascii_digit()).unwrap_or(run.len());
    let (letters, digits) = run.split_at(split);
    let word_case = letters.bytes().all(|b| b.is_ascii_lowercase())
        || letters.bytes().all(|b| b.is_ascii_uppercase())
        || (letters.as_bytes()[0].is_ascii_uppercase() && letters.bytes().skip(1).all(|b| b.is_ascii_lowercase()));
    (!letters.is_empty() || digits.len() == run.len())
        && (letters.is_empty() || word_case)
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn shannon_entropy(value: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in value.bytes() {
        counts[usize::from(b)] += 1;
    }
    let len = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Of lower case, upper case, digits and everything else.
fn char_classes(value: &str) -> usize {
    let mut seen = [false; 4];
    for b in value.bytes() {
        let class = match b {
            b'a'..=b'z' => 0,
            b'A'..=b'Z' => 1,
            b'0'..=b'9' => 2,
            _ => 3,
        };
        seen[class] = true;
    }
    seen.iter().filter(|&&s| s).count()
}

fn is_aws_secret(value: &str) -> bool {
    value.len() == 40
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+')
        && has_upper(value)
        && has_digit(value)
        && value.bytes().any(|b| b.is_ascii_lowercase())
}

fn has_upper(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase())
}

fn has_digit(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected`: `neutral`, `metadata`, `token` or `password`, then ` aws` / ` cookie` flags.
    #[track_caller]
    fn check_name(name: &str, expected: &str) {
        let class = classify_name(name);
        let mut actual = match class.kind {
            NameKind::Neutral => "neutral",
            NameKind::Metadata => "metadata",
            NameKind::Sensitive(Sensitivity::Token) => "token",
            NameKind::Sensitive(Sensitivity::Password) => "password",
            NameKind::Sensitive(Sensitivity::None) => unreachable!("never classified as such"),
        }
        .to_owned();
        if class.aws {
            actual.push_str(" aws");
        }
        if class.cookie {
            actual.push_str(" cookie");
        }
        assert_eq!(actual, expected, "name {name:?}");
    }

    #[test]
    fn names_are_judged_by_their_words() {
        let cases = [
            ("password", "password"),
            ("db_password", "password"),
            ("newPassword", "password"),
            ("passwd", "password"),
            ("pwd", "password"),
            ("client_secret", "password"),
            ("clientSecret", "password"),
            ("Authorization", "password"),
            ("AWS_SECRET_ACCESS_KEY", "password aws"),
            ("SecretAccessKey", "password"),
            ("token", "token"),
            ("access_token", "token"),
            ("accessToken", "token"),
            ("X-Auth-Token", "token"),
            ("session_token", "token"),
            ("x-api-key", "token"),
            ("apiKey", "token"),
            ("APIKey", "token"),
            ("apikey", "token"),
            ("private_key", "token"),
            ("auth", "token"),
            ("credentials", "token"),
            ("Cookie", "token cookie"),
            ("set-cookie", "token cookie"),
            // A bare `key` is an S3 or cache key far more often than a credential.
            ("key", "neutral"),
            ("keyword", "neutral"),
            ("monkey", "neutral"),
            ("author", "neutral"),
            ("session", "neutral"),
            ("commit", "neutral"),
            ("tokenizer", "neutral"),
            ("aws", "neutral aws"),
            ("next_page_token", "neutral"),
            ("nextPageToken", "neutral"),
            ("public_key", "neutral"),
            ("sort_key", "neutral"),
            ("max_tokens", "neutral"),
            ("token_type", "metadata"),
            ("token_url", "metadata"),
            ("api_key_id", "metadata"),
            ("AccessKeyId", "metadata"),
            ("secret_name", "metadata"),
            ("password_policy", "metadata"),
            ("credential_ref", "metadata"),
            ("user_id", "metadata"),
            ("sessionId", "metadata"),
            ("username", "metadata"),
            ("user_token", "token"),
            ("auth_user", "metadata"),
        ];
        for (name, expected) in cases {
            check_name(name, expected);
        }
    }

    /// `expected`: `random`, `chosen` (only a password-like name makes it a secret) or `plain`.
    #[track_caller]
    fn check_value(value: &str, expected: &str) {
        let actual = if looks_random(value) {
            "random"
        } else if looks_chosen(value) {
            "chosen"
        } else {
            "plain"
        };
        assert_eq!(actual, expected, "value {value:?}");
    }

    #[test]
    fn values_are_judged_by_their_shape() {
        let cases = [
            ("Zk9qR2xXb3BtT1N4dkF3YjE2", "random"),
            ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "random"),
            ("550e8400-e29b-41d4-a716-446655440000", "random"),
            ("8f14e45fceea167a5a36dedd4bea2543", "random"),
            ("Tr0ub4dor&3xyzab", "random"),
            ("hunter22", "chosen"),
            ("correct horse battery staple", "chosen"),
            ("reports/2024/q1-summary.csv", "chosen"),
            ("2024-05-01T10:00:00.000Z", "chosen"),
            ("order-2024-05-01-priority", "chosen"),
            ("alice@example.com", "chosen"),
            ("https://example.com/a/b/c?d=e", "chosen"),
            ("12345678901234567890", "chosen"),
            ("aaaaaaaaaaaaaaaaaaaa", "plain"),
            ("abc", "plain"),
            ("${DB_PASSWORD}", "plain"),
            ("$DB_PASSWORD", "plain"),
            ("{{ secrets.db }}", "plain"),
            ("<your-password>", "plain"),
            ("%PASSWORD%", "plain"),
            ("sk-****abcd", "plain"),
            ("xxxxxxxxxx", "plain"),
            ("undefined", "plain"),
            ("[REDACTED:password:0123456789abcdef]", "plain"),
            ("/home/alice/project", "plain"),
        ];
        for (value, expected) in cases {
            check_value(value, expected);
        }
    }

    #[test]
    fn every_format_rule_has_its_prefixes_listed_for_split_credentials() {
        // One fake credential per format rule (split with concat! so scanners do not flag it).
        let samples = [
            concat!(
                "-----BEGIN RSA PRIVATE ",
                "KEY-----\nMIIEFAKE\n-----END RSA PRIVATE KEY-----"
            ),
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmYWtlIn0.FAKEsig0123",
            concat!("sk-", "ant-api03-FAKEfake0123456789FAKEfake"),
            concat!("sk-", "FAKEfake0123456789FAKEfake0123456789"),
            concat!("sk_", "live_", "FAKE0123456789fakeFAKE01"),
            concat!("ghp_", "FAKE0123456789abcdefghijklmnopqrstuv"),
            concat!("https://hooks.slack", ".com/services/T0000/B0000/FAKEFAKE"),
            concat!("xoxb-", "000000000000-FAKEfakeFAKE"),
            concat!("AKIA", "IOSFODNN7EXAMPLE"),
        ];
        for rule in RULES.list.iter().filter(|r| matches!(r.kind, Kind::Format { .. })) {
            let sample = samples
                .iter()
                .find(|s| rule.regex.find(s).is_some_and(|m| m.start() == 0 && m.len() == s.len()))
                .unwrap_or_else(|| panic!("no sample of {}", rule.name));
            assert!(FORMAT_PREFIXES.iter().any(|(name, _)| *name == rule.name));
            for cut in 1..sample.len() {
                if sample.is_char_boundary(cut) {
                    assert!(may_start_split(&sample[..cut]), "{} cut at {cut}", rule.name);
                }
            }
        }
    }

    #[test]
    fn every_rule_that_can_fire_is_listed() {
        for rule in RULES.list.iter().filter(|r| !matches!(r.kind, Kind::Assignment)) {
            assert!(
                RULE_NAMES.contains(&rule.name),
                "{} is missing from RULE_NAMES",
                rule.name
            );
        }
    }
}
