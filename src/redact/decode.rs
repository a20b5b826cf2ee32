//! Encoded secrets: a credential sent as base64 (standard or URL-safe, padded or not), as hex,
//! or percent-encoded is decoded and the decoded text scanned with every rule; a hit there
//! redacts the encoded value (the whole base64 or hex run, or the percent-encoded span).
//!
//! Decoding is bounded: runs shorter than [`MIN_ENCODED_LEN`] or longer than
//! [`MAX_ENCODED_LEN`] are not decoded, at most [`MAX_DECODED_BYTES`] are decoded per string
//! (nested forms included) and at most [`MAX_DEPTH`] encodings deep (base64 of hex of a key).
//! Only output that is text is scanned: base64 of an image or of random bytes is not.

use std::ops::Range;

use super::rules::Hit;

/// The shortest encoded run decoded: 12 bytes of base64, 8 of hex. No credential format is
/// shorter than 16 characters, and a password needs a name, which an encoding does not hide.
const MIN_ENCODED_LEN: usize = 16;
/// The longest run decoded: params are at most 64 KiB, so this is the whole of any string.
const MAX_ENCODED_LEN: usize = 64 * 1024;
/// Decoded bytes per scanned string, over all its runs and nested forms.
const MAX_DECODED_BYTES: usize = 64 * 1024;
/// Encodings inside encodings: base64 of a percent-encoded key is found, a third layer is not.
const MAX_DEPTH: usize = 2;
/// Base64 that does not start where its run does (`x-<base64>`) is tried from the next three
/// characters too, for runs up to this long.
const MAX_SHIFTED_LEN: usize = 1024;

/// What decoding may still cost while one string is scanned.
#[derive(Debug)]
pub(crate) struct Budget {
    bytes: usize,
    depth: usize,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget {
            bytes: MAX_DECODED_BYTES,
            depth: 0,
        }
    }

    /// Scans `decoded` one level deeper, if the budget allows.
    fn scan(&mut self, decoded: &str, scan: &mut impl FnMut(&str, &mut Budget) -> Vec<Hit>) -> Option<Vec<Hit>> {
        if self.depth >= MAX_DEPTH || decoded.len() > self.bytes {
            return None;
        }
        self.bytes -= decoded.len();
        self.depth += 1;
        let hits = scan(decoded, self);
        self.depth -= 1;
        Some(hits)
    }
}

/// Appends to `out` one hit per encoded secret in `text`: the span of its encoded form, the
/// rule that matched the decoded form and the decoded secret. `scan` is the full scan of a
/// decoded string (so encodings nest, within `budget`).
pub(crate) fn hits(
    text: &str,
    budget: &mut Budget,
    mut scan: impl FnMut(&str, &mut Budget) -> Vec<Hit>,
    out: &mut Vec<Hit>,
) {
    if budget.depth >= MAX_DEPTH || text.len() < MIN_ENCODED_LEN {
        return;
    }
    for run in runs(text) {
        if let Some(hit) = encoded_run(text, run, budget, &mut scan) {
            out.push(hit);
        }
    }
    if text.contains('%') {
        percent_encoded(text, budget, &mut scan, out);
    }
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Maximal runs of base64 characters (either alphabet) with their `=` padding, long enough
/// to decode.
fn runs(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if !is_base64(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_base64(bytes[i]) {
                i += 1;
            }
            let mut end = i;
            while end < bytes.len() && end - i < 2 && bytes[end] == b'=' {
                end += 1;
            }
            i = end;
            if (MIN_ENCODED_LEN..=MAX_ENCODED_LEN).contains(&(end - start)) {
                return Some(start..end);
            }
        }
        None
    })
}

/// The hit for one run, if it decodes (as hex, else as base64) to text holding a secret.
fn encoded_run(
    text: &str,
    run: Range<usize>,
    budget: &mut Budget,
    scan: &mut impl FnMut(&str, &mut Budget) -> Vec<Hit>,
) -> Option<Hit> {
    let encoded = &text[run.clone()];
    if encoded.len().is_multiple_of(2) && encoded.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Some(decoded) = as_text(hex::decode(encoded).ok()?) {
            return first_secret(&decoded, run, budget, scan);
        }
        // A digest: as base64 it would decode to noise too.
        return None;
    }
    let shifts = if encoded.len() <= MAX_SHIFTED_LEN { 4 } else { 1 };
    for shift in 0..shifts {
        if let Some(decoded) = base64(&encoded[shift..]).and_then(as_text) {
            return first_secret(&decoded, run.start + shift..run.end, budget, scan);
        }
    }
    None
}

/// The first secret in `decoded`, as a hit over the encoded `span`.
fn first_secret(
    decoded: &str,
    span: Range<usize>,
    budget: &mut Budget,
    scan: &mut impl FnMut(&str, &mut Budget) -> Vec<Hit>,
) -> Option<Hit> {
    let hit = budget.scan(decoded, scan)?.into_iter().next()?;
    Some(Hit {
        rule: hit.rule,
        span,
        decoded: Some(hit.decoded.unwrap_or_else(|| decoded[hit.span].to_owned())),
    })
}

/// Decodes `%XX` escapes (the rest kept as it is) and maps each secret found back onto the
/// encoded text.
fn percent_encoded(
    text: &str,
    budget: &mut Budget,
    scan: &mut impl FnMut(&str, &mut Budget) -> Vec<Hit>,
    out: &mut Vec<Hit>,
) {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    // origin[i]: where decoded byte i came from; one past the end maps to the end.
    let mut origin = Vec::with_capacity(bytes.len() + 1);
    let mut i = 0;
    while i < bytes.len() {
        origin.push(i);
        let escape = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                hex::decode([*hi, *lo]).ok().map(|b| b[0])
            }
            _ => None,
        };
        match escape {
            Some(b) => {
                decoded.push(b);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    origin.push(bytes.len());
    if decoded.len() == bytes.len() {
        return;
    }
    let Some(decoded) = as_text(decoded) else {
        return;
    };
    let Some(found) = budget.scan(&decoded, scan) else {
        return;
    };
    for hit in found {
        let span = origin[hit.span.start]..origin[hit.span.end];
        out.push(Hit {
            rule: hit.rule,
            span,
            decoded: Some(hit.decoded.unwrap_or_else(|| decoded[hit.span].to_owned())),
        });
    }
}

/// UTF-8 without control characters other than tabs and line breaks: what a person or a
/// program would have written, rather than the bytes of a file or a key.
fn as_text(bytes: Vec<u8>) -> Option<String> {
    let text = String::from_utf8(bytes).ok()?;
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .then_some(text)
}

/// Base64 in either alphabet, padded or not; `None` if it is not base64 at all.
pub(crate) fn base64(encoded: &str) -> Option<Vec<u8>> {
    let digits = encoded.trim_end_matches('=').as_bytes();
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in digits {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// What a base64 value holds, for the random-token rule: text is judged by its content (the
/// decoded scan), a file (image, PDF, archive) is content, not a credential.
pub(crate) fn is_text_or_file(encoded: &str) -> bool {
    const MAGIC: &[&[u8]] = &[
        b"\x89PNG",
        b"\xFF\xD8\xFF",
        b"GIF8",
        b"%PDF",
        b"PK\x03\x04",
        b"\x1F\x8B",
        b"RIFF",
        b"II*\x00",
        b"MM\x00*",
        b"OggS",
        b"ID3",
        b"\x1A\x45\xDF\xA3",
        b"wOF",
        b"\x00asm",
    ];
    base64(encoded).is_some_and(|bytes| MAGIC.iter().any(|m| bytes.starts_with(m)) || as_text(bytes).is_some())
}

#[cfg(any(test, feature = "test-support"))]
/// `bytes` in base64: the URL-safe alphabet unpadded, or the standard one padded. For planting
/// encoded credentials; Vigil itself only decodes.
pub fn encode_base64(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if !url_safe {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_both_alphabets_padded_or_not() {
        assert_eq!(base64("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(base64("aGVsbG8gd29ybGQ").unwrap(), b"hello world");
        assert_eq!(base64("-_-_").unwrap(), base64("+/+/").unwrap());
        assert_eq!(base64("abcde"), None, "one digit too many");
        assert_eq!(base64("ab.c"), None);
    }

    #[test]
    fn runs_carry_their_padding_and_skip_short_words() {
        let text = "id=abc Zm9vYmFyYmF6cXV4cXV1eA== and AAAAAAAAAAAAAAAAAAAAAAAA";
        let found: Vec<&str> = runs(text).map(|r| &text[r]).collect();
        assert_eq!(found, ["Zm9vYmFyYmF6cXV4cXV1eA==", "AAAAAAAAAAAAAAAAAAAAAAAA"]);
    }

    #[test]
    fn the_budget_bounds_depth_and_bytes() {
        let mut budget = Budget::new();
        let mut calls = 0;
        let mut scan = |_: &str, b: &mut Budget| {
            calls += 1;
            assert!(b.depth <= MAX_DEPTH);
            Vec::new()
        };
        let big = "a".repeat(MAX_DECODED_BYTES / 2 + 1);
        assert!(budget.scan(&big, &mut scan).is_some());
        assert!(budget.scan(&big, &mut scan).is_none(), "over the byte budget");
        budget.depth = MAX_DEPTH;
        assert!(budget.scan("x", &mut scan).is_none(), "too deep");
        assert_eq!(calls, 1);
    }
}
