//! A baseline imported from a reviewed file (`vigil baseline import`): the summary
//! `GET /v1/tenants/{id}/baseline` shows, read back into learned state. The file is a person's
//! statement of normal, so it is checked like any input: every number finite and in range,
//! every name valid, every collection within the bounds live learning keeps.
//!
//! What the summary does not carry is rebuilt conservatively: a rate's history is the time
//! between first and last seen; quartile markers between the quartiles are interpolated;
//! known things are trusted as of the last-seen hour.

use super::limits::Limits;
use super::params::{CLASSES, ParamsBaseline, ParamsConfig, PathStats, TextShape, ValueSet};
use super::rate::{RateBaseline, RateConfig, minute_of};
use super::stats::NumberStats;
use super::summary::{BaselineSummary, NumberView, ParamSummary, RateView, ToolSummary};
use super::trust::{Trust, hour_of};
use super::{NOT_A_DISCOVERY, TenantBaseline, ToolBaseline};
use crate::event::ToolName;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct SeedError {
    /// Where in the file, e.g. `tools[3].params[1].number.mean`.
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SeedError {
    SeedError {
        field: field.into(),
        message: message.into(),
    }
}

/// The learned state `summary` describes. `rate_config` is the policy's (thresholds are
/// precomputed with it); `params` says how many samples make a value set stable; `limits`
/// are the tenant's bounds, which an import may not exceed any more than learning does.
pub fn seeded(
    summary: &BaselineSummary,
    rate_config: RateConfig,
    params: &ParamsConfig,
    limits: &Limits,
) -> Result<TenantBaseline, SeedError> {
    if summary.tools.len() > limits.tools {
        return Err(invalid(
            "tools",
            format!("at most {} tools (limits.tools)", limits.tools),
        ));
    }
    let keys: usize = summary.tools.iter().map(|t| t.params.len()).sum();
    if keys > limits.keys {
        return Err(invalid(
            "tools",
            format!("at most {} parameters over all tools (limits.keys)", limits.keys),
        ));
    }
    let (first_seen, last_seen) = seen("", summary.since, summary.last_seen)?;
    let mut tools = BTreeMap::new();
    for (i, tool) in summary.tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        ToolName::parse(&tool.tool).map_err(|e| invalid(format!("{at}.tool"), e.to_string()))?;
        if tools
            .insert(tool.tool.clone(), seeded_tool(&at, tool, params, limits)?)
            .is_some()
        {
            return Err(invalid(format!("{at}.tool"), format!("{} appears twice", tool.tool)));
        }
    }
    let mut baseline = TenantBaseline::new(rate_config);
    let span = span_minutes(first_seen, last_seen);
    let overall = rate("rate_per_min", &summary.rate_per_min)?;
    baseline.overall = RateBaseline::seeded(overall.mean, overall.variance, minute_of(last_seen), span, false);
    baseline.tools = tools;
    baseline.first_seen = summary.since.map(|_| first_seen);
    baseline.last_seen = summary.last_seen.map(|_| last_seen);
    baseline.events_seen = summary.events_seen;
    Ok(baseline)
}

/// First and last seen, in order; a missing one takes the other, both missing the epoch.
fn seen(
    at: &str,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), SeedError> {
    let first_seen = first.or(last).unwrap_or_default();
    let last_seen = last.or(first).unwrap_or_default();
    if first_seen > last_seen {
        return Err(invalid(
            format!("{at}last_seen"),
            "last_seen is before since / first_seen",
        ));
    }
    Ok((first_seen, last_seen))
}

fn span_minutes(first: DateTime<Utc>, last: DateTime<Utc>) -> u64 {
    (last - first).num_minutes().max(0) as u64
}

fn rate(at: &str, view: &RateView) -> Result<RateView, SeedError> {
    number(&format!("{at}.mean"), view.mean)?;
    number(&format!("{at}.variance"), view.variance)?;
    Ok(*view)
}

/// A finite, non-negative number.
fn number(at: &str, x: f64) -> Result<f64, SeedError> {
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(invalid(at, "must be a finite number, at least 0"))
    }
}

fn seeded_tool(
    at: &str,
    tool: &ToolSummary,
    config: &ParamsConfig,
    limits: &Limits,
) -> Result<ToolBaseline, SeedError> {
    if tool.params.len() > limits.keys_per_tool {
        return Err(invalid(
            format!("{at}.params"),
            format!("at most {} parameters (limits.keys_per_tool)", limits.keys_per_tool),
        ));
    }
    let (first_seen, last_seen) = seen(&format!("{at}."), tool.first_seen, tool.last_seen)?;
    let (minute, hour) = (minute_of(last_seen), hour_of(last_seen));
    let span = span_minutes(first_seen, last_seen);
    let error_rate = number(&format!("{at}.error_rate"), tool.error_rate)?;
    if error_rate > 1.0 {
        return Err(invalid(format!("{at}.error_rate"), "is a share of calls, at most 1"));
    }
    let calls_rate = rate(&format!("{at}.rate_per_min"), &tool.rate_per_min)?;
    let errors_rate = rate(&format!("{at}.errors_per_min"), &tool.errors_per_min)?;
    let error_calls = (error_rate * tool.calls as f64).round() as u64;
    let mut paths = Vec::with_capacity(tool.params.len());
    for (j, p) in tool.params.iter().enumerate() {
        paths.push(seeded_path(&format!("{at}.params[{j}]"), p, hour, config, limits)?);
    }
    Ok(ToolBaseline {
        rate: RateBaseline::seeded(calls_rate.mean, calls_rate.variance, minute, span, false),
        calls: tool.calls,
        first_seen: tool.first_seen.map(|_| first_seen),
        last_seen: tool.last_seen.map(|_| last_seen),
        error_calls,
        errors: (error_calls > 0).then(|| {
            Box::new(RateBaseline::seeded(
                errors_rate.mean,
                errors_rate.variance,
                minute,
                span,
                true,
            ))
        }),
        trust: Trust::imported(tool.known, hour),
        params: ParamsBaseline::seeded(paths, limits.keys_per_tool),
        failure: None,
        // A reviewed tool map is settled: its tools are no discoveries.
        joined_at: NOT_A_DISCOVERY,
    })
}

fn seeded_path(
    at: &str,
    p: &ParamSummary,
    hour: i64,
    config: &ParamsConfig,
    limits: &Limits,
) -> Result<(String, PathStats), SeedError> {
    if p.path.is_empty() || p.path.len() > limits.path_len || p.path.chars().any(char::is_control) {
        return Err(invalid(
            format!("{at}.path"),
            format!("a dotted path of 1-{} printable bytes", limits.path_len),
        ));
    }
    let number_stats = p
        .number
        .as_ref()
        .map(|n| seeded_number(&format!("{at}.number"), n, p.samples))
        .transpose()?;
    let values = match &p.values {
        Some(v) if v.values.len() > limits.values => {
            return Err(invalid(
                format!("{at}.values"),
                format!("a value set holds at most {} values", limits.values),
            ));
        }
        Some(v) => {
            if let Some(long) = v.values.iter().find(|v| v.value.len() > limits.value_len) {
                return Err(invalid(
                    format!("{at}.values"),
                    format!("a value is at most {} bytes ({:.20}…)", limits.value_len, long.value),
                ));
            }
            Some(Box::new(ValueSet::seeded(
                v.values
                    .iter()
                    .map(|v| (v.value.clone(), Trust::imported(v.known, hour))),
                v.stable,
                config.stable_after,
                limits.values,
            )))
        }
        None => None,
    };
    let text = match &p.text {
        Some(t) => {
            let mut classes = 0u16;
            for name in &t.classes {
                let class = CLASSES
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| invalid(format!("{at}.text.classes"), format!("unknown class {name:?}")))?;
                classes |= 1 << class;
            }
            let length = seeded_number(&format!("{at}.text.length"), &t.length, p.samples)?;
            // Its samples stand for the time without a new class: a reviewed shape is as stable as
            // its sample count says.
            Some(Box::new(TextShape::imported(length, classes, p.samples as f64)))
        }
        None => None,
    };
    Ok((
        p.path.clone(),
        PathStats {
            key: Trust::imported(p.known, hour),
            samples: p.samples,
            number: number_stats.map(Box::new),
            values,
            text,
        },
    ))
}

fn seeded_number(at: &str, n: &NumberView, samples: u64) -> Result<NumberStats, SeedError> {
    let finite = |field: &str, x: f64| {
        if x.is_finite() {
            Ok(x)
        } else {
            Err(invalid(format!("{at}.{field}"), "must be a finite number"))
        }
    };
    let mean = finite("mean", n.mean)?;
    let variance = number(&format!("{at}.variance"), n.variance)?;
    let (Some(min), Some(max)) = (n.min, n.max) else {
        return Err(invalid(at, "a number needs min and max"));
    };
    let q = [n.q1.unwrap_or(min), n.median.unwrap_or(mean), n.q3.unwrap_or(max)];
    let points = [
        finite("min", min)?,
        finite("q1", q[0])?,
        finite("median", q[1])?,
        finite("q3", q[2])?,
        finite("max", max)?,
    ];
    if points.windows(2).any(|w| w[0] > w[1]) {
        return Err(invalid(at, "min ≤ q1 ≤ median ≤ q3 ≤ max must hold"));
    }
    Ok(NumberStats::seeded(samples.max(1), mean, variance, (min, max), q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::summary::{Page, summary};
    use crate::event::{Outcome, TenantId, ToolCallEvent};
    use serde_json::json;

    fn history() -> TenantBaseline {
        let start: DateTime<Utc> = "2026-11-26T06:00:00Z".parse().unwrap();
        let mut b = TenantBaseline::new(RateConfig::default());
        for i in 0..600i64 {
            let tool = ["db.query", "github.list_issues"][i as usize % 2];
            let table = ["orders", "users"][i as usize % 2];
            let event = ToolCallEvent::sample(
                &format!("e-{i}"),
                tool,
                start + chrono::Duration::seconds(i * 20),
                json!({"table": table, "limit": 10 + i % 40,
                               "q": format!("label:bug-{i}")}),
                if i % 25 == 0 { Outcome::Denied } else { Outcome::Success },
            );
            b.observe(&event, 1.0);
        }
        b
    }

    #[test]
    fn an_imported_summary_reads_back_as_the_same_summary() {
        let tenant = TenantId::parse("acme").unwrap();
        let config = ParamsConfig::default();
        let learned = summary(
            &tenant,
            &history(),
            false,
            (&config, &Limits::default()),
            &Page::default(),
        );
        let imported = seeded(&learned, RateConfig::default(), &config, &Limits::default()).unwrap();
        let again = summary(
            &tenant,
            &imported,
            false,
            (&config, &Limits::default()),
            &Page::default(),
        );
        assert_eq!(again.tools.len(), 2);
        assert_eq!(again.events_seen, learned.events_seen);
        for (a, b) in again.tools.iter().zip(&learned.tools) {
            assert_eq!((a.calls, a.known, a.error_rate), (b.calls, b.known, b.error_rate));
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * y.abs().max(1.0);
            assert!(
                close(a.rate_per_min.mean, b.rate_per_min.mean),
                "{:?} {:?}",
                a.rate_per_min,
                b.rate_per_min
            );
            assert!(
                close(a.rate_per_min.variance, b.rate_per_min.variance),
                "{:?} {:?}",
                a.rate_per_min,
                b.rate_per_min
            );
            assert_eq!(a.params.len(), b.params.len());
            for (pa, pb) in a.params.iter().zip(&b.params) {
                assert_eq!(
                    (&pa.path, &pa.kind, pa.known, &pa.values),
                    (&pb.path, &pb.kind, pb.known, &pb.values)
                );
                assert_eq!(
                    pa.number.as_ref().map(|n| (n.min, n.max, n.q1, n.median, n.q3)),
                    pb.number.as_ref().map(|n| (n.min, n.max, n.q1, n.median, n.q3))
                );
            }
        }
    }

    #[track_caller]
    fn check_refused(edit: impl FnOnce(&mut BaselineSummary), field: &str) {
        let tenant = TenantId::parse("acme").unwrap();
        let config = ParamsConfig::default();
        let mut s = summary(
            &tenant,
            &history(),
            false,
            (&config, &Limits::default()),
            &Page::default(),
        );
        edit(&mut s);
        let e = seeded(&s, RateConfig::default(), &config, &Limits::default()).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }

    #[test]
    fn a_file_that_breaks_a_bound_is_refused_with_its_field() {
        check_refused(|s| s.tools[0].tool = String::new(), "tools[0].tool");
        check_refused(|s| s.tools[1].tool = s.tools[0].tool.clone(), "tools[1].tool");
        check_refused(|s| s.tools[0].error_rate = 2.0, "tools[0].error_rate");
        check_refused(
            |s| s.tools[0].rate_per_min.mean = f64::NAN,
            "tools[0].rate_per_min.mean",
        );
        check_refused(|s| s.rate_per_min.variance = -1.0, "rate_per_min.variance");
        check_refused(
            |s| {
                let n = s.tools[0].params.iter_mut().find_map(|p| p.number.as_mut()).unwrap();
                n.q1 = Some(n.max.unwrap() + 1.0);
            },
            "tools[0].params[0].number",
        );
        check_refused(
            |s| {
                let v = s.tools[0].params.iter_mut().find_map(|p| p.values.as_mut()).unwrap();
                v.values[0].value = "x".repeat(65);
            },
            "tools[0].params[2].values",
        );
        check_refused(|s| s.tools[0].params[0].path = String::new(), "tools[0].params[0].path");
    }

    #[test]
    fn a_file_beyond_the_tenants_limits_is_refused() {
        let tenant = TenantId::parse("acme").unwrap();
        let config = ParamsConfig::default();
        let s = summary(
            &tenant,
            &history(),
            false,
            (&config, &Limits::default()),
            &Page::default(),
        );
        let refused = |limits: Limits| seeded(&s, RateConfig::default(), &config, &limits).unwrap_err().field;
        let l = Limits::default();
        assert_eq!(refused(Limits { tools: 1, ..l }), "tools");
        assert_eq!(refused(Limits { keys: 5, ..l }), "tools");
        assert_eq!(refused(Limits { keys_per_tool: 2, ..l }), "tools[0].params");
        assert_eq!(refused(Limits { value_len: 5, ..l }), "tools[0].params[2].values");
        assert_eq!(refused(Limits { path_len: 4, ..l }), "tools[0].params[0].path");
        assert!(seeded(&s, RateConfig::default(), &config, &Limits { keys: 6, ..l }).is_ok());
    }

    #[test]
    fn known_things_are_trusted_and_unknown_ones_are_not() {
        let tenant = TenantId::parse("acme").unwrap();
        let config = ParamsConfig::default();
        let mut s = summary(
            &tenant,
            &history(),
            false,
            (&config, &Limits::default()),
            &Page::default(),
        );
        s.tools[0].known = false;
        let b = seeded(&s, RateConfig::default(), &config, &Limits::default()).unwrap();
        assert!(!b.tool(&s.tools[0].tool).unwrap().trust().is_trusted());
        assert!(b.tool(&s.tools[1].tool).unwrap().trust().is_trusted());
        assert!(!b.is_learning(&crate::baseline::Warmup {
            min_events: 100,
            min_span_minutes: 60
        }));
    }
}
