//! The simulated world: tenants, their agents' tool traffic, and the attacks hidden in it.
//!
//! Pure and deterministic: a [`Plan`] is a function of the seed, the tenant count, the number
//! of days and the tenant-id prefix, and every event is placed in time as milliseconds since
//! the simulated start (`at_ms`), so the same seed gives the same events relative to the run's
//! end whenever it runs. No clock, no I/O; the runner turns `at_ms` into a timestamp.
//!
//! Traffic is a non-homogeneous Poisson process per (tenant, tool), drawn by thinning: a base
//! rate shaped by the tenant's local hour (peak mid-afternoon, quiet at night), its local
//! weekday (weekends lower) and organic growth. Each (tenant, tool, day) has its own random
//! stream, so generating one day needs nothing from the others and injecting an attack moves
//! no benign event. Each (tenant, agent, day) has one more: the agent's sessions (a few minutes
//! to an hour each), which every tool's calls of that agent share.
//!
//! Parameters have the shapes real traffic has, not only stable ranges: heavy right tails
//! (log-normal money amounts, Pareto byte sizes and durations), counters that only grow (a
//! page number within a session, an offset, a `since_id` over the run, epoch timestamps, a
//! version that steps up on some days), two-humped sizes, and a `limit` that depends on the
//! `table` it reads. Some tenants are quiet (tools called a few times a day), and the tenants
//! joining mid-run bring rare tools that first show up days into their history.

use std::f64::consts::PI;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Base rates are drawn log-uniformly from this range, in calls per minute.
const RATE_RANGE: (f64, f64) = (0.1, 6.0);
/// A rare tool's base rate: a few calls to a few dozen a day.
const RARE_RATE_RANGE: (f64, f64) = (0.005, 0.05);
/// A quiet tenant's rich tool (every tenant's tool 0, which the parameter attacks use): the
/// low end of the ordinary range, so it still has a day of history when it is attacked.
const QUIET_RICH_RANGE: (f64, f64) = (0.1, 0.5);
/// Share of tenants that are quiet: every tool but the rich one is rare.
const QUIET_SHARE: f64 = 0.25;
/// Share of an ordinary tenant's other tools that are rare.
const RARE_TOOL_SHARE: f64 = 0.2;
/// A session lasts log-uniformly this long, in minutes.
const SESSION_MINUTES: (f64, f64) = (3.0, 60.0);
/// Epoch timestamps in parameters count from this notional start (2026-01-01T00:00:00Z) plus
/// the event's `at_ms`: the model reads no clock, so they drift with event time, not with the
/// wall clock of the run.
const EPOCH_ORIGIN_S: i64 = 1_767_225_600;
/// Chance, per day, that a tool's versioned parameter steps to its next minor version.
const VERSION_STEP_CHANCE: f64 = 0.2;
/// The diurnal shape's maximum (at 15:00 local); its mean over a day is about 0.77.
const DIURNAL_PEAK: f64 = 1.8;
/// Share of calls that are a benign retry burst: a few quick failures, then success.
const RETRY_BURST_SHARE: f64 = 0.015;
/// Length of every generated identifier: the "ids are 12 characters" the shape attack breaks.
const ID_LEN: usize = 12;
/// The shape attack's string: about 5 KB where the path normally holds a 12-character id.
const OVERSIZE_LEN: usize = 5 * 1024;

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    pub tenants: usize,
    pub days: u32,
}

impl SimConfig {
    /// At least two tenants (the cross-tenant attacks need a second one) and 1–80 days, so
    /// every event stays inside Vigil's default 90-day retention while the run posts.
    pub fn check(&self) -> Result<(), String> {
        if self.tenants < 2 || self.tenants > 999 {
            return Err("--tenants must be 2-999: the cross-tenant attacks need a second tenant".into());
        }
        if self.days == 0 || self.days > 80 {
            return Err("--days must be 1-80, inside the default 90-day retention".into());
        }
        Ok(())
    }
}

/// The kinds of attack the simulator hides in the traffic, one injection each per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackClass {
    RateSpike,
    ErrorBurst,
    NovelTool,
    ParamOutOfRange,
    NovelParamValue,
    NovelParamKey,
    ShapeOutlier,
    CrossTenantReference,
    SecretInPayload,
    CrossTenantIngest,
    SpreadSpike,
}

impl AttackClass {
    pub const ALL: [AttackClass; 11] = [
        AttackClass::RateSpike,
        AttackClass::ErrorBurst,
        AttackClass::NovelTool,
        AttackClass::ParamOutOfRange,
        AttackClass::NovelParamValue,
        AttackClass::NovelParamKey,
        AttackClass::ShapeOutlier,
        AttackClass::CrossTenantReference,
        AttackClass::SecretInPayload,
        AttackClass::CrossTenantIngest,
        AttackClass::SpreadSpike,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttackClass::RateSpike => "rate_spike",
            AttackClass::ErrorBurst => "error_burst",
            AttackClass::NovelTool => "novel_tool",
            AttackClass::ParamOutOfRange => "param_out_of_range",
            AttackClass::NovelParamValue => "novel_param_value",
            AttackClass::NovelParamKey => "novel_param_key",
            AttackClass::ShapeOutlier => "shape_outlier",
            AttackClass::CrossTenantReference => "cross_tenant_reference",
            AttackClass::SecretInPayload => "secret_in_payload",
            AttackClass::CrossTenantIngest => "cross_tenant_ingest",
            AttackClass::SpreadSpike => "spread_spike",
        }
    }

    /// The detector built for this class. A length outlier is a `param_out_of_range` on the
    /// string's length, a spread spike a `rate_spike` (of the tenant as a whole, or of any of
    /// its tools); any other detector firing on the attack still counts as detection.
    pub fn expected_detector(self) -> &'static str {
        match self {
            AttackClass::ShapeOutlier => "param_out_of_range",
            AttackClass::SpreadSpike => "rate_spike",
            other => other.as_str(),
        }
    }

    /// Classes whose detector judges a minute's count, which may cross its threshold on one
    /// of the victim's own benign calls in the attacked minute.
    pub fn is_rate(self) -> bool {
        matches!(
            self,
            AttackClass::RateSpike | AttackClass::ErrorBurst | AttackClass::SpreadSpike
        )
    }
}

/// One planned attack: where, when, and how many events it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Attack {
    pub class: AttackClass,
    /// Index of the tenant whose agent misbehaves (its token posts the events).
    pub victim: usize,
    /// The other tenant a cross-tenant attack names.
    pub other: Option<usize>,
    /// The tool its events call; `*` for a spread spike, which calls every tool of `tools`.
    pub tool: String,
    /// Every tool its events call, with how many of them call it.
    pub tools: Vec<(String, usize)>,
    /// When the first attack event starts, in ms since the simulated start.
    pub at_ms: i64,
    /// How many events the attack sends.
    pub events: usize,
    /// One line for the report: what the attack does.
    pub what: String,
}

/// A simulated tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPlan {
    pub id: String,
    pub markers: Vec<String>,
    /// When its traffic starts (0, or later for a tenant joining mid-run), ms since start.
    pub joined_ms: i64,
    pub tools: Vec<ToolProfile>,
    /// Its local time of week at the simulated start, in seconds since Monday 00:00: tenants
    /// live in different time zones, and this keeps the model independent of the wall clock.
    week_phase_s: f64,
    /// Organic growth: the rate multiplier rises by this much per day.
    growth_per_day: f64,
    /// Its agents, `agent-1`…: the first does most of the calls (weights 1/rank).
    agents: usize,
    /// Every tool but the rich one is rare.
    pub quiet: bool,
}

/// One tool as one tenant uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolProfile {
    template: usize,
    /// Calls per minute before the diurnal, weekly and growth factors.
    pub base_rate: f64,
    /// Share of single calls that end in `error` (outside retry bursts).
    error_rate: f64,
    /// A versioned parameter's minor version on day 0, and the days it steps up by one.
    version: (u32, Vec<u32>),
}

impl ToolProfile {
    pub fn name(&self) -> &'static str {
        CATALOGUE[self.template].tool
    }
}

/// One event of the simulation, as the API will receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    pub id: String,
    pub at_ms: i64,
    pub tool: String,
    pub params: Value,
    pub outcome: &'static str,
    pub error_code: Option<&'static str>,
    pub duration_ms: u64,
    pub agent_id: String,
    pub session_id: String,
    pub credential_ref: String,
    /// `tenant_id` written into the event; only the cross-tenant-ingest attack sets it, to a
    /// tenant that is not the poster's.
    pub claimed_tenant: Option<String>,
    /// Index into [`Plan::attacks`] when this event is part of an attack.
    pub attack: Option<usize>,
}

impl SimEvent {
    /// The API event, with `at_ms` counted from `start`.
    pub fn to_json(&self, start: DateTime<Utc>) -> Value {
        let mut e = json!({
            "event_id": self.id,
            "timestamp": (start + Duration::milliseconds(self.at_ms)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "tool": self.tool,
            "params": self.params,
            "outcome": self.outcome,
            "duration_ms": self.duration_ms,
            "agent_id": self.agent_id,
            "session_id": self.session_id,
            "credential_ref": self.credential_ref,
        });
        if let Some(code) = self.error_code {
            e["error_code"] = code.into();
        }
        if let Some(t) = &self.claimed_tenant {
            e["tenant_id"] = t.as_str().into();
        }
        e
    }
}

/// Everything a run will do, fixed before the first request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub config: SimConfig,
    pub tenants: Vec<TenantPlan>,
    pub attacks: Vec<Attack>,
}

impl Plan {
    /// Plans tenants `<prefix>-t01…` and one attack of each class. `prefix` makes the ids of
    /// this run unique on a Vigil that has seen other runs; it does not change any draw.
    pub fn new(config: SimConfig, prefix: &str) -> Result<Plan, String> {
        config.check()?;
        let span = config.days as i64 * DAY_MS;
        let width = config.tenants.to_string().len().max(2);
        let mut rng = Rng::stream(config.seed, &[0]);
        // Tenants joining mid-run are the last fifth of a shuffled order; they are never
        // victims, so every attack lands on a tenant with a settled baseline.
        let mut order: Vec<usize> = (0..config.tenants).collect();
        rng.shuffle(&mut order);
        let late: Vec<usize> = order[config.tenants - config.tenants / 5..].to_vec();
        let tenants = (0..config.tenants)
            .map(|i| {
                let id = format!("{prefix}-t{:0width$}", i + 1);
                let joined_ms = if late.contains(&i) {
                    minute_floor((rng.range(0.15, 0.45) * span as f64) as i64)
                } else {
                    0
                };
                plan_tenant(&mut rng, id, joined_ms, config.days)
            })
            .collect::<Vec<_>>();
        let victims: Vec<usize> = order[..config.tenants - config.tenants / 5].to_vec();

        let mut classes = AttackClass::ALL;
        rng.shuffle(&mut classes);
        // Attacks start once the victims' baselines have a day behind them (half the run when
        // it is one day long), one per slot so no two share an incident window.
        let window_start = if config.days >= 2 { DAY_MS } else { span / 2 };
        let window_end = span - 15 * MINUTE_MS;
        let slot = (window_end - window_start) / classes.len() as i64;
        let mut plan = Plan {
            config,
            tenants,
            attacks: Vec::new(),
        };
        for (k, class) in classes.into_iter().enumerate() {
            let other_draw = rng.below(config.tenants - 1);
            let at_ms =
                minute_floor(window_start + slot * k as i64 + (slot as f64 * rng.range(0.2, 0.6)) as i64) + 5_000;
            let (victim, at_ms) = if class == AttackClass::SpreadSpike {
                plan.spread_target(&victims, (window_start + slot * k as i64, slot))
            } else {
                (victims[k % victims.len()], at_ms)
            };
            let other = (victim + 1 + other_draw) % config.tenants;
            let attack = plan.plan_attack(class, victim, other, at_ms, &mut rng);
            plan.attacks.push(attack);
        }
        Ok(plan)
    }

    /// A spread spike's victim and start: of the tenants with at least [`SPREAD_TOOLS`] tools
    /// (any, when none has), the one with the most calls expected, at the quarter hour of the
    /// attack's slot `(from, length)` when it expects the most. Two or three times a tenant's
    /// rate for a few minutes is news only where its minutes hold enough calls to tell that
    /// from chance: an attacker hiding in a busy tenant's busy hour.
    fn spread_target(&self, victims: &[usize], (from, length): (i64, i64)) -> (usize, i64) {
        let expected = |v: usize, at: i64| {
            (0..self.tenants[v].tools.len())
                .map(|k| self.rate(v, k, at as f64))
                .sum::<f64>()
        };
        let tools = |v: usize| self.tenants[v].tools.len().min(SPREAD_TOOLS);
        let times: Vec<i64> = (0..length / (15 * MINUTE_MS))
            .map(|q| minute_floor(from + q * 15 * MINUTE_MS) + 5_000)
            .collect();
        victims
            .iter()
            .flat_map(|&v| times.iter().map(move |&at| (v, at)))
            .max_by(|&(a, at_a), &(b, at_b)| {
                tools(a)
                    .cmp(&tools(b))
                    .then(expected(a, at_a).total_cmp(&expected(b, at_b)))
            })
            .expect("at least one victim and a slot of a quarter hour")
    }

    pub fn span_ms(&self) -> i64 {
        self.config.days as i64 * DAY_MS
    }

    /// Days of traffic each tenant produced, summed: the denominator of false-finding rates.
    pub fn tenant_days(&self) -> f64 {
        self.tenants
            .iter()
            .map(|t| (self.span_ms() - t.joined_ms) as f64 / DAY_MS as f64)
            .sum()
    }

    /// The events of `tenant` that start during simulated day `day`, in time order (ties by id).
    pub fn events(&self, tenant: usize, day: u32) -> Vec<SimEvent> {
        let t = &self.tenants[tenant];
        let from = (day as i64 * DAY_MS).max(t.joined_ms);
        let to = ((day as i64 + 1) * DAY_MS).min(self.span_ms());
        let mut out = Vec::new();
        if from < to {
            for k in 0..t.tools.len() {
                self.tool_day(tenant, k, day, (from, to), &mut out);
            }
        }
        for (a, attack) in self.attacks.iter().enumerate() {
            if attack.victim == tenant {
                out.extend(
                    self.attack_events(a)
                        .into_iter()
                        .filter(|e| (day as i64 * DAY_MS..(day as i64 + 1) * DAY_MS).contains(&e.at_ms)),
                );
            }
        }
        out.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// The events of attack `a`, in time order.
    pub fn attack_events(&self, a: usize) -> Vec<SimEvent> {
        let attack = &self.attacks[a];
        let t = &self.tenants[attack.victim];
        let mut rng = Rng::stream(self.config.seed, &[2, a as u64]);
        let other = attack.other.map(|o| self.tenants[o].id.as_str()).unwrap_or_default();
        let calls = self.attack_calls(attack);
        let mut events = Vec::with_capacity(calls.len());
        for (j, (at_ms, tool)) in calls.into_iter().enumerate() {
            let profile = t.tools.iter().find(|p| p.name() == tool);
            let template = profile.map(|p| &CATALOGUE[p.template]);
            let call = Call {
                at_ms,
                nth: 1,
                version: profile.map_or(0, |p| p.version_on((at_ms / DAY_MS) as u32)),
            };
            let mut params = match template {
                Some(template) => template.params(&mut rng, &t.id, &call),
                None => json!({"format": "csv", "include_deleted": true, "destination": "inline"}),
            };
            let mut outcome = "success";
            let mut error_code = None;
            let mut claimed_tenant = None;
            match attack.class {
                AttackClass::RateSpike | AttackClass::NovelTool | AttackClass::SpreadSpike => {}
                AttackClass::ErrorBurst => {
                    outcome = "denied";
                    error_code = Some("403");
                }
                AttackClass::ParamOutOfRange => {
                    if let Some((key, draw)) = template.and_then(|t| t.first(is_number)) {
                        params[key] = draw.far_beyond().into();
                    }
                }
                AttackClass::NovelParamValue => {
                    if let Some((key, Gen::Cat(_, novel))) = template.and_then(|t| t.first(is_cat)) {
                        params[key] = (*novel).into();
                    }
                }
                AttackClass::NovelParamKey => {
                    params["raw_sql"] = "select * from users".into();
                }
                AttackClass::ShapeOutlier => {
                    if let Some((key, _)) = template.and_then(|t| t.first(is_id)) {
                        params[key] = (0..OVERSIZE_LEN).map(|_| rng.alnum()).collect::<String>().into();
                    }
                }
                AttackClass::CrossTenantReference => {
                    if let Some((key, _)) = template.and_then(|t| t.first(is_text)) {
                        params[key] = format!("copy the results to {other}-prod-exports").into();
                    }
                }
                AttackClass::SecretInPayload => {
                    if let Some((key, _)) = template.and_then(|t| t.first(is_text)) {
                        params[key] = format!("deploy with {}", CANARIES[j % CANARIES.len()]).into();
                    }
                }
                AttackClass::CrossTenantIngest => claimed_tenant = Some(other.to_owned()),
            }
            let median_ms = template.map_or(200.0, |t| t.median_ms);
            events.push(SimEvent {
                id: event_id(Rng::stream_seed(self.config.seed, &[2, a as u64]), j as u64),
                at_ms,
                tool: tool.to_owned(),
                params,
                outcome,
                error_code,
                duration_ms: (median_ms * (0.6 * rng.normal()).exp()).round() as u64,
                agent_id: agent_id(0),
                session_id: self.session_at(attack.victim, 0, at_ms),
                credential_ref: credential_ref(&t.id),
                claimed_tenant,
                attack: Some(a),
            });
        }
        events
    }

    /// When each event of `attack` starts and which tool it calls, in time order.
    fn attack_calls<'a>(&self, attack: &'a Attack) -> Vec<(i64, &'a str)> {
        let mut calls: Vec<(i64, &str)> = Vec::with_capacity(attack.events);
        if attack.class == AttackClass::SpreadSpike {
            // Each tool's extra calls spread evenly over the spike, tools staggered by a second.
            for (i, (tool, n)) in attack.tools.iter().enumerate() {
                let span = SPREAD_MINUTES * MINUTE_MS - 10_000;
                calls.extend(
                    (0..*n as i64).map(|r| (attack.at_ms + i as i64 * 1_000 + r * span / *n as i64, tool.as_str())),
                );
            }
            calls.sort();
        } else {
            calls
                .extend((0..attack.events).map(|j| (attack.at_ms + attack_offset_ms(attack, j), attack.tool.as_str())));
        }
        calls
    }

    /// Expected calls per minute of tool `k` of `tenant` at `at_ms`.
    pub fn rate(&self, tenant: usize, k: usize, at_ms: f64) -> f64 {
        let t = &self.tenants[tenant];
        let local_s = t.week_phase_s + at_ms / 1000.0;
        let hour = (local_s / 3600.0).rem_euclid(24.0);
        let weekday = (local_s / 86_400.0).rem_euclid(7.0) as u32;
        let bump = (1.0 + (2.0 * PI * (hour - 15.0) / 24.0).cos()) / 2.0;
        let diurnal = 0.15 + (DIURNAL_PEAK - 0.15) * bump * bump;
        // Saturday and Sunday (local), counting Monday as 0.
        let weekly = if weekday >= 5 { 0.45 } else { 1.0 };
        let growth = 1.0 + t.growth_per_day * at_ms / DAY_MS as f64;
        t.tools[k].base_rate * diurnal * weekly * growth
    }

    /// When the sessions of agent `agent` (0-based) of `tenant` on `day` start, in ms since the
    /// simulated start: the first at the day's start, each lasting a few minutes to an hour.
    /// Its own stream, so every tool's calls of the agent share them.
    fn sessions(&self, tenant: usize, agent: usize, day: u32) -> Vec<i64> {
        let mut rng = Rng::stream(self.config.seed, &[3, tenant as u64, agent as u64, day as u64]);
        let end = (day as i64 + 1) * DAY_MS;
        let mut starts = vec![day as i64 * DAY_MS];
        loop {
            let minutes = rng.range(SESSION_MINUTES.0.ln(), SESSION_MINUTES.1.ln()).exp();
            let next = starts[starts.len() - 1] + (minutes * MINUTE_MS as f64) as i64;
            if next >= end {
                return starts;
            }
            starts.push(next);
        }
    }

    /// The session id of `agent`'s call at `at_ms`.
    fn session_at(&self, tenant: usize, agent: usize, at_ms: i64) -> String {
        let day = (at_ms / DAY_MS) as u32;
        let starts = self.sessions(tenant, agent, day);
        session_id(agent, day, starts.partition_point(|&s| s <= at_ms) - 1)
    }

    /// One tool's calls in `[from, to)` of one day: thinning against the day's highest rate.
    fn tool_day(&self, tenant: usize, k: usize, day: u32, (from, to): (i64, i64), out: &mut Vec<SimEvent>) {
        let t = &self.tenants[tenant];
        let tool = &t.tools[k];
        let parts = [1, tenant as u64, k as u64, day as u64];
        let id_stream = Rng::stream_seed(self.config.seed ^ 0x1D, &parts);
        let mut rng = Rng::stream(self.config.seed, &parts);
        let template = &CATALOGUE[tool.template];
        let max_rate = tool.base_rate * DIURNAL_PEAK * (1.0 + t.growth_per_day * to as f64 / DAY_MS as f64);
        let sessions: Vec<Vec<i64>> = (0..t.agents).map(|a| self.sessions(tenant, a, day)).collect();
        // Per agent: the session of its last call of this tool, and how many calls of the tool
        // that session has made (a page counter's position).
        let mut position: Vec<(usize, u64)> = vec![(usize::MAX, 0); t.agents];
        let version = tool.version_on(day);
        let mut seq = 0u64;
        let mut at = from as f64;
        loop {
            at += rng.exp(max_rate) * MINUTE_MS as f64;
            if at >= to as f64 {
                break;
            }
            if rng.f64() * max_rate > self.rate(tenant, k, at) {
                continue;
            }
            let at_ms = at as i64;
            let agent = rng.zipf_index(t.agents);
            let session = sessions[agent].partition_point(|&s| s <= at_ms) - 1;
            let (last, nth) = &mut position[agent];
            *nth = if *last == session { *nth + 1 } else { 1 };
            *last = session;
            let call = Call {
                at_ms,
                nth: *nth,
                version,
            };
            let params = template.params(&mut rng, &t.id, &call);
            let session_id = session_id(agent, day, session);
            let duration = template.median_ms * (0.6 * rng.normal()).exp();
            let mut call = |at_ms: i64, outcome: &'static str, error_code: Option<&'static str>, seq: &mut u64| {
                out.push(SimEvent {
                    id: event_id(id_stream, *seq),
                    at_ms,
                    tool: template.tool.to_owned(),
                    params: params.clone(),
                    outcome,
                    error_code,
                    duration_ms: duration.round() as u64,
                    agent_id: agent_id(agent),
                    session_id: session_id.clone(),
                    credential_ref: credential_ref(&t.id),
                    claimed_tenant: None,
                    attack: None,
                });
                *seq += 1;
            };
            if rng.chance(RETRY_BURST_SHARE) {
                // A flaky downstream: one to three quick failures of the same call, then success.
                let failures = rng.int(1, 3);
                let (outcome, code) = *rng.pick(&[("error", "429"), ("error", "503"), ("denied", "403")]);
                let gaps: Vec<i64> = (0..failures).map(|_| rng.int(800, 4000)).collect();
                let end = at_ms + gaps.iter().sum::<i64>();
                if end < to {
                    let mut when = at_ms;
                    for gap in gaps {
                        call(when, outcome, Some(code), &mut seq);
                        when += gap;
                    }
                    call(when, "success", None, &mut seq);
                    continue;
                }
            }
            if rng.chance(tool.error_rate) {
                let code = *rng.pick(&["500", "502", "504"]);
                call(at_ms, "error", Some(code), &mut seq);
            } else {
                call(at_ms, "success", None, &mut seq);
            }
        }
    }

    fn plan_attack(&self, class: AttackClass, victim: usize, other: usize, at_ms: i64, rng: &mut Rng) -> Attack {
        let t = &self.tenants[victim];
        // The tool with every parameter kind: tool 0 of every tenant.
        let rich = t.tools[0].name().to_owned();
        let mut by_rate: Vec<usize> = (0..t.tools.len()).collect();
        by_rate.sort_by(|&a, &b| t.tools[b].base_rate.total_cmp(&t.tools[a].base_rate));
        let busiest_name = t.tools[by_rate[0]].name().to_owned();
        let other_id = &self.tenants[other].id;
        let (tool, events, what, other) = match class {
            AttackClass::RateSpike => {
                let per_minute = spike_per_minute(self.rate(victim, by_rate[0], at_ms as f64));
                let what = format!(
                    "{} calls in 3 minutes (10x the expected rate, at least 15/min)",
                    per_minute * 3
                );
                (busiest_name, per_minute as usize * 3, what, None)
            }
            AttackClass::SpreadSpike => {
                let factor = rng.range(2.0, 3.0);
                let tools: Vec<(String, usize)> = by_rate
                    .iter()
                    .take(SPREAD_MAX_TOOLS)
                    .map(|&k| {
                        let extra = (factor - 1.0) * self.rate(victim, k, at_ms as f64) * SPREAD_MINUTES as f64;
                        (t.tools[k].name().to_owned(), (extra.round() as usize).max(1))
                    })
                    .collect();
                let events = tools.iter().map(|(_, n)| n).sum();
                let what = format!(
                    "{events} extra calls over {} tools in {SPREAD_MINUTES} minutes ({factor:.1}x each tool's expected rate)",
                    tools.len()
                );
                return Attack {
                    class,
                    victim,
                    other: None,
                    tool: ALL_TOOLS.into(),
                    tools,
                    at_ms,
                    events,
                    what,
                };
            }
            AttackClass::ErrorBurst => (
                busiest_name,
                30,
                "30 denied calls in 3 minutes (a revoked key retried in a loop)".into(),
                None,
            ),
            AttackClass::NovelTool => (
                NOVEL_TOOL.into(),
                3,
                format!("3 calls of {NOVEL_TOOL}, never used before"),
                None,
            ),
            AttackClass::ParamOutOfRange => (rich, 2, "a number 1000x its 99.9th percentile".into(), None),
            AttackClass::NovelParamValue => (rich, 2, "a categorical value never seen".into(), None),
            AttackClass::NovelParamKey => (rich, 2, "an extra key raw_sql".into(), None),
            AttackClass::ShapeOutlier => (rich, 2, "a 5 KB string where ids are 12 characters".into(), None),
            AttackClass::CrossTenantReference => (
                rich,
                2,
                format!("free text naming {other_id}-prod-exports"),
                Some(other),
            ),
            AttackClass::SecretInPayload => (rich, 2, "a fake AWS access key, then a fake GitHub token".into(), None),
            AttackClass::CrossTenantIngest => (
                rich,
                3,
                format!("one batch of 3 events claiming tenant_id {other_id}"),
                Some(other),
            ),
        };
        Attack {
            class,
            victim,
            other,
            tools: vec![(tool.clone(), events)],
            tool,
            at_ms,
            events,
            what,
        }
    }
}

/// A rate spike sends ten times the expected rate, and never fewer than 15 calls a minute:
/// a tool called once an hour is not "spiking" at 10 calls a minute, and no detector should
/// be scored on that.
fn spike_per_minute(expected: f64) -> u32 {
    ((10.0 * expected).ceil() as u32).max(15)
}

/// When the `j`-th event of an attack starts, relative to the attack's start.
fn attack_offset_ms(attack: &Attack, j: usize) -> i64 {
    let j = j as i64;
    match attack.class {
        // Spread evenly over three whole minutes, so each minute holds a third.
        AttackClass::RateSpike => {
            let per_minute = (attack.events as i64 / 3).max(1);
            (j / per_minute) * MINUTE_MS + (j % per_minute) * (MINUTE_MS - 10_000) / per_minute
        }
        AttackClass::ErrorBurst => j * 6_000,
        // One batch: a second apart.
        AttackClass::CrossTenantIngest => j * 1_000,
        _ => j * 30_000,
    }
}

/// A number in `lo..=hi` drawn from `seed` alone (a fleet's tenant count per seed).
pub fn draw_between(seed: u64, lo: usize, hi: usize) -> usize {
    lo + Rng::stream(seed, &[5]).below(hi - lo + 1)
}

/// A spread spike calls at least this many of its victim's tools…
const SPREAD_TOOLS: usize = 4;
/// …and at most this many (the busiest).
const SPREAD_MAX_TOOLS: usize = 6;
/// How long a spread spike lasts.
const SPREAD_MINUTES: i64 = 5;
/// The `tool` of an attack over many tools, as `rate_spike` names a spike of the whole tenant.
pub const ALL_TOOLS: &str = "*";

fn agent_id(agent: usize) -> String {
    format!("agent-{}", agent + 1)
}

fn session_id(agent: usize, day: u32, session: usize) -> String {
    format!("agent-{}-d{day}-s{session}", agent + 1)
}

fn minute_floor(ms: i64) -> i64 {
    ms - ms.rem_euclid(MINUTE_MS)
}

fn credential_ref(tenant: &str) -> String {
    format!("vault:secret/sim/{tenant}/agent")
}

/// An opaque, deterministic event id: distinct for distinct `seq` within a stream (the mix
/// is a bijection), and 64 bits apart between streams.
fn event_id(stream: u64, seq: u64) -> String {
    format!("{:016x}", mix(stream ^ mix(seq)))
}

/// The tool nobody ever calls until the `novel_tool` attack does.
pub const NOVEL_TOOL: &str = "admin.export_all_users";

/// Canary credentials: the shapes real scanners know, contents that say they are fake.
pub const CANARIES: [&str; 2] = ["AKIAVIGILSIMFAKE0001", "ghp_VigilSimulatorFakeCanary000000000000"];

/// A tenant: one rich tool and two to seven others. A quiet tenant's other tools are all rare;
/// an ordinary tenant's are rare one time in five, and a tenant joining mid-run has at least
/// two rare tools, which first show up days into its history.
fn plan_tenant(rng: &mut Rng, id: String, joined_ms: i64, days: u32) -> TenantPlan {
    let rich: Vec<usize> = (0..CATALOGUE.len()).filter(|&i| CATALOGUE[i].is_rich()).collect();
    let mut others: Vec<usize> = (0..CATALOGUE.len()).filter(|&i| !CATALOGUE[i].is_rich()).collect();
    rng.shuffle(&mut others);
    let quiet = rng.chance(QUIET_SHARE);
    let mut templates = vec![*rng.pick(&rich)];
    templates.extend(others.into_iter().take(rng.int(2, 7) as usize));
    let log_uniform = |rng: &mut Rng, (lo, hi): (f64, f64)| rng.range(lo.ln(), hi.ln()).exp();
    let tools = templates
        .into_iter()
        .enumerate()
        .map(|(k, template)| {
            let rare = k > 0 && (quiet || (joined_ms > 0 && k <= 2) || rng.chance(RARE_TOOL_SHARE));
            let range = match (k, quiet, rare) {
                (0, true, _) => QUIET_RICH_RANGE,
                (_, _, true) => RARE_RATE_RANGE,
                _ => RATE_RANGE,
            };
            ToolProfile {
                template,
                base_rate: log_uniform(rng, range),
                error_rate: rng.range(0.002, 0.02),
                version: (
                    rng.int(0, 30) as u32,
                    (1..days).filter(|_| rng.chance(VERSION_STEP_CHANCE)).collect(),
                ),
            }
        })
        .collect();
    TenantPlan {
        markers: vec![format!("{id}-prod-"), format!("org:{id}")],
        id,
        joined_ms,
        tools,
        week_phase_s: rng.range(0.0, 7.0 * 86_400.0),
        growth_per_day: rng.range(0.0, 0.1),
        agents: rng.int(2, 6) as usize,
        quiet,
    }
}

impl ToolProfile {
    /// The minor version its versioned parameter carries on `day`.
    fn version_on(&self, day: u32) -> u32 {
        self.version.0 + self.version.1.iter().filter(|&&d| d <= day).count() as u32
    }
}

// ---------------------------------------------------------------------------------------------
// Tools and their parameters

/// How a parameter's values are drawn.
#[derive(Debug)]
enum Gen {
    /// An integer, uniform in the inclusive range.
    Int(i64, i64),
    /// A money amount with cents, log-normal: `median`, and `sigma` of its logarithm.
    LogNormal {
        median: f64,
        sigma: f64,
    },
    /// An integer (bytes, milliseconds, a count) with a Pareto tail: at least `min`, and
    /// P(X > x) = (min / x)^alpha beyond it.
    Pareto {
        min: f64,
        alpha: f64,
    },
    /// An integer from one of two log-normal humps (sigma 0.3) around `low` and `high`, the
    /// high one with probability `high_share`: thumbnails and originals.
    Bimodal {
        low: f64,
        high: f64,
        high_share: f64,
    },
    /// An integer uniform in the range listed for the value already drawn for `key` (the
    /// first range when it is none of them): a `limit` that depends on the `table`.
    IntBy(&'static str, &'static [(&'static str, i64, i64)]),
    /// The call's position among its tool's calls in the session: 1, 2, 3…
    Page,
    /// `step` times the calls of its tool the session made before this one: 0, step, 2·step…
    Offset(i64),
    /// A cursor that grows over the run: `origin` plus `per_minute` per minute of event time,
    /// less a few hundred (the reader is a little behind).
    Drift {
        origin: i64,
        per_minute: i64,
    },
    /// Epoch seconds up to `lookback_s` before the call (counted from [`EPOCH_ORIGIN_S`]).
    Epoch {
        lookback_s: i64,
    },
    /// `"<major>.<minor>.0"`, the minor stepping up on the tool's version days.
    Version(u32),
    /// One of a small set, earlier values more often (weights 1/rank); the second field is a
    /// value benign traffic never uses, for the `novel_param_value` attack.
    Cat(&'static [&'static str], &'static str),
    /// A few words of free text.
    Text,
    /// A 12-character identifier.
    Id,
    /// One of the tenant's own resources, `<tenant>-prod-<suffix>`: benign traffic carries its
    /// own tenant's markers, which must never look cross-tenant.
    Own(&'static [&'static str]),
    Flag,
}

impl Gen {
    /// For the `param_out_of_range` attack: a thousand times the value's 99.9th percentile
    /// (its maximum when it has one), as an integer; for a Pareto law at least its
    /// 1 − 10⁻¹² quantile. A thousand times a Pareto law's p99.9 is only `1000^(1/α)` times
    /// as rare (5·10⁻⁷ for α = 1.1): its benign traffic reaches it once per two million calls,
    /// which no detector can call an attack at a noise a responder accepts. Every other law's
    /// thousandfold p99.9 is already rarer than 10⁻¹².
    fn far_beyond(&self) -> i64 {
        let p999 = match *self {
            Gen::Int(_, hi) => hi as f64,
            Gen::LogNormal { median, sigma } => median * (3.09 * sigma).exp(),
            Gen::Pareto { min, alpha } => min * 1000f64.powf(1.0 / alpha),
            Gen::Bimodal { high, .. } => high * (3.09 * 0.3f64).exp(),
            Gen::IntBy(_, ranges) => ranges.iter().map(|r| r.2).max().unwrap_or(1) as f64,
            _ => 1.0,
        };
        let never = match *self {
            Gen::Pareto { min, alpha } => min * 1e12f64.powf(1.0 / alpha),
            _ => 0.0,
        };
        (1000.0 * p999).max(never).round() as i64
    }
}

/// A number with a stable distribution: what the `param_out_of_range` attack inflates.
fn is_number(g: &Gen) -> bool {
    matches!(
        g,
        Gen::Int(..) | Gen::LogNormal { .. } | Gen::Pareto { .. } | Gen::Bimodal { .. } | Gen::IntBy(..)
    )
}
fn is_cat(g: &Gen) -> bool {
    matches!(g, Gen::Cat(..))
}
fn is_id(g: &Gen) -> bool {
    matches!(g, Gen::Id)
}
fn is_text(g: &Gen) -> bool {
    matches!(g, Gen::Text)
}

/// Where a call stands, for the parameters that depend on it.
#[derive(Debug, Clone, Copy)]
struct Call {
    at_ms: i64,
    /// 1 for the session's first call of the tool, then 2, 3…
    nth: u64,
    /// The tool's minor version that day.
    version: u32,
}

#[derive(Debug)]
struct Param {
    key: &'static str,
    draw: Gen,
    /// Share of calls that carry the key.
    presence: f64,
}

const fn p(key: &'static str, draw: Gen) -> Param {
    Param {
        key,
        draw,
        presence: 1.0,
    }
}

const fn optional(key: &'static str, draw: Gen, presence: f64) -> Param {
    Param { key, draw, presence }
}

#[derive(Debug)]
struct Template {
    tool: &'static str,
    median_ms: f64,
    params: &'static [Param],
}

impl Template {
    /// A tool with every kind of parameter an attack rewrites: every tenant has one.
    fn is_rich(&self) -> bool {
        [is_number, is_cat, is_id, is_text]
            .iter()
            .all(|kind| self.params.iter().any(|p| p.presence == 1.0 && kind(&p.draw)))
    }

    fn first(&self, kind: fn(&Gen) -> bool) -> Option<(&'static str, &Gen)> {
        self.params
            .iter()
            .find(|p| p.presence == 1.0 && kind(&p.draw))
            .map(|p| (p.key, &p.draw))
    }

    fn params(&self, rng: &mut Rng, tenant: &str, call: &Call) -> Value {
        let mut map = Map::new();
        for param in self.params {
            // Draw presence first for every key, so an optional key's absence does not shift
            // the draws of the keys after it differently from call to call.
            if param.presence < 1.0 && !rng.chance(param.presence) {
                continue;
            }
            let value = match &param.draw {
                Gen::Int(lo, hi) => Value::from(rng.int(*lo, *hi)),
                Gen::LogNormal { median, sigma } => {
                    Value::from((median * (sigma * rng.normal()).exp() * 100.0).round() / 100.0)
                }
                Gen::Pareto { min, alpha } => Value::from((min * (1.0 - rng.f64()).powf(-1.0 / alpha)).round() as i64),
                Gen::Bimodal { low, high, high_share } => {
                    let mode = if rng.chance(*high_share) { high } else { low };
                    Value::from((mode * (0.3 * rng.normal()).exp()).round() as i64)
                }
                Gen::IntBy(key, ranges) => {
                    let by = map.get(*key).and_then(Value::as_str);
                    let &(_, lo, hi) = ranges.iter().find(|r| Some(r.0) == by).unwrap_or(&ranges[0]);
                    Value::from(rng.int(lo, hi))
                }
                Gen::Page => Value::from(call.nth),
                Gen::Offset(step) => Value::from((call.nth as i64 - 1) * step),
                Gen::Drift { origin, per_minute } => {
                    Value::from(origin + call.at_ms / MINUTE_MS * per_minute - rng.int(0, 500))
                }
                Gen::Epoch { lookback_s } => Value::from(EPOCH_ORIGIN_S + call.at_ms / 1000 - rng.int(0, *lookback_s)),
                Gen::Version(major) => Value::from(format!("{major}.{}.0", call.version)),
                Gen::Cat(values, _) => Value::from(*rng.zipf(values)),
                Gen::Text => {
                    let words = rng.int(2, 6) as usize;
                    let text: Vec<&str> = (0..words).map(|_| *rng.pick(WORDS)).collect();
                    Value::from(text.join(" "))
                }
                Gen::Id => Value::from((0..ID_LEN).map(|_| rng.alnum()).collect::<String>()),
                Gen::Own(suffixes) => Value::from(format!("{tenant}-prod-{}", rng.zipf(suffixes))),
                Gen::Flag => Value::from(rng.chance(0.3)),
            };
            map.insert(param.key.to_owned(), value);
        }
        Value::Object(map)
    }
}

const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "us-west-2", "eu-central-1", "ap-south-1"];
const TABLES: &[&str] = &["orders", "invoices", "customers", "shipments", "refunds", "products"];
const REPOS: &[&str] = &["web", "api", "infra", "mobile", "docs"];
/// `db.query`'s `limit` by `table`: each table is read in pages of its own size.
const LIMIT_BY_TABLE: &[(&str, i64, i64)] = &[
    ("orders", 10, 100),
    ("invoices", 100, 500),
    ("customers", 10, 50),
    ("shipments", 50, 200),
    ("refunds", 1, 20),
    ("products", 200, 1000),
];

/// Free-text vocabulary. No word names a credential (`key`, `token`, `password`…) or a likely
/// tenant (`acme`): a benign query that trips the redactor or names a tenant would be the
/// simulator's fault, not the detector's.
const WORDS: &[&str] = &[
    "invoice",
    "overdue",
    "customer",
    "renewal",
    "refund",
    "shipping",
    "delay",
    "priority",
    "enterprise",
    "contract",
    "churn",
    "q3",
    "pipeline",
    "onboarding",
    "billing",
    "address",
    "update",
    "escalation",
    "warranty",
    "discount",
    "trial",
    "upgrade",
    "region",
    "report",
    "weekly",
    "summary",
    "open",
    "tickets",
    "failed",
    "payment",
    "order",
    "status",
    "europe",
    "latest",
    "support",
    "sla",
    "migration",
    "duplicate",
    "march",
    "widget",
    "delivery",
    "late",
    "cancelled",
];

static CATALOGUE: &[Template] = &[
    Template {
        tool: "crm.search_customers",
        median_ms: 180.0,
        params: &[
            p("query", Gen::Text),
            p("region", Gen::Cat(REGIONS, "cn-north-1")),
            p("limit", Gen::Int(10, 100)),
            p("account_id", Gen::Id),
            optional("include_archived", Gen::Flag, 0.3),
            p("page", Gen::Page),
        ],
    },
    Template {
        tool: "db.query",
        median_ms: 45.0,
        params: &[
            p("table", Gen::Cat(TABLES, "pg_authid")),
            p("limit", Gen::IntBy("table", LIMIT_BY_TABLE)),
            p("filter", Gen::Text),
            p("request_id", Gen::Id),
            p("offset", Gen::Offset(100)),
        ],
    },
    Template {
        tool: "support.search_tickets",
        median_ms: 220.0,
        params: &[
            p("status", Gen::Cat(&["open", "pending", "solved", "closed"], "deleted")),
            p("page_size", Gen::Int(10, 50)),
            p("query", Gen::Text),
            p("ticket_id", Gen::Id),
            p(
                "since_id",
                Gen::Drift {
                    origin: 4_000_000,
                    per_minute: 40,
                },
            ),
            optional("updated_after", Gen::Epoch { lookback_s: 86_400 }, 0.5),
        ],
    },
    Template {
        tool: "payments.create_charge",
        median_ms: 400.0,
        params: &[
            p(
                "amount",
                Gen::LogNormal {
                    median: 42.0,
                    sigma: 1.3,
                },
            ),
            p("currency", Gen::Cat(&["usd", "eur", "gbp", "jpy"], "xmr")),
            p("customer_id", Gen::Id),
            p("description", Gen::Text),
        ],
    },
    Template {
        tool: "media.transcode",
        median_ms: 2500.0,
        params: &[
            p(
                "size_bytes",
                Gen::Bimodal {
                    low: 80_000.0,
                    high: 25_000_000.0,
                    high_share: 0.3,
                },
            ),
            p(
                "duration_ms",
                Gen::Pareto {
                    min: 2000.0,
                    alpha: 1.5,
                },
            ),
            p("format", Gen::Cat(&["mp4", "webm", "gif"], "exe")),
            p("asset_id", Gen::Id),
            p("title", Gen::Text),
        ],
    },
    Template {
        tool: "github.list_issues",
        median_ms: 350.0,
        params: &[
            p("repo", Gen::Cat(REPOS, "payroll")),
            p("state", Gen::Cat(&["open", "closed", "all"], "locked")),
            p("per_page", Gen::Int(10, 100)),
            optional("labels", Gen::Cat(&["bug", "feature", "chore"], "security"), 0.4),
        ],
    },
    Template {
        tool: "github.create_issue",
        median_ms: 500.0,
        params: &[
            p("repo", Gen::Cat(REPOS, "payroll")),
            p("title", Gen::Text),
            p("priority", Gen::Cat(&["p1", "p2", "p3"], "p0")),
        ],
    },
    Template {
        tool: "storage.read_object",
        median_ms: 90.0,
        params: &[
            p("bucket", Gen::Own(&["assets", "exports", "logs"])),
            p("object", Gen::Id),
            p("max_bytes", Gen::Int(1024, 1_048_576)),
        ],
    },
    Template {
        tool: "storage.upload_object",
        median_ms: 300.0,
        params: &[
            p("bucket", Gen::Own(&["assets", "exports", "logs"])),
            p("object", Gen::Id),
            p("bytes", Gen::Pareto { min: 512.0, alpha: 1.1 }),
        ],
    },
    Template {
        tool: "logs.fetch",
        median_ms: 120.0,
        params: &[
            p("stream", Gen::Cat(&["app", "audit", "access"], "kernel")),
            p(
                "since_id",
                Gen::Drift {
                    origin: 90_000_000,
                    per_minute: 1500,
                },
            ),
            p("after", Gen::Epoch { lookback_s: 3600 }),
            p("page", Gen::Page),
        ],
    },
    Template {
        tool: "deploy.get_status",
        median_ms: 80.0,
        params: &[
            p("service", Gen::Cat(&["api", "web", "worker"], "billing-admin")),
            p("client_version", Gen::Version(2)),
        ],
    },
    Template {
        tool: "slack.post_message",
        median_ms: 260.0,
        params: &[
            p("channel", Gen::Cat(&["#ops", "#support", "#sales", "#eng"], "#general")),
            p("text", Gen::Text),
        ],
    },
    Template {
        tool: "email.send",
        median_ms: 400.0,
        params: &[
            p(
                "template",
                Gen::Cat(&["welcome", "invoice", "reminder", "receipt"], "password_reset"),
            ),
            p("recipients", Gen::Int(1, 5)),
            p("subject", Gen::Text),
        ],
    },
    Template {
        tool: "calendar.list_events",
        median_ms: 150.0,
        params: &[
            p("calendar", Gen::Cat(&["team", "oncall", "sales"], "board")),
            p("days_ahead", Gen::Int(1, 14)),
        ],
    },
    Template {
        tool: "web.search",
        median_ms: 700.0,
        params: &[p("query", Gen::Text), p("max_results", Gen::Int(5, 20))],
    },
    Template {
        tool: "payments.get_charge",
        median_ms: 120.0,
        params: &[
            p("charge_id", Gen::Id),
            p("expand", Gen::Cat(&["customer", "invoice", "none"], "card")),
        ],
    },
    Template {
        tool: "kb.get_article",
        median_ms: 60.0,
        params: &[
            p("article_id", Gen::Id),
            p("locale", Gen::Cat(&["en", "de", "fr", "es"], "ru")),
        ],
    },
    Template {
        tool: "weather.forecast",
        median_ms: 300.0,
        params: &[
            p(
                "city",
                Gen::Cat(&["berlin", "paris", "austin", "tokyo", "lagos"], "pyongyang"),
            ),
            p("days", Gen::Int(1, 7)),
        ],
    },
    Template {
        tool: "analytics.run_report",
        median_ms: 1500.0,
        params: &[
            p(
                "report",
                Gen::Cat(&["weekly_revenue", "churn", "signups", "funnel"], "all_users"),
            ),
            p("days", Gen::Int(7, 90)),
            p("dataset", Gen::Own(&["warehouse", "events"])),
        ],
    },
];

// ---------------------------------------------------------------------------------------------
// Randomness

/// SplitMix64: tiny, fast, and the same sequence on every platform and crate version, which
/// a seeded simulation needs more than statistical luxury.
#[derive(Debug, Clone)]
struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn stream_seed(seed: u64, parts: &[u64]) -> u64 {
        parts.iter().fold(mix(seed ^ 0x5851_F42D_4C95_7F2D), |h, &p| {
            mix(h ^ mix(p.wrapping_add(0x2545_F491)))
        })
    }

    /// An independent stream for one purpose, named by `parts`.
    fn stream(seed: u64, parts: &[u64]) -> Rng {
        Rng(Self::stream_seed(seed, parts))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in the inclusive range.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// An exponential waiting time for events at `rate` per unit.
    fn exp(&mut self, rate: f64) -> f64 {
        -(1.0 - self.f64()).ln() / rate
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// An item with weight 1/rank: a few values dominate, as in real categorical fields.
    fn zipf<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.zipf_index(items.len())]
    }

    /// An index below `n` with weight 1/(index + 1).
    fn zipf_index(&mut self, n: usize) -> usize {
        let total: f64 = (1..=n).map(|r| 1.0 / r as f64).sum();
        let mut x = self.f64() * total;
        for r in 0..n {
            x -= 1.0 / (r + 1) as f64;
            if x < 0.0 {
                return r;
            }
        }
        n - 1
    }

    fn alnum(&mut self) -> char {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        ALPHABET[self.below(ALPHABET.len())] as char
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    fn plan(seed: u64, tenants: usize, days: u32) -> Plan {
        Plan::new(SimConfig { seed, tenants, days }, "sim-test").unwrap()
    }

    fn all_events(plan: &Plan) -> Vec<Vec<SimEvent>> {
        (0..plan.tenants.len())
            .map(|t| (0..plan.config.days).flat_map(|d| plan.events(t, d)).collect())
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
        let a = all_events(&plan(1, 4, 2));
        assert_eq!(a, all_events(&plan(1, 4, 2)));
        assert_ne!(a, all_events(&plan(2, 4, 2)));
        assert!(a.iter().all(|t| !t.is_empty()));
    }

    #[test]
    fn the_prefix_changes_tenant_ids_and_nothing_drawn() {
        let a = plan(3, 5, 2);
        let b = Plan::new(
            SimConfig {
                seed: 3,
                tenants: 5,
                days: 2,
            },
            "other",
        )
        .unwrap();
        assert_eq!(a.tenants[4].id, "sim-test-t05");
        assert_eq!(a.tenants[4].markers, ["sim-test-t05-prod-", "org:sim-test-t05"]);
        assert_eq!(b.tenants[0].id, "other-t01");
        let times = |p: &Plan| -> Vec<(i64, String)> { p.events(1, 1).into_iter().map(|e| (e.at_ms, e.id)).collect() };
        assert_eq!(times(&a), times(&b));
    }

    #[test]
    fn every_attack_class_is_injected_once_with_its_planned_count() {
        for (seed, tenants, days) in [(1, 20, 3), (7, 3, 1), (42, 2, 2)] {
            let plan = plan(seed, tenants, days);
            let classes: Vec<AttackClass> = {
                let mut c: Vec<_> = plan.attacks.iter().map(|a| a.class).collect();
                c.sort();
                c
            };
            assert_eq!(classes, AttackClass::ALL, "seed {seed}");
            let mut injected: BTreeMap<usize, usize> = BTreeMap::new();
            for events in all_events(&plan) {
                for e in events.iter().filter_map(|e| e.attack) {
                    *injected.entry(e).or_default() += 1;
                }
            }
            for (i, attack) in plan.attacks.iter().enumerate() {
                assert_eq!(injected.get(&i), Some(&attack.events), "{:?} seed {seed}", attack.class);
            }
        }
    }

    #[test]
    fn attacks_come_after_a_day_of_history_in_tenants_present_from_the_start() {
        let plan = plan(1, 20, 3);
        let mut starts: Vec<i64> = plan.attacks.iter().map(|a| a.at_ms).collect();
        starts.sort();
        assert!(starts[0] >= DAY_MS);
        assert!(starts.windows(2).all(|w| w[1] - w[0] > HOUR_MS), "{starts:?}");
        let victims: HashSet<usize> = plan.attacks.iter().map(|a| a.victim).collect();
        assert!(
            victims.len() >= 10,
            "20 tenants: every attack has its own victim, but the spread spike may share the busiest"
        );
        for a in &plan.attacks {
            assert_eq!(plan.tenants[a.victim].joined_ms, 0);
            let last = plan.attack_events(plan.attacks.iter().position(|x| x == a).unwrap());
            assert!(last.last().unwrap().at_ms < plan.span_ms());
            if let Some(o) = a.other {
                assert_ne!(o, a.victim);
            }
        }
        assert_eq!(plan.tenants.iter().filter(|t| t.joined_ms > 0).count(), 4);
    }

    #[test]
    fn attack_events_carry_what_their_class_says() {
        let plan = plan(5, 4, 2);
        let find = |class| {
            let i = plan.attacks.iter().position(|a| a.class == class).unwrap();
            (plan.attacks[i].clone(), plan.attack_events(i))
        };
        let (a, events) = find(AttackClass::SecretInPayload);
        let text =
            serde_json::to_string(&events[0].params).unwrap() + &serde_json::to_string(&events[1].params).unwrap();
        assert!(text.contains(CANARIES[0]) && text.contains(CANARIES[1]), "{text}");
        assert_eq!(a.tool, plan.tenants[a.victim].tools[0].name());

        let (a, events) = find(AttackClass::CrossTenantReference);
        let other = &plan.tenants[a.other.unwrap()].id;
        assert!(
            serde_json::to_string(&events[0].params)
                .unwrap()
                .contains(&format!("{other}-prod-"))
        );

        let (a, events) = find(AttackClass::CrossTenantIngest);
        assert!(
            events
                .iter()
                .all(|e| e.claimed_tenant.as_deref() == Some(plan.tenants[a.other.unwrap()].id.as_str()))
        );
        assert_eq!(
            events[0].to_json(Utc::now())["tenant_id"],
            plan.tenants[a.other.unwrap()].id
        );

        let (_, events) = find(AttackClass::ErrorBurst);
        assert!(events.iter().all(|e| e.outcome == "denied"));
        assert!(events.last().unwrap().at_ms - events[0].at_ms <= 3 * MINUTE_MS);

        let (_, events) = find(AttackClass::ShapeOutlier);
        assert!(serde_json::to_string(&events[0].params).unwrap().len() > OVERSIZE_LEN);

        let (_, events) = find(AttackClass::NovelTool);
        assert!(events.iter().all(|e| e.tool == NOVEL_TOOL));

        let (a, events) = find(AttackClass::RateSpike);
        let minute = |e: &SimEvent| (e.at_ms - a.at_ms) / MINUTE_MS;
        assert_eq!(events.iter().filter(|e| minute(e) == 0).count(), a.events / 3);
        assert_eq!(minute(events.last().unwrap()), 2);

        let (a, events) = find(AttackClass::SpreadSpike);
        assert_eq!(a.tool, ALL_TOOLS);
        let tools: HashSet<&str> = events.iter().map(|e| e.tool.as_str()).collect();
        assert_eq!(tools.len(), a.tools.len());
        assert!(a.tools.len() >= SPREAD_TOOLS.min(plan.tenants[a.victim].tools.len()));
        assert!(events.last().unwrap().at_ms - a.at_ms < SPREAD_MINUTES * MINUTE_MS);
        // Each tool gets one to two times its own expected calls on top: 2-3x its rate.
        for (tool, n) in &a.tools {
            let k = plan.tenants[a.victim]
                .tools
                .iter()
                .position(|p| p.name() == tool)
                .unwrap();
            let expected = plan.rate(a.victim, k, a.at_ms as f64) * SPREAD_MINUTES as f64;
            assert!(
                (*n as f64) <= (2.0 * expected).round().max(1.0),
                "{tool}: {n} vs {expected}"
            );
            assert!(
                (*n as f64) >= (expected.round() - 1.0).max(1.0),
                "{tool}: {n} vs {expected}"
            );
        }
    }

    #[test]
    fn benign_traffic_is_realistic_and_never_names_another_tenant_or_a_canary() {
        let plan = plan(11, 6, 3);
        let ids: Vec<&str> = plan.tenants.iter().map(|t| t.id.as_str()).collect();
        for (t, events) in all_events(&plan).iter().enumerate() {
            let unique: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(unique.len(), events.len(), "event ids are unique per tenant");
            assert!(events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "time order");
            let tools: HashSet<&str> = events
                .iter()
                .filter(|e| e.attack.is_none())
                .map(|e| e.tool.as_str())
                .collect();
            assert!((3..=8).contains(&tools.len()), "{tools:?}");
            for e in events.iter().filter(|e| e.attack.is_none()) {
                assert!(e.at_ms >= plan.tenants[t].joined_ms && e.at_ms < plan.span_ms());
                let text = serde_json::to_string(&e.params).unwrap();
                for (o, other) in ids.iter().enumerate() {
                    assert!(o == t || !text.contains(other), "{text} names {other}");
                }
                assert!(!CANARIES.iter().any(|c| text.contains(c)));
                assert!(e.tool != NOVEL_TOOL);
            }
            let failed = events
                .iter()
                .filter(|e| e.attack.is_none() && e.outcome != "success")
                .count();
            assert!(
                failed * 12 < events.len(),
                "a few percent fail: {failed} of {}",
                events.len()
            );
        }
    }

    #[test]
    fn the_day_is_busiest_mid_afternoon_and_weekends_are_quieter() {
        let plan = plan(1, 2, 7);
        let phase = plan.tenants[0].week_phase_s;
        // ms since start at which the tenant's local clock shows `day` (0 = Monday) `hour`:00.
        let at = |day: f64, hour: f64| {
            let target = day * 86_400.0 + hour * 3600.0;
            ((target - phase).rem_euclid(7.0 * 86_400.0)) * 1000.0
        };
        let r = |day, hour| {
            plan.rate(0, 0, at(day, hour)) / (1.0 + plan.tenants[0].growth_per_day * at(day, hour) / DAY_MS as f64)
        };
        assert!(r(2.0, 15.0) > 5.0 * r(2.0, 3.0));
        assert!(r(2.0, 15.0) > r(2.0, 10.0));
        assert!((r(6.0, 15.0) / r(2.0, 15.0) - 0.45).abs() < 1e-9);
    }

    #[test]
    fn tenants_use_three_to_eight_tools_some_rare_and_some_tenants_quiet() {
        let plan = plan(9, 30, 1);
        for t in &plan.tenants {
            assert!((3..=8).contains(&t.tools.len()));
            assert!(CATALOGUE[t.tools[0].template].is_rich());
            let names: HashSet<&str> = t.tools.iter().map(|p| p.name()).collect();
            assert_eq!(names.len(), t.tools.len());
            assert!(t.tools.iter().all(|p| (0.005..=6.0).contains(&p.base_rate)));
            assert!(t.tools[0].base_rate >= 0.1, "the rich tool is never rare");
            let rare = t.tools.iter().filter(|p| p.base_rate <= RARE_RATE_RANGE.1).count();
            if t.quiet {
                assert_eq!(rare, t.tools.len() - 1);
                assert!(t.tools[0].base_rate <= QUIET_RICH_RANGE.1);
            }
            if t.joined_ms > 0 {
                assert!(rare >= 2, "a late joiner brings rare tools");
            }
        }
        let quiet = plan.tenants.iter().filter(|t| t.quiet).count();
        assert!((3..=14).contains(&quiet), "about a quarter of 30: {quiet}");
    }

    /// Every benign event of `plan`'s tenants whose template is `tool`.
    fn calls_of(plan: &Plan, tool: &str) -> Vec<(usize, SimEvent)> {
        (0..plan.tenants.len())
            .filter(|&t| plan.tenants[t].tools.iter().any(|p| p.name() == tool))
            .flat_map(|t| {
                (0..plan.config.days)
                    .flat_map(move |d| plan.events(t, d))
                    .filter(|e| e.tool == tool && e.attack.is_none())
                    .map(move |e| (t, e))
            })
            .collect()
    }

    #[test]
    fn a_page_counts_up_within_a_session_and_sessions_last_minutes_to_an_hour() {
        let plan = plan(21, 24, 2);
        let calls = calls_of(&plan, "crm.search_customers");
        assert!(calls.len() > 1000, "{}", calls.len());
        let mut sessions: BTreeMap<(usize, String), Vec<&SimEvent>> = BTreeMap::new();
        for (t, e) in &calls {
            sessions.entry((*t, e.session_id.clone())).or_default().push(e);
        }
        let mut longest = 0;
        for ((t, id), events) in &sessions {
            let pages: Vec<u64> = events.iter().map(|e| e.params["page"].as_u64().unwrap()).collect();
            assert_eq!(pages[0], 1, "{t} {id}: {pages:?}");
            // Every new call is the next page; a retry repeats its call's page seconds later.
            let mut furthest = 0;
            for &page in &pages {
                assert!(page <= furthest + 1, "{t} {id}: {pages:?}");
                furthest = furthest.max(page);
            }
            let distinct: BTreeSet<u64> = pages.iter().copied().collect();
            assert_eq!(distinct.len() as u64, furthest, "{t} {id}: {pages:?}");
            assert!(events.iter().all(|e| id.starts_with(&format!("{}-", e.agent_id))));
            let span = events.last().unwrap().at_ms - events[0].at_ms;
            assert!(span < HOUR_MS + MINUTE_MS, "{t} {id}: {span} ms");
            longest = longest.max(pages[pages.len() - 1]);
        }
        assert!(longest >= 10, "some session pages far: {longest}");
        let agents: HashSet<(usize, &str)> = calls.iter().map(|(t, e)| (*t, e.agent_id.as_str())).collect();
        let tenants: HashSet<usize> = calls.iter().map(|(t, _)| *t).collect();
        assert!(agents.len() >= 2 * tenants.len(), "several agents per tenant");
    }

    #[test]
    fn cursors_epochs_and_versions_only_move_forward() {
        let plan = plan(22, 24, 4);
        let calls = calls_of(&plan, "logs.fetch");
        assert!(!calls.is_empty());
        let mut by_tenant: BTreeMap<usize, Vec<&SimEvent>> = BTreeMap::new();
        for (t, e) in &calls {
            by_tenant.entry(*t).or_default().push(e);
        }
        for events in by_tenant.values() {
            let ids: Vec<i64> = events.iter().map(|e| e.params["since_id"].as_i64().unwrap()).collect();
            // The cursor moves with event time, the reader at most 500 behind it (a retry
            // repeats its call's value up to 12 s later).
            for e in events {
                let cursor = 90_000_000 + e.at_ms / MINUTE_MS * 1500;
                let id = e.params["since_id"].as_i64().unwrap();
                assert!((cursor - 2_500..=cursor).contains(&id), "{id} at {} ms", e.at_ms);
            }
            assert!(
                ids[ids.len() - 1] > ids[0] + 1500 * 60,
                "a day of cursor growth: {ids:?}"
            );
            for e in events {
                let after = e.params["after"].as_i64().unwrap();
                let at = EPOCH_ORIGIN_S + e.at_ms / 1000;
                assert!((at - 3600..=at).contains(&after));
            }
        }
        let calls = calls_of(&plan, "deploy.get_status");
        assert!(!calls.is_empty());
        let minor = |e: &SimEvent| -> u32 {
            let v = e.params["client_version"].as_str().unwrap();
            v.split('.').nth(1).unwrap().parse().unwrap()
        };
        let mut stepped = false;
        for t in calls.iter().map(|(t, _)| *t).collect::<BTreeSet<_>>() {
            let mut per_day: BTreeMap<i64, BTreeSet<u32>> = BTreeMap::new();
            for (_, e) in calls.iter().filter(|(u, _)| *u == t) {
                per_day.entry(e.at_ms / DAY_MS).or_default().insert(minor(e));
            }
            let days: Vec<&BTreeSet<u32>> = per_day.values().collect();
            assert!(days.iter().all(|v| v.len() == 1), "one version a day: {per_day:?}");
            assert!(days.windows(2).all(|w| w[0].first() <= w[1].first()), "{per_day:?}");
            stepped |= days.first().unwrap().first() < days.last().unwrap().first();
        }
        assert!(stepped, "some tenant's version stepped up within four days");
    }

    #[test]
    fn heavy_tails_have_their_tail_index_and_humps_their_share() {
        let mut rng = Rng::stream(1, &[99]);
        let call = Call {
            at_ms: 0,
            nth: 1,
            version: 0,
        };
        let draw = |rng: &mut Rng, draw: Gen, n: usize| -> Vec<f64> {
            let template = Template {
                tool: "t",
                median_ms: 1.0,
                params: Box::leak(Box::new([p("x", draw)])),
            };
            (0..n)
                .map(|_| template.params(rng, "x", &call)["x"].as_f64().unwrap())
                .collect()
        };
        // Hill's estimator over the top 2 %: 1 / mean(ln(x_i / x_k)).
        let hill = |mut xs: Vec<f64>| {
            xs.sort_by(|a, b| b.total_cmp(a));
            let k = xs.len() / 50;
            k as f64 / xs[..k].iter().map(|x| (x / xs[k]).ln()).sum::<f64>()
        };
        for alpha in [1.1, 1.5] {
            let xs = draw(&mut rng, Gen::Pareto { min: 1000.0, alpha }, 50_000);
            assert!(xs.iter().all(|&x| x >= 1000.0));
            let estimate = hill(xs);
            assert!((estimate / alpha - 1.0).abs() < 0.15, "alpha {alpha}: {estimate}");
        }
        let xs = draw(
            &mut rng,
            Gen::LogNormal {
                median: 42.0,
                sigma: 1.3,
            },
            20_000,
        );
        let logs: Vec<f64> = xs.iter().map(|x| x.max(0.01).ln()).collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let sd = (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
        assert!(
            (mean - 42f64.ln()).abs() < 0.05 && (sd - 1.3).abs() < 0.05,
            "{mean} {sd}"
        );
        assert!(
            xs.iter().all(|x| (x * 100.0 - (x * 100.0).round()).abs() < 1e-6),
            "cents"
        );
        let xs = draw(
            &mut rng,
            Gen::Bimodal {
                low: 80_000.0,
                high: 25_000_000.0,
                high_share: 0.3,
            },
            20_000,
        );
        let high = xs.iter().filter(|&&x| x > 1_000_000.0).count() as f64 / xs.len() as f64;
        let between = xs.iter().filter(|&&x| (400_000.0..5_000_000.0).contains(&x)).count();
        assert!((high - 0.3).abs() < 0.02 && between < 20, "{high} {between}");
    }

    #[test]
    fn a_limit_depends_on_its_table() {
        let plan = plan(23, 24, 1);
        let calls = calls_of(&plan, "db.query");
        assert!(calls.len() > 100);
        for (_, e) in &calls {
            let table = e.params["table"].as_str().unwrap();
            let &(_, lo, hi) = LIMIT_BY_TABLE.iter().find(|r| r.0 == table).unwrap();
            let limit = e.params["limit"].as_i64().unwrap();
            assert!((lo..=hi).contains(&limit), "{table}: {limit}");
            assert_eq!(e.params["offset"].as_i64().unwrap() % 100, 0);
        }
    }

    #[test]
    fn quiet_tools_make_a_few_calls_a_day_and_a_late_joiners_show_up_late() {
        let plan = plan(24, 30, 4);
        let mut late_first_calls = Vec::new();
        for (t, tenant) in plan.tenants.iter().enumerate() {
            let events: Vec<SimEvent> = (0..4)
                .flat_map(|d| plan.events(t, d))
                .filter(|e| e.attack.is_none())
                .collect();
            for tool in tenant.tools.iter().filter(|p| p.base_rate <= RARE_RATE_RANGE.1) {
                let calls: Vec<&SimEvent> = events.iter().filter(|e| e.tool == tool.name()).collect();
                let days = (plan.span_ms() - tenant.joined_ms) as f64 / DAY_MS as f64;
                assert!(
                    (calls.len() as f64) < 110.0 * days,
                    "{}: {} calls",
                    tool.name(),
                    calls.len()
                );
                if tenant.joined_ms > 0
                    && let Some(first) = calls.first()
                {
                    late_first_calls.push(first.at_ms - tenant.joined_ms);
                }
            }
        }
        assert!(late_first_calls.len() >= 6, "{late_first_calls:?}");
        assert!(
            late_first_calls.iter().filter(|&&ms| ms > HOUR_MS).count() >= late_first_calls.len() / 2,
            "rare tools first show up hours after their tenant joined: {late_first_calls:?}"
        );
    }

    #[test]
    fn configs_outside_the_supported_range_are_refused() {
        for (tenants, days) in [(1, 3), (20, 0), (20, 81)] {
            assert!(Plan::new(SimConfig { seed: 1, tenants, days }, "x").is_err());
        }
    }
}
