//! What Vigil has learned about a tenant, as a reviewer reads it: the body of
//! `GET /v1/tenants/{id}/baseline`. A view, computed from the baseline and never read back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::params::{ParamsConfig, PathStats, TextShape, ValueSet, class_names};
use super::stats::NumberStats;
use super::{RateBaseline, TenantBaseline, ToolBaseline};
use crate::event::TenantId;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaselineSummary {
    pub tenant_id: String,
    /// Still in warm-up: findings are recorded and alerted on, never rotated.
    pub learning: bool,
    /// The earliest event time learned from.
    pub since: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub events_seen: u64,
    /// The tenant's calls over all tools.
    pub rate_per_min: RateView,
    pub tools: Vec<ToolSummary>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RateView {
    pub mean: f64,
    pub variance: f64,
}

impl From<&RateBaseline> for RateView {
    fn from(r: &RateBaseline) -> Self {
        RateView {
            mean: r.mean(),
            variance: r.variance(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolSummary {
    pub tool: String,
    pub calls: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub rate_per_min: RateView,
    /// Share of calls that ended in `error` or `denied`.
    pub error_rate: f64,
    pub errors_per_min: RateView,
    /// In the tenant's tool map (trusted); a tool not known is `novel_tool` unless declared.
    pub known: bool,
    pub params: Vec<ParamSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ParamSummary {
    pub path: String,
    /// `number`, `category`, `text`, `mixed` (more than one of those) or `empty` (only
    /// redacted values).
    pub kind: String,
    pub samples: u64,
    /// The key is trusted; an untrusted key is `novel_param_key` once the tool is warm.
    pub known: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<NumberView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<ValuesView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumberView {
    pub mean: f64,
    pub variance: f64,
    /// The range of clean samples.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub q1: Option<f64>,
    pub median: Option<f64>,
    pub q3: Option<f64>,
}

impl From<&NumberStats> for NumberView {
    fn from(s: &NumberStats) -> Self {
        let quartiles = s.quartiles();
        let range = s.range();
        NumberView {
            mean: s.moments().mean(),
            variance: s.moments().variance(),
            min: range.map(|r| r.0),
            max: range.map(|r| r.1),
            q1: quartiles.map(|q| q[0]),
            median: quartiles.map(|q| q[1]),
            q3: quartiles.map(|q| q[2]),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValuesView {
    /// New values are `novel_param_value` once the set is stable.
    pub stable: bool,
    pub values: Vec<ValueView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValueView {
    pub value: String,
    pub known: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TextView {
    pub length: NumberView,
    /// The character classes trusted for this path.
    pub classes: Vec<String>,
}

/// The view of `baseline`. `learning` is the caller's judgement (`is_learning` under the
/// policy's warm-up); `params` says when a value set counts as stable.
pub fn summary(tenant: &TenantId, baseline: &TenantBaseline, learning: bool, params: &ParamsConfig) -> BaselineSummary {
    BaselineSummary {
        tenant_id: tenant.to_string(),
        learning,
        since: baseline.first_seen(),
        last_seen: baseline.last_seen(),
        events_seen: baseline.events_seen(),
        rate_per_min: baseline.overall().into(),
        tools: baseline
            .tools()
            .map(|(name, tool)| tool_summary(name, tool, params))
            .collect(),
    }
}

fn tool_summary(name: &str, tool: &ToolBaseline, config: &ParamsConfig) -> ToolSummary {
    ToolSummary {
        tool: name.to_owned(),
        calls: tool.calls(),
        first_seen: tool.first_seen(),
        last_seen: tool.last_seen(),
        rate_per_min: tool.rate().into(),
        error_rate: tool.error_rate(),
        errors_per_min: RateView::from(&*tool.errors()),
        known: tool.trust().is_trusted(),
        params: tool
            .params()
            .paths()
            .map(|(path, stats)| param_summary(path, stats, config))
            .collect(),
    }
}

fn param_summary(path: &str, stats: &PathStats, config: &ParamsConfig) -> ParamSummary {
    ParamSummary {
        path: path.to_owned(),
        kind: stats.kind().to_owned(),
        samples: stats.samples,
        known: stats.key.is_trusted(),
        number: stats.number.as_deref().map(NumberView::from),
        values: stats.values.as_deref().map(|v| values_view(v, config)),
        text: stats.text.as_deref().map(text_view),
    }
}

fn values_view(set: &ValueSet, config: &ParamsConfig) -> ValuesView {
    ValuesView {
        stable: set.is_stable(config.stable_after),
        values: set
            .values()
            .map(|(value, trust)| ValueView {
                value: value.to_owned(),
                known: trust.is_trusted(),
            })
            .collect(),
    }
}

fn text_view(shape: &TextShape) -> TextView {
    TextView {
        length: NumberView::from(&shape.length),
        classes: class_names(shape.classes()).into_iter().map(str::to_owned).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Outcome, ToolCallEvent};
    use serde_json::json;

    #[test]
    fn the_summary_says_what_was_learned() {
        let start: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let mut b = TenantBaseline::default();
        for i in 0..100i64 {
            let table = ["orders", "users"][i as usize % 2];
            let event = ToolCallEvent::sample(
                &format!("e-{i}"),
                "db.query",
                start + chrono::Duration::minutes(i),
                json!({"table": table, "limit": 10 + i % 5,
                               "ids": [1, 2], "token": "[REDACTED:jwt:0123456789abcdef]"}),
                if i % 10 == 0 { Outcome::Denied } else { Outcome::Success },
            );
            b.observe(&event, 1.0);
        }
        let tenant = TenantId::parse("acme").unwrap();
        // 98 samples since the second value: stable under 50, not under the default.
        let params = ParamsConfig {
            stable_after: 50.0,
            ..ParamsConfig::default()
        };
        let view = serde_json::to_value(summary(&tenant, &b, false, &params)).unwrap();
        assert_eq!(view["tenant_id"], "acme");
        assert_eq!(view["learning"], false);
        assert_eq!(view["since"], "2026-11-26T08:00:00Z");
        assert_eq!(view["events_seen"], 100);
        let tool = &view["tools"][0];
        assert_eq!(tool["tool"], "db.query");
        assert_eq!(tool["calls"], 100);
        assert_eq!(tool["error_rate"], 0.1);
        assert_eq!(tool["known"], true);
        assert!(tool["rate_per_min"]["mean"].as_f64().unwrap() > 0.9);
        let params = tool["params"].as_array().unwrap();
        let paths: Vec<(&str, &str)> = params
            .iter()
            .map(|p| (p["path"].as_str().unwrap(), p["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            paths,
            [
                ("ids.#len", "number"),
                ("limit", "number"),
                ("table", "category"),
                ("token", "empty")
            ]
        );
        assert_eq!(params[1]["number"]["min"], 10.0);
        assert_eq!(params[1]["number"]["max"], 14.0);
        let median = params[1]["number"]["median"].as_f64().unwrap();
        assert!((median - 12.0).abs() < 0.1, "{median}");
        assert_eq!(
            params[2]["values"],
            json!({"stable": true, "values": [{"value": "orders", "known": true}, {"value": "users", "known": true}]})
        );
    }
}
