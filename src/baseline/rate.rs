//! Call rate in one-minute event-time buckets: what a tool (or a whole tenant) normally does per
//! minute, and the count per minute that would be too many.
//!
//! Each bucket is the event timestamp floored to the minute. The expected count is an
//! exponentially weighted mean of completed buckets, minutes without calls included as zeros.
//! At the start of each bucket the rate threshold `k` (the smallest count whose Poisson tail
//! probability is below α) is computed once and cached, so judging a call is one integer
//! compare and a spike is flagged on its k-th call, not when the minute ends.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Discrete, DiscreteCDF, Poisson};
use statrs::function::erf;

use super::exact_f64;

/// How fast the expected rate follows the traffic: a minute's weight halves every 30 minutes.
/// Slower would take hours to accept a legitimate change of workload; faster would let a slow
/// ramp-up pass as normal.
pub const HALF_LIFE_MINUTES: f64 = 30.0;

/// The share of the mean kept per folded minute: `0.5^(1 / HALF_LIFE_MINUTES)`, spelled out
/// so the fold needs no `powf` per call (a test checks it against the half-life).
const KEEP_PER_MINUTE: f64 = 0.977_159_968_434_245;

/// Gaps longer than this (a day) decay the history fully: `KEEP^1440` is ~1e-15 anyway, and
/// capping keeps the exponent of `powi` in range whatever timestamps arrive.
const MAX_GAP_MINUTES: i64 = 24 * 60;

/// Above this expected count per minute the Poisson tail is taken from its normal
/// approximation: the incomplete gamma series costs O(√λ) per evaluation, and at such rates the
/// approximation is off by far less than one call.
const NORMAL_APPROX_ABOVE: f64 = 1e5;

/// The parameters of rate judgement. They are part of a tenant's baseline (thresholds are
/// precomputed with them at each bucket start) and of the detector's config (which recomputes
/// when the two differ, so a mismatch costs time, never correctness).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RateConfig {
    /// Tail probability below which a count is a spike, per bucket. 1e-6 per tool-minute is
    /// about one false alarm per tool every two years of steady Poisson traffic.
    pub alpha: f64,
    /// The expected count never drops below this, so a tool called twice a day does not look
    /// like it spiked when it is called twice in one minute.
    pub mean_floor: f64,
    /// Completed buckets (minutes since the tool was first seen) before a spike may be judged;
    /// with less, the mean is a guess.
    pub min_history_minutes: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            alpha: 1e-6,
            mean_floor: 0.5,
            min_history_minutes: 30,
        }
    }
}

/// The floor of `timestamp` in whole minutes since the Unix epoch: the bucket an event counts in.
pub fn minute_of(timestamp: chrono::DateTime<chrono::Utc>) -> i64 {
    timestamp.timestamp().div_euclid(60)
}

/// Exponentially weighted first and second moments of the per-minute count, with the running
/// total of weights (`norm`) so the first minutes are not biased towards zero.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
struct Ewma {
    #[serde(with = "exact_f64")]
    mean: f64,
    #[serde(with = "exact_f64")]
    mean_sq: f64,
    #[serde(with = "exact_f64")]
    norm: f64,
}

impl Ewma {
    /// Folds one completed minute with `count` calls. `weight` scales the step: a minute that
    /// raised a finding moves the mean a tenth as far, whatever its count.
    fn folded(self, count: f64, weight: f64) -> Self {
        let step = (1.0 - KEEP_PER_MINUTE) * weight;
        Self {
            mean: self.mean + step * (count - self.mean),
            mean_sq: self.mean_sq + step * (count * count - self.mean_sq),
            norm: self.norm + step * (1.0 - self.norm),
        }
    }

    /// Folds `minutes` empty minutes at once: folding a zero only scales the moments, so a
    /// gap of any length costs one `powi`.
    fn with_zeros(self, minutes: i64) -> Self {
        if minutes <= 0 {
            return self;
        }
        if minutes > MAX_GAP_MINUTES {
            return Self {
                mean: 0.0,
                mean_sq: 0.0,
                norm: 1.0,
            };
        }
        let keep = KEEP_PER_MINUTE.powi(minutes as i32);
        Self {
            mean: self.mean * keep,
            mean_sq: self.mean_sq * keep,
            norm: 1.0 - (1.0 - self.norm) * keep,
        }
    }

    fn mean(&self) -> f64 {
        if self.norm > 0.0 { self.mean / self.norm } else { 0.0 }
    }

    fn variance(&self) -> f64 {
        if self.norm > 0.0 {
            let m = self.mean / self.norm;
            (self.mean_sq / self.norm - m * m).max(0.0)
        } else {
            0.0
        }
    }
}

/// The threshold of the current bucket, with the inputs it was computed from so a reader with
/// other parameters can tell it does not apply.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct CachedThreshold {
    k: u64,
    #[serde(with = "exact_f64")]
    alpha: f64,
    #[serde(with = "exact_f64")]
    mean_floor: f64,
}

/// The learned rate of one stream of calls (one tool, or a whole tenant).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RateBaseline {
    /// The bucket being counted (minutes since the epoch); `None` before the first call.
    minute: Option<i64>,
    /// Calls in the current bucket, unweighted: a spike is judged on what the agent did.
    calls: u64,
    /// How much the current bucket will teach the mean when it completes: the smallest weight
    /// of its calls. The caller lowers the weight of the call that raised a finding; since a rate
    /// finding fires once per bucket, this is what keeps the rest of an attacked minute from
    /// being learned at full weight.
    #[serde(with = "exact_f64")]
    weight: f64,
    /// Moments of completed buckets.
    ewma: Ewma,
    /// Completed buckets since the first call, empty ones included: how much the mean knows.
    history: u64,
    /// `k` for the current bucket, computed when it started.
    threshold: Option<CachedThreshold>,
}

/// How a call at a given minute stands against a rate baseline, computed without changing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outlook {
    /// The bucket of the call.
    pub minute: i64,
    /// Calls in that bucket counting this one.
    pub observed: u64,
    /// Expected calls per minute for that bucket, floor applied.
    pub expected: f64,
    /// Completed buckets behind that expectation.
    pub history: u64,
    /// The bucket's threshold when the baseline already holds it for these parameters.
    cached_k: Option<u64>,
}

impl Outlook {
    /// True when this call is the one that makes the bucket's count reach its threshold `k`:
    /// the moment a rate finding fires, once per bucket.
    pub fn crosses(&self, config: &RateConfig) -> bool {
        match self.cached_k {
            Some(k) => self.observed == k,
            // Without a cached k, asking whether `observed` is the smallest count with a small
            // tail costs two tail evaluations instead of a search.
            None => {
                poisson_tail(self.expected, self.observed) < config.alpha
                    && (self.observed == 0 || poisson_tail(self.expected, self.observed - 1) >= config.alpha)
            }
        }
    }

    /// The bucket's threshold `k` (cached or computed).
    pub fn threshold(&self, config: &RateConfig) -> u64 {
        self.cached_k
            .unwrap_or_else(|| poisson_threshold(self.expected, config.alpha))
    }
}

impl RateBaseline {
    /// A stream that has been watched, and empty, since `minute`: its mean is zero with the
    /// history of the minutes since behind it. For a stream that is part of another (a tool's
    /// failing calls) and starts long after it: a tool that never failed has a known error
    /// rate of zero, not an unknown one.
    pub fn quiet_since(minute: i64) -> Self {
        RateBaseline {
            minute: Some(minute),
            calls: 0,
            weight: 1.0,
            ..RateBaseline::default()
        }
    }

    /// A stream imported from a reviewed baseline: `mean` and `variance` per minute, learned
    /// over `history` minutes, the current bucket (empty) at `minute`.
    pub fn seeded(mean: f64, variance: f64, minute: i64, history: u64) -> Self {
        RateBaseline {
            minute: Some(minute),
            calls: 0,
            weight: 1.0,
            ewma: Ewma {
                mean,
                mean_sq: variance + mean * mean,
                norm: 1.0,
            },
            history,
            threshold: None,
        }
    }

    /// Counts one call at `minute`. `weight` in [0, 1] (the caller sanitises it) is how much
    /// the call may teach; the minute teaches with the smallest weight among its calls. Calls
    /// for a bucket older than the current one (late or out of order) are ignored here: that
    /// bucket is already folded.
    pub fn observe(&mut self, minute: i64, weight: f64, config: &RateConfig) {
        match self.minute {
            Some(current) if minute < current => {}
            Some(current) if minute == current => {
                self.calls += 1;
                self.weight = self.weight.min(weight);
            }
            _ => {
                let (ewma, history) = self.state_at(minute);
                self.ewma = ewma;
                self.history = history;
                self.minute = Some(minute);
                self.calls = 1;
                self.weight = weight;
                let expected = self.ewma.mean().max(config.mean_floor);
                self.threshold = Some(CachedThreshold {
                    k: poisson_threshold(expected, config.alpha),
                    alpha: config.alpha,
                    mean_floor: config.mean_floor,
                });
            }
        }
    }

    /// What a call at `minute` would be judged against; `None` for a late call (its bucket is
    /// already folded, there is nothing left to compare it with).
    pub fn outlook(&self, minute: i64, config: &RateConfig) -> Option<Outlook> {
        match self.minute {
            Some(current) if minute < current => None,
            Some(current) if minute == current => {
                let cached_k = self
                    .threshold
                    .filter(|t| t.alpha == config.alpha && t.mean_floor == config.mean_floor)
                    .map(|t| t.k);
                Some(Outlook {
                    minute,
                    observed: self.calls + 1,
                    expected: self.ewma.mean().max(config.mean_floor),
                    history: self.history,
                    cached_k,
                })
            }
            _ => {
                let (ewma, history) = self.state_at(minute);
                Some(Outlook {
                    minute,
                    observed: 1,
                    expected: ewma.mean().max(config.mean_floor),
                    history,
                    cached_k: None,
                })
            }
        }
    }

    /// The moments and history as they would stand at the start of `minute`, a bucket after
    /// the current one: the current bucket folded, then the empty minutes in between. Shared by
    /// `observe` and `outlook` so a prediction is exactly what observing would do.
    fn state_at(&self, minute: i64) -> (Ewma, u64) {
        match self.minute {
            None => (self.ewma, self.history),
            Some(current) => {
                let gap = minute.saturating_sub(current).saturating_sub(1);
                let ewma = self.ewma.folded(self.calls as f64, self.weight).with_zeros(gap);
                (ewma, self.history.saturating_add(1).saturating_add(gap.max(0) as u64))
            }
        }
    }

    /// True when `minute` is the open bucket and its calls have already reached its threshold
    /// with enough history behind it: a spike was reported there.
    pub fn spiked_in(&self, minute: i64, config: &RateConfig) -> bool {
        if self.minute != Some(minute) || self.history < config.min_history_minutes {
            return false;
        }
        let k = match self.threshold {
            Some(t) if t.alpha == config.alpha && t.mean_floor == config.mean_floor => t.k,
            _ => poisson_threshold(self.ewma.mean().max(config.mean_floor), config.alpha),
        };
        self.calls >= k
    }

    /// The bucket being counted, in minutes since the epoch.
    pub fn current_minute(&self) -> Option<i64> {
        self.minute
    }

    /// Calls counted in the current bucket so far.
    pub fn calls_in_minute(&self) -> u64 {
        self.calls
    }

    /// Completed buckets behind the expectation.
    pub fn history_minutes(&self) -> u64 {
        self.history
    }

    /// Mean calls per completed minute, without the floor.
    pub fn mean(&self) -> f64 {
        self.ewma.mean()
    }

    /// Variance of calls per completed minute: above the mean it says the traffic is burstier
    /// than Poisson (kept for the negative binomial switch).
    pub fn variance(&self) -> f64 {
        self.ewma.variance()
    }
}

/// `P(X >= k)` for `X ~ Poisson(mean)`. Never panics: a non-positive mean is a point mass at
/// zero, a non-finite one has no tail worth reporting (NaN compares false against α, so it
/// never fires). May underflow to 0.0 for counts far above the mean.
pub fn poisson_tail(mean: f64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if mean.is_nan() || mean == f64::INFINITY {
        return f64::NAN;
    }
    if mean <= 0.0 {
        return 0.0;
    }
    if k == 1 {
        // P(X >= 1) = 1 - e^-mean: the question asked of every call that opens a minute.
        return -(-mean).exp_m1();
    }
    if mean > NORMAL_APPROX_ABOVE {
        // Continuity-corrected normal tail.
        let z = (k as f64 - 0.5 - mean) / mean.sqrt();
        return 0.5 * erf::erfc(z / std::f64::consts::SQRT_2);
    }
    match Poisson::new(mean) {
        // sf(x) is P(X > x), the regularized lower incomplete gamma P(x + 1, mean): computed
        // directly, so it stays accurate in the far tail where 1 - cdf would be all rounding.
        Ok(p) => p.sf(k - 1),
        Err(_) => f64::NAN,
    }
}

/// The smallest count `k` with `P(X >= k) < alpha` for `X ~ Poisson(mean)`: reaching `k` calls
/// in a minute is the spike. `u64::MAX` means no count qualifies (α ≤ 0 or a non-finite mean).
///
/// Computed at every bucket start, so it is built to be cheap: the Cornish–Fisher estimate of
/// the quantile is within about one of the answer, one incomplete-gamma evaluation gives the
/// tail there, and neighbouring tails follow by adding or removing one pmf term. A bad
/// estimate falls back to bracketing and bisection. Every loop is bounded.
pub fn poisson_threshold(mean: f64, alpha: f64) -> u64 {
    if alpha.is_nan() || alpha <= 0.0 || mean.is_nan() || mean == f64::INFINITY {
        return u64::MAX;
    }
    if alpha > 1.0 {
        return 0;
    }
    if mean <= 0.0 {
        return 1;
    }
    let z = std::f64::consts::SQRT_2 * erf::erfc_inv((2.0 * alpha).min(1.999_999));
    let estimate = mean + z * mean.sqrt() + (z * z + 2.0) / 6.0;
    let guess = if estimate.is_finite() {
        (estimate.round().max(1.0) as u64).min(1 << 62)
    } else {
        1
    };

    if mean <= NORMAL_APPROX_ABOVE
        && let Ok(poisson) = Poisson::new(mean)
        && let Some(k) = walk_to_threshold(&poisson, guess, alpha)
    {
        return k;
    }
    bisect_threshold(mean, alpha, guess)
}

/// Steps from `guess` to the threshold with `P(X >= k ± 1) = P(X >= k) ± pmf`, at most a few
/// steps; `None` when the guess was too far off.
fn walk_to_threshold(poisson: &Poisson, guess: u64, alpha: f64) -> Option<u64> {
    const STEPS: u32 = 6;
    let mut k = guess;
    let mut tail = poisson_tail(poisson.lambda(), k);
    if tail < alpha {
        for _ in 0..STEPS {
            if k == 1 {
                return Some(1);
            }
            let wider = tail + poisson.pmf(k - 1);
            if wider >= alpha {
                return Some(k);
            }
            k -= 1;
            tail = wider;
        }
    } else {
        for _ in 0..STEPS {
            let narrower = tail - poisson.pmf(k);
            if narrower < alpha {
                return Some(k + 1);
            }
            k += 1;
            tail = narrower;
        }
    }
    None
}

/// The threshold by bracketing from `guess` with doubling steps, then bisecting.
fn bisect_threshold(mean: f64, alpha: f64, guess: u64) -> u64 {
    let below = |k: u64| poisson_tail(mean, k) < alpha;
    // Invariant once bracketed: tail(lo) >= alpha, tail(hi) < alpha, lo < hi.
    let (mut lo, mut hi);
    if below(guess) {
        hi = guess;
        lo = guess - 1;
        let mut step = 1u64;
        while lo > 0 && below(lo) {
            hi = lo;
            step = step.saturating_mul(2);
            lo = guess.saturating_sub(step);
        }
    } else {
        lo = guess;
        hi = guess + 1;
        let mut step = 1u64;
        while !below(hi) {
            if step >= 1 << 62 {
                return u64::MAX;
            }
            lo = hi;
            step *= 2;
            hi = guess.saturating_add(step);
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threshold by brute force: the pmf by its recurrence in log space, summed upwards
    /// from each candidate until the terms vanish.
    fn brute_threshold(mean: f64, alpha: f64) -> u64 {
        let span = (mean + 20.0 * mean.sqrt() + 400.0) as u64;
        let ln_pmf: Vec<f64> = std::iter::successors(Some(-mean), {
            let mut i = 0u64;
            move |lp| {
                i += 1;
                Some(lp + (mean / i as f64).ln())
            }
        })
        .take(span as usize)
        .collect();
        let mut tail = 0.0;
        let mut k = span;
        // Walk down from the far tail; the answer is one above the first k whose tail is >= α.
        while k > 0 {
            tail += ln_pmf[(k - 1) as usize].exp();
            if tail >= alpha {
                return k;
            }
            k -= 1;
        }
        0
    }

    #[track_caller]
    fn check_threshold(mean: f64, alpha: f64) {
        let k = poisson_threshold(mean, alpha);
        assert_eq!(k, brute_threshold(mean, alpha), "mean {mean}, alpha {alpha}");
        assert!(poisson_tail(mean, k) < alpha);
        assert!(poisson_tail(mean, k - 1) >= alpha);
    }

    #[test]
    fn threshold_matches_a_brute_force_sum_of_the_pmf() {
        for mean in [0.5, 1.0, 2.0, 3.7, 10.0, 33.3, 100.0, 1000.0, 5000.0] {
            check_threshold(mean, 1e-6);
        }
        for alpha in [0.1, 1e-3, 1e-9, 1e-12] {
            check_threshold(2.0, alpha);
            check_threshold(100.0, alpha);
        }
    }

    #[test]
    fn the_fast_walk_agrees_with_bisection() {
        for i in 0..400 {
            let mean = 0.5 * 1.03f64.powi(i);
            for alpha in [1e-3, 1e-6, 1e-9] {
                assert_eq!(
                    poisson_threshold(mean, alpha),
                    bisect_threshold(mean, alpha, 1),
                    "mean {mean}, alpha {alpha}"
                );
            }
        }
    }

    #[test]
    fn threshold_survives_degenerate_inputs() {
        assert_eq!(poisson_threshold(0.0, 1e-6), 1);
        assert_eq!(poisson_threshold(-3.0, 1e-6), 1);
        assert_eq!(poisson_threshold(f64::NAN, 1e-6), u64::MAX);
        assert_eq!(poisson_threshold(f64::INFINITY, 1e-6), u64::MAX);
        assert_eq!(poisson_threshold(2.0, 0.0), u64::MAX);
        assert_eq!(poisson_threshold(2.0, f64::NAN), u64::MAX);
        assert_eq!(poisson_threshold(2.0, 2.0), 0);
        assert_eq!(poisson_threshold(1e-300, 1e-6), 1);
        assert_eq!(poisson_threshold(2.0, 1e-300), brute_threshold(2.0, 1e-300));
        // Past the normal switch: near mean + 4.75 sd, and no panic at absurd rates.
        let k = poisson_threshold(1e6, 1e-6);
        assert!((1_004_700..1_004_800).contains(&k), "{k}");
        assert!(poisson_threshold(1e18, 1e-6) > 1e18 as u64);
        assert!(poisson_threshold(1e300, 1e-6) > 0);
    }

    #[test]
    fn tail_is_zero_not_a_panic_when_it_underflows() {
        assert_eq!(poisson_tail(2.0, 10_000), 0.0);
        assert!(poisson_tail(2.0, 40) > 0.0 && poisson_tail(2.0, 40) < 1e-30);
        assert_eq!(poisson_tail(0.0, 1), 0.0);
        assert_eq!(poisson_tail(2.0, 0), 1.0);
    }

    #[test]
    fn keep_per_minute_matches_the_half_life() {
        assert!((KEEP_PER_MINUTE - 0.5f64.powf(1.0 / HALF_LIFE_MINUTES)).abs() < 1e-15);
    }

    #[test]
    fn folding_a_gap_at_once_equals_folding_each_empty_minute() {
        let start = Ewma::default().folded(5.0, 1.0).folded(3.0, 1.0);
        let mut one_by_one = start;
        for _ in 0..17 {
            one_by_one = one_by_one.folded(0.0, 1.0);
        }
        let at_once = start.with_zeros(17);
        assert!((one_by_one.mean() - at_once.mean()).abs() < 1e-12);
        assert!((one_by_one.variance() - at_once.variance()).abs() < 1e-12);
    }

    #[test]
    fn the_first_minutes_are_not_biased_towards_zero() {
        let e = Ewma::default().folded(4.0, 1.0).folded(4.0, 0.1).folded(4.0, 1.0);
        assert!((e.mean() - 4.0).abs() < 1e-12);
        assert!(e.variance() < 1e-9);
    }
}
