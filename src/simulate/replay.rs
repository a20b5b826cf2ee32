//! `vigil replay FILE.jsonl`: posts recorded events, one API event per line, in batches and
//! in file order, and accounts for every line: accepted, duplicate, or refused and why.
//!
//! A bad line costs only itself: invalid JSON and lines naming another tenant are refused
//! here, and an event Vigil refuses (422, naming `events[i]`) is dropped from its batch and
//! the rest posted again; a batch over the body limit is split.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use super::{Progress, http_client, post_events};

/// Bytes of events per request at most: under the API's 1 MiB with room for the envelope.
const MAX_BATCH_BYTES: usize = 900 * 1024;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// A JSONL file: one API event object per line (blank lines are skipped).
    pub file: PathBuf,
    /// The tenant the token belongs to. Lines without `tenant_id` get this one, so a token of
    /// another tenant is refused (403) rather than filing the events under the wrong tenant;
    /// lines naming another tenant are refused here.
    #[arg(long)]
    pub tenant: String,
    /// Base URL of Vigil.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The tenant's ingest token (or VIGIL_INGEST_TOKEN_FILE: a file holding it).
    #[arg(
        long,
        env = "VIGIL_INGEST_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub token: String,
    /// Events per request (1-1000).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

/// What a replay did with the file.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReplaySummary {
    /// Non-blank lines read.
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub refused: Vec<RefusedLine>,
    /// Findings in the 202s, by detector.
    pub findings: BTreeMap<String, u64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RefusedLine {
    /// 1-based line number in the file.
    pub line: u64,
    pub reason: String,
}

impl ReplaySummary {
    pub fn render(&self) -> String {
        let findings = if self.findings.is_empty() {
            "no findings".to_owned()
        } else {
            let by: Vec<String> = self.findings.iter().map(|(d, n)| format!("{d} {n}")).collect();
            format!("findings: {}", by.join(", "))
        };
        let mut out = format!(
            "{} lines in {:.1} s: {} accepted, {} duplicates, {} refused; {findings}\n",
            self.lines,
            self.seconds,
            self.accepted,
            self.duplicates,
            self.refused.len()
        );
        for r in &self.refused {
            out.push_str(&format!("  line {}: {}\n", r.line, r.reason));
        }
        out
    }
}

/// What [`run`] needs.
pub struct ReplayOptions {
    pub file: PathBuf,
    pub tenant: String,
    pub url: String,
    pub token: SecretString,
    pub batch: usize,
    pub progress: bool,
}

/// `vigil replay`: replays, then prints the summary on stdout.
pub async fn replay_command(args: ReplayArgs) -> anyhow::Result<()> {
    let summary = run(&ReplayOptions {
        file: args.file,
        tenant: args.tenant,
        url: args.url,
        token: args.token.into(),
        batch: args.batch,
        progress: true,
    })
    .await?;
    print!("{}", summary.render());
    Ok(())
}

/// Posts the file; fails only when Vigil refuses the token or answers what no line explains.
pub async fn run(options: &ReplayOptions) -> anyhow::Result<ReplaySummary> {
    if !(1..=1000).contains(&options.batch) {
        bail!("--batch must be 1-1000");
    }
    let file = tokio::fs::File::open(&options.file)
        .await
        .with_context(|| format!("Failed to open {}", options.file.display()))?;
    let size = file.metadata().await.map_or(0, |m| m.len());
    let mut reader = tokio::io::BufReader::new(file);
    let mut replay = Replay {
        options,
        client: http_client()?,
        url: format!("{}/v1/events", options.url.trim_end_matches('/')),
        summary: ReplaySummary::default(),
        progress: Progress::start(size, "file", options.progress),
    };
    let started = Instant::now();
    let mut pending = Pending::default();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .await
            .with_context(|| format!("Failed to read {}", options.file.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        replay.progress.advance(read as u64, 0);
        let Some(event) = replay.parse(number, &line) else {
            continue;
        };
        let bytes = event.to_string().len();
        if pending.events.len() == options.batch || pending.bytes + bytes > MAX_BATCH_BYTES {
            replay.send(std::mem::take(&mut pending).events).await?;
        }
        pending.bytes += bytes + 1;
        pending.events.push((number, event));
    }
    replay.send(pending.events).await?;
    replay.progress.finish();
    replay.summary.seconds = started.elapsed().as_secs_f64();
    Ok(replay.summary)
}

#[derive(Default)]
struct Pending {
    events: Vec<(u64, Value)>,
    bytes: usize,
}

struct Replay<'a> {
    options: &'a ReplayOptions,
    client: reqwest::Client,
    url: String,
    summary: ReplaySummary,
    progress: std::sync::Arc<Progress>,
}

impl Replay<'_> {
    /// The line as an event to post, or `None` when it is blank or refused here.
    fn parse(&mut self, number: u64, line: &[u8]) -> Option<Value> {
        let text = match std::str::from_utf8(line) {
            Ok(text) => text.trim(),
            Err(_) => {
                self.refuse(number, "not UTF-8".to_owned());
                return None;
            }
        };
        if text.is_empty() {
            return None;
        }
        self.summary.lines += 1;
        let mut event: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.refuse(number, format!("invalid JSON: {e}"));
                return None;
            }
        };
        let Some(object) = event.as_object_mut() else {
            self.refuse(number, "not a JSON object".to_owned());
            return None;
        };
        let tenant = &self.options.tenant;
        match object.get("tenant_id") {
            None | Some(Value::Null) => {
                object.insert("tenant_id".into(), tenant.as_str().into());
            }
            Some(Value::String(t)) if t == tenant => {}
            Some(other) => {
                self.refuse(number, format!("names tenant_id {other}, not {tenant}"));
                return None;
            }
        }
        Some(event)
    }

    fn refuse(&mut self, line: u64, reason: String) {
        self.summary.refused.push(RefusedLine { line, reason });
    }

    /// Posts `batch`, dropping the events Vigil refuses and splitting what is too large.
    async fn send(&mut self, batch: Vec<(u64, Value)>) -> anyhow::Result<()> {
        let mut queue = vec![batch];
        while let Some(mut batch) = queue.pop() {
            if batch.is_empty() {
                continue;
            }
            let events: Vec<&Value> = batch.iter().map(|(_, e)| e).collect();
            let body = serde_json::to_vec(&json!({ "events": events }))?;
            let (status, answer) = post_events(&self.client, &self.url, &self.options.token, body).await?;
            let message = answer["error"]["message"].as_str().unwrap_or_default().to_owned();
            match status {
                StatusCode::ACCEPTED => {
                    self.progress.advance(0, batch.len() as u64);
                    self.summary.accepted += answer["accepted"].as_u64().unwrap_or(0);
                    self.summary.duplicates += answer["duplicates"].as_u64().unwrap_or(0);
                    for f in answer["findings"].as_array().into_iter().flatten() {
                        let detector = f["detector"].as_str().unwrap_or("unknown").to_owned();
                        *self.summary.findings.entry(detector).or_default() += 1;
                    }
                }
                // Nothing of a refused batch is stored: drop the event it names, post the rest.
                StatusCode::UNPROCESSABLE_ENTITY => {
                    let Some(i) = answer["error"]["field"]
                        .as_str()
                        .and_then(event_index)
                        .filter(|&i| i < batch.len())
                    else {
                        bail!("Vigil refused a batch (422) without naming an event: {answer}");
                    };
                    let (line, _) = batch.remove(i);
                    self.refuse(line, format!("refused by Vigil (422): {message}"));
                    queue.push(batch);
                }
                StatusCode::PAYLOAD_TOO_LARGE if batch.len() > 1 => {
                    let second = batch.split_off(batch.len() / 2);
                    queue.push(second);
                    queue.push(batch);
                }
                StatusCode::PAYLOAD_TOO_LARGE => {
                    let (line, _) = &batch[0];
                    self.refuse(*line, "larger than Vigil's 1 MiB body limit".to_owned());
                }
                StatusCode::UNAUTHORIZED => bail!("Vigil refused the ingest token (401): check --token"),
                StatusCode::FORBIDDEN => {
                    bail!(
                        "Vigil refused the batch (403): {message}; is the token {}'s?",
                        self.options.tenant
                    )
                }
                _ => bail!("Vigil answered {status}: {answer}"),
            }
        }
        Ok(())
    }
}

/// `events[12].params` → 12.
fn event_index(field: &str) -> Option<usize> {
    field.strip_prefix("events[")?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_index_is_read_from_the_error_field() {
        assert_eq!(event_index("events[12].params"), Some(12));
        assert_eq!(event_index("events[0]"), Some(0));
        assert_eq!(event_index("events"), None);
        assert_eq!(event_index("events[x].tool"), None);
    }

    #[test]
    fn the_summary_lists_refused_lines() {
        let summary = ReplaySummary {
            lines: 4,
            accepted: 2,
            duplicates: 1,
            refused: vec![RefusedLine {
                line: 3,
                reason: "invalid JSON: EOF while parsing".into(),
            }],
            findings: BTreeMap::from([("rate_spike".to_owned(), 1)]),
            seconds: 0.5,
        };
        assert_eq!(
            summary.render(),
            "4 lines in 0.5 s: 2 accepted, 1 duplicates, 1 refused; findings: rate_spike 1\n  line 3: invalid JSON: EOF while parsing\n"
        );
    }
}
