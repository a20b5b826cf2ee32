//! How far Vigil trusts something it has seen (a tool, a parameter key, a parameter value, a
//! character class), and how settled a collection of such things is: the memory behind every
//! novelty detector, built so repeating an attack does not make it normal.
//!
//! Trust is counted in event-time hours. Novelty detectors judge a thing once per hour, on its
//! first observation of the hour, and that observation's weight is what the hour teaches: an
//! ordinary hour of use (weight 1) makes it trusted, an hour whose first observation raised a
//! finding (weight 0.1) teaches nothing by itself, however many calls follow it unjudged in
//! that hour. What a flagged thing can earn is *spread*: seen in [`TRUSTED_DAYS`] distinct
//! event-time days, it is trusted. That is the trade-off, in numbers:
//! - a rare but recurring benign tool or value (a few calls a day, each in its own hour, each
//!   flagged) is trusted on its third day: one finding per hour it shows up in until then, the
//!   third day's first included (3–7 for a tool called 1–3 times a day), instead of ten
//!   flagged hours' worth (over 3–10 days);
//! - an attacker repeating a new tool or value every hour stays flagged every hour until its
//!   third distinct day: at least 26 hourly findings (from 23:00 to 00:00 two days on, the
//!   first observation of the third day included), at most 49, where ten flagged hours used
//!   to suffice;
//! - a legitimately new busy tool on a settled map is flagged hourly the same way until a person
//!   marks one finding a false positive ([`Trust::absorb`], trusted at once).
//!
//! The same rule keeps a finding about something else (a parameter out of range in a tool's
//! first hour) from costing the tool its trust: the hour follows the judgement made about the
//! thing itself.
//!
//! Whether a collection has settled is judged by evidence, [`novelty`]: a Good–Turing
//! estimate of the probability that the next unit brings something new, from how many of the
//! things were seen in one hour only. A tenant's tool map counts in hours of use, so a quiet
//! or late tenant, whose rare tools have not shown twice yet, is not judged on a busy tenant's
//! clock; a tool's keys and a parameter's value set count in the tool's calls and the path's
//! samples.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::exact_f32;

/// Trust at or above this is "known". A little under 1.0 so rounding never costs a clean hour.
const TRUSTED: f32 = 1.0 - 1e-6;

/// Distinct event-time days, flagged or not, that make a thing trusted (see the module doc).
pub const TRUSTED_DAYS: u8 = 3;

/// The event-time hour of `timestamp`, in hours since the Unix epoch.
pub fn hour_of(timestamp: DateTime<Utc>) -> i64 {
    timestamp.timestamp().div_euclid(3600)
}

/// Good–Turing with a rule-of-succession prior: the estimated probability that the next unit
/// (an hour of use, a call, a sample) brings a thing never seen, from `singletons` (trusted
/// things seen in exactly one hour) over `units`. `(Q1 + 1) / (T + 2)`: with nothing rare seen
/// it is Laplace's rule for "T units without news" (at most 5% after 18), and every thing seen
/// in one hour only says rare things are still turning up.
pub fn novelty(singletons: usize, units: u64) -> f64 {
    (singletons as f64 + 1.0) / (units as f64 + 2.0)
}

/// 16 bytes: one is kept for every tool, key, value and pending character class, so the
/// hour (hours since the epoch fit 32 bits for 245,000 years), the weights (1 or 0.1 in
/// practice) and the counts are stored narrow.
///
/// Every field is required in snapshots: one written before trust counted hours and days
/// cannot say which things are rare, and is rebuilt from the log.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Trust {
    /// Sum of the weights of completed clean hours (flagged hours teach nothing here).
    #[serde(with = "exact_f32", rename = "clean")]
    settled: f32,
    /// The hour of the latest observation; earlier hours are settled.
    hour: i32,
    /// The weight of the first observation in `hour`: what the hour teaches.
    #[serde(with = "exact_f32")]
    hour_weight: f32,
    /// Distinct hours observed in, any weight (saturating).
    hours: u16,
    /// Distinct days observed in, any weight (saturating).
    days: u8,
}

impl Default for Trust {
    /// Never observed: no trust, and any hour is later than this one.
    fn default() -> Self {
        Trust {
            settled: 0.0,
            hour: i32::MIN,
            hour_weight: 0.0,
            hours: 0,
            days: 0,
        }
    }
}

/// An hour since the epoch as stored: saturated to 32 bits (event times are bounded long
/// before that matters).
fn narrow(hour: i64) -> i32 {
    hour.clamp(i64::from(i32::MIN) + 1, i64::from(i32::MAX)) as i32
}

/// What an hour teaches when it completes: a clean hour its weight, a flagged one nothing.
fn taught(weight: f32) -> f32 {
    if weight >= 1.0 { weight } else { 0.0 }
}

impl Trust {
    /// The trust of something first observed at `hour` with `weight` (in [0, 1]).
    pub fn new(hour: i64, weight: f64) -> Self {
        Trust {
            settled: 0.0,
            hour: narrow(hour),
            hour_weight: weight as f32,
            hours: 1,
            days: 1,
        }
    }

    /// A thing imported from a reviewed baseline: known ones trusted and counted as long
    /// established (a reviewed map is settled), the others as never trusted.
    pub fn imported(known: bool, hour: i64) -> Self {
        let mut trust = Trust::new(hour, 0.0);
        if known {
            trust.absorb();
            trust.hours = u16::MAX;
            trust.days = u8::MAX;
        }
        trust
    }

    /// Counts one observation. The first of an hour decides what the hour teaches (it is the
    /// one a novelty detector judged); later ones in the hour, and late ones (an hour already
    /// settled), teach nothing more.
    pub fn observe(&mut self, hour: i64, weight: f64) {
        let hour = narrow(hour);
        if hour > self.hour {
            self.settled += taught(self.hour_weight);
            if hour.div_euclid(24) > self.hour.div_euclid(24) {
                self.days = self.days.saturating_add(1);
            }
            self.hour = hour;
            self.hour_weight = weight as f32;
            self.hours = self.hours.saturating_add(1);
        }
    }

    /// Makes it trusted, whatever it has earned: a person judged it normal (a false positive).
    pub fn absorb(&mut self) {
        self.settled = self.settled.max(1.0);
    }

    /// Trust so far, 1 meaning trusted: the clean hours (the open one included at its weight),
    /// or the share of [`TRUSTED_DAYS`] its days make, whichever is more.
    pub fn value(&self) -> f64 {
        let hours = self.settled + taught(self.hour_weight);
        f64::from(hours.max(f32::from(self.days) / f32::from(TRUSTED_DAYS)))
    }

    pub fn is_trusted(&self) -> bool {
        self.settled + taught(self.hour_weight) >= TRUSTED || self.days >= TRUSTED_DAYS
    }

    /// Distinct event-time hours it was observed in.
    pub fn hours(&self) -> u64 {
        u64::from(self.hours)
    }

    /// True for a trusted thing seen in one hour only: a singleton of [`novelty`].
    pub fn is_singleton(&self) -> bool {
        self.hours == 1 && self.is_trusted()
    }

    /// True when an observation at `hour` is not the first of its hour (or is late): a novelty
    /// detector has already had its say about this thing for that hour.
    pub fn judged_in(&self, hour: i64) -> bool {
        narrow(hour) <= self.hour
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays `(hour, weight)` observations; returns the trust after each.
    #[track_caller]
    fn check(observations: &[(i64, f64)], expect: &[(f64, bool)]) {
        let mut trust = Trust::new(observations[0].0, observations[0].1);
        let mut actual = vec![(trust.value(), trust.is_trusted())];
        for &(hour, weight) in &observations[1..] {
            trust.observe(hour, weight);
            actual.push((trust.value(), trust.is_trusted()));
        }
        let round =
            |v: &[(f64, bool)]| -> Vec<(String, bool)> { v.iter().map(|(x, t)| (format!("{x:.3}"), *t)).collect() };
        assert_eq!(round(&actual), round(expect));
    }

    #[test]
    fn one_clean_hour_trusts_and_a_flagged_hour_teaches_nothing() {
        check(&[(5, 1.0)], &[(1.0, true)]);
        check(
            &[(5, 0.1), (5, 1.0), (6, 1.0)],
            &[(0.333, false), (0.333, false), (1.0, true)],
        );
        // The hour's first observation decides: one judged clean is not undone by a later
        // call flagged for something else, and one flagged is not redeemed by the calls after.
        check(&[(5, 1.0), (5, 0.1)], &[(1.0, true), (1.0, true)]);
        check(
            &[(5, 0.1), (5, 1.0), (5, 1.0)],
            &[(0.333, false), (0.333, false), (0.333, false)],
        );
        // Late observations change nothing.
        check(&[(5, 0.1), (4, 1.0)], &[(0.333, false), (0.333, false)]);
    }

    #[test]
    fn an_attack_repeated_every_hour_is_trusted_only_on_its_third_day() {
        // From 23:00 on day 0: every hour flagged, trusted by 00:00 on day 2, 25 hours later,
        // whose first observation was judged (flagged) before it was counted: 26 findings.
        let mut trust = Trust::new(23, 0.1);
        let mut flagged_hours = 1;
        for hour in 24..48 {
            assert!(!trust.is_trusted(), "hour {hour}: {}", trust.value());
            trust.observe(hour, 0.1);
            flagged_hours += 1;
        }
        assert!(!trust.is_trusted(), "{}", trust.value());
        assert!(!trust.judged_in(48), "00:00 on day 2 is judged, and flagged");
        flagged_hours += 1;
        trust.observe(48, 0.1);
        assert!(trust.is_trusted());
        assert_eq!(flagged_hours, 26);
        assert_eq!(trust.hours(), 26);
    }

    #[test]
    fn a_rare_thing_seen_on_three_days_is_trusted() {
        // Twice a day, each time flagged: trusted by the third day's first observation (judged,
        // and flagged, before it counts: five findings).
        let mut trust = Trust::new(9, 0.1);
        for hour in [17, 24 + 9, 24 + 17] {
            trust.observe(hour, 0.1);
            assert!(!trust.is_trusted());
        }
        trust.observe(48 + 9, 0.1);
        assert!(trust.is_trusted());
        assert!(!trust.is_singleton(), "seen in five hours");
        assert!(Trust::new(3, 1.0).is_singleton());
        assert!(!Trust::new(3, 0.1).is_singleton(), "an untrusted thing is no evidence");
    }

    #[test]
    fn novelty_needs_hours_and_rare_things_hold_it_up() {
        assert!((novelty(0, 18) - 0.05).abs() < 1e-12);
        assert!(novelty(0, 17) > 0.05);
        assert!(novelty(1, 37) > 0.05 && novelty(1, 38) <= 0.05);
        assert!(novelty(0, 1_000) < 0.001);
    }

    #[test]
    fn absorbing_trusts_at_once_and_keeps_the_hour() {
        let mut trust = Trust::new(7, 0.1);
        trust.absorb();
        assert!(trust.is_trusted(), "{}", trust.value());
        assert!(trust.judged_in(7));
        let mut earned = Trust::new(3, 1.0);
        earned.observe(4, 1.0);
        earned.absorb();
        assert_eq!(earned.value(), 2.0, "absorbing never lowers trust");
        let imported = Trust::imported(true, 3);
        assert!(imported.is_trusted() && !imported.is_singleton());
        assert!(!Trust::imported(false, 3).is_trusted());
    }

    #[test]
    fn trust_stays_16_bytes() {
        assert_eq!(std::mem::size_of::<Trust>(), 16);
    }

    #[test]
    fn judged_once_per_hour() {
        let trust = Trust::new(7, 0.1);
        assert!(trust.judged_in(7));
        assert!(trust.judged_in(6));
        assert!(!trust.judged_in(8));
    }

    #[test]
    fn hours_floor_towards_the_past() {
        assert_eq!(hour_of("1970-01-01T00:59:59Z".parse().unwrap()), 0);
        assert_eq!(hour_of("1969-12-31T23:59:59Z".parse().unwrap()), -1);
    }
}
