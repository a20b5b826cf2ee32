//! Vigil's signed outbound requests: alert webhooks (`alert::WebhookSink`) and the `webhook`
//! binding kind's revocation calls (`secrets::WebhookBackend`) are signed the same way, so one
//! receiver-side check verifies both:
//!
//! - `X-Vigil-Timestamp`: Unix seconds at the attempt (fresh on every retry);
//! - `X-Vigil-Signature`: `sha256=` + hex HMAC-SHA256 over `timestamp + "." + body`, keyed
//!   with `VIGIL_WEBHOOK_SECRET`.
//!
//! Also what both share about the receiver: which URLs are accepted, and which answers are
//! worth another attempt.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-vigil-signature";
pub const TIMESTAMP_HEADER: &str = "x-vigil-timestamp";

/// `sha256=<hex>` of HMAC-SHA256(secret, `timestamp.body`).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `POST url` with a JSON `body`, timestamped and signed now.
pub fn post(client: &reqwest::Client, url: reqwest::Url, secret: &[u8], body: Vec<u8>) -> reqwest::RequestBuilder {
    let timestamp = chrono::Utc::now().timestamp();
    client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, sign(secret, timestamp, &body))
        .body(body)
}

/// A receiver's URL: absolute `http` or `https`. `what` names the setting in the error
/// (the error never repeats the URL, which may carry a credential).
pub fn receiver_url(url: &str, what: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("{what} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{what} must be an http or https URL"));
    }
    Ok(parsed)
}

/// Whether an HTTP answer may change by asking again: 4xx other than 408 and 429 will not.
pub fn retryable_status(status: reqwest::StatusCode) -> bool {
    !status.is_client_error() || status.as_u16() == 408 || status.as_u16() == 429
}

/// A request that got no answer (refused, reset, timed out), said with its causes and without
/// its URL (which may carry a credential).
pub fn unreachable(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    format!("unreachable: {message}")
}

/// At most `max` characters of a receiver's text, control characters as spaces: it is
/// recorded and shown.
pub fn bounded_text(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // The signed string spelled out, so a change to what is signed breaks this test.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let expect = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sign(b"k", 1_700_000_000, b"{\"a\":1}"), expect);
        assert_ne!(sign(b"other", 1_700_000_000, b"{\"a\":1}"), expect);
    }

    #[test]
    fn client_errors_are_final_except_timeouts_and_rate_limits() {
        for (status, retryable) in [
            (400, false),
            (401, false),
            (404, false),
            (408, true),
            (429, true),
            (500, true),
            (503, true),
        ] {
            assert_eq!(
                retryable_status(reqwest::StatusCode::from_u16(status).unwrap()),
                retryable,
                "{status}"
            );
        }
    }

    #[test]
    fn receiver_urls_are_http_or_https_and_errors_do_not_repeat_them() {
        assert!(receiver_url("https://hooks.example/revoke", "url").is_ok());
        assert!(receiver_url("http://127.0.0.1:9/x", "url").is_ok());
        let e = receiver_url("ftp://u:pw@hooks.example/x", "url").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
        assert!(receiver_url("not a url", "url").is_err());
    }

    #[test]
    fn receiver_text_is_bounded_and_printable() {
        assert_eq!(bounded_text("a\nb\u{7}c", 10), "a b c");
        assert_eq!(bounded_text(&"x".repeat(500), 300).len(), 300);
    }
}
