//! How much a tenant may make Vigil learn. Every per-tenant structure that grows with what
//! agents send has a bound here, set in the policy (`[limits]` in `baselines/default.toml`,
//! overridable per tenant), so one tenant's flood of names cannot grow the process.
//!
//! What a bound keeps out is not learned. Crossing the bound on tools or on keys is itself a
//! finding (`cardinality_exceeded`: a cardinality explosion is an attack signature), raised
//! once per (tenant, bound) per [`REPORT_EVERY_MINUTES`] of event time. Which events cross is a
//! function of the log and the limits alone, so snapshot + replay still equals a run that
//! never stopped.

use serde::{Deserialize, Serialize};

/// Bounds on one tenant's learned state and declarations.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Distinct tools learned per tenant.
    pub tools: usize,
    /// Parameter paths learned per tool.
    pub keys_per_tool: usize,
    /// Parameter paths learned per tenant, over all its tools.
    pub keys: usize,
    /// Distinct values a path's value set holds before the path counts as free text.
    pub values: usize,
    /// Longest value kept in a value set, in bytes; a longer one makes the path free text.
    pub value_len: usize,
    /// Longest parameter path learned, in bytes.
    pub path_len: usize,
    /// Objects nested deeper than this are not descended into.
    pub depth: usize,
    /// Cross-tenant markers per tenant (`POST`/`PATCH /v1/tenants`).
    pub markers: usize,
    /// Longest marker, in characters.
    pub marker_len: usize,
    /// Agents (`agent_id`) whose calls are a rate stream of their own; later agents share one
    /// pooled stream (an agent silent for a day gives its place to the next new one).
    pub agents: usize,
}

impl Limits {
    /// The defaults of `baselines/default.toml`'s `[limits]`.
    pub const DEFAULT: Limits = Limits {
        tools: 1_000,
        keys_per_tool: 64,
        keys: 4_096,
        values: 32,
        value_len: 64,
        path_len: 128,
        depth: 8,
        markers: 100,
        marker_len: 200,
        agents: 16,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Limits {
    /// The first bound that is zero, or out of what the rest of Vigil accepts anyway.
    pub fn invalid(&self) -> Option<&'static str> {
        let positive = [
            (self.tools, "limits.tools"),
            (self.keys_per_tool, "limits.keys_per_tool"),
            (self.keys, "limits.keys"),
            (self.values, "limits.values"),
            (self.value_len, "limits.value_len"),
            (self.path_len, "limits.path_len"),
            (self.depth, "limits.depth"),
            (self.marker_len, "limits.marker_len"),
            (self.agents, "limits.agents"),
        ];
        if let Some((_, name)) = positive.iter().find(|(v, _)| *v == 0) {
            return Some(name);
        }
        // A bound above these would let a policy typo undo the bound: keep them reviewable.
        let ceilings = [
            (self.tools, 100_000, "limits.tools"),
            (self.keys_per_tool, 4_096, "limits.keys_per_tool"),
            (self.keys, 1_000_000, "limits.keys"),
            (self.values, 1_024, "limits.values"),
            (self.value_len, 4_096, "limits.value_len"),
            (self.path_len, 4_096, "limits.path_len"),
            (self.depth, 64, "limits.depth"),
            (self.markers, 10_000, "limits.markers"),
            (self.marker_len, 1_000, "limits.marker_len"),
            (self.agents, 1_024, "limits.agents"),
        ];
        ceilings.iter().find(|(v, max, _)| v > max).map(|(_, _, name)| *name)
    }
}

/// Event-time minutes between two `cardinality_exceeded` findings for the same bound of the
/// same tenant: one a day while the flood goes on, not one per event.
pub const REPORT_EVERY_MINUTES: i64 = 24 * 60;

/// A bound a tenant can cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// [`Limits::tools`].
    Tools,
    /// [`Limits::keys_per_tool`] or [`Limits::keys`].
    Keys,
}

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Tools => "tools",
            Bound::Keys => "keys",
        }
    }
}

/// What a tenant's crossings of one bound have been: when the last one was reported and how
/// much has been kept out.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Crossing {
    /// The event-time minute of the crossing last reported.
    pub reported_minute: i64,
    /// Calls (for tools) or paths (for keys) not learned, in all.
    pub dropped: u64,
}

/// A tenant's crossings, per bound.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Crossings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Crossing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Crossing>,
}

impl Crossings {
    pub fn get(&self, bound: Bound) -> Option<&Crossing> {
        match bound {
            Bound::Tools => self.tools.as_ref(),
            Bound::Keys => self.keys.as_ref(),
        }
    }

    /// True when a crossing of `bound` at `minute` is to be reported: the first ever, or the
    /// first [`REPORT_EVERY_MINUTES`] after the one last reported.
    pub fn reportable(&self, bound: Bound, minute: i64) -> bool {
        self.get(bound)
            .is_none_or(|c| minute >= c.reported_minute.saturating_add(REPORT_EVERY_MINUTES))
    }

    /// Counts `dropped` things kept out by `bound` at `minute`, and marks the crossing
    /// reported when [`Self::reportable`] said so (detection asked it first, with the same
    /// answer).
    pub fn record(&mut self, bound: Bound, minute: i64, dropped: u64) {
        let report = self.reportable(bound, minute);
        let slot = match bound {
            Bound::Tools => &mut self.tools,
            Bound::Keys => &mut self.keys,
        };
        let crossing = slot.get_or_insert(Crossing {
            reported_minute: minute,
            dropped: 0,
        });
        if report {
            crossing.reported_minute = minute;
        }
        crossing.dropped += dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_documented_bounds_and_valid() {
        let l = Limits::default();
        assert_eq!((l.keys_per_tool, l.values, l.value_len, l.depth), (64, 32, 64, 8));
        assert_eq!(l.invalid(), None);
        assert_eq!(Limits { tools: 0, ..l }.invalid(), Some("limits.tools"));
        assert_eq!(Limits { keys: 2_000_000, ..l }.invalid(), Some("limits.keys"));
    }

    #[test]
    fn a_crossing_is_reported_once_a_day_of_event_time() {
        let mut c = Crossings::default();
        assert!(c.reportable(Bound::Tools, 100));
        c.record(Bound::Tools, 100, 1);
        assert!(!c.reportable(Bound::Tools, 100 + REPORT_EVERY_MINUTES - 1));
        assert!(c.reportable(Bound::Keys, 100), "bounds are reported apart");
        c.record(Bound::Tools, 200, 5);
        assert_eq!(c.tools.unwrap().reported_minute, 100, "not reported, only counted");
        assert_eq!(c.tools.unwrap().dropped, 6);
        assert!(c.reportable(Bound::Tools, 100 + REPORT_EVERY_MINUTES));
        c.record(Bound::Tools, 100 + REPORT_EVERY_MINUTES, 1);
        assert_eq!(c.tools.unwrap().reported_minute, 100 + REPORT_EVERY_MINUTES);
        assert!(!c.reportable(Bound::Tools, 50), "a late event does not report again");
    }
}
