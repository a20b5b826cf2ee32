//! Streaming model of one numeric stream (a parameter's values, a string parameter's
//! lengths): weighted mean and variance (Welford), nine quantile markers (P²), the range of
//! clean samples and how often clean samples set a new record. From them, [`NumberStats::judge`]
//! gives the tail probability of a value beyond the clean range, which `param_out_of_range`
//! compares with the policy's `alpha`.
//!
//! **The tail model.** Real parameters are rarely normal: amounts, sizes, durations and counts
//! are skewed with heavy right tails, and a fence on quartiles is crossed by their ordinary
//! large values more often the longer it watches. So each stream picks its scale from its own
//! quantiles: a positive stream whose upper eighths are spread wider than its lower ones
//! (Bowley skew over the 1/8, 1/2 and 7/8 quantiles above 0.2) is judged on a log scale, any
//! other on a linear one. On that scale each side's tail is fitted to three markers (the
//! quartile, the eighth and the 32nd: exceedance probabilities 1/4, 1/8 and 1/32), by the
//! ratio of their spacings (a normal law's is 2.5, an exponential's 3): at most 2.5 on the
//! linear scale, a normal tail; above `(8^ξ − 1)/(2^ξ − 1)` for ξ ≈ 0.14, a generalised Pareto
//! tail with that ξ (at most 1; never on the log scale, where an exponential tail already is a
//! power law in raw units); otherwise an exponential tail from the eighth. On the log scale
//! the tail is never lighter than that exponential: three markers cannot tell a log-normal
//! law's upper tail (normal on that scale, spacing ratio 2.5) from a Pareto law's (exponential,
//! 3) through the noise of a few hundred samples, and a Pareto stream read as normal put its
//! ordinary large values at 1e-11 (measured on the fleet: most of its false
//! `param_out_of_range` on mature streams). Young streams are not calibrated by any of these
//! fits: the test `young_streams_judged_as_the_detector_does` measures how far, which sets the
//! policy's `min_samples`. A log-scale stream's lower side is
//! also fitted on the linear scale and the more lenient fit wins (a skewed stream's lower mode
//! may be symmetric). Measured on log-normal, Pareto, uniform, monotone and bimodal streams
//! (the tests below), the false-alarm rate stays at or below `alpha` on average; the Pareto
//! law, whose tail the model assumes, comes out near it.
//!
//! **Streams that move.** A counter, an offset, an id or a timestamp keeps setting records, and
//! a tail fitted to its past would call every new value out of range. Each side keeps the rate
//! at which clean samples set a record (an EWMA over about 32 samples) and the typical size of
//! a record's step, on a log scale (EWMA of the log step and its mean absolute deviation). A
//! side setting records in more than one sample in eight is drifting, and a value beyond its
//! record is judged by its step: a Laplace law on the log step, at least an e-fold wide, so an
//! overnight gap in a timestamp (a step hundreds of times the usual one) passes and a value a
//! thousand times the record does not. The tail probability is the larger of the two models'.
//!
//! **Quantiles** use the extended P² algorithm (Jain & Chlamtac 1985; Raatikainen 1987): nine
//! markers track the minimum, the 1/32, 1/8, 1/4, 1/2, 3/4, 7/8 and 31/32 quantiles and the
//! maximum in O(1) time, with no allocation and no randomness, so a fold is deterministic and
//! a snapshot exact. P² has no notion of weight, so a sample with weight w < 1 (one that raised
//! a finding) enters the markers once per 1/w such samples: an attacker repeating an
//! out-of-range value moves the tails a tenth as fast. A value inside the clean range (clean:
//! weight 1) is never out of range, however rare it was, which also covers every mode of a
//! multi-modal stream.

use serde::{Deserialize, Serialize};

use statrs::function::erf;

use super::{exact_f32, exact_f64};

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

/// The probabilities the nine markers track.
const MARKERS: [f64; 9] = [0.0, 1.0 / 32.0, 0.125, 0.25, 0.5, 0.75, 0.875, 31.0 / 32.0, 1.0];
const LAST: usize = MARKERS.len() - 1;

/// Quantiles by extended P², on `asinh` of the samples (linear near 0, logarithmic beyond):
/// quantiles commute with a monotone map, and P²'s parabolas follow a heavy tail's markers far
/// better on a log scale than on the raw one. Until nine samples have arrived the markers hold
/// the samples themselves and quantiles are exact (up to the map's rounding). Ranks are `u32`: past 2³² inserted samples (over 10¹⁰
/// calls of one path, with the subsampling below) the markers stop moving.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Quantiles {
    #[serde(with = "exact_f64_array")]
    heights: [f64; 9],
    /// 1-based rank of each interior marker among the samples (the first is 1, the last
    /// `count`).
    positions: [u32; 7],
    count: u32,
}

impl Quantiles {
    /// The rank of marker `i`.
    fn position(&self, i: usize) -> f64 {
        match i {
            0 => 1.0,
            LAST => f64::from(self.count),
            _ => f64::from(self.positions[i - 1]),
        }
    }

    pub fn insert(&mut self, x: f64) {
        if !x.is_finite() || self.count == u32::MAX {
            return;
        }
        let x = x.asinh();
        let n = self.count as usize;
        if n < MARKERS.len() {
            self.heights[n] = x;
            self.count += 1;
            if n == LAST {
                self.heights.sort_by(f64::total_cmp);
                self.positions = [2, 3, 4, 5, 6, 7, 8];
            }
            return;
        }
        let h = &mut self.heights;
        let k = if x < h[0] {
            h[0] = x;
            0
        } else if x >= h[LAST] {
            h[LAST] = x;
            LAST - 1
        } else {
            // h[0] <= x < h[LAST]: the cell holding x.
            (0..LAST).rfind(|&i| h[i] <= x).unwrap_or(0)
        };
        for p in &mut self.positions[k..] {
            *p += 1;
        }
        self.count += 1;
        for (i, p) in MARKERS.iter().enumerate().take(LAST).skip(1) {
            let desired = 1.0 + f64::from(self.count - 1) * p;
            let at = self.position(i);
            let d = desired - at;
            let room_above = self.position(i + 1) - at > 1.0;
            let room_below = self.position(i - 1) - at < -1.0;
            if (d >= 1.0 && room_above) || (d <= -1.0 && room_below) {
                let s = if d > 0.0 { 1.0 } else { -1.0 };
                let candidate = self.parabolic(i, s);
                self.heights[i] = if self.heights[i - 1] < candidate && candidate < self.heights[i + 1] {
                    candidate
                } else {
                    self.linear(i, s)
                };
                self.positions[i - 1] = (at + s) as u32;
            }
        }
    }

    /// The P² piecewise-parabolic prediction of marker `i` moved by `s` (±1) positions.
    fn parabolic(&self, i: usize, s: f64) -> f64 {
        let q = &self.heights;
        let (n_lo, n_i, n_hi) = (self.position(i - 1), self.position(i), self.position(i + 1));
        q[i] + s / (n_hi - n_lo)
            * ((n_i - n_lo + s) * (q[i + 1] - q[i]) / (n_hi - n_i)
                + (n_hi - n_i - s) * (q[i] - q[i - 1]) / (n_i - n_lo))
    }

    fn linear(&self, i: usize, s: f64) -> f64 {
        let j = if s > 0.0 { i + 1 } else { i - 1 };
        let q = &self.heights;
        q[i] + s * (q[j] - q[i]) / (self.position(j) - self.position(i))
    }

    pub fn count(&self) -> u64 {
        u64::from(self.count)
    }

    /// Markers rebuilt from a summary of `count` samples: the range and the quartiles, with
    /// the markers between them interpolated linearly in probability. Below 17 samples the
    /// markers are the nine points themselves, as if nine samples had been seen.
    fn seeded(count: u64, points: [f64; 5]) -> Self {
        let at = |p: f64| {
            let x = p * 4.0;
            let i = (x.floor() as usize).min(3);
            points[i] + (points[i + 1] - points[i]) * (x - i as f64)
        };
        let heights = MARKERS.map(|p| at(p).asinh());
        let count = count.clamp(MARKERS.len() as u64, u64::from(u32::MAX)) as u32;
        let positions = if count < 17 {
            [2, 3, 4, 5, 6, 7, 8]
        } else {
            std::array::from_fn(|i| (1.0 + MARKERS[i + 1] * f64::from(count - 1)).round() as u32)
        };
        Quantiles {
            heights,
            positions,
            count: if count < 17 { MARKERS.len() as u32 } else { count },
        }
    }

    /// The nine quantiles of [`MARKERS`]: exact (interpolated between ranks) below nine
    /// samples, `None` before the first.
    fn all(&self) -> Option<[f64; 9]> {
        let heights = match self.count as usize {
            0 => return None,
            n if n < MARKERS.len() => {
                let mut v = self.heights[..n].to_vec();
                v.sort_by(f64::total_cmp);
                MARKERS.map(|p| interpolate(&v, p))
            }
            _ => self.heights,
        };
        Some(heights.map(f64::sinh))
    }

    /// Q1, median and Q3; `None` before the first sample.
    pub fn quartiles(&self) -> Option<[f64; 3]> {
        self.all().map(|q| [q[3], q[4], q[5]])
    }
}

/// The `p` quantile of sorted, non-empty `v`, interpolating between ranks.
fn interpolate(v: &[f64], p: f64) -> f64 {
    let rank = p * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Quantile samples after which a sample enters the markers once per four units of weight.
const SUBSAMPLE_AFTER: u64 = 1024;
/// Weight of the newest clean sample in the record rates and step statistics: about the last
/// 32 samples count.
const DRIFT_EWMA: f32 = 1.0 / 32.0;
/// Samples before records count towards drift: early on every stream sets them.
const DRIFT_AFTER: u64 = 64;
/// A side setting records in more than this share of clean samples is drifting. Independent
/// samples set a record in one of n; a counter in nearly every one.
const DRIFTING: f32 = 0.125;
/// The narrowest Laplace scale of a drifting stream's log step: an e-fold.
const MIN_STEP_SPREAD: f64 = 1.0;
/// `2^ξ` above which the spacing is read as a heavy (ξ > 0) tail (ξ ≈ 0.14): noise around
/// the exponential's `y = 1` must not fit a Pareto tail to an exponential one.
const MIN_Y: f64 = 1.1;
/// Spacing ratio (1/32 marker over 1/8 marker, from the quartile) at or below which the tail
/// is normal: a normal law's is 2.5, an exponential's 3.
const NORMAL_RATIO: f64 = 2.5;
/// Standard normal quantiles of the markers: exceeded with probability 1/4, 1/8 and 1/32.
const Z_4: f64 = 0.674_489_750_196_081_7;
const Z_8: f64 = 1.150_349_380_376_008_3;
const Z_32: f64 = 1.862_731_867_421_651_7;
/// The largest tail shape fitted on a linear scale (ξ = 1: a Pareto tail with index 1) and
/// on a log scale (0: exponential there is a power law in raw units; anything heavier is what
/// one noisy spacing of 2,000 samples must not conclude).
const MAX_SHAPE: f64 = 1.0;
const MAX_LOG_SHAPE: f64 = 0.0;
/// Bowley skew over the eighths above which a positive stream is judged on a log scale.
const LOG_SKEW: f64 = 0.2;
/// The smallest tail probability reported: a p-value is never exactly 0.
pub const MIN_P: f64 = 1e-300;

/// One numeric stream: moments, quantile markers, the range of clean samples and its drift.
/// 168 bytes, as the seven-marker version it replaced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumberStats {
    moments: Moments,
    /// Required in snapshots: one from before the tail model (seven markers under the name
    /// `quartiles`) does not load, and the log rebuilds it.
    quantiles: Quantiles,
    /// Smallest and largest clean (weight 1) sample. Infinite until the first clean sample.
    #[serde(with = "exact_f64")]
    min: f64,
    #[serde(with = "exact_f64")]
    max: f64,
    /// Weight owed to the markers: a sample enters them each time this reaches one unit.
    #[serde(with = "exact_f32")]
    owed: f32,
    drift: Drift,
}

/// How often clean samples set a record, and by how much.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Drift {
    /// Share of recent clean samples above the previous maximum, and below the minimum.
    #[serde(with = "exact_f32")]
    up: f32,
    #[serde(with = "exact_f32")]
    down: f32,
    /// EWMA of the natural log of a record's step beyond the previous record, and of its
    /// absolute deviation. 0 before the first record.
    #[serde(with = "exact_f32")]
    log_step: f32,
    #[serde(with = "exact_f32")]
    spread: f32,
}

impl Default for NumberStats {
    fn default() -> Self {
        NumberStats {
            moments: Moments::default(),
            quantiles: Quantiles::default(),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            owed: 0.0,
            drift: Drift::default(),
        }
    }
}

/// The scale a stream is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log => "log",
        }
    }

    fn to(self, x: f64) -> f64 {
        match self {
            Scale::Linear => x,
            Scale::Log if x > 0.0 => x.ln(),
            Scale::Log => f64::NEG_INFINITY,
        }
    }

    fn from(self, t: f64) -> f64 {
        match self {
            Scale::Linear => t,
            Scale::Log => t.exp(),
        }
    }
}

/// A tail on one side, on the stream's scale: `start` beyond the quartile `from` (a point
/// exceeded with probability `p_start`), `P(further than z) = p_start · (1 + ξz/σ)^(−1/ξ)`
/// (generalised Pareto), or `p_start · exp(−z/σ)` when ξ = 0.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tail {
    from: f64,
    /// A normal tail instead: `scale` is its σ, and `P(further than z) = Φc(z₁/₄ + z/σ)`.
    normal: bool,
    start: f64,
    p_start: f64,
    shape: f64,
    scale: f64,
}

impl Tail {
    /// Fitted to the distances (on the scale, ≥ 0) of the 1/8 and 1/32 markers from the
    /// quartile `from`, the first at least `floor`. For a generalised Pareto law beyond the
    /// quartile, `far / near = (8^ξ − 1) / (2^ξ − 1) = y² + y + 1` with `y = 2^ξ`. When the
    /// spacing says ξ ≤ 0 the tail is exponential from the 1/8 marker, its scale the spacing
    /// of the 1/8 and 1/32 markers (`(far − near) / ln 4`, the exponential's own): lighter
    /// laws get a tail a little heavier than theirs.
    fn fit(from: f64, near: f64, far: f64, floor: f64, max_shape: f64, normal: bool) -> Tail {
        let near = near.max(floor).max(f64::MIN_POSITIVE);
        let far = far.max(near);
        let ratio = far / near;
        let y = (-1.0 + (4.0 * ratio - 3.0).sqrt()) / 2.0;
        if y > MIN_Y && max_shape > 0.0 {
            let shape = y.log2().min(max_shape);
            return Tail {
                from,
                normal: false,
                start: 0.0,
                p_start: 0.25,
                shape,
                scale: near * shape / (shape.exp2() - 1.0),
            };
        }
        if normal && ratio <= NORMAL_RATIO {
            return Tail {
                from,
                normal: true,
                start: 0.0,
                p_start: 0.25,
                shape: 0.0,
                scale: (far / (Z_32 - Z_4)).max(floor / (Z_8 - Z_4)),
            };
        }
        Tail {
            from,
            normal: false,
            start: near,
            p_start: 0.125,
            shape: 0.0,
            scale: ((far - near) / 4f64.ln()).max(floor / std::f64::consts::LN_2),
        }
    }

    /// The probability of a value at least `z` beyond the quartile.
    fn p(&self, z: f64) -> f64 {
        let z = z - self.start;
        if z <= 0.0 {
            return self.p_start;
        }
        if self.normal {
            0.5 * erf::erfc((Z_4 + z / self.scale) / std::f64::consts::SQRT_2)
        } else if self.shape > 0.0 {
            self.p_start * (1.0 + self.shape * z / self.scale).powf(-1.0 / self.shape)
        } else {
            self.p_start * (-z / self.scale).exp()
        }
    }

    /// The distance beyond the quartile with probability `alpha`.
    fn distance(&self, alpha: f64) -> f64 {
        let odds = self.p_start / alpha.min(self.p_start);
        let z = if self.normal {
            (std::f64::consts::SQRT_2 * erf::erfc_inv(2.0 * alpha.min(self.p_start)) - Z_4) * self.scale
        } else if self.shape > 0.0 {
            self.scale / self.shape * (odds.powf(self.shape) - 1.0)
        } else {
            self.scale * odds.ln()
        };
        z + self.start
    }
}

/// Which side of the clean range a value lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Above,
    Below,
}

/// The model's judgement of a value beyond the clean range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub side: Side,
    /// The probability of a value at least this extreme, by the more lenient of the tail and
    /// the drift model.
    pub p: f64,
    /// Where this side's tail probability reaches `alpha`: values beyond are out of range.
    pub threshold: f64,
    pub scale: Scale,
    /// The side is setting records (a counter, an offset, a timestamp).
    pub drifting: bool,
    /// The record on this side, the typical record step (when drifting), the median and the
    /// samples behind the markers.
    pub record: f64,
    pub step: f64,
    pub median: f64,
    pub samples: u64,
}

impl NumberStats {
    pub fn add(&mut self, x: f64, weight: f64) {
        if !x.is_finite() {
            return;
        }
        self.moments.add(x, weight);
        self.owed += weight as f32;
        // Past SUBSAMPLE_AFTER samples the markers have settled, and one sample in four is as
        // good an estimate as all of them at a quarter of the cost (the hot path's costliest
        // step): each takes a unit of weight of four.
        let unit = if self.quantiles.count() >= SUBSAMPLE_AFTER {
            4.0
        } else {
            1.0
        };
        // The margin absorbs the rounding of ten 0.1s.
        if self.owed >= unit - 1e-4 {
            self.owed -= unit;
            self.quantiles.insert(x);
        }
        if weight >= 1.0 {
            if self.quantiles.count() >= DRIFT_AFTER {
                self.drift.observe(x, self.min, self.max);
            }
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
    }

    /// The scale the stream is judged on, from its markers (see the module's doc).
    pub fn scale(&self) -> Option<Scale> {
        let q = self.quantiles.all()?;
        let (low, median, high) = (q[2], q[4], q[6]);
        let skew = if high > low {
            ((high - median) - (median - low)) / (high - low)
        } else {
            0.0
        };
        Some(if self.min > 0.0 && q[1] > 0.0 && skew > LOG_SKEW {
            Scale::Log
        } else {
            Scale::Linear
        })
    }

    /// The tails on both sides (below, above), on `scale`. A quartile-to-eighth distance is at
    /// least half the larger of 1 and a tenth of the median's size (in raw units): a parameter
    /// that has always been 50 would otherwise call 51 out of range, and a length that is
    /// nearly always 14 bytes, 18.
    fn tails(q: &[f64; 9], scale: Scale) -> (Tail, Tail) {
        let t = q.map(|x| scale.to(x));
        let floor_raw = (0.1 * q[4].abs()).max(1.0) / 2.0;
        let floor_up = scale.to(q[5] + floor_raw) - t[5];
        let floor_down = match scale {
            Scale::Linear => floor_raw,
            // On a log scale, the same relative width below as above.
            Scale::Log => floor_up,
        };
        // On a log scale never a normal tail: the log scale is for positive skewed streams,
        // whose largest values three markers cannot tell apart between a log-normal law (a
        // normal tail on that scale) and a Pareto one (exponential there), and a Pareto stream
        // read as normal puts its ordinary large values at 1e-11.
        let (max_shape, normal) = match scale {
            Scale::Linear => (MAX_SHAPE, true),
            Scale::Log => (MAX_LOG_SHAPE, false),
        };
        (
            Tail::fit(t[3], t[3] - t[2], t[3] - t[1], floor_down, max_shape, normal),
            Tail::fit(t[5], t[6] - t[5], t[7] - t[5], floor_up, max_shape, normal),
        )
    }

    /// The model's judgement of `x`: `None` inside the clean range (a value seen in ordinary
    /// traffic is never out of range) and before `min_samples` samples (no opinion yet).
    pub fn judge(&self, x: f64, alpha: f64, min_samples: u64) -> Option<Verdict> {
        if self.quantiles.count() < min_samples.max(1) || (self.min <= x && x <= self.max) || !x.is_finite() {
            return None;
        }
        let q = self.quantiles.all()?;
        let above = if self.min <= self.max { x > self.max } else { x > q[4] };
        let (side, record) = if above {
            (Side::Above, self.max)
        } else {
            (Side::Below, self.min)
        };
        let record = if record.is_finite() { record } else { q[4] };
        // The upper side on the stream's scale; the lower side of a log-scale stream also on
        // the linear one, the more lenient winning: a skewed stream's lower mode may be
        // symmetric, and its lower tail is then heavier on a log scale than the fit assumes.
        let chosen = self.scale()?;
        let scales = match (side, chosen) {
            (Side::Below, Scale::Log) => [Scale::Log, Scale::Linear],
            _ => [chosen, chosen],
        };
        let (mut p, mut threshold, mut scale) = (0.0, record, chosen);
        for candidate in scales {
            let (down, up) = Self::tails(&q, candidate);
            let t = candidate.to(x);
            let (p_tail, reach) = match side {
                Side::Above => (up.p(t - up.from), candidate.from(up.from + up.distance(alpha))),
                Side::Below => (down.p(down.from - t), candidate.from(down.from - down.distance(alpha))),
            };
            if p_tail > p {
                (p, scale) = (p_tail, candidate);
            }
            threshold = match side {
                Side::Above => threshold.max(reach),
                Side::Below => threshold.min(reach),
            };
        }
        let rate = f64::from(match side {
            Side::Above => self.drift.up,
            Side::Below => self.drift.down,
        });
        let drifting = rate > f64::from(DRIFTING);
        let (log_step, spread) = (
            f64::from(self.drift.log_step),
            f64::from(self.drift.spread).max(MIN_STEP_SPREAD),
        );
        if drifting {
            let step = (x - record).abs();
            let over = step.ln() - log_step;
            let p_drift = if over <= 0.0 {
                rate
            } else {
                rate * 0.5 * (-over / spread).exp()
            };
            p = p.max(p_drift);
            let reach = (log_step + spread * (0.5 * rate / alpha).ln().max(0.0)).exp();
            threshold = match side {
                Side::Above => threshold.max(record + reach),
                Side::Below => threshold.min(record - reach),
            };
        }
        Some(Verdict {
            side,
            p: p.max(MIN_P),
            threshold,
            scale,
            drifting,
            record,
            step: log_step.exp(),
            median: q[4],
            samples: self.samples_behind_markers(),
        })
    }

    /// Where values start to be out of range on each side at `alpha` (below, above), ignoring
    /// drift: for the baseline's view. `None` before the first sample.
    pub fn thresholds(&self, alpha: f64) -> Option<(f64, f64)> {
        let q = self.quantiles.all()?;
        let scale = self.scale()?;
        let (_, up) = Self::tails(&q, scale);
        let high = scale.from(up.from + up.distance(alpha));
        let low = [scale, Scale::Linear]
            .map(|s| {
                let (down, _) = Self::tails(&q, s);
                s.from(down.from - down.distance(alpha))
            })
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        Some((
            if self.min <= self.max { low.min(self.min) } else { low },
            high.max(self.max),
        ))
    }

    /// Stats imported from a reviewed baseline: `samples` clean samples with these moments,
    /// clean range and quartiles.
    pub fn seeded(samples: u64, mean: f64, variance: f64, range: (f64, f64), quartiles: [f64; 3]) -> Self {
        let (min, max) = range;
        let [q1, median, q3] = quartiles;
        let weight = samples as f64;
        // Past SUBSAMPLE_AFTER samples, one in four entered the markers.
        let inserted = samples.min(SUBSAMPLE_AFTER) + samples.saturating_sub(SUBSAMPLE_AFTER) / 4;
        NumberStats {
            moments: Moments {
                weight,
                mean,
                m2: variance * weight,
            },
            quantiles: Quantiles::seeded(inserted, [min, q1, median, q3, max]),
            min,
            max,
            owed: 0.0,
            drift: Drift::default(),
        }
    }

    /// The weight of samples the markers stand for (beyond [`SUBSAMPLE_AFTER`], four for each
    /// one inserted).
    fn samples_behind_markers(&self) -> u64 {
        let n = self.quantiles.count();
        n.min(SUBSAMPLE_AFTER) + 4 * n.saturating_sub(SUBSAMPLE_AFTER)
    }

    pub fn moments(&self) -> &Moments {
        &self.moments
    }

    pub fn quartiles(&self) -> Option<[f64; 3]> {
        self.quantiles.quartiles()
    }

    /// The clean range, `None` before the first clean sample.
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.min <= self.max).then_some((self.min, self.max))
    }

    /// The side the stream drifts to, if it is setting records.
    pub fn drifting(&self) -> Option<Side> {
        if self.drift.up > DRIFTING {
            Some(Side::Above)
        } else if self.drift.down > DRIFTING {
            Some(Side::Below)
        } else {
            None
        }
    }
}

impl Drift {
    /// A clean sample `x` against the clean range before it.
    fn observe(&mut self, x: f64, min: f64, max: f64) {
        let (up, down) = (x > max, x < min);
        self.up += DRIFT_EWMA * (f32::from(u8::from(up)) - self.up);
        self.down += DRIFT_EWMA * (f32::from(u8::from(down)) - self.down);
        if up || down {
            let step = if up { x - max } else { min - x };
            let l = step.ln() as f32;
            if self.log_step == 0.0 && self.spread == 0.0 {
                self.log_step = l;
            } else {
                self.spread += DRIFT_EWMA * 2.0 * ((l - self.log_step).abs() - self.spread);
                self.log_step += DRIFT_EWMA * 2.0 * (l - self.log_step);
            }
        }
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
        let mut q = Quantiles::default();
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
    fn p2_quartiles_stay_within_three_percent_of_rank_on_smooth_random_data() {
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
                check_quartiles(&format!("{name}/{n}"), data, Bound::Rank(0.03));
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
    /// Sorted input is P²'s worst case, and on the asinh scale its markers lag further (a
    /// tenth in rank): a counter's quartiles are approximate, and the drift model, not the
    /// markers, judges it.
    fn p2_survives_sorted_and_constant_input() {
        let ascending: Vec<f64> = (0..5_000).map(f64::from).collect();
        check_quartiles("ascending", &ascending, Bound::Rank(0.2));
        let descending: Vec<f64> = ascending.iter().rev().copied().collect();
        check_quartiles("descending", &descending, Bound::Rank(0.2));
        let mut q = Quantiles::default();
        for _ in 0..1_000 {
            q.insert(7.0);
        }
        let close = |a: [f64; 3], b: [f64; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs());
        assert!(close(q.quartiles().unwrap(), [7.0, 7.0, 7.0]), "{:?}", q.quartiles());
    }

    #[test]
    fn quartiles_of_a_few_samples_are_exact() {
        let mut q = Quantiles::default();
        assert_eq!(q.quartiles(), None);
        for x in [4.0, 1.0, 3.0, 2.0, 5.0] {
            q.insert(x);
        }
        let [q1, median, q3] = q.quartiles().unwrap();
        assert!((q1 - 2.0).abs() + (median - 3.0).abs() + (q3 - 4.0).abs() < 1e-12);
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
    fn judging_waits_for_samples_and_never_flags_a_clean_value() {
        let mut s = NumberStats::default();
        for i in 0..29 {
            s.add(10.0 + f64::from(i % 10), 1.0);
        }
        assert_eq!(s.judge(1e9, 1e-6, 30), None);
        for i in 29..99 {
            s.add(10.0 + f64::from(i % 10), 1.0);
        }
        s.add(500.0, 1.0);
        assert_eq!(s.judge(500.0, 1e-6, 30), None, "inside the clean range");
        let v = s.judge(1e9, 1e-6, 30).unwrap();
        assert!(v.side == Side::Above && v.p < 1e-6, "{v:?}");
        let v = s.judge(-400.0, 1e-6, 30).unwrap();
        assert!(v.side == Side::Below && v.p < 1e-6, "{v:?}");
    }

    #[test]
    fn a_constant_parameter_gets_a_width_of_a_tenth_of_its_size() {
        let mut s = NumberStats::default();
        for _ in 0..100 {
            s.add(50.0, 1.0);
        }
        let (low, high) = s.thresholds(1e-6).unwrap();
        assert!(
            (25.0..35.0).contains(&low) && (65.0..75.0).contains(&high),
            "{low} {high}"
        );
        assert!(s.judge(51.0, 1e-6, 30).unwrap().p > 1e-6);
        assert!(s.judge(80.0, 1e-6, 30).unwrap().p < 1e-6);
    }

    /// The numeric laws of `vigil simulate`'s traffic (`src/simulate/model.rs`), each with
    /// the value its `param_out_of_range` attack sends: a thousand times the p99.9, and for a
    /// Pareto law at least its 1 − 10⁻¹² quantile.
    fn simulated_laws() -> [(&'static str, Law, f64); 5] {
        fn amount(r: &mut Lcg, _: usize) -> f64 {
            (42.0 * (1.3 * r.normal()).exp() * 100.0).round() / 100.0
        }
        fn bytes(r: &mut Lcg, _: usize) -> f64 {
            (512.0 * (1.0 - r.uniform()).powf(-1.0 / 1.1)).round()
        }
        fn duration(r: &mut Lcg, _: usize) -> f64 {
            (2000.0 * (1.0 - r.uniform()).powf(-1.0 / 1.5)).round()
        }
        fn size(r: &mut Lcg, _: usize) -> f64 {
            let mode = if r.uniform() < 0.3 { 25_000_000.0 } else { 80_000.0 };
            (mode * (0.3 * r.normal()).exp()).round()
        }
        fn limit(r: &mut Lcg, _: usize) -> f64 {
            (10.0 + 91.0 * r.uniform()).floor()
        }
        [
            ("log-normal amount", amount, 1000.0 * 42.0 * (3.09f64 * 1.3).exp()),
            ("Pareto 1.1 bytes", bytes, 512.0 * 1e12f64.powf(1.0 / 1.1)),
            ("Pareto 1.5 duration", duration, 2000.0 * 1e12f64.powf(1.0 / 1.5)),
            ("bimodal size", size, 1000.0 * 25e6 * (3.09f64 * 0.3).exp()),
            ("uniform limit", limit, 1000.0 * 100.0),
        ]
    }

    /// Young models, as the detector runs them on the simulator's laws (300 streams each,
    /// every value judged then learned, at the default alpha 1e-6): the share of values
    /// flagged by the model's age, and the share of streams on which the attack is caught at
    /// a given age. From a few hundred samples on, the false alarms come near alpha; before,
    /// three markers on the tail are estimated from a handful of values and no model is
    /// calibrated (measured at 30–100 samples: up to 8.6e-4, 860 times alpha, on the Pareto
    /// laws), which is why `min_samples` is 100. The attack is caught on at least 80% of
    /// streams from 100 samples and 95% from 1,000 (the log-normal amount's, whose tail the
    /// model must take for a power law, is the hardest).
    #[test]
    fn young_streams_judged_as_the_detector_does() {
        const AGES: [usize; 4] = [100, 300, 1_000, 3_000];
        // The largest share of judged values flagged from each age to the next, as multiples
        // of alpha (measured: 50–83, 0–4.8, 0–3.3).
        const MAX_FALSE: [f64; 3] = [150.0, 15.0, 8.0];
        const STREAMS: u64 = 300;
        let alpha = 1e-6;
        for (name, law, attack) in simulated_laws() {
            let mut flagged = [0usize; 3];
            let mut judged = [0usize; 3];
            let mut caught = [0u64; 4];
            for seed in 1..=STREAMS {
                let mut r = Lcg(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                let mut s = NumberStats::default();
                for i in 0..AGES[3] {
                    let x = law(&mut r, i);
                    let hit = s.judge(x, alpha, 100).is_some_and(|v| v.p < alpha);
                    if let Some(b) = AGES.iter().rposition(|&a| a <= i).filter(|&b| b < 3) {
                        judged[b] += 1;
                        flagged[b] += usize::from(hit);
                    }
                    s.add(x, if hit { 0.1 } else { 1.0 });
                    if let Some(a) = AGES.iter().position(|&a| a == i + 1) {
                        caught[a] += u64::from(s.judge(attack, alpha, 100).is_some_and(|v| v.p < alpha));
                    }
                }
            }
            let rates: Vec<f64> = (0..3).map(|b| flagged[b] as f64 / judged[b] as f64).collect();
            eprintln!("{name}: flagged {rates:?} from 100, 300, 1000 samples; attack caught {caught:?} of {STREAMS}");
            for (b, rate) in rates.iter().enumerate() {
                assert!(
                    *rate <= MAX_FALSE[b] * alpha,
                    "{name}: {rate:e} flagged from {} samples",
                    AGES[b]
                );
            }
            assert!(
                caught[0] * 10 >= STREAMS * 8 && caught[2] * 20 >= STREAMS * 19,
                "{name}: caught {caught:?}"
            );
        }
    }

    /// The laws of real parameters, each a sampler.
    fn lognormal(r: &mut Lcg, _: usize) -> f64 {
        (3.0 + 1.5 * r.normal()).exp()
    }

    /// Pareto with minimum 10 and tail index 1.2 (money, sizes: a finite mean, no variance).
    fn pareto(r: &mut Lcg, _: usize) -> f64 {
        10.0 * (1.0 - r.uniform()).powf(-1.0 / 1.2)
    }

    fn uniform(r: &mut Lcg, _: usize) -> f64 {
        (10.0 + 41.0 * r.uniform()).floor()
    }

    /// A timestamp in seconds: a call every few minutes, and a night's gap every 300 calls.
    fn monotone(r: &mut Lcg, i: usize) -> f64 {
        let _ = r.uniform();
        let night = (i / 300) as f64 * 12.0 * 3600.0;
        1.8e9 + i as f64 * 180.0 + night + (r.uniform() * 120.0).floor()
    }

    /// Two modes far apart (a `limit` of 10 or 1000 by table).
    fn bimodal(r: &mut Lcg, _: usize) -> f64 {
        if r.uniform() < 0.6 {
            (10.0 + 2.0 * r.normal()).round()
        } else {
            (1000.0 + 50.0 * r.normal()).round()
        }
    }

    /// Learns `learn` values of `law`, then judges `judged` more as the detector does (each
    /// judged, then learned at weight 0.1 if flagged, 1 if not); the share flagged.
    fn false_alarm_rate(law: Law, seed: u64, alpha: f64, judged: usize) -> f64 {
        const LEARN: usize = 2_000;
        let mut r = Lcg(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut s = NumberStats::default();
        for i in 0..LEARN {
            s.add(law(&mut r, i), 1.0);
        }
        let mut flagged = 0;
        for i in LEARN..LEARN + judged {
            let x = law(&mut r, i);
            let hit = s.judge(x, alpha, 30).is_some_and(|v| v.p < alpha);
            flagged += usize::from(hit);
            s.add(x, if hit { 0.1 } else { 1.0 });
        }
        flagged as f64 / judged as f64
    }

    /// A law: a sampler of value `i` of a stream.
    type Law = fn(&mut Lcg, usize) -> f64;

    const LAWS: [(&str, Law); 5] = [
        ("lognormal", lognormal),
        ("pareto", pareto),
        ("uniform", uniform),
        ("monotone", monotone),
        ("bimodal", bimodal),
    ];

    /// The tail model's calibration, frozen after 2,000 values: the share of 100,000 fresh
    /// values beyond the tails' thresholds at `alpha`, averaged over eight seeds. On every law
    /// at most five times `alpha` (both sides together); on the Pareto law, whose tail the
    /// model assumes, at least a quarter of it (the model is not merely blind). At 1e-3 and
    /// 1e-4, where a rate can be measured with 800,000 values. One seed can be 30 times off:
    /// 2,000 samples fix a tail's shape only so well, which is why `alpha` is set far below
    /// the rate a responder would tolerate.
    #[test]
    fn the_tail_model_keeps_false_alarms_at_most_alpha() {
        for alpha in [1e-3, 1e-4] {
            for (name, law) in LAWS.iter().filter(|(name, _)| *name != "monotone") {
                let rates: Vec<f64> = (1..=8u64)
                    .map(|seed| {
                        let mut r = Lcg(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                        let mut s = NumberStats::default();
                        for i in 0..2_000 {
                            s.add(law(&mut r, i), 1.0);
                        }
                        // The tails alone: the clean range would hide them at these alphas.
                        let (q, scale) = (s.quantiles.all().unwrap(), s.scale().unwrap());
                        let (_, up) = NumberStats::tails(&q, scale);
                        let high = scale.from(up.from + up.distance(alpha));
                        let (down, _) = NumberStats::tails(&q, Scale::Linear);
                        let linear_low = down.from - down.distance(alpha);
                        let (down, _) = NumberStats::tails(&q, scale);
                        let low = scale.from(down.from - down.distance(alpha)).min(linear_low);
                        let beyond = (0..100_000)
                            .filter(|i| {
                                let x = law(&mut r, 2_000 + i);
                                x < low || x > high
                            })
                            .count();
                        beyond as f64 / 100_000.0
                    })
                    .collect();
                let mean = rates.iter().sum::<f64>() / rates.len() as f64;
                eprintln!("tail {name} alpha {alpha:e}: mean {mean:.2e}, per seed {rates:?}");
                assert!(mean <= 5.0 * alpha, "{name} at alpha {alpha}: {mean:e} ({rates:?})");
                if *name == "pareto" {
                    assert!(mean >= alpha / 4.0, "{name}: {mean:e} ({rates:?})");
                }
            }
        }
    }

    /// As the detector runs it, at the default alpha (1e-6): learn 2,000 values, then judge
    /// and learn 100,000 more, over eight seeds (800,000 judged values per law, 0.8 false
    /// alarms expected at alpha). At most two per law, the monotone timestamp included.
    #[test]
    fn as_the_detector_runs_the_false_alarms_stay_at_alpha() {
        for (name, law) in LAWS {
            let flagged: Vec<f64> = (1..=8)
                .map(|seed| false_alarm_rate(law, seed, 1e-6, 100_000) * 1e5)
                .collect();
            let total: f64 = flagged.iter().sum();
            eprintln!("streaming {name}: {total} false alarms in 800,000 ({flagged:?})");
            assert!(total <= 2.0, "{name}: {total} false alarms in 800,000 ({flagged:?})");
        }
    }

    /// The attacks are caught on every law: a thousand times the largest value seen, a
    /// negative value, and a timestamp a year ahead, at alpha 1e-6. The exceptions are the
    /// heavy tails (log-normal with σ = 1.5, Pareto with index 1.2), whose largest of 2,000
    /// values is already 100 to 400 times the median: there a thousand times it is truly rare
    /// only to about 1e-7, the fitted tail puts it at 1e-6 to 5e-6, and it is caught at 1e-5.
    #[test]
    fn attacks_are_caught_on_every_law() {
        for (name, law) in LAWS {
            for seed in 1..=4 {
                let mut r = Lcg(seed);
                let mut s = NumberStats::default();
                for i in 0..2_000 {
                    s.add(law(&mut r, i), 1.0);
                }
                let (_, max) = s.range().unwrap();
                for attack in [1000.0 * max, -500.0, max + 365.0 * 86_400.0 * 1000.0] {
                    let v = s.judge(attack, 1e-6, 30).unwrap();
                    let alpha = if matches!(name, "lognormal" | "pareto") {
                        1e-5
                    } else {
                        1e-6
                    };
                    assert!(v.p < alpha, "{name}/{seed}: {attack} is not caught: {v:?}");
                }
            }
        }
    }

    #[test]
    fn a_counter_drifts_and_a_steady_stream_does_not() {
        let mut r = Lcg(5);
        let (mut counter, mut steady) = (NumberStats::default(), NumberStats::default());
        for i in 0..500 {
            counter.add(monotone(&mut r, i), 1.0);
            steady.add(lognormal(&mut r, i), 1.0);
        }
        assert_eq!(counter.drifting(), Some(Side::Above));
        assert_eq!(steady.drifting(), None);
        assert_eq!(steady.scale(), Some(Scale::Log));
        let v = counter.judge(counter.range().unwrap().1 + 200.0, 1e-6, 30).unwrap();
        assert!(v.drifting && v.p > 1e-2, "the next tick is ordinary: {v:?}");
    }

    #[test]
    fn a_stream_costs_what_the_seven_marker_version_did() {
        assert_eq!(std::mem::size_of::<NumberStats>(), 168);
    }

    #[test]
    fn flagged_samples_reach_the_quartiles_once_in_ten() {
        let mut s = NumberStats::default();
        for _ in 0..100 {
            s.add(1e6, 0.1);
        }
        assert_eq!(s.quantiles.count(), 10);
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
        let old = json.replace("\"quantiles\"", "\"quartiles\"");
        assert!(
            serde_json::from_str::<NumberStats>(&old).is_err(),
            "a snapshot from before the tail model is refused, so the log rebuilds it"
        );
        let empty: NumberStats =
            serde_json::from_str(&serde_json::to_string(&NumberStats::default()).unwrap()).unwrap();
        assert_eq!(empty, NumberStats::default());
    }
}
