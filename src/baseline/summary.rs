//! What Vigil has learned about a tenant, as a reviewer reads it: the body of
//! `GET /v1/tenants/{id}/baseline`. A view, computed from the baseline and never read back.
//!
//! It is one page of the tenant's tools, in name order ([`Page`]): at most `limit` tools and
//! about [`PAGE_BYTES`] of JSON, built from the tools of the page alone, so a tenant with
//! many tools costs a reader what one page costs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::limits::{Crossing, Limits};
use super::params::{ParamsConfig, PathStats, TextShape, ValueSet, class_names};
use super::stats::NumberStats;
use super::{RateBaseline, TenantBaseline, ToolBaseline};
use crate::event::TenantId;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
    /// This page's tools, in name order.
    pub tools: Vec<ToolSummary>,
    /// Every tool learned, on every page.
    #[serde(default)]
    pub tools_total: usize,
    /// The page after this one (`?cursor=`), or none.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// The page before this one (`?before=`), or none.
    #[serde(default)]
    pub prev_cursor: Option<String>,
    /// The tenant's bounds on what it can make Vigil learn, and what they kept out.
    #[serde(default)]
    pub bounds: BoundsView,
}

/// The bounds of the tenant's policy (`[limits]`) against what it has learned.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BoundsView {
    pub tools: BoundView,
    pub keys: BoundView,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BoundView {
    pub learned: usize,
    pub limit: usize,
    /// Calls of tools (or parameter paths) not learned because the bound was reached.
    pub not_learned: u64,
}

/// Tools per page when the reader does not say.
pub const DEFAULT_LIMIT: usize = 50;
/// Tools per page at most.
pub const MAX_LIMIT: usize = 500;
/// About how much JSON a page holds at most: tools are added while the page stays under it
/// (a page always holds at least one tool).
pub const PAGE_BYTES: usize = 1 << 20;
/// Parameters listed per tool at most (`params_total` says how many it has).
pub const MAX_PARAMS_LISTED: usize = 64;

/// Which tools a summary shows: `limit` tools after `after`, or before `before`, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub after: Option<String>,
    pub before: Option<String>,
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            after: None,
            before: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// The cursor of a page boundary: the tool name in hex, so a cursor is our own characters
/// whatever a tool is called (it goes into links).
pub fn cursor_of(tool: &str) -> String {
    tool.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The tool name a cursor stands for; `None` for anything [`cursor_of`] did not make.
pub fn tool_of_cursor(cursor: &str) -> Option<String> {
    if cursor.is_empty() || cursor.len() > 2 * crate::event::ToolName::MAX_LEN || !cursor.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
    /// At most [`MAX_PARAMS_LISTED`], by path.
    pub params: Vec<ParamSummary>,
    /// The parameters learned, listed or not.
    #[serde(default)]
    pub params_total: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NumberView {
    pub mean: f64,
    pub variance: f64,
    /// The range of clean samples.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub q1: Option<f64>,
    pub median: Option<f64>,
    pub q3: Option<f64>,
    /// The scale its tail model judges on (`linear` or `log`), and where values start to be
    /// `param_out_of_range` at the policy's alpha (`low`, `high`; a drifting stream's record
    /// steps may reach further). Shown, not imported: a reviewed file's quartiles rebuild them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
}

impl NumberView {
    fn of(s: &NumberStats, alpha: f64) -> Self {
        let quartiles = s.quartiles();
        let range = s.range();
        let thresholds = s.thresholds(alpha);
        NumberView {
            scale: s.scale().map(|scale| scale.name().to_owned()),
            low: thresholds.map(|t| t.0),
            high: thresholds.map(|t| t.1),
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ValuesView {
    /// New values are `novel_param_value` once the set is stable.
    pub stable: bool,
    pub values: Vec<ValueView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ValueView {
    pub value: String,
    pub known: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TextView {
    pub length: NumberView,
    /// The character classes trusted for this path.
    pub classes: Vec<String>,
}

/// One page of the view of `baseline`. `learning` is the caller's judgement (`is_learning`
/// under the policy's warm-up); `params` says when a value set counts as stable; `limits` are
/// the tenant's bounds.
pub fn summary(
    tenant: &TenantId,
    baseline: &TenantBaseline,
    learning: bool,
    (params, limits): (&ParamsConfig, &Limits),
    page: &Page,
) -> BaselineSummary {
    let limit = page.limit.clamp(1, MAX_LIMIT);
    let candidates: Box<dyn Iterator<Item = (&str, &ToolBaseline)>> = match &page.before {
        Some(before) => Box::new(baseline.tools_before(before)),
        None => Box::new(baseline.tools_after(page.after.as_deref())),
    };
    let mut tools = Vec::new();
    let mut bytes = 0;
    for (name, tool) in candidates.take(limit) {
        let view = tool_summary(name, tool, params);
        let size = json_bytes(&view);
        if !tools.is_empty() && bytes + size > PAGE_BYTES {
            break;
        }
        bytes += size;
        tools.push(view);
    }
    if page.before.is_some() {
        tools.reverse();
    }
    let next_cursor = tools
        .last()
        .filter(|t| baseline.tools_after(Some(&t.tool)).next().is_some())
        .map(|t| cursor_of(&t.tool));
    let prev_cursor = tools
        .first()
        .filter(|t| baseline.tools_before(&t.tool).next().is_some())
        .map(|t| cursor_of(&t.tool));
    let crossings = baseline.crossings();
    let bound = |learned, limit, crossing: Option<&Crossing>| BoundView {
        learned,
        limit,
        not_learned: crossing.map_or(0, |c| c.dropped),
    };
    BaselineSummary {
        tenant_id: tenant.to_string(),
        learning,
        since: baseline.first_seen(),
        last_seen: baseline.last_seen(),
        events_seen: baseline.events_seen(),
        rate_per_min: baseline.overall().into(),
        tools,
        tools_total: baseline.tool_count(),
        next_cursor,
        prev_cursor,
        bounds: BoundsView {
            tools: bound(baseline.tool_count(), limits.tools, crossings.tools.as_ref()),
            keys: bound(baseline.key_count(), limits.keys, crossings.keys.as_ref()),
        },
    }
}

/// An upper bound of the JSON `tool` serialises to: every string as if each of its bytes
/// needed a six-byte escape would be too pessimistic, so strings count their bytes plus five
/// per byte that JSON escapes, and every number and field name a fixed allowance.
fn json_bytes(tool: &ToolSummary) -> usize {
    fn text(s: &str) -> usize {
        s.len() + 2 + 5 * s.bytes().filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\').count()
    }
    const FIELDS: usize = 400;
    const PARAM_FIELDS: usize = 600;
    FIELDS
        + text(&tool.tool)
        + tool
            .params
            .iter()
            .map(|p| {
                PARAM_FIELDS
                    + text(&p.path)
                    + p.values
                        .as_ref()
                        .map_or(0, |v| v.values.iter().map(|v| text(&v.value) + 20).sum())
                    + p.text.as_ref().map_or(0, |t| t.classes.iter().map(|c| text(c)).sum())
            })
            .sum::<usize>()
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
            .take(MAX_PARAMS_LISTED)
            .map(|(path, stats)| param_summary(path, stats, config))
            .collect(),
        params_total: tool.params().len(),
    }
}

fn param_summary(path: &str, stats: &PathStats, config: &ParamsConfig) -> ParamSummary {
    ParamSummary {
        path: path.to_owned(),
        kind: stats.kind().to_owned(),
        samples: stats.samples,
        known: stats.key.is_trusted(),
        number: stats.number.as_deref().map(|n| NumberView::of(n, config.alpha)),
        values: stats.values.as_deref().map(|v| values_view(v, config)),
        text: stats.text.as_deref().map(|t| text_view(t, config.alpha)),
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

fn text_view(shape: &TextShape, alpha: f64) -> TextView {
    TextView {
        length: NumberView::of(&shape.length, alpha),
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
        let view = serde_json::to_value(summary(
            &tenant,
            &b,
            false,
            (&params, &Limits::default()),
            &Page::default(),
        ))
        .unwrap();
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

    fn tools(n: usize, params: impl Fn(usize, usize) -> serde_json::Value, calls: usize) -> TenantBaseline {
        let at: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let mut b = TenantBaseline::default();
        for c in 0..calls {
            for t in 0..n {
                let e = ToolCallEvent::sample(
                    &format!("e-{t}-{c}"),
                    &format!("t{t}"),
                    at,
                    params(t, c),
                    Outcome::Success,
                );
                b.observe(&e, 1.0);
            }
        }
        b
    }

    #[test]
    fn pages_walk_the_tools_by_name_both_ways() {
        let b = tools(7, |_, _| json!({}), 1);
        let tenant = TenantId::parse("acme").unwrap();
        let config = (&ParamsConfig::default(), &Limits::default());
        let page = |after: Option<&str>, before: Option<&str>, limit| {
            let page = Page {
                after: after.map(str::to_owned),
                before: before.map(str::to_owned),
                limit,
            };
            summary(&tenant, &b, false, config, &page)
        };
        let names = |s: &BaselineSummary| s.tools.iter().map(|t| t.tool.clone()).collect::<Vec<_>>();
        let cursor = |c: &Option<String>| c.as_deref().map(|c| tool_of_cursor(c).unwrap());

        let first = page(None, None, 3);
        assert_eq!(names(&first), ["t0", "t1", "t2"]);
        assert_eq!((first.tools_total, first.bounds.tools.learned), (7, 7));
        assert_eq!(
            (cursor(&first.prev_cursor), cursor(&first.next_cursor)),
            (None, Some("t2".into()))
        );
        let second = page(Some("t2"), None, 3);
        assert_eq!(names(&second), ["t3", "t4", "t5"]);
        assert_eq!(cursor(&second.prev_cursor), Some("t3".into()));
        let last = page(Some("t5"), None, 3);
        assert_eq!((names(&last), last.next_cursor), (vec!["t6".to_owned()], None));
        let back = page(None, Some("t3"), 3);
        assert_eq!(names(&back), ["t0", "t1", "t2"]);
        assert_eq!((back.prev_cursor, cursor(&back.next_cursor)), (None, Some("t2".into())));
        assert_eq!(page(None, None, 0).tools.len(), 1, "at least one");
        assert_eq!(page(None, None, 10_000).tools.len(), 7);
        assert!(page(Some("zzz"), None, 3).tools.is_empty());
    }

    #[test]
    fn a_page_stops_before_its_size_cap() {
        // Ten tools of 64 parameters, each a full set of 32 values of 64 bytes: about 200 KB
        // of JSON each.
        let b = tools(
            10,
            |t, c| {
                let params: serde_json::Map<String, serde_json::Value> = (0..64)
                    .map(|k| (format!("key_{k:02}"), json!(format!("{t}-{k}-{:0>58}", c % 32))))
                    .collect();
                params.into()
            },
            32,
        );
        let tenant = TenantId::parse("acme").unwrap();
        let page = Page {
            limit: MAX_LIMIT,
            ..Page::default()
        };
        let view = summary(
            &tenant,
            &b,
            false,
            (&ParamsConfig::default(), &Limits::default()),
            &page,
        );
        let bytes = serde_json::to_vec(&view).unwrap().len();
        assert!(
            view.tools.len() < 10 && view.next_cursor.is_some(),
            "{} tools",
            view.tools.len()
        );
        assert!(bytes <= PAGE_BYTES, "{bytes} bytes");
        assert!(
            bytes > PAGE_BYTES / 2,
            "the estimate is not wildly pessimistic: {bytes} bytes"
        );
        assert_eq!(view.tools[0].params.len(), 64);
    }

    #[test]
    fn cursors_are_hex_and_refuse_what_they_were_not() {
        for tool in ["db.query", "é.tool", "a"] {
            assert_eq!(tool_of_cursor(&cursor_of(tool)).as_deref(), Some(tool));
        }
        assert_eq!(cursor_of("db"), "6462");
        for bad in ["", "6", "zz", "<script>", "ff", &"61".repeat(201)] {
            assert_eq!(tool_of_cursor(bad), None, "{bad}");
        }
    }
}
