//! Streaming statistics of one numeric stream (a parameter's values, a string parameter's
//! lengths): weighted mean and variance (Welford), quartiles (P²), and the range of clean
//! samples; from them, the robust fences a value is judged against.
//!
//! Quartiles use the extended P² algorithm (Jain & Chlamtac 1985; Raatikainen 1987): seven
//! markers track the minimum, the 12.5th, 25th, 50th, 75th and 87.5th percentiles and the
//! maximum in O(1) time and 120 bytes, with no allocation and no randomness, so a fold is
//! deterministic and a snapshot is exact. A reservoir would need an order of magnitude more
//! memory for the same error and a seeded random source; a t-digest brings a dependency for
//! accuracy in the far tails, which Tukey fences do not use. P² has no notion of weight, so a
//! sample with weight w < 1 (one that raised a finding) enters the quartiles once per 1/w such
//! samples: an attacker repeating an out-of-range value moves the fences a tenth as fast.

use serde::{Deserialize, Serialize};

use super::exact_f64;

/// Weighted mean and variance by West's incremental form of Welford's algorithm: stable where
/// the textbook Σx² − (Σx)²/n loses every digit.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Moments {
    #[serde(with = "exact_f64")]
    weight: f64,
    #[serde(with = "exact_f64")]
    mean: f64,
    #[serde(with = "exact_f64")]
    m2: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64, weight: f64) {
        if weight <= 0.0 || !x.is_finite() {
            return;
        }
        let total = self.weight + weight;
        let delta = x - self.mean;
        self.mean += delta * weight / total;
        self.m2 += weight * delta * (x - self.mean);
        self.weight = total;
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Population variance (divided by the total weight).
    pub fn variance(&self) -> f64 {
        if self.weight > 0.0 {
            (self.m2 / self.weight).max(0.0)
        } else {
            0.0
        }
    }

    pub fn weight(&self) -> f64 {
        self.weight
    }
}

/// The probabilities the seven markers track.
const MARKERS: [f64; 7] = [0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0];

/// Quartiles by extended P². Until seven samples have arrived the markers hold the samples
/// themselves and quantiles are exact.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Quartiles {
    #[serde(with = "exact_f64_array")]
    heights: [f64; 7],
    /// 1-based rank of each marker among the samples.
    positions: [i64; 7],
    count: u64,
}

impl Quartiles {
    pub fn insert(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let n = self.count as usize;
        if n < 7 {
            self.heights[n] = x;
            self.count += 1;
            if n == 6 {
                self.heights.sort_by(f64::total_cmp);
                self.positions = [1, 2, 3, 4, 5, 6, 7];
            }
            return;
        }
        let h = &mut self.heights;
        let k = if x < h[0] {
            h[0] = x;
            0
        } else if x >= h[6] {
            h[6] = x;
            5
        } else {
            // h[0] <= x < h[6]: the cell holding x.
            (0..6).rfind(|&i| h[i] <= x).unwrap_or(0)
        };
        for p in &mut self.positions[k + 1..] {
            *p += 1;
        }
        self.count += 1;
        for (i, p) in MARKERS.iter().enumerate().take(6).skip(1) {
            let desired = 1.0 + (self.count - 1) as f64 * p;
            let d = desired - self.positions[i] as f64;
            let room_above = self.positions[i + 1] - self.positions[i] > 1;
            let room_below = self.positions[i - 1] - self.positions[i] < -1;
            if (d >= 1.0 && room_above) || (d <= -1.0 && room_below) {
                let s: i64 = if d > 0.0 { 1 } else { -1 };
                let candidate = self.parabolic(i, s);
                self.heights[i] = if self.heights[i - 1] < candidate && candidate < self.heights[i + 1] {
                    candidate
                } else {
                    self.linear(i, s)
                };
                self.positions[i] += s;
            }
        }
    }

    /// The P² piecewise-parabolic prediction of marker `i` moved by `s` (±1) positions.
    fn parabolic(&self, i: usize, s: i64) -> f64 {
        let (q, n) = (&self.heights, &self.positions);
        let s_f = s as f64;
        let (n_lo, n_i, n_hi) = (n[i - 1] as f64, n[i] as f64, n[i + 1] as f64);
        q[i] + s_f / (n_hi - n_lo)
            * ((n_i - n_lo + s_f) * (q[i + 1] - q[i]) / (n_hi - n_i)
                + (n_hi - n_i - s_f) * (q[i] - q[i - 1]) / (n_i - n_lo))
    }

    fn linear(&self, i: usize, s: i64) -> f64 {
        let j = (i as i64 + s) as usize;
        let (q, n) = (&self.heights, &self.positions);
        q[i] + s as f64 * (q[j] - q[i]) / (n[j] - n[i]) as f64
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Markers rebuilt from a summary of `count` samples: the range and the quartiles, with
    /// the eighths between them interpolated. Below 13 samples the markers are the seven
    /// points themselves, as if seven samples had been seen.
    fn seeded(count: u64, [min, q1, median, q3, max]: [f64; 5]) -> Self {
        let heights = [min, (min + q1) / 2.0, q1, median, q3, (q3 + max) / 2.0, max];
        if count < 13 {
            return Quartiles {
                heights,
                positions: [1, 2, 3, 4, 5, 6, 7],
                count: 7,
            };
        }
        Quartiles {
            heights,
            positions: MARKERS.map(|p| (1.0 + p * (count - 1) as f64).round() as i64),
            count,
        }
    }

    /// Q1, median and Q3; `None` before the first sample.
    pub fn quartiles(&self) -> Option<[f64; 3]> {
        match self.count {
            0 => None,
            n if n < 7 => {
                let mut v = self.heights[..n as usize].to_vec();
                v.sort_by(f64::total_cmp);
                Some([0.25, 0.5, 0.75].map(|p| interpolate(&v, p)))
            }
            _ => Some([self.heights[2], self.heights[3], self.heights[4]]),
        }
    }
}

/// The `p` quantile of sorted, non-empty `v`, interpolating between ranks.
fn interpolate(v: &[f64], p: f64) -> f64 {
    let rank = p * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Quartile samples after which a sample enters the quartiles once per four units of weight.
const SUBSAMPLE_AFTER: u64 = 1024;

/// One numeric stream: moments, quartiles and the range of clean samples.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumberStats {
    moments: Moments,
    quartiles: Quartiles,
    /// Weight owed to the quartiles: a sample enters them each time this reaches one.
    #[serde(with = "exact_f64")]
    owed: f64,
    /// Smallest and largest clean (weight 1) sample: a value seen in ordinary traffic is never
    /// out of range, however rare it was. Infinite until the first clean sample.
    #[serde(with = "exact_f64")]
    min: f64,
    #[serde(with = "exact_f64")]
    max: f64,
}

impl Default for NumberStats {
    fn default() -> Self {
        NumberStats {
            moments: Moments::default(),
            quartiles: Quartiles::default(),
            owed: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

/// Where a stream's normal ends, and what it was computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fences {
    pub low: f64,
    pub high: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    /// Samples behind the quartiles.
    pub samples: u64,
}

impl Fences {
    /// The fence `x` lies beyond, if any.
    pub fn breached(&self, x: f64) -> Option<f64> {
        if x > self.high {
            Some(self.high)
        } else if x < self.low {
            Some(self.low)
        } else {
            None
        }
    }
}

impl NumberStats {
    pub fn add(&mut self, x: f64, weight: f64) {
        if !x.is_finite() {
            return;
        }
        self.moments.add(x, weight);
        self.owed += weight;
        // Past SUBSAMPLE_AFTER samples the quartiles have settled, and one sample in four is
        // as good an estimate as all of them at a quarter of the cost (the hot path's costliest
        // step): each takes a unit of weight of four.
        let unit = if self.quartiles.count() >= SUBSAMPLE_AFTER {
            4.0
        } else {
            1.0
        };
        // The margin absorbs the rounding of ten 0.1s.
        if self.owed >= unit - 1e-9 {
            self.owed -= unit;
            self.quartiles.insert(x);
        }
        if weight >= 1.0 {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
    }

    /// Tukey's far-out fences, `Q1 − k·spread` and `Q3 + k·spread`, widened to the clean range.
    /// The spread is the IQR, but at least a tenth of the median's size and at least 1: a
    /// parameter that has always been 50 would otherwise call 51 out of range. `None` with
    /// fewer than `min_samples` samples: no opinion yet.
    pub fn fences(&self, k: f64, min_samples: u64) -> Option<Fences> {
        if self.quartiles.count() < min_samples.max(1) {
            return None;
        }
        let [q1, median, q3] = self.quartiles.quartiles()?;
        let spread = (q3 - q1).max(0.1 * median.abs()).max(1.0);
        Some(Fences {
            low: (q1 - k * spread).min(self.min),
            high: (q3 + k * spread).max(self.max),
            q1,
            median,
            q3,
            samples: self.samples_behind_quartiles(),
        })
    }

    /// Stats imported from a reviewed baseline: `samples` clean samples with these moments,
    /// clean range and quartiles.
    pub fn seeded(samples: u64, mean: f64, variance: f64, range: (f64, f64), quartiles: [f64; 3]) -> Self {
        let (min, max) = range;
        let [q1, median, q3] = quartiles;
        let weight = samples as f64;
        // Past SUBSAMPLE_AFTER samples, one in four entered the quartiles.
        let inserted = samples.min(SUBSAMPLE_AFTER) + samples.saturating_sub(SUBSAMPLE_AFTER) / 4;
        NumberStats {
            moments: Moments {
                weight,
                mean,
                m2: variance * weight,
            },
            quartiles: Quartiles::seeded(inserted, [min, q1, median, q3, max]),
            owed: 0.0,
            min,
            max,
        }
    }

    /// The weight of samples the quartiles stand for (beyond [`SUBSAMPLE_AFTER`], four for
    /// each one inserted).
    fn samples_behind_quartiles(&self) -> u64 {
        let n = self.quartiles.count();
        n.min(SUBSAMPLE_AFTER) + 4 * n.saturating_sub(SUBSAMPLE_AFTER)
    }

    pub fn moments(&self) -> &Moments {
        &self.moments
    }

    pub fn quartiles(&self) -> Option<[f64; 3]> {
        self.quartiles.quartiles()
    }

    /// The clean range, `None` before the first clean sample.
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.min <= self.max).then_some((self.min, self.max))
    }
}

/// [`exact_f64`] for a fixed array.
mod exact_f64_array {
    use serde::de::Error;
    use serde::ser::SerializeTuple;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Exact(#[serde(with = "super::exact_f64")] f64);

    pub fn serialize<S: Serializer, const N: usize>(values: &[f64; N], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(N)?;
        for v in values {
            t.serialize_element(&Exact(*v))?;
        }
        t.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[f64; N], D::Error> {
        let v: Vec<f64> = Vec::<Exact>::deserialize(d)?.into_iter().map(|e| e.0).collect();
        v.try_into()
            .map_err(|v: Vec<f64>| D::Error::invalid_length(v.len(), &"a fixed-size array"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-bit LCG: deterministic data without `rand`.
    struct Lcg(u64);

    impl Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Standard normal by Box–Muller.
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-300), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    /// Where `x` falls among sorted `v`, as a fraction of ranks (the midpoint of ties).
    fn rank_of(v: &[f64], x: f64) -> f64 {
        let below = v.partition_point(|y| *y < x);
        let not_above = v.partition_point(|y| *y <= x);
        (below + not_above) as f64 / 2.0 / v.len() as f64
    }

    /// How far a quartile estimate may be from the sorted reference.
    #[derive(Clone, Copy)]
    enum Bound {
        /// In rank: the estimate's rank among the data, as a fraction, off by at most this.
        Rank(f64),
        /// In value: off the exact quartile by at most this fraction of the IQR.
        Iqr(f64),
    }

    /// Feeds `data` to P² and checks each quartile against the sorted reference.
    #[track_caller]
    fn check_quartiles(name: &str, data: &[f64], bound: Bound) {
        let mut q = Quartiles::default();
        for x in data {
            q.insert(*x);
        }
        let mut sorted = data.to_vec();
        sorted.sort_by(f64::total_cmp);
        let exact = |p: f64| interpolate(&sorted, p);
        let iqr = exact(0.75) - exact(0.25);
        let estimates = q.quartiles().unwrap();
        for (p, estimate) in [0.25, 0.5, 0.75].into_iter().zip(estimates) {
            let (error, max) = match bound {
                Bound::Rank(max) => ((rank_of(&sorted, estimate) - p).abs(), max),
                Bound::Iqr(max) => ((estimate - exact(p)).abs() / iqr, max),
            };
            assert!(
                error <= max,
                "{name}: the {p} quantile estimate {estimate} (exact {}) is off by {error:.4}",
                exact(p)
            );
        }
    }

    #[test]
    fn p2_quartiles_stay_within_two_percent_of_rank_on_smooth_random_data() {
        let mut rng = Lcg(42);
        for n in [200, 2_000, 20_000] {
            let uniform: Vec<f64> = (0..n).map(|_| rng.uniform() * 100.0).collect();
            let normal: Vec<f64> = (0..n).map(|_| 50.0 + 10.0 * rng.normal()).collect();
            let exponential: Vec<f64> = (0..n).map(|_| -(1.0 - rng.uniform()).ln() * 20.0).collect();
            let lognormal: Vec<f64> = (0..n).map(|_| (3.0 + rng.normal()).exp()).collect();
            let integers: Vec<f64> = (0..n).map(|_| (rng.uniform() * 50.0).floor() + 1.0).collect();
            for (name, data) in [
                ("uniform", &uniform),
                ("normal", &normal),
                ("exponential", &exponential),
                ("lognormal", &lognormal),
                ("integers", &integers),
            ] {
                check_quartiles(&format!("{name}/{n}"), data, Bound::Rank(0.02));
            }
        }
    }

    /// P²'s known weak spot: a law with a gap. With few samples a marker can sit in the gap,
    /// off in rank but not far in value (a fifth of the IQR moves a 3·IQR fence by under 7%);
    /// with many it converges.
    #[test]
    fn p2_quartiles_of_a_law_with_a_gap_converge() {
        let mut rng = Lcg(42);
        let mut bimodal = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|_| {
                    if rng.uniform() < 0.6 {
                        10.0 + rng.normal()
                    } else {
                        90.0 + 5.0 * rng.normal()
                    }
                })
                .collect()
        };
        check_quartiles("bimodal/200", &bimodal(200), Bound::Iqr(0.2));
        check_quartiles("bimodal/2000", &bimodal(2_000), Bound::Iqr(0.2));
        check_quartiles("bimodal/20000", &bimodal(20_000), Bound::Rank(0.02));
    }

    #[test]
    fn p2_survives_sorted_and_constant_input() {
        let ascending: Vec<f64> = (0..5_000).map(f64::from).collect();
        check_quartiles("ascending", &ascending, Bound::Rank(0.02));
        let descending: Vec<f64> = ascending.iter().rev().copied().collect();
        check_quartiles("descending", &descending, Bound::Rank(0.02));
        let mut q = Quartiles::default();
        for _ in 0..1_000 {
            q.insert(7.0);
        }
        assert_eq!(q.quartiles(), Some([7.0, 7.0, 7.0]));
    }

    #[test]
    fn quartiles_of_a_few_samples_are_exact() {
        let mut q = Quartiles::default();
        assert_eq!(q.quartiles(), None);
        for x in [4.0, 1.0, 3.0, 2.0, 5.0] {
            q.insert(x);
        }
        assert_eq!(q.quartiles(), Some([2.0, 3.0, 4.0]));
    }

    #[test]
    fn welford_agrees_with_the_two_pass_formula() {
        let mut rng = Lcg(7);
        for (offset, scale) in [(0.0, 1.0), (1e9, 1.0), (-3.0, 1e-6), (5e5, 1e4)] {
            let samples: Vec<(f64, f64)> = (0..5_000)
                .map(|i| {
                    let w = if i % 7 == 0 { 0.1 } else { 1.0 };
                    (offset + scale * rng.normal(), w)
                })
                .collect();
            let mut m = Moments::default();
            for (x, w) in &samples {
                m.add(*x, *w);
            }
            let total: f64 = samples.iter().map(|(_, w)| w).sum();
            let mean = samples.iter().map(|(x, w)| w * x).sum::<f64>() / total;
            let variance = samples.iter().map(|(x, w)| w * (x - mean).powi(2)).sum::<f64>() / total;
            assert!(
                (m.mean() - mean).abs() <= 1e-12 * mean.abs().max(scale),
                "mean {} vs {mean}",
                m.mean()
            );
            // The inputs themselves are rounded to the offset's ulp, which bounds how well any
            // method can know the variance: relative error about offset·ε/scale.
            let inherent = offset.abs() * f64::EPSILON / scale;
            assert!(
                (m.variance() - variance).abs() <= (1e-12 + inherent) * variance,
                "variance {} vs {variance} (offset {offset})",
                m.variance()
            );
        }
    }

    #[test]
    fn fences_wait_for_samples_and_never_exclude_a_clean_value() {
        let mut s = NumberStats::default();
        for i in 0..29 {
            s.add(10.0 + f64::from(i % 10), 1.0);
        }
        assert_eq!(s.fences(3.0, 30), None);
        s.add(500.0, 1.0);
        let f = s.fences(3.0, 30).unwrap();
        assert_eq!(f.breached(500.0), None, "{f:?}");
        assert!(f.breached(501.0).is_some());
        assert!(f.breached(-40.0).is_some());
    }

    #[test]
    fn a_constant_parameter_gets_a_spread_of_a_tenth_of_its_size() {
        let mut s = NumberStats::default();
        for _ in 0..100 {
            s.add(50.0, 1.0);
        }
        let f = s.fences(3.0, 30).unwrap();
        assert_eq!((f.low, f.high), (35.0, 65.0));
    }

    #[test]
    fn flagged_samples_reach_the_quartiles_once_in_ten() {
        let mut s = NumberStats::default();
        for _ in 0..100 {
            s.add(1e6, 0.1);
        }
        assert_eq!(s.quartiles.count(), 10);
        assert_eq!(s.range(), None, "flagged samples do not widen the clean range");
    }

    #[test]
    fn a_snapshot_of_the_stats_reads_back_equal() {
        let mut rng = Lcg(3);
        let mut s = NumberStats::default();
        for i in 0..1_000 {
            s.add(rng.normal() * 1e3 + 0.1, if i % 5 == 0 { 0.1 } else { 1.0 });
        }
        let json = serde_json::to_string(&s).unwrap();
        let back: NumberStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let empty: NumberStats =
            serde_json::from_str(&serde_json::to_string(&NumberStats::default()).unwrap()).unwrap();
        assert_eq!(empty, NumberStats::default());
    }
}
