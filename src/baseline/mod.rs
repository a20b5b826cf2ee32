//! What is normal for a tenant, learned as a deterministic fold over its events.
//!
//! **Invariant:** a baseline is a pure function of the events folded into it, in order, and
//! their weights. Time is the events' own timestamps, never a clock; maps are ordered; and a
//! snapshot (serde) reads back equal to what was written, bit for bit. That is what lets a
//! restart load a snapshot, replay the log after its watermark, and end up exactly where a run
//! that never stopped would be.
//!
//! Nothing here decides whether an event is anomalous: that is `detect`, which reads these
//! values and compares an event with them *before* the event is folded in.

pub mod limits;
pub mod params;
pub mod rate;
pub mod seed;
pub mod stats;
mod summary;
pub mod trust;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Outcome, ToolCallEvent};
pub use limits::{Bound, Crossings, Limits};
pub use params::ParamsBaseline;
pub use rate::{RateBaseline, RateConfig};
pub use summary::{
    BaselineSummary, BoundView, BoundsView, Page, ParamSummary, ToolSummary, cursor_of, summary, tool_of_cursor,
};
pub use trust::Trust;

/// Everything learned about one tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TenantBaseline {
    /// Per tool, keyed by tool name. Ordered so snapshots are byte-stable and diffable.
    tools: BTreeMap<String, ToolBaseline>,
    /// All tools together: a spike spread thinly over many tools shows only here.
    overall: RateBaseline,
    /// The parameters thresholds are precomputed with at each bucket start; `detect` reuses
    /// them when its own config agrees, so keep the two equal (see [`TenantBaseline::new`]).
    rate_config: RateConfig,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    events_seen: u64,
    /// Parameter paths learned over all tools, for [`Limits::keys`]; counted on first use when
    /// a snapshot from before the limits did not carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<usize>,
    /// What the tenant's bounds kept out, and when that was last reported.
    crossings: Crossings,
    /// The tenant's hours of use (its calls' distinct event-time hours): the evidence its
    /// tool map settles by (`trust::novelty`).
    activity: Trust,
    /// Each agent's calls over all tools: a spike spread over tools by one agent shows here
    /// before it shows in the tenant's total.
    agents: Agents,
}

/// The agents' call rates: a stream of its own for each of the first [`Limits::agents`]
/// agents, one pooled stream for the others. Agents are known by a hash of their id
/// ([`agent_key`]): an id is never stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Agents {
    /// In arrival order.
    streams: Vec<(u64, RateBaseline)>,
    /// Every agent beyond the bound, together.
    pooled: Option<Box<RateBaseline>>,
}

/// Where an agent's calls count.
enum Slot {
    Own(usize),
    Pooled,
    /// A stream of its own, new: appended, or in place of an agent silent for a day.
    New(Option<usize>),
}

/// An agent silent this long gives its stream to the next new agent when the bound is reached.
const AGENT_IDLE_MINUTES: i64 = 24 * 60;

impl Agents {
    fn slot(&self, key: u64, minute: i64, limit: usize) -> Slot {
        if let Some(i) = self.streams.iter().position(|(k, _)| *k == key) {
            return Slot::Own(i);
        }
        if self.streams.len() < limit {
            return Slot::New(None);
        }
        let idle = self.streams.iter().position(|(_, r)| {
            r.current_minute()
                .is_some_and(|m| m < minute.saturating_sub(AGENT_IDLE_MINUTES))
        });
        match idle {
            Some(i) => Slot::New(Some(i)),
            None => Slot::Pooled,
        }
    }

    /// The stream a call by agent `key` at `minute` counts in, if it has one yet, and whether
    /// it is the pooled one.
    pub fn stream(&self, key: u64, minute: i64, limit: usize) -> Option<(&RateBaseline, bool)> {
        match self.slot(key, minute, limit) {
            Slot::Own(i) => Some((&self.streams[i].1, false)),
            Slot::Pooled => self.pooled.as_deref().map(|rate| (rate, true)),
            Slot::New(_) => None,
        }
    }

    fn observe(&mut self, key: u64, minute: i64, weight: f64, limit: usize, config: &RateConfig) {
        let rate = match self.slot(key, minute, limit) {
            Slot::Own(i) => &mut self.streams[i].1,
            Slot::Pooled => self.pooled.get_or_insert_default(),
            Slot::New(Some(i)) => {
                self.streams[i] = (key, RateBaseline::default());
                &mut self.streams[i].1
            }
            Slot::New(None) => {
                self.streams.push((key, RateBaseline::default()));
                &mut self.streams.last_mut().expect("just pushed").1
            }
        };
        rate.observe(minute, weight, config);
    }

    /// Streams kept, the pooled one included.
    pub fn len(&self) -> usize {
        self.streams.len() + usize::from(self.pooled.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, inline and on the heap (approximately).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.streams.capacity() * std::mem::size_of::<(u64, RateBaseline)>()
            + self.streams.iter().map(|(_, r)| r.heap_bytes()).sum::<usize>()
            + self
                .pooled
                .as_ref()
                .map_or(0, |r| std::mem::size_of::<RateBaseline>() + r.heap_bytes())
    }
}

/// The key of the event's agent among [`Agents`], if it names one.
pub fn agent_key(event: &ToolCallEvent) -> Option<u64> {
    event.agent_id.as_deref().map(|agent| fnv(2, agent))
}

/// What is learned about one tool of one tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ToolBaseline {
    /// Required in snapshots, under a name older versions did not write: a snapshot from before
    /// the rate learned its dispersion and profile is rebuilt from the log, not loaded with
    /// its rates silently reset.
    #[serde(rename = "call_rate")]
    pub rate: RateBaseline,
    /// Every call observed, late ones included.
    #[serde(default)]
    pub calls: u64,
    #[serde(default)]
    first_seen: Option<DateTime<Utc>>,
    #[serde(default)]
    last_seen: Option<DateTime<Utc>>,
    /// Calls that ended in `error` or `denied`.
    #[serde(default)]
    error_calls: u64,
    /// The rate of those calls per minute; created by the first one (most tools never fail).
    #[serde(default)]
    errors: Option<Box<RateBaseline>>,
    /// Whether the tenant's tool map knows this tool (`novel_tool` until it does). Required in
    /// snapshots: one written before tools had trust must be rebuilt from the log, or every
    /// tool would look new after the upgrade.
    trust: Trust,
    #[serde(default)]
    params: ParamsBaseline,
    /// The tool's latest failing call still open to a retry: a call from the same caller
    /// within [`RETRY_WINDOW_MS`] of it is that call again, not a new one.
    #[serde(default)]
    failure: Option<Failure>,
    /// How many events the tenant had sent when this tool joined its map with a clean call
    /// (one that raised no finding): how `novel_tool` tells a map still being discovered from
    /// a settled one. [`NOT_A_DISCOVERY`] when the first call raised a finding, so an attacker
    /// calling new tools cannot unsettle the map.
    #[serde(default = "not_a_discovery")]
    joined_at: u64,
}

/// [`ToolBaseline::joined_at`] of a tool whose first call raised a finding.
pub const NOT_A_DISCOVERY: u64 = u64::MAX;

fn not_a_discovery() -> u64 {
    NOT_A_DISCOVERY
}

/// How long after a failing call a call of the same tool from the same caller counts as its
/// retry. Clients back off a second or a few between attempts; ten seconds holds a typical
/// policy's short backoffs while a new request from a busy caller rarely lands in it.
pub const RETRY_WINDOW_MS: i64 = 10_000;

/// A failing call a retry may follow.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Failure {
    /// Its timestamp, in milliseconds since the epoch.
    at_ms: i64,
    /// Who made it: a hash of the session id, else the agent id (0 when neither is given).
    caller: u64,
}

/// The caller a retry must share: the session when the runtime names one, else the agent.
fn caller_of(event: &ToolCallEvent) -> u64 {
    match (&event.session_id, &event.agent_id) {
        (Some(session), _) => fnv(1, session),
        (None, Some(agent)) => fnv(2, agent),
        (None, None) => 0,
    }
}

/// FNV-1a of a tagged id: a few nanoseconds for an id, and stable across versions (it is
/// snapshotted).
fn fnv(tag: u8, id: &str) -> u64 {
    std::iter::once(tag)
        .chain(id.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl ToolBaseline {
    /// True when `event` retries this tool's latest failing call: same caller, within
    /// [`RETRY_WINDOW_MS`] after it. A retry is the same request again, so it is not counted
    /// as a call of its own in the call rates (a flaky downstream must not look like a spike);
    /// its failure, if it fails, still counts in the failure rate.
    pub fn is_retry(&self, event: &ToolCallEvent) -> bool {
        self.failure.is_some_and(|f| {
            let after = event.timestamp.timestamp_millis().saturating_sub(f.at_ms);
            (0..=RETRY_WINDOW_MS).contains(&after) && f.caller == caller_of(event)
        })
    }

    pub fn rate(&self) -> &RateBaseline {
        &self.rate
    }

    pub fn calls(&self) -> u64 {
        self.calls
    }

    pub fn first_seen(&self) -> Option<DateTime<Utc>> {
        self.first_seen
    }

    pub fn last_seen(&self) -> Option<DateTime<Utc>> {
        self.last_seen
    }

    /// The per-minute rate of calls ending in `error` or `denied`: before the first such call,
    /// a rate of zero watched since the tool's first call.
    pub fn errors(&self) -> std::borrow::Cow<'_, RateBaseline> {
        match &self.errors {
            Some(errors) => std::borrow::Cow::Borrowed(errors),
            None => std::borrow::Cow::Owned(RateBaseline::quiet_since(self.first_seen.map_or(0, rate::minute_of))),
        }
    }

    /// The tenant's event count when this tool joined its map cleanly, or [`NOT_A_DISCOVERY`].
    pub fn joined_at(&self) -> u64 {
        self.joined_at
    }

    pub fn error_calls(&self) -> u64 {
        self.error_calls
    }

    /// Share of calls that failed, 0 before any call.
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.error_calls as f64 / self.calls as f64
        }
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    pub fn params(&self) -> &ParamsBaseline {
        &self.params
    }

    /// Bytes held by this tool's baseline, inline and on the heap (approximately: allocations
    /// at their capacity, allocator overhead not counted).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.rate.heap_bytes()
            + self
                .errors
                .as_ref()
                .map_or(0, |e| std::mem::size_of::<RateBaseline>() + e.heap_bytes())
            + self.params.heap_bytes()
    }

    /// Folds one call; `retry` is [`Self::is_retry`] of it, asked before. At most `room` new
    /// parameter paths are learned; returns the paths added and those kept out.
    fn observe(
        &mut self,
        event: &ToolCallEvent,
        at: (i64, i64),
        weight: f64,
        retry: bool,
        config: &RateConfig,
        (limits, room): (&Limits, usize),
    ) -> (usize, usize) {
        let (minute, hour) = at;
        self.calls += 1;
        widen(&mut self.first_seen, &mut self.last_seen, event.timestamp);
        if !retry {
            self.rate.observe(minute, weight, config);
        }
        self.trust.observe(hour, weight);
        let caller = caller_of(event);
        if event.outcome != Outcome::Success {
            self.failure = Some(Failure {
                at_ms: event.timestamp.timestamp_millis(),
                caller,
            });
        } else if self.failure.is_some_and(|f| f.caller == caller) {
            // The caller got through: what it sends next is a new request.
            self.failure = None;
        }
        if event.outcome != Outcome::Success {
            self.error_calls += 1;
            let watched_since = self.first_seen.map_or(minute, rate::minute_of);
            self.errors
                .get_or_insert_with(|| Box::new(RateBaseline::quiet_since(watched_since)))
                .observe(minute, weight, config);
        }
        self.params.observe(&event.params, hour, weight, limits, room)
    }
}

/// When a tenant's baseline has seen enough to be trusted with consequences (rotation).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Warmup {
    pub min_events: u64,
    pub min_span_minutes: i64,
}

impl Default for Warmup {
    /// A day and a thousand calls: at least one daily cycle before anything is rotated.
    fn default() -> Self {
        Self {
            min_events: 1000,
            min_span_minutes: 24 * 60,
        }
    }
}

impl TenantBaseline {
    /// An empty baseline whose thresholds are precomputed with `rate_config`; pass the same
    /// value as `DetectConfig::rate` (`Default` uses the default of both).
    pub fn new(rate_config: RateConfig) -> Self {
        Self {
            rate_config,
            ..Self::default()
        }
    }

    /// Changes the parameters thresholds are precomputed with, e.g. after a config reload or
    /// when a snapshot written under other parameters is loaded. Takes effect at each stream's
    /// next bucket; until then `detect` computes thresholds itself.
    pub fn set_rate_config(&mut self, rate_config: RateConfig) {
        self.rate_config = rate_config;
    }

    pub fn rate_config(&self) -> &RateConfig {
        &self.rate_config
    }

    /// Folds one event into the learned state. `weight` is 1.0 normally; the caller passes
    /// less (e.g. 0.1) for an event that raised a finding, so an attacker repeating an attack
    /// cannot teach Vigil it is normal. Weights are clamped to [0, 1]; NaN counts as 0.
    ///
    /// The rate is learned per minute, and a minute teaches with the smallest weight among its
    /// calls: a rate finding fires once, on the k-th call, and this is what stops the calls
    /// after it in the same minute from being learned at full weight.
    pub fn observe(&mut self, event: &ToolCallEvent, weight: f64) {
        self.observe_within(event, weight, &Limits::default());
    }

    /// [`Self::observe`] under the tenant's `limits`: a tool beyond [`Limits::tools`] and
    /// parameter paths beyond [`Limits::keys_per_tool`] or [`Limits::keys`] are not learned
    /// (the call still counts in the tenant's overall rate and totals); the crossing is
    /// counted in [`Self::crossings`], and marked reported when it is reportable.
    pub fn observe_within(&mut self, event: &ToolCallEvent, weight: f64, limits: &Limits) {
        let weight = if weight.is_nan() { 0.0 } else { weight.clamp(0.0, 1.0) };
        let minute = rate::minute_of(event.timestamp);
        let hour = trust::hour_of(event.timestamp);
        self.events_seen += 1;
        widen(&mut self.first_seen, &mut self.last_seen, event.timestamp);
        self.activity.observe(hour, 1.0);
        let keys = self.key_count();
        let room = (limits, limits.keys.saturating_sub(keys));

        let name = event.tool.as_ref();
        // Look up before inserting: the hot path must not allocate the key on every call.
        let known = self.tools.get_mut(name);
        let retry = known.as_ref().is_some_and(|t| t.is_retry(event));
        if !retry {
            self.overall.observe(minute, weight, &self.rate_config);
            if let Some(agent) = agent_key(event) {
                self.agents
                    .observe(agent, minute, weight, limits.agents, &self.rate_config);
            }
        }
        let (added, dropped) = if let Some(tool) = known {
            tool.observe(event, (minute, hour), weight, retry, &self.rate_config, room)
        } else if self.tools.len() >= limits.tools {
            self.crossings.record(Bound::Tools, minute, 1);
            (0, 0)
        } else {
            let mut tool = ToolBaseline {
                trust: Trust::new(hour, weight),
                joined_at: if weight >= 1.0 {
                    self.events_seen - 1
                } else {
                    NOT_A_DISCOVERY
                },
                ..ToolBaseline::default()
            };
            let learned = tool.observe(event, (minute, hour), weight, false, &self.rate_config, room);
            self.tools.insert(name.to_owned(), tool);
            learned
        };
        self.keys = Some(keys + added);
        if dropped > 0 {
            self.crossings.record(Bound::Keys, minute, dropped as u64);
        }
    }

    /// Parameter paths learned over all tools.
    pub fn key_count(&self) -> usize {
        self.keys
            .unwrap_or_else(|| self.tools.values().map(|t| t.params.len()).sum())
    }

    /// Distinct tools learned.
    pub fn tool_count(&self) -> usize {
        self.tools.len()
    }

    /// What the tenant's bounds kept out, and when each crossing was last reported.
    pub fn crossings(&self) -> &Crossings {
        &self.crossings
    }

    /// Learns an event a person marked a false positive: it was observed with weight `learned`
    /// (less than 1, it raised a finding); now its tool, parameter keys, values and character
    /// classes become trusted and its numbers count with the rest of a full weight. Rates are
    /// not rewritten: their minute is folded, and a suppression covers a rate that was wrong.
    pub fn absorb(&mut self, event: &ToolCallEvent, learned: f64, limits: &Limits) {
        if let Some(tool) = self.tools.get_mut(event.tool.as_ref()) {
            tool.trust.absorb();
            tool.params.absorb(&event.params, learned, limits);
        }
    }

    pub fn events_seen(&self) -> u64 {
        self.events_seen
    }

    pub fn first_seen(&self) -> Option<DateTime<Utc>> {
        self.first_seen
    }

    pub fn last_seen(&self) -> Option<DateTime<Utc>> {
        self.last_seen
    }

    /// Learning (warm-up) until the history spans at least `min_span_minutes` and holds at least
    /// `min_events` events. A learning tenant is still detected on; policy must not rotate.
    pub fn is_learning(&self, warmup: &Warmup) -> bool {
        let span_minutes = match (self.first_seen, self.last_seen) {
            (Some(first), Some(last)) => (last - first).num_minutes(),
            _ => return true,
        };
        self.events_seen < warmup.min_events || span_minutes < warmup.min_span_minutes
    }

    pub fn tool(&self, tool: &str) -> Option<&ToolBaseline> {
        self.tools.get(tool)
    }

    /// Every tool seen, in name order.
    pub fn tools(&self) -> impl Iterator<Item = (&str, &ToolBaseline)> {
        self.tools.iter().map(|(name, tool)| (name.as_str(), tool))
    }

    /// The tools after `after` (exclusive), in name order: a page starts here without walking
    /// the tools before it.
    pub fn tools_after(&self, after: Option<&str>) -> impl Iterator<Item = (&str, &ToolBaseline)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, Excluded);
        self.tools
            .range::<str, _>((start, Unbounded))
            .map(|(name, tool)| (name.as_str(), tool))
    }

    /// The tools before `before` (exclusive), in reverse name order: a previous page.
    pub fn tools_before(&self, before: &str) -> impl Iterator<Item = (&str, &ToolBaseline)> {
        self.tools
            .range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(before)))
            .rev()
            .map(|(name, tool)| (name.as_str(), tool))
    }

    /// The tenant's calls over all tools together.
    pub fn overall(&self) -> &RateBaseline {
        &self.overall
    }

    /// Each agent's calls over all tools together.
    pub fn agents(&self) -> &Agents {
        &self.agents
    }

    /// Distinct event-time hours the tenant has called tools in.
    pub fn hours_of_use(&self) -> u64 {
        self.activity.hours()
    }
}

/// Widens `[first, last]` to include `at`: min/max rather than first/last assignment, so late
/// events do not move `last_seen` backwards.
fn widen(first: &mut Option<DateTime<Utc>>, last: &mut Option<DateTime<Utc>>, at: DateTime<Utc>) {
    *first = Some(first.map_or(at, |f| f.min(at)));
    *last = Some(last.map_or(at, |l| l.max(at)));
}

/// [`exact_f64`] for `f32`: the shortest decimal that reads back to the same bits.
pub(crate) mod exact_f32 {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(value: &f32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        struct ExactF32;
        impl Visitor<'_> for ExactF32 {
            type Value = f32;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, or a string holding one")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f32, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f32, E> {
                Ok(v as f32)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f32, E> {
                Ok(v as f32)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f32, E> {
                Ok(v as f32)
            }
        }
        d.deserialize_any(ExactF32)
    }
}

/// Serde for learned `f64` state: written as the shortest decimal string that reads back to the
/// same bits. serde_json's default float parser is only approximately correct (about one value
/// in ten comes back one ULP off), which would break "a snapshot reads back equal". Plain
/// numbers are accepted on input, for hand-written files.
pub(crate) mod exact_f64 {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        // `Display` for f64 is the shortest round-tripping form, and `str::parse` rounds
        // correctly, so the pair is exact (NaN and infinities included).
        s.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        struct ExactF64;
        impl Visitor<'_> for ExactF64 {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, or a string holding one")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
        }
        d.deserialize_any(ExactF64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Outcome, ToolCallEvent};

    /// Call `n`: parameters of every kind (numbers that are not round, a category, free text,
    /// an array, a flag), and one call in thirteen failing.
    fn event(n: u64, tool: &str, at: DateTime<Utc>) -> ToolCallEvent {
        let state = ["open", "closed", "draft"][n as usize % 3];
        ToolCallEvent::sample(
            &format!("e-{n}"),
            tool,
            at,
            serde_json::json!({"limit": (n % 50) as f64 / 7.0, "state": state, "q": format!("q-{n}"),
                                       "ids": vec![n; (n % 4) as usize], "force": n.is_multiple_of(5)}),
            if n.is_multiple_of(13) {
                Outcome::Denied
            } else {
                Outcome::Success
            },
        )
    }

    /// A few hours of three tools with irregular spacing, a late event and weighted ones.
    fn history() -> Vec<(ToolCallEvent, f64)> {
        let start: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let mut seed = 7u64;
        let mut out = Vec::new();
        for n in 0..2_000u64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let at = start + chrono::Duration::milliseconds((n * 7_919 + (seed >> 50)) as i64);
            let tool = ["db.query", "github.create_issue", "s3.get"][(seed >> 40) as usize % 3];
            out.push((event(n, tool, at), if n % 97 == 0 { 0.1 } else { 1.0 }));
        }
        out.push((event(9_999, "db.query", start), 1.0));
        out
    }

    fn fold(events: &[(ToolCallEvent, f64)]) -> TenantBaseline {
        let mut b = TenantBaseline::default();
        for (e, w) in events {
            b.observe(e, *w);
        }
        b
    }

    #[test]
    fn a_snapshot_reads_back_equal() {
        let b = fold(&history());
        let json = serde_json::to_string(&b).unwrap();
        let back: TenantBaseline = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn a_snapshot_from_before_the_new_rates_is_refused_so_the_log_rebuilds_it() {
        let b = fold(&history());
        let json = serde_json::to_string(&b).unwrap().replace("\"call_rate\"", "\"rate\"");
        assert!(serde_json::from_str::<TenantBaseline>(&json).is_err());
    }

    #[test]
    fn folding_the_same_events_twice_gives_equal_baselines() {
        let events = history();
        assert_eq!(fold(&events), fold(&events));
    }

    #[test]
    fn late_events_count_in_totals_and_never_move_last_seen_back() {
        let events = history();
        let b = fold(&events);
        assert_eq!(b.events_seen(), events.len() as u64);
        let calls: u64 = b.tools().map(|(_, t)| t.calls()).sum();
        assert_eq!(calls, events.len() as u64);
        // The late event is stamped at the very start, before the first in-order one.
        assert_eq!(b.first_seen(), Some(events[events.len() - 1].0.timestamp));
        assert_eq!(b.last_seen(), Some(events[events.len() - 2].0.timestamp));
    }

    #[test]
    fn warm_up_needs_both_span_and_count() {
        let b = fold(&history()); // 2001 events over ~4.4 hours
        let check = |min_events, min_span_minutes| {
            b.is_learning(&Warmup {
                min_events,
                min_span_minutes,
            })
        };
        assert!(!check(2_000, 240));
        assert!(check(2_002, 240));
        assert!(check(2_000, 300));
        assert!(TenantBaseline::default().is_learning(&Warmup {
            min_events: 0,
            min_span_minutes: 0
        }));
    }

    #[test]
    fn absorbing_a_false_positive_trusts_what_it_carried() {
        let at: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let mut b = TenantBaseline::default();
        let mut flagged = event(3, "iam.create_user", at);
        flagged.params = serde_json::json!({"role": "auditor", "ttl": 30});
        b.observe(&flagged, 0.1);
        let tool = b.tool("iam.create_user").unwrap();
        assert!(!tool.trust().is_trusted());
        assert!(!tool.params().path("role").unwrap().key.is_trusted());

        b.absorb(&flagged, 0.1, &Limits::default());
        let tool = b.tool("iam.create_user").unwrap();
        assert!(tool.trust().is_trusted(), "the tool is in the tool map now");
        let role = tool.params().path("role").unwrap();
        assert!(role.key.is_trusted());
        assert!(role.values.as_ref().unwrap().get("auditor").unwrap().is_trusted());
        let ttl = tool.params().path("ttl").unwrap().number.as_ref().unwrap();
        assert!(
            (ttl.moments().weight() - 1.0).abs() < 1e-12,
            "{}",
            ttl.moments().weight()
        );
        assert_eq!(tool.calls(), 1, "absorbing is not another call");

        let before = b.clone();
        b.absorb(&event(4, "never.seen", at), 0.1, &Limits::default());
        assert_eq!(b, before, "a tool never observed is not invented");
    }

    #[test]
    fn nan_and_out_of_range_weights_do_not_poison_the_state() {
        let start: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let mut b = TenantBaseline::default();
        for (n, w) in [f64::NAN, -1.0, 7.0, f64::INFINITY].into_iter().enumerate() {
            b.observe(&event(n as u64, "t", start + chrono::Duration::minutes(n as i64)), w);
        }
        assert!(b.overall().mean().is_finite());
    }

    #[test]
    fn a_retry_is_the_same_caller_again_within_seconds_of_a_failure() {
        let at: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let call = |n: u64, ms: i64, session: &str, outcome: Outcome| ToolCallEvent {
            session_id: Some(session.to_owned()),
            outcome,
            ..event(n, "db.query", at + chrono::Duration::milliseconds(ms))
        };
        let mut b = TenantBaseline::default();
        b.observe(&call(1, 0, "s1", Outcome::Success), 1.0);
        let tool = |b: &TenantBaseline| b.tool("db.query").unwrap().clone();
        assert!(
            !tool(&b).is_retry(&call(2, 500, "s1", Outcome::Success)),
            "no failure yet"
        );
        b.observe(&call(3, 1_000, "s1", Outcome::Error), 1.0);
        let t = tool(&b);
        assert!(t.is_retry(&call(4, 3_000, "s1", Outcome::Error)));
        assert!(
            t.is_retry(&call(5, 11_000, "s1", Outcome::Success)),
            "ten seconds after"
        );
        assert!(!t.is_retry(&call(6, 11_001, "s1", Outcome::Success)), "past the window");
        assert!(!t.is_retry(&call(7, 3_000, "s2", Outcome::Success)), "another caller");
        // The caller got through: its next call is a new request.
        b.observe(&call(8, 4_000, "s1", Outcome::Success), 1.0);
        assert!(!tool(&b).is_retry(&call(9, 5_000, "s1", Outcome::Success)));
        // A retry is not counted in the call rates, and its failure still counts as one.
        let mut b = TenantBaseline::default();
        b.observe(&call(1, 0, "s1", Outcome::Error), 1.0);
        b.observe(&call(2, 1_000, "s1", Outcome::Error), 1.0);
        b.observe(&call(3, 2_000, "s1", Outcome::Success), 1.0);
        let t = tool(&b);
        assert_eq!(t.rate().calls_in_minute(), 1);
        assert_eq!(b.overall().calls_in_minute(), 1);
        assert_eq!((t.calls(), t.error_calls()), (3, 2));
        assert_eq!(t.errors().calls_in_minute(), 2);
    }

    #[test]
    fn tools_beyond_the_bound_are_counted_not_learned() {
        let at: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let limits = Limits {
            tools: 3,
            ..Limits::default()
        };
        let mut b = TenantBaseline::default();
        for n in 0..10u64 {
            b.observe_within(&event(n, &format!("t{n}"), at), 1.0, &limits);
        }
        assert_eq!(b.tool_count(), 3);
        assert_eq!(b.events_seen(), 10, "every call still counts");
        assert_eq!(b.overall().calls_in_minute(), 10, "and in the tenant's rate");
        let crossing = b.crossings().tools.unwrap();
        assert_eq!((crossing.dropped, crossing.reported_minute), (7, rate::minute_of(at)));
        assert!(b.crossings().keys.is_none());
        // A known tool goes on learning.
        b.observe_within(&event(11, "t1", at), 1.0, &limits);
        assert_eq!(b.tool("t1").unwrap().calls(), 2);
    }

    #[test]
    fn keys_beyond_the_tools_or_the_tenants_bound_are_not_learned() {
        let at: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let limits = Limits {
            keys_per_tool: 3,
            keys: 5,
            ..Limits::default()
        };
        let call = |n: u64, tool: &str, keys: &[&str]| {
            let params: serde_json::Map<String, serde_json::Value> =
                keys.iter().map(|k| ((*k).to_owned(), serde_json::json!(1))).collect();
            ToolCallEvent::sample(&format!("e-{n}"), tool, at, params.into(), Outcome::Success)
        };
        let mut b = TenantBaseline::default();
        b.observe_within(&call(1, "a", &["k1", "k2", "k3", "k4"]), 1.0, &limits);
        assert_eq!(b.tool("a").unwrap().params().len(), 3, "per tool");
        b.observe_within(&call(2, "b", &["k1", "k2", "k3"]), 1.0, &limits);
        assert_eq!(b.tool("b").unwrap().params().len(), 2, "per tenant");
        assert_eq!(b.key_count(), 5);
        assert_eq!(b.crossings().keys.unwrap().dropped, 2);
        // A snapshot from before the count recounts it.
        let mut json = serde_json::to_value(&b).unwrap();
        json.as_object_mut().unwrap().remove("keys");
        let back: TenantBaseline = serde_json::from_value(json).unwrap();
        assert_eq!(back.key_count(), 5);
    }

    #[test]
    fn agents_beyond_the_bound_share_one_stream_and_an_idle_one_gives_its_place() {
        let at: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let limits = Limits {
            agents: 3,
            ..Limits::default()
        };
        let call = |n: u64, agent: &str, minutes: i64| ToolCallEvent {
            agent_id: Some(agent.to_owned()),
            ..event(n, "db.query", at + chrono::Duration::minutes(minutes))
        };
        let mut b = TenantBaseline::default();
        for n in 0..20u64 {
            b.observe_within(&call(n, &format!("agent-{n}"), 0), 1.0, &limits);
        }
        assert_eq!(b.agents().len(), 4, "three agents of their own and the pool");
        let key = |e: &ToolCallEvent| agent_key(e).unwrap();
        let own = call(0, "agent-1", 0);
        let (rate, pooled) = b.agents().stream(key(&own), 0, 3).unwrap();
        assert!(!pooled && rate.calls_in_minute() == 1);
        let late = call(0, "agent-19", 0);
        let minute = rate::minute_of(at);
        let (rate, pooled) = b.agents().stream(key(&late), minute, 3).unwrap();
        assert!(pooled);
        assert_eq!(rate.calls_in_minute(), 17);
        // A day later agent-0 and agent-2 have been silent for a day: a new agent takes a place.
        for n in [1u64, 20] {
            b.observe_within(&call(100 + n, &format!("agent-{n}"), 25 * 60), 1.0, &limits);
        }
        assert_eq!(b.agents().len(), 4);
        let (rate, pooled) = b
            .agents()
            .stream(key(&call(0, "agent-20", 0)), minute + 25 * 60, 3)
            .unwrap();
        assert!(!pooled && rate.calls_in_minute() == 1);
        assert!(b.agents().memory_bytes() < 4 * 1024, "{}", b.agents().memory_bytes());
    }

    /// One tool's learned state: the figure behind "memory per (tenant, tool)".
    #[test]
    fn a_tool_baseline_stays_small() {
        let size = std::mem::size_of::<ToolBaseline>();
        // 288 bytes today: the call rate 168 (slow and fast means, the dispersion's sums, the
        // bucket's expectation and cached thresholds, the profile's box, the failure window's
        // dispersions' box), calls and error calls
        // 16, first/last seen 32, trust 24, the boxed failure rate and the parameters' vector
        // 32, the failure a retry may follow 16. In the map add the key (a String: 24 bytes + the
        // name on the heap) and B-tree slack; the hour-of-week profile (about 400 bytes, once
        // the tool is busy) and the parameters' heap come on top (`memory_bytes`, measured in
        // the bench). Grow it knowingly.
        assert!(size <= 288, "ToolBaseline is {size} bytes");
    }
}
