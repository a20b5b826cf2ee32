//! `vigil simulate` and `vigil replay`: traffic for a running Vigil, through its public HTTP API
//! only, as an agent runtime and an operator would send it.
//!
//! `simulate` creates a fresh set of tenants, posts days of realistic tool traffic in event
//! time (tenants concurrently, each in time order) with one attack of every class hidden in
//! it, and scores what came back in the 202s: which attacks were detected, by what, how fast,
//! and every finding raised on benign traffic. The world is [`model`] (pure, seeded); the score
//! is [`report`]; this module only does the HTTP. `simulate --fleet` is [`fleet`]: many seeds'
//! worlds folded through detection in process, scored as a fleet. `replay` posts a JSONL file
//! of events.

pub mod fleet;
pub mod model;
pub mod replay;
pub mod report;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, DurationRound, Utc};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use model::{AttackClass, Plan, SimConfig, SimEvent};
use report::{Observed, ObservedFinding, Report};

/// Events per request: half the API's maximum, so a batch holding the 5 KB shape attack still
/// stays far below the 1 MiB body limit.
const BATCH: usize = 500;
/// Attempts of one request answered 503 (a full shard queue) before the run gives up.
const MAX_ATTEMPTS: u32 = 30;
/// The longest Retry-After honoured; a larger value is read as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Base URL of the Vigil to exercise.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin token: creates the simulated tenants and reads their incidents back (not with --fleet).
    #[arg(long, env = "VIGIL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The same seed produces the same tenants' traffic and attacks (relative to the run's end).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tenants: a number, or with --fleet `LO..HI` drawn per seed [default: 20, with --fleet 24..30].
    #[arg(long)]
    pub tenants: Option<String>,
    /// Days of event time, ending at the last whole hour; with --fleet a list, e.g. `3,10`.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub days: Vec<u32>,
    /// Tenants posting at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Fold many worlds through detection in process (no HTTP, no database) and report on the
    /// fleet: see --seeds, --days, --tenants.
    #[arg(long)]
    pub fleet: bool,
    /// With --fleet: the seeds, e.g. `1-20` or `1,4,9`.
    #[arg(long, default_value = "1-20", requires = "fleet")]
    pub seeds: String,
    /// With --fleet: worlds folded at the same time [default: the machine's cores].
    #[arg(long, requires = "fleet")]
    pub threads: Option<usize>,
    /// With --fleet: exit non-zero when a bound the fleet must show fails (every class detected
    /// by its own detector in every world, median delay <= 3, spread_spike delay <= 10, false
    /// incidents <= 10 per 1,000 tenant-days, no false rotation).
    #[arg(long, requires = "fleet")]
    pub check: bool,
    /// With --fleet: judge with this policy file (a `baselines/default.toml`) instead of the
    /// shipped one, to see what a change of policy does to the fleet before rolling it out.
    #[arg(long, requires = "fleet")]
    pub policy: Option<std::path::PathBuf>,
}

/// `vigil simulate`: runs, then prints the report on stdout (progress went to stderr).
pub async fn simulate_command(args: SimulateArgs) -> anyhow::Result<()> {
    if args.fleet {
        return fleet_command(args).await;
    }
    let [days] = args.days[..] else {
        bail!("--days takes one number without --fleet");
    };
    let tenants = match args.tenants.as_deref() {
        None => 20,
        Some(t) => t.parse().context("--tenants takes one number without --fleet")?,
    };
    let Some(admin_token) = args.admin_token else {
        bail!("--admin-token (or VIGIL_ADMIN_TOKEN, or VIGIL_ADMIN_TOKEN_FILE) is required without --fleet");
    };
    let options = Options {
        url: args.url,
        admin_token: admin_token.into(),
        config: SimConfig {
            seed: args.seed,
            tenants,
            days,
        },
        concurrency: args.concurrency,
        progress: true,
    };
    let report = run(&options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

/// `vigil simulate --fleet`: folds the worlds on threads, prints the fleet report.
async fn fleet_command(args: SimulateArgs) -> anyhow::Result<()> {
    let policy = match &args.policy {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => fleet::SHIPPED_POLICY.to_owned(),
    };
    let options = fleet::FleetOptions {
        policy,
        seeds: fleet::parse_seeds(&args.seeds).map_err(anyhow::Error::msg)?,
        days: args.days,
        tenants: fleet::Tenants::parse(args.tenants.as_deref().unwrap_or("24..30")).map_err(anyhow::Error::msg)?,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        progress: true,
    };
    let mut report = tokio::task::spawn_blocking(move || fleet::run(&options))
        .await?
        .map_err(anyhow::Error::msg)?;
    if let Some(path) = &args.policy {
        report.policy = path.display().to_string();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    if args.check && !report.holds() {
        let failed: Vec<&str> = report.checks.iter().filter(|c| !c.holds).map(|c| c.bound).collect();
        bail!("the fleet breaks its bounds: {}", failed.join("; "));
    }
    Ok(())
}

/// What [`run`] needs.
pub struct Options {
    pub url: String,
    pub admin_token: SecretString,
    pub config: SimConfig,
    pub concurrency: usize,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// Creates the tenants, posts the whole plan and scores it.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let run_id = run_id();
    let plan =
        Plan::new(options.config, &format!("sim{}-{run_id}", options.config.seed)).map_err(anyhow::Error::msg)?;
    let plan = Arc::new(plan);
    let api = Api::new(&options.url, options.admin_token.clone())?;

    let mut tokens = Vec::with_capacity(plan.tenants.len());
    for (i, tenant) in plan.tenants.iter().enumerate() {
        tokens.push(api.create_tenant(&plan, i).await?);
        // Every tool's calls use one KV v2 secret, so a rotate decision rotates something real.
        api.bind(&tenant.id).await?;
    }

    // Timestamps are `end` minus the event's distance from the end of the plan. `end` is the
    // last whole hour: every event is in the past, and a seed fills the same minute and hour
    // buckets on every run, so its score repeats (measured: ending at an arbitrary second
    // re-slices the minutes and moved borderline rate findings from 6 to 2).
    let end = Utc::now().duration_trunc(chrono::TimeDelta::hours(1))?;
    let start = end - chrono::Duration::milliseconds(plan.span_ms());
    let total = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || {
            (0..plan.tenants.len())
                .flat_map(|t| (0..plan.config.days).map(move |d| (t, d)))
                .map(|(t, d)| plan.events(t, d).len() as u64)
                .sum::<u64>()
        })
        .await?
    };
    let progress = Progress::start(total, "events", options.progress);
    let started = Instant::now();
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        api: api.clone(),
        start,
        progress: progress.clone(),
    });
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (tenant, token) in tokens.into_iter().enumerate() {
        let (ctx, permits) = (ctx.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            ctx.drive_tenant(tenant, token).await
        });
    }
    let attacks = plan.attacks.len();
    let mut observed = Observed::for_attacks(attacks);
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome??;
        observed.events_posted += outcome.posted;
        observed.accepted += outcome.accepted;
        observed.duplicates += outcome.duplicates;
        observed.refused += outcome.refused;
        observed.findings.extend(outcome.findings);
        for a in 0..attacks {
            observed.attack_accepted[a] += outcome.attack_accepted[a];
            observed.attack_refused_status[a] = observed.attack_refused_status[a].or(outcome.attack_refused[a]);
        }
    }
    observed.seconds = started.elapsed().as_secs_f64();
    progress.finish();

    // A refused batch stores no event, so a cross-tenant ingest finding can only be read back
    // from the token's tenant's incidents.
    for (a, attack) in plan.attacks.iter().enumerate() {
        if attack.class == AttackClass::CrossTenantIngest {
            observed.attack_api_detectors[a] = api
                .recorded_detectors(&plan.tenants[attack.victim].id, AttackClass::CrossTenantIngest.as_str())
                .await?;
        }
    }
    Ok(Report::build(&plan, &observed, &run_id, end))
}

/// A short id that keeps this run's tenants apart from earlier runs' on the same Vigil.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut n = nanos ^ (u64::from(std::process::id()) << 32);
    let mut id = String::new();
    for _ in 0..5 {
        id.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize] as char);
        n /= 36;
    }
    id
}

struct Ctx {
    plan: Arc<Plan>,
    api: Api,
    /// The instant `at_ms == 0` stands for.
    start: DateTime<Utc>,
    progress: Arc<Progress>,
}

/// What one tenant's posting saw.
struct TenantOutcome {
    posted: u64,
    accepted: u64,
    duplicates: u64,
    refused: u64,
    findings: Vec<ObservedFinding>,
    attack_accepted: Vec<usize>,
    attack_refused: Vec<Option<u16>>,
}

impl Ctx {
    /// Posts the tenant's days in time order, one batch after the other: a tenant's baseline
    /// learns in event time, and a runtime sends its calls as they happen.
    async fn drive_tenant(&self, tenant: usize, token: SecretString) -> anyhow::Result<TenantOutcome> {
        let attacks = self.plan.attacks.len();
        let mut out = TenantOutcome {
            posted: 0,
            accepted: 0,
            duplicates: 0,
            refused: 0,
            findings: Vec::new(),
            attack_accepted: vec![0; attacks],
            attack_refused: vec![None; attacks],
        };
        // Which attack, and which of its events, each attack event id is.
        let positions: HashMap<String, (usize, usize)> = (0..attacks)
            .filter(|&a| self.plan.attacks[a].victim == tenant)
            .flat_map(|a| {
                self.plan
                    .attack_events(a)
                    .into_iter()
                    .enumerate()
                    .map(move |(j, e)| (e.id, (a, j)))
            })
            .collect();
        for day in 0..self.plan.config.days {
            let plan = self.plan.clone();
            let events = tokio::task::spawn_blocking(move || plan.events(tenant, day)).await?;
            let mut rest = &events[..];
            while !rest.is_empty() {
                // A batch that names another tenant is refused whole: it travels alone.
                let claims = rest[0].claimed_tenant.is_some();
                let n = rest
                    .iter()
                    .take(BATCH)
                    .take_while(|e| e.claimed_tenant.is_some() == claims)
                    .count();
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                self.post(tenant, &token, batch, &positions, &mut out).await?;
            }
        }
        Ok(out)
    }

    async fn post(
        &self,
        tenant: usize,
        token: &SecretString,
        batch: &[SimEvent],
        positions: &HashMap<String, (usize, usize)>,
        out: &mut TenantOutcome,
    ) -> anyhow::Result<()> {
        let events: Vec<Value> = batch.iter().map(|e| e.to_json(self.start)).collect();
        let body = serde_json::to_vec(&json!({ "events": events }))?;
        let (status, answer) = post_events(&self.api.client, &self.api.events_url, token, body).await?;
        out.posted += batch.len() as u64;
        self.progress.advance(batch.len() as u64, batch.len() as u64);
        let tenant_id = &self.plan.tenants[tenant].id;
        if status != StatusCode::ACCEPTED {
            let attack = batch.iter().find_map(|e| e.attack);
            let refused_attack = attack.filter(|&a| self.plan.attacks[a].class == AttackClass::CrossTenantIngest);
            let Some(a) = refused_attack else {
                bail!("Vigil answered {status} to a batch of {tenant_id}: {answer}");
            };
            out.refused += batch.len() as u64;
            out.attack_refused[a] = Some(status.as_u16());
            return Ok(());
        }
        out.accepted += answer["accepted"].as_u64().unwrap_or(0);
        out.duplicates += answer["duplicates"].as_u64().unwrap_or(0);
        for a in batch.iter().filter_map(|e| e.attack) {
            out.attack_accepted[a] += 1;
        }
        let Some(findings) = answer["findings"].as_array().filter(|f| !f.is_empty()) else {
            return Ok(());
        };
        let by_id: HashMap<&str, &SimEvent> = batch.iter().map(|e| (e.id.as_str(), e)).collect();
        for f in findings {
            let text = |field: &str| f[field].as_str().unwrap_or_default().to_owned();
            let event_id = text("event_id");
            let event = by_id.get(event_id.as_str());
            out.findings.push(ObservedFinding {
                tenant,
                tool: event.map(|e| e.tool.clone()).unwrap_or_default(),
                at_ms: event.map_or(0, |e| e.at_ms),
                attack: positions.get(&event_id).copied(),
                event_id,
                detector: text("detector"),
                severity: text("severity"),
                incident_id: text("incident_id"),
                action: text("action"),
            });
        }
        Ok(())
    }
}

/// The admin side of the API, as the simulator uses it.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    events_url: String,
    admin_token: SecretString,
}

impl Api {
    fn new(url: &str, admin_token: SecretString) -> anyhow::Result<Api> {
        let base = url.trim_end_matches('/').to_owned();
        Ok(Api {
            client: http_client()?,
            events_url: format!("{base}/v1/events"),
            base,
            admin_token,
        })
    }

    async fn create_tenant(&self, plan: &Plan, i: usize) -> anyhow::Result<SecretString> {
        let t = &plan.tenants[i];
        let body = json!({
            "id": t.id,
            "display_name": format!("Simulated tenant {} (seed {})", i + 1, plan.config.seed),
            "markers": t.markers,
        });
        let r = self
            .client
            .post(format!("{}/v1/tenants", self.base))
            .bearer_auth(self.admin_token.expose_secret())
            .json(&body)
            .send()
            .await
            .with_context(|| format!("Failed to reach Vigil at {}", self.base))?;
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        if status != StatusCode::CREATED {
            bail!("creating tenant {} answered {status}: {answer}", t.id);
        }
        let token = answer["ingest_token"]
            .as_str()
            .context("POST /v1/tenants answered without an ingest_token")?;
        Ok(token.to_owned().into())
    }

    async fn bind(&self, tenant: &str) -> anyhow::Result<()> {
        let body = json!({"bindings": [{"tools": "*", "secrets": [
            {"backend": "vault", "kind": "kv2", "mount": "secret", "path": format!("sim/{tenant}/agent")}]}]});
        let r = self
            .client
            .put(format!("{}/v1/tenants/{tenant}/bindings", self.base))
            .bearer_auth(self.admin_token.expose_secret())
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        if status != StatusCode::OK {
            bail!(
                "binding {tenant}'s secret answered {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Detectors named `detector` among the findings of the tenant's incidents (a few pages).
    async fn recorded_detectors(&self, tenant: &str, detector: &str) -> anyhow::Result<Vec<String>> {
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let mut query = vec![("tenant", tenant), ("limit", "500")];
            if let Some(c) = &cursor {
                query.push(("cursor", c));
            }
            let url = reqwest::Url::parse_with_params(&format!("{}/v1/incidents", self.base), &query)?;
            let r = self
                .client
                .get(url)
                .bearer_auth(self.admin_token.expose_secret())
                .send()
                .await?;
            let status = r.status();
            let page: Value = r.json().await.unwrap_or(Value::Null);
            if status != StatusCode::OK {
                bail!("GET /v1/incidents?tenant={tenant} answered {status}: {page}");
            }
            let found = page["incidents"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|i| i["finding_groups"].as_array().into_iter().flatten())
                .any(|g| g["detector"] == detector);
            if found {
                return Ok(vec![detector.to_owned()]);
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(Vec::new())
    }
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("Failed to build the HTTP client")
}

/// Posts one `POST /v1/events` body. A 503 (a full shard queue) is retried after its
/// Retry-After, a bounded number of times; every other answer is returned as it came.
async fn post_events(
    client: &reqwest::Client,
    url: &str,
    token: &SecretString,
    body: Vec<u8>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut attempt = 1;
    loop {
        let r = client
            .post(url)
            .bearer_auth(token.expose_secret())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("Failed to POST {url}"))?;
        let status = r.status();
        if status == StatusCode::SERVICE_UNAVAILABLE && attempt < MAX_ATTEMPTS {
            tokio::time::sleep(retry_after(r.headers())).await;
            attempt += 1;
            continue;
        }
        let answer = r.json::<Value>().await.unwrap_or(Value::Null);
        return Ok((status, answer));
    }
}

/// The wait a 503 asks for: Retry-After in seconds, 1 s when absent, capped.
fn retry_after(headers: &HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
        .min(MAX_RETRY_AFTER)
}

/// A progress line on stderr: rewritten in place on a terminal, one line every 10 s otherwise
/// (a log file should not fill with carriage returns).
struct Progress {
    /// Work done out of `total` (events for `simulate`, bytes for `replay`).
    done: AtomicU64,
    total: u64,
    events: AtomicU64,
    unit: &'static str,
    started: Instant,
    finished: AtomicBool,
    enabled: bool,
    terminal: bool,
}

impl Progress {
    fn start(total: u64, unit: &'static str, enabled: bool) -> Arc<Progress> {
        let progress = Arc::new(Progress {
            done: AtomicU64::new(0),
            total,
            events: AtomicU64::new(0),
            unit,
            started: Instant::now(),
            finished: AtomicBool::new(false),
            enabled,
            terminal: std::io::stderr().is_terminal(),
        });
        if enabled {
            let p = progress.clone();
            tokio::spawn(async move {
                let period = if p.terminal { 1 } else { 10 };
                let mut tick = tokio::time::interval(Duration::from_secs(period));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if p.finished.load(Ordering::Relaxed) {
                        break;
                    }
                    p.print(false);
                }
            });
        }
        progress
    }

    fn advance(&self, done: u64, events: u64) {
        self.done.fetch_add(done, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
    }

    fn print(&self, last: bool) {
        let done = self.done.load(Ordering::Relaxed);
        let events = self.events.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let percent = if self.total > 0 {
            100.0 * done as f64 / self.total as f64
        } else {
            100.0
        };
        let line = if self.unit == "events" {
            format!(
                "{events}/{} events posted ({percent:.0}%), {:.0} events/s",
                self.total,
                events as f64 / seconds
            )
        } else {
            format!(
                "{events} events posted, {percent:.0}% of the {unit}, {:.0} events/s",
                events as f64 / seconds,
                unit = self.unit
            )
        };
        if self.terminal {
            eprint!("\r{line}   {}", if last { "\n" } else { "" });
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.enabled && !self.finished.swap(true, Ordering::Relaxed) {
            self.print(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_is_read_in_seconds_defaulted_and_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Duration::from_secs(3));
        h.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&h), MAX_RETRY_AFTER);
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Duration::from_secs(1));
    }

    #[test]
    fn run_ids_are_valid_in_tenant_ids() {
        let id = run_id();
        assert_eq!(id.len(), 5);
        assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }
}
