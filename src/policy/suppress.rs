//! Suppressions: "this detector on this tool of this tenant is known to be wrong until then",
//! written when a person marks an incident a false positive (or by hand). A suppressed finding
//! is counted and answered to the runtime as suppressed, but opens no incident, alerts no one
//! and rotates nothing. Pure: the store loads the open ones and the shard asks here.

use crate::detect::{Detector, Finding};
use crate::event::TenantId;
use crate::event::glob_matches;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Longest a suppression may last: a month, so a forgotten one cannot blind Vigil for good.
pub const MAX_SUPPRESS_MINUTES: i64 = 30 * 24 * 60;

/// One open suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub id: String,
    pub detector: Detector,
    /// A tool name or glob (`github.*`); `*` for every tool.
    pub tool: String,
    pub expires_at: DateTime<Utc>,
}

impl Suppression {
    pub fn covers(&self, finding: &Finding, now: DateTime<Utc>) -> bool {
        now < self.expires_at && self.detector == finding.detector && glob_matches(&self.tool, &finding.tool)
    }
}

/// Every tenant's open suppressions.
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    by_tenant: HashMap<TenantId, Vec<Suppression>>,
}

impl Suppressions {
    pub fn new(all: impl IntoIterator<Item = (TenantId, Suppression)>) -> Self {
        let mut by_tenant: HashMap<TenantId, Vec<Suppression>> = HashMap::new();
        for (tenant, s) in all {
            by_tenant.entry(tenant).or_default().push(s);
        }
        Suppressions { by_tenant }
    }

    /// The suppression that silences `finding` for `tenant` at `now`, if any.
    pub fn find(&self, tenant: &TenantId, finding: &Finding, now: DateTime<Utc>) -> Option<&Suppression> {
        self.by_tenant.get(tenant)?.iter().find(|s| s.covers(finding, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(detector: Detector, tool: &str) -> Finding {
        Finding {
            tool: tool.into(),
            ..crate::policy::tests::finding(detector)
        }
    }

    #[test]
    fn a_suppression_covers_its_tenant_detector_and_tools_until_it_expires() {
        let now: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        let all = Suppressions::new([(
            acme.clone(),
            Suppression {
                id: "sup_1".into(),
                detector: Detector::RateSpike,
                tool: "github.*".into(),
                expires_at: now + chrono::Duration::hours(1),
            },
        )]);
        let check = |tenant: &TenantId, detector, tool, at| all.find(tenant, &finding(detector, tool), at).is_some();
        assert!(check(&acme, Detector::RateSpike, "github.create_issue", now));
        assert!(!check(&acme, Detector::RateSpike, "storage.read", now), "another tool");
        assert!(
            !check(&acme, Detector::NovelTool, "github.create_issue", now),
            "another detector"
        );
        assert!(
            !check(&globex, Detector::RateSpike, "github.create_issue", now),
            "another tenant"
        );
        assert!(
            !check(
                &acme,
                Detector::RateSpike,
                "github.create_issue",
                now + chrono::Duration::hours(1)
            ),
            "expired"
        );
    }
}
