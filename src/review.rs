//! `vigil baseline export` and `vigil baseline import`: a tenant's learned baseline as TOML, for
//! review in git under `baselines/`, and back. Both are HTTP clients of a running Vigil (the
//! baseline lives in the shard that owns the tenant): export reads
//! `GET /v1/tenants/{id}/baseline`, import sends the file to `PUT` on the same path, which
//! replaces what the tenant has learned and keeps learning from there.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;

/// The running Vigil both commands talk to.
#[derive(Debug, Args)]
pub struct Target {
    /// Base URL of Vigil.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Vigil's admin token (or VIGIL_ADMIN_TOKEN_FILE: a file holding it).
    #[arg(
        long,
        env = "VIGIL_ADMIN_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub admin_token: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The tenant whose baseline to export.
    #[arg(long)]
    pub tenant: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub vigil: Target,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file written by `vigil baseline export` (reviewed, perhaps edited).
    pub file: PathBuf,
    #[command(flatten)]
    pub vigil: Target,
}

/// The baseline API's JSON as TOML: nulls (absent values) are left out, since TOML has none;
/// the open suppressions, the page cursors and the bounds are not part of a baseline and are
/// left out too.
pub(crate) fn to_toml(baseline: &Value) -> anyhow::Result<String> {
    let mut baseline = baseline.clone();
    if let Some(map) = baseline.as_object_mut() {
        for view_only in ["suppressions", "next_cursor", "prev_cursor", "bounds"] {
            map.remove(view_only);
        }
    }
    let header = format!(
        "# The learned baseline of tenant {}, from `vigil baseline export`.\n\
         # Review it, keep it in git, and load it with `vigil baseline import FILE`.\n\n",
        baseline["tenant_id"].as_str().unwrap_or("?")
    );
    Ok(header + &toml::to_string(&without_nulls(baseline)).context("Failed to write the baseline as TOML")?)
}

/// A reviewed file back into the JSON the API takes.
pub(crate) fn from_toml(text: &str) -> anyhow::Result<Value> {
    let value: toml::Value = toml::from_str(text).context("The file is not valid TOML")?;
    Ok(serde_json::to_value(value)?)
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

pub async fn export_command(args: ExportArgs) -> anyhow::Result<()> {
    let url = format!(
        "{}/v1/tenants/{}/baseline",
        args.vigil.url.trim_end_matches('/'),
        args.tenant
    );
    let client = reqwest::Client::new();
    // Every page, its tools appended to the first page's.
    let mut body: Option<Value> = None;
    let mut cursor: Option<String> = None;
    loop {
        // Cursors are hex: they go into the query string as they are.
        let page_url = match cursor.take() {
            Some(c) => format!("{url}?limit=500&cursor={c}"),
            None => format!("{url}?limit=500"),
        };
        let response = client
            .get(&page_url)
            .bearer_auth(&args.vigil.admin_token)
            .send()
            .await
            .with_context(|| format!("Failed to reach Vigil at {}", args.vigil.url))?;
        let page = answer(response, &format!("GET {url}")).await?;
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        match &mut body {
            None => body = Some(page),
            Some(first) => {
                let more = page["tools"].as_array().cloned().unwrap_or_default();
                if let Some(tools) = first["tools"].as_array_mut() {
                    tools.extend(more);
                }
            }
        }
        if cursor.is_none() {
            break;
        }
    }
    let text = to_toml(&body.unwrap_or_default())?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("Failed to write {}", path.display()))?;
            eprintln!("Wrote the baseline of {} to {}", args.tenant, path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

pub async fn import_command(args: ImportArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("Failed to read {}", args.file.display()))?;
    let baseline = from_toml(&text)?;
    let Some(tenant) = baseline["tenant_id"].as_str() else {
        bail!("{} names no tenant_id", args.file.display());
    };
    let url = format!("{}/v1/tenants/{tenant}/baseline", args.vigil.url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .put(&url)
        .bearer_auth(&args.vigil.admin_token)
        .json(&baseline)
        .send()
        .await
        .with_context(|| format!("Failed to reach Vigil at {}", args.vigil.url))?;
    let body = answer(response, &format!("PUT {url}")).await?;
    eprintln!(
        "Imported the baseline of {tenant}: {} tools, {} events",
        body["tools"].as_array().map_or(0, Vec::len),
        body["events_seen"]
    );
    Ok(())
}

/// The JSON body of a 2xx answer; any other is an error saying what Vigil refused, and where.
async fn answer(response: reqwest::Response, request: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.context("Vigil's answer is not JSON")?;
    if !status.is_success() {
        let field = body["error"]["field"]
            .as_str()
            .map(|f| format!(" (at {f})"))
            .unwrap_or_default();
        bail!(
            "{request}: {status}: {}{field}",
            body["error"]["message"].as_str().unwrap_or("?")
        );
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_baseline_goes_to_toml_and_back_without_its_nulls_and_suppressions() {
        let baseline = json!({
            "tenant_id": "acme", "learning": false, "since": "2026-11-26T08:00:00Z", "last_seen": null,
            "events_seen": 100, "rate_per_min": {"mean": 1.5, "variance": 0.25},
            "tools": [{"tool": "db.query", "calls": 100, "known": true, "error_rate": 0.1,
                       "params": [{"path": "limit", "kind": "number", "samples": 100, "known": true,
                                   "number": {"mean": 12.0, "variance": 2.0, "min": 10.0, "max": 14.0,
                                              "q1": 11.0, "median": 12.0, "q3": 13.0}}]}],
            "suppressions": [{"id": "sup_1"}], "next_cursor": null, "prev_cursor": "6462",
            "bounds": {"tools": {"learned": 1, "limit": 1000, "not_learned": 0}}
        });
        let text = to_toml(&baseline).unwrap();
        assert!(text.starts_with("# The learned baseline of tenant acme"), "{text}");
        assert!(!text.contains("last_seen") && !text.contains("suppressions"), "{text}");
        let mut expected = baseline.clone();
        let map = expected.as_object_mut().unwrap();
        for gone in ["last_seen", "suppressions", "next_cursor", "prev_cursor", "bounds"] {
            map.remove(gone);
        }
        assert_eq!(from_toml(&text).unwrap(), expected);
    }

    #[test]
    fn a_file_that_is_not_toml_says_so() {
        let e = from_toml("tenant_id = ").unwrap_err();
        assert!(format!("{e:#}").starts_with("The file is not valid TOML"), "{e:#}");
    }
}
