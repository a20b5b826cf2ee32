//! Formatting shared by the pages: times, numbers, secret references, JSON. Everything here
//! returns plain text; the templates escape it.

use crate::secrets::{AwsSecret, SecretRef, VaultSecret, WebhookSecret};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// `2026-11-26 12:00:03 UTC`: absolute, unambiguous across responders' time zones.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn time_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "—".to_owned())
}

/// For `<time datetime=…>`.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whole numbers without decimals, others with at most two.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// `3.0e-12`, or `—` when the detector has no p-value.
pub fn p_value(p: Option<f64>) -> String {
    match p {
        Some(p) if p >= 0.001 => format!("{p:.3}"),
        Some(p) => format!("{p:.1e}"),
        None => "—".to_owned(),
    }
}

/// A finding's confidence, to two decimals.
pub fn confidence(c: f64) -> String {
    format!("{c:.2}")
}

/// A secret reference as a responder reads it: the backend and where the secret lives.
pub fn secret(reference: &Value) -> (String, String) {
    match serde_json::from_value::<SecretRef>(reference.clone()) {
        Ok(SecretRef::Vault(VaultSecret::Kv2 { mount, path })) => ("vault".into(), format!("kv2 {mount}/{path}")),
        Ok(SecretRef::Vault(VaultSecret::LeasePrefix { prefix })) => ("vault".into(), format!("leases under {prefix}")),
        Ok(SecretRef::Vault(VaultSecret::DatabaseStaticRole { mount, role })) => {
            ("vault".into(), format!("static role {mount}/{role}"))
        }
        Ok(SecretRef::Aws(AwsSecret::Secret {
            secret_id,
            method,
            role_arn,
            ..
        })) => (
            "aws".into(),
            format!(
                "{secret_id} ({}){}",
                serde_json::to_value(method).unwrap_or_default().as_str().unwrap_or(""),
                role_arn.map(|r| format!(" as {r}")).unwrap_or_default()
            ),
        ),
        Ok(SecretRef::Webhook(WebhookSecret::Webhook { url, name })) => {
            ("webhook".into(), format!("{name} revoked by its owner at {url}"))
        }
        Err(_) => (
            reference["backend"].as_str().unwrap_or("unknown").to_owned(),
            reference.to_string(),
        ),
    }
}

/// What a backend reported, on one line: `new_version: 7, previous_version: 6`.
pub fn result(v: &Value) -> String {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Indented JSON for a `<pre>`.
pub fn json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// `false_positive` → `false positive`.
pub fn label(status: &str) -> String {
    status.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(number(41.0), "41");
        assert_eq!(number(2.1), "2.1");
        assert_eq!(number(2.125), "2.12");
        assert_eq!(p_value(Some(3e-12)), "3.0e-12");
        assert_eq!(p_value(Some(0.25)), "0.250");
        assert_eq!(p_value(None), "—");
        assert_eq!(time("2026-11-26T12:00:03Z".parse().unwrap()), "2026-11-26 12:00:03 UTC");
    }

    #[test]
    fn results_read_on_one_line() {
        assert_eq!(
            result(&json!({"new_version": "7", "previous_version": "6"})),
            "new_version: 7, previous_version: 6"
        );
        assert_eq!(result(&json!({"leases": 3})), "leases: 3");
        assert_eq!(result(&Value::Null), "");
    }

    #[test]
    fn secret_references_name_backend_and_place() {
        let kv = json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": "tenants/acme/github"});
        assert_eq!(secret(&kv), ("vault".into(), "kv2 secret/tenants/acme/github".into()));
        let aws = json!({"backend": "aws", "kind": "secret", "secret_id": "t/acme", "method": "put_random"});
        assert_eq!(secret(&aws), ("aws".into(), "t/acme (put_random)".into()));
    }
}
