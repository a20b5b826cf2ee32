//! How far Vigil trusts something it has seen (a tool, a parameter key, a parameter value, a
//! character class): the memory behind every novelty detector, built so repeating an attack
//! does not make it normal.
//!
//! Trust is counted in event-time hours. Novelty detectors judge a thing once per hour, on its
//! first observation of the hour, and that observation's weight is what the hour teaches: an
//! ordinary hour of use makes it trusted (1.0), while an hour whose first observation raised a
//! finding (weight 0.1) adds a tenth, however many calls follow it unjudged in that hour. An
//! attacker has to keep a new tool or value going for ten hours, under an alert every hour,
//! before Vigil stops calling it new. The same rule keeps a legitimately new thing from
//! flooding the incident while it earns its trust, and keeps a finding about something else
//! (a parameter out of range in a tool's first hour) from costing the tool its trust: the hour
//! follows the judgement made about the thing itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::exact_f64;

/// Trust at or above this is "known". A little under 1.0 so that ten hours of 0.1 (which may
/// sum to a hair under 1 in binary) count as the one hour they stand for.
const TRUSTED: f64 = 1.0 - 1e-6;

/// The event-time hour of `timestamp`, in hours since the Unix epoch.
pub fn hour_of(timestamp: DateTime<Utc>) -> i64 {
    timestamp.timestamp().div_euclid(3600)
}

/// 16 bytes: one is kept for every tool, key, value and pending character class, so the
/// hour (hours since the epoch fit 32 bits for 245,000 years) and the hour's weight (0.1 or 1
/// in practice) are stored narrow.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Trust {
    /// Sum of the weights of completed hours.
    #[serde(with = "exact_f64")]
    settled: f64,
    /// The hour of the latest observation; earlier hours are settled.
    hour: i32,
    /// The weight of the first observation in `hour`: what the hour teaches.
    #[serde(with = "super::exact_f32")]
    hour_weight: f32,
}

impl Default for Trust {
    /// Never observed: no trust, and any hour is later than this one.
    fn default() -> Self {
        Trust {
            settled: 0.0,
            hour: i32::MIN,
            hour_weight: 0.0,
        }
    }
}

/// An hour since the epoch as stored: saturated to 32 bits (event times are bounded long
/// before that matters).
fn narrow(hour: i64) -> i32 {
    hour.clamp(i64::from(i32::MIN) + 1, i64::from(i32::MAX)) as i32
}

impl Trust {
    /// The trust of something first observed at `hour` with `weight` (in [0, 1]).
    pub fn new(hour: i64, weight: f64) -> Self {
        Trust {
            settled: 0.0,
            hour: narrow(hour),
            hour_weight: weight as f32,
        }
    }

    /// Counts one observation. The first of an hour decides what the hour teaches (it is the
    /// one a novelty detector judged); later ones in the hour, and late ones (an hour already
    /// settled), teach nothing more.
    pub fn observe(&mut self, hour: i64, weight: f64) {
        let hour = narrow(hour);
        if hour > self.hour {
            self.settled += f64::from(self.hour_weight);
            self.hour = hour;
            self.hour_weight = weight as f32;
        }
    }

    /// Makes it trusted, whatever it has earned: a person judged it normal (a false positive).
    pub fn absorb(&mut self) {
        self.settled = self.settled.max(1.0);
    }

    /// Trust so far, the open hour included at its current weight.
    pub fn value(&self) -> f64 {
        self.settled + f64::from(self.hour_weight)
    }

    pub fn is_trusted(&self) -> bool {
        self.value() >= TRUSTED
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
    fn one_clean_hour_trusts_and_a_flagged_hour_counts_a_tenth() {
        check(&[(5, 1.0)], &[(1.0, true)]);
        check(
            &[(5, 0.1), (5, 1.0), (6, 1.0)],
            &[(0.1, false), (0.1, false), (1.1, true)],
        );
        // The hour's first observation decides: one judged clean is not undone by a later
        // call flagged for something else, and one flagged is not redeemed by the calls after.
        check(&[(5, 1.0), (5, 0.1)], &[(1.0, true), (1.0, true)]);
        check(
            &[(5, 0.1), (5, 1.0), (5, 1.0)],
            &[(0.1, false), (0.1, false), (0.1, false)],
        );
        // Late observations change nothing.
        check(&[(5, 0.1), (4, 1.0)], &[(0.1, false), (0.1, false)]);
    }

    #[test]
    fn ten_flagged_hours_earn_the_trust_of_one_clean_hour() {
        let mut trust = Trust::new(0, 0.1);
        for hour in 1..10 {
            assert!(!trust.is_trusted(), "hour {hour}: {}", trust.value());
            trust.observe(hour, 0.1);
        }
        assert!(trust.is_trusted(), "{}", trust.value());
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
