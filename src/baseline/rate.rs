//! Call rate in one-minute event-time buckets: what a tool (or a whole tenant, or a tool's
//! failing calls) normally does per minute, and the count per minute that would be too many.
//!
//! Each bucket is the event timestamp floored to the minute. What a minute is judged against:
//! - **The expectation** is the larger of two exponentially weighted means of completed
//!   buckets (minutes without calls count as zeros): a slow one (half-life 30 minutes) that
//!   remembers, and a fast one (10 minutes) that follows a ramp the slow one lags (a morning's
//!   rise of 40% an hour leaves the slow mean 29% behind, the fast one 10%). Once a stream has
//!   a week of history, an hour-of-week profile joins them: the mean of this hour of the week,
//!   interpolated between neighbouring hours and scaled by how the last hours compared with
//!   their profile (growth). Taking the largest is direction-aware: every estimate that knows
//!   the traffic should be higher is believed, and a drop is never a finding.
//! - **The law** is Poisson while the history is not over-dispersed. When it is (sessions come
//!   in bursts, an expectation that lags leaves residuals larger than Poisson's, retries put
//!   failures together), the law has variance φ × mean: negative binomial for a call stream,
//!   clusters of φ for a failure stream (see [`CountLaw`]). The dispersion
//!   φ = Σ(count − expected)² / Σ expected over the last day or so (half-life a day) is the
//!   classical Pearson estimate, each minute capped at five standard deviations (Huber) and
//!   minutes that raised a finding left out, so an attack cannot widen its own band.
//! - **Retries** are not counted here at all: the caller (`ToolBaseline`) leaves a call that
//!   retries a failing one out of the call streams.
//! - **The threshold** `k` is the smallest count whose tail probability is below α. A cheap
//!   lower bound is computed at each bucket start and the exact `k` only once the minute's count
//!   gets near it, then cached, so judging a call is an integer compare and a spike is flagged
//!   on its k-th call, not when the minute ends.
//!
//! A stream of failing calls is also judged over a sliding window of three minutes: retries
//! cluster within seconds and make one minute say little, but a revoked key retried in a loop
//! persists, and three minutes of it stand out where one does not. The window is judged with
//! the dispersion known before it began: a burst's first minutes, each under the minute's
//! threshold and so learned, must not widen the band its window is judged against.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Discrete, DiscreteCDF, NegativeBinomial, Poisson};
use statrs::function::erf;

use super::exact_f64;

/// How fast the slow mean follows the traffic: a minute's weight halves every 30 minutes.
/// Slower would take hours to accept a legitimate change of workload.
pub const HALF_LIFE_MINUTES: f64 = 30.0;
/// The fast mean's half-life: it lags a ramp less and is noisier, which only ever raises the
/// expectation (the larger of the two is used).
pub const FAST_HALF_LIFE_MINUTES: f64 = 10.0;
/// How long the dispersion remembers: a day's half-life, so one day's rhythm (the morning
/// ramp, a busy hour's retries) is in it and one odd hour is not all of it.
pub const DISPERSION_HALF_LIFE_MINUTES: f64 = 24.0 * 60.0;

/// The share of each mean kept per folded minute, `0.5^(1 / half-life)`, spelled out so the
/// fold needs no `powf` per call (a test checks them against the half-lives).
const KEEP_SLOW: f64 = 0.977_159_968_434_245_9;
const KEEP_FAST: f64 = 0.933_032_991_536_807_4;
const KEEP_DISPERSION: f64 = 0.999_518_763_622_666_2;

/// Gaps longer than this (a day) decay the means fully: `KEEP_SLOW^1440` is ~1e-15 anyway, and
/// capping keeps the exponent of `powi` in range whatever timestamps arrive.
const MAX_GAP_MINUTES: i64 = 24 * 60;

/// Pseudo-evidence, in expected calls, that a stream is Poisson before its history says
/// otherwise: the dispersion of a new stream is 1 and moves as calls arrive.
const DISPERSION_PRIOR: f64 = 5.0;
/// A minute's squared residual teaches the dispersion at most as much as one this many
/// standard deviations out.
const HUBER_SD: f64 = 5.0;
/// Below this the dispersion is read as none: the law is Poisson.
const POISSON_BELOW: f64 = 1.0 + 1e-3;
/// The dispersion is capped here: beyond it the negative binomial's tail says "anything goes"
/// and the numbers stop meaning much.
const MAX_DISPERSION: f64 = 50.0;

/// Minutes in the sliding window a stream of failures is also judged over.
pub const WINDOW_MINUTES: u64 = 3;

/// Above this expected count per minute the Poisson tail is taken from its normal
/// approximation: the incomplete gamma series costs O(√λ) per evaluation, and at such rates the
/// approximation is off by far less than one call.
const NORMAL_APPROX_ABOVE: f64 = 1e5;

/// The parameters of rate judgement. They are part of a tenant's baseline (thresholds are
/// cached with them) and of the detector's config (which recomputes when the two differ, so a
/// mismatch costs time, never correctness).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RateConfig {
    /// Tail probability below which a count is a spike, per bucket. 1e-6 per tool-minute is
    /// about one false alarm per tool every two years of traffic that follows the law.
    pub alpha: f64,
    /// The stricter tail probability a spike must also reach before it may rotate: a minute
    /// that already spiked at `alpha` fires again on the call that takes its count below this
    /// one (`rate_spike` only; `Policy::decide` caps a rate spike above it at `alert`).
    /// Rotation is an act on a tenant's production credentials, and the fleet's 10⁸ judged
    /// stream-minutes hold a few benign ones below 1e-7 by construction.
    pub rotate_alpha: f64,
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
            rotate_alpha: 1e-10,
            mean_floor: 0.5,
            min_history_minutes: 30,
        }
    }
}

/// Whether one call alone can reach a threshold under `config`: only if α exceeds the least
/// `P(X >= 1)` any law here can have (a mean at the floor, in clusters as large as the
/// dispersion's cap). With the shipped α it cannot, and the first call of a minute need not
/// be judged.
pub fn first_call_can_cross(config: &RateConfig) -> bool {
    !(config.mean_floor > 0.0 && config.alpha <= -(-config.mean_floor / MAX_DISPERSION).exp_m1())
}

/// The floor of `timestamp` in whole minutes since the Unix epoch: the bucket an event counts in.
pub fn minute_of(timestamp: chrono::DateTime<chrono::Utc>) -> i64 {
    timestamp.timestamp().div_euclid(60)
}

/// An exponentially weighted mean of the per-minute count, with the running total of weights
/// (`norm`) so the first minutes are not biased towards zero.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
struct Ewma {
    #[serde(with = "exact_f64")]
    mean: f64,
    #[serde(with = "exact_f64")]
    norm: f64,
}

impl Ewma {
    /// Folds one completed minute with `count` calls. `weight` scales the step: a minute that
    /// raised a finding moves the mean a tenth as far, whatever its count.
    fn folded(self, count: f64, weight: f64, keep: f64) -> Self {
        let step = (1.0 - keep) * weight;
        Self {
            mean: self.mean + step * (count - self.mean),
            norm: self.norm + step * (1.0 - self.norm),
        }
    }

    /// Folds `minutes` empty minutes at once: folding a zero only scales the mean, so a gap of
    /// any length costs one `powi`.
    fn with_zeros(self, minutes: i64, keep: f64) -> Self {
        if minutes <= 0 {
            return self;
        }
        if minutes > MAX_GAP_MINUTES {
            return Self { mean: 0.0, norm: 1.0 };
        }
        let kept = keep.powi(minutes as i32);
        Self {
            mean: self.mean * kept,
            norm: 1.0 - (1.0 - self.norm) * kept,
        }
    }

    fn mean(&self) -> f64 {
        if self.norm > 0.0 { self.mean / self.norm } else { 0.0 }
    }
}

/// Decayed sums behind the Pearson dispersion: squared residuals of minutes against their
/// expectation, and the expectations.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
struct Dispersion {
    #[serde(with = "exact_f64")]
    squares: f64,
    #[serde(with = "exact_f64")]
    expected: f64,
}

impl Dispersion {
    fn decayed(self, minutes: i64) -> Self {
        let kept = KEEP_DISPERSION.powi(minutes.clamp(0, 100 * MAX_GAP_MINUTES) as i32);
        Self {
            squares: self.squares * kept,
            expected: self.expected * kept,
        }
    }

    fn plus(self, squares: f64, expected: f64) -> Self {
        Self {
            squares: self.squares + squares,
            expected: self.expected + expected,
        }
    }

    /// Variance over mean, at least 1 (under-dispersion is read as Poisson), at most
    /// [`MAX_DISPERSION`].
    fn value(&self) -> f64 {
        ((self.squares + DISPERSION_PRIOR) / (self.expected + DISPERSION_PRIOR)).clamp(1.0, MAX_DISPERSION)
    }
}

/// The dispersion a failure stream's window is judged with: the least of the current one and
/// those at the start of the window's earlier minutes.
fn before_window(now: Dispersion, earlier: Option<&[Dispersion; 2]>) -> f64 {
    earlier.map_or(now.value(), |[a, b]| now.value().min(a.value()).min(b.value()))
}

/// Hours in a week: the length of the hour-of-week profile.
const WEEK_HOURS: usize = 168;
/// How far one week's hour moves its profile entry: last week counts half, the week before a
/// quarter, and so on.
const WEEKLY_STEP: f64 = 0.5;
/// The level (recent hours against their profile) halves its memory every 6 hours.
const KEEP_LEVEL_PER_HOUR: f64 = 0.890_898_718_140_339_3;
/// 1970-01-01 was a Thursday: hours since the epoch plus this, modulo a week, count from
/// Monday 00:00 UTC.
const WEEK_OFFSET_HOURS: i64 = 72;

/// The hour-of-week profile of a call stream: what each hour of the week held, learned from
/// the completed hours, week over week.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Seasonal {
    /// Mean calls per minute in each hour of the week, Monday 00:00 UTC first, one byte each
    /// on a log scale ([`encode`]): 168 bytes a stream, written as hex in snapshots.
    #[serde(with = "hex_profile")]
    profile: [u8; WEEK_HOURS],
    /// Hours folded so far; the profile is used from the 168th (a week) on.
    hours: u64,
    /// The hour being accumulated, in hours since the epoch.
    hour: i64,
    /// Minute of `hour` the accumulation started at (0 but for the first hour).
    start: u8,
    /// Minutes of `hour` with calls folded so far.
    busy: u8,
    /// Weighted sum of those minutes' counts, and their weights: a minute that raised a
    /// finding counts a tenth, and minutes without calls count 1 each at completion.
    #[serde(with = "exact_f64")]
    sum: f64,
    #[serde(with = "exact_f64")]
    weight: f64,
    /// Decayed sums of recent hours' means and of what the profile said of them: their ratio
    /// scales the profile to today's level.
    #[serde(with = "exact_f64")]
    actual: f64,
    #[serde(with = "exact_f64")]
    usual: f64,
}

/// A rate in one byte: 0 is none, `c` is `2^((c − 121) / 10)` calls a minute, a tenth of an
/// octave apart (±3.6%), from one call in 68 hours to 10,800 a minute (saturating there: the
/// short-term means carry busier streams). The expectation takes the larger of this and the
/// means, and the level scales it to the recent hours, so a few percent is plenty; 2 bytes
/// an hour would cost 168 more bytes per (tenant, tool).
fn encode(x: f64) -> u8 {
    if x.is_nan() || x < 2f64.powf(-12.05) {
        return 0;
    }
    (10.0 * x.log2() + 121.0).round().clamp(1.0, 255.0) as u8
}

fn decode(code: u8) -> f64 {
    match code {
        0 => 0.0,
        c => 2f64.powf((f64::from(c) - 121.0) / 10.0),
    }
}

/// Serde for the profile: a hex string, one byte per hour.
mod hex_profile {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::WEEK_HOURS;

    pub fn serialize<S: Serializer>(profile: &[u8; WEEK_HOURS], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(profile))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; WEEK_HOURS], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(D::Error::custom)?;
        bytes
            .try_into()
            .map_err(|b: Vec<u8>| D::Error::invalid_length(b.len(), &"168 bytes"))
    }
}

fn hour_of_week(hour: i64) -> usize {
    (hour + WEEK_OFFSET_HOURS).rem_euclid(WEEK_HOURS as i64) as usize
}

impl Seasonal {
    fn starting_at(minute: i64) -> Self {
        Seasonal {
            profile: [0; WEEK_HOURS],
            hours: 0,
            hour: minute.div_euclid(60),
            start: minute.rem_euclid(60) as u8,
            busy: 0,
            sum: 0.0,
            weight: 0.0,
            actual: 0.0,
            usual: 0.0,
        }
    }

    /// Folds one completed minute with calls. Minutes never folded count as empty.
    fn fold_minute(&mut self, minute: i64, count: f64, weight: f64) {
        let hour = minute.div_euclid(60);
        if hour < self.hour {
            return;
        }
        if hour > self.hour {
            self.complete_until(hour);
        }
        self.sum += weight * count;
        self.weight += weight;
        self.busy = self.busy.saturating_add(1);
    }

    /// Completes `self.hour` and every empty hour before `hour`, then starts `hour`.
    fn complete_until(&mut self, hour: i64) {
        let empty = f64::from((60 - i32::from(self.start) - i32::from(self.busy)).max(0));
        let total = self.weight + empty;
        if total > 0.0 {
            self.fold_hour(self.hour, self.sum / total);
        }
        // A gap longer than two weeks zeroes the profile as two weeks would.
        let gap = (hour - self.hour - 1).clamp(0, 2 * WEEK_HOURS as i64);
        for h in 1..=gap {
            self.fold_hour(hour - gap - 1 + h, 0.0);
        }
        self.hour = hour;
        self.start = 0;
        self.busy = 0;
        self.sum = 0.0;
        self.weight = 0.0;
    }

    fn fold_hour(&mut self, hour: i64, mean: f64) {
        let slot = &mut self.profile[hour_of_week(hour)];
        if self.hours < WEEK_HOURS as u64 {
            *slot = encode(mean);
        } else {
            let usual = decode(*slot);
            self.actual = self.actual * KEEP_LEVEL_PER_HOUR + mean;
            self.usual = self.usual * KEEP_LEVEL_PER_HOUR + usual;
            *slot = encode(usual + WEEKLY_STEP * (mean - usual));
        }
        self.hours += 1;
    }

    /// Expected calls in `minute`, once a week has been folded: the profile interpolated
    /// between the centres of neighbouring hours, times the recent level.
    fn expected(&self, minute: i64) -> Option<f64> {
        if self.hours < WEEK_HOURS as u64 {
            return None;
        }
        // Hours since the epoch at this minute's centre, counted from the first hour's centre.
        let at = (minute as f64 + 0.5) / 60.0 - 0.5;
        let below = at.floor();
        let frac = at - below;
        let below = below as i64;
        let a = decode(self.profile[hour_of_week(below)]);
        let b = decode(self.profile[hour_of_week(below + 1)]);
        Some(((1.0 - frac) * a + frac * b) * self.level())
    }

    /// Recent hours against what their profile said: 1 until there is enough to say.
    fn level(&self) -> f64 {
        if self.usual > 1e-3 && self.actual > 0.0 {
            self.actual / self.usual
        } else {
            1.0
        }
    }
}

/// The law a count is judged against. Poisson when the history is not over-dispersed; when
/// it is (variance `dispersion × mean`), one of two laws, by where the extra variance comes
/// from:
/// - a call stream's comes from its rate moving (sessions, bursts of work, an expectation
///   that lags): a Poisson whose mean is itself uncertain, the negative binomial;
/// - a failure stream's comes from retries putting a few failures together: a compound
///   Poisson, which counting clusters of `dispersion` failures follows closely (the count is
///   `dispersion` times a Poisson count of clusters). The negative binomial's tail would be far
///   too heavy there: with clusters of at most three it puts ten failures in a minute at 1e-4
///   where they are 1e-7, and a revoked key retried in a loop would hide in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountLaw {
    pub mean: f64,
    pub dispersion: f64,
    /// Over-dispersion from clusters (failure streams), not from a moving rate.
    pub clustered: bool,
}

impl CountLaw {
    pub fn poisson(mean: f64) -> Self {
        CountLaw {
            mean,
            dispersion: 1.0,
            clustered: false,
        }
    }

    fn is_poisson(&self) -> bool {
        self.dispersion.is_nan() || self.dispersion < POISSON_BELOW
    }

    pub fn variance(&self) -> f64 {
        self.mean * self.dispersion.max(1.0)
    }

    /// `P(X >= k)`.
    pub fn tail(&self, k: u64) -> f64 {
        if self.is_poisson() {
            poisson_tail(self.mean, k)
        } else if self.clustered {
            clustered_tail(self.mean, self.dispersion, k)
        } else {
            nb_tail(self.mean, self.dispersion, k)
        }
    }

    /// The smallest `k` with `P(X >= k) < alpha`.
    pub fn threshold(&self, alpha: f64) -> u64 {
        if self.is_poisson() {
            poisson_threshold(self.mean, alpha)
        } else if self.clustered {
            clustered_threshold(self.mean, self.dispersion, alpha)
        } else {
            nb_threshold(self.mean, self.dispersion, alpha)
        }
    }

    /// A count at or below which the tail is surely at least `alpha`, so the exact threshold
    /// need not be computed until a minute's count gets there: half the way from the mean to
    /// the normal quantile, well short of the real threshold whatever the skew, for laws with
    /// a hump. A negative binomial of shape below 1 has none (its mass piles up at zero), and
    /// gets the mean, floored. Costs a square root; `z` is `Φ⁻¹(1 − α)`. The property test
    /// below checks it against the exact thresholds.
    fn lower_bound(&self, z: f64) -> u64 {
        // A lax α (above 1%) is no one's setting worth optimising: always compute.
        if z.is_nan() || z < 2.3 {
            return 0;
        }
        if !self.clustered && !self.is_poisson() && self.mean < self.dispersion - 1.0 {
            return if self.mean.is_finite() && self.mean > 0.0 {
                self.mean as u64
            } else {
                0
            };
        }
        if self.clustered && !self.is_poisson() {
            // The clusters' bound, in counts: the threshold needs at least that many clusters.
            let clusters = CountLaw::poisson(self.mean / self.dispersion).lower_bound(z);
            return match clusters {
                0 => 0,
                c => ((self.dispersion * (c - 1) as f64).floor() as u64).saturating_add(1),
            };
        }
        let bound = self.mean + 0.5 * z * self.variance().sqrt();
        if bound.is_finite() && bound > 0.0 {
            (bound as u64).min(1 << 62)
        } else {
            0
        }
    }

    /// "1.3 expected", or with the over-dispersion and the law it implies.
    pub fn describe(&self) -> String {
        if self.is_poisson() {
            format!("{:.1} expected", self.mean)
        } else if self.clustered {
            format!(
                "{:.1} expected, in clusters of {:.1} (variance {:.1})",
                self.mean,
                self.dispersion,
                self.variance()
            )
        } else {
            format!(
                "{:.1} expected, over-dispersed (variance {:.1}: negative binomial)",
                self.mean,
                self.variance()
            )
        }
    }
}

/// `P(X >= k)` for `X = dispersion × N`, `N ~ Poisson(mean / dispersion)`: counts that come in
/// clusters of `dispersion`. A count of `k` needs `⌈k / dispersion⌉` clusters.
pub fn clustered_tail(mean: f64, dispersion: f64, k: u64) -> f64 {
    if dispersion.is_nan() {
        return f64::NAN;
    }
    if dispersion < 1.0 || dispersion == f64::INFINITY {
        return poisson_tail(mean, k);
    }
    poisson_tail(mean / dispersion, (k as f64 / dispersion).ceil() as u64)
}

/// The smallest `k` with [`clustered_tail`] below `alpha`: one Poisson threshold `c` of the
/// clusters, then the smallest count that needs `c` of them.
pub fn clustered_threshold(mean: f64, dispersion: f64, alpha: f64) -> u64 {
    if dispersion.is_nan() {
        return u64::MAX;
    }
    if dispersion < 1.0 || dispersion == f64::INFINITY {
        return poisson_threshold(mean, alpha);
    }
    match poisson_threshold(mean / dispersion, alpha) {
        0 => 0,
        u64::MAX => u64::MAX,
        clusters => ((dispersion * (clusters - 1) as f64).floor() as u64).saturating_add(1),
    }
}

/// `Φ⁻¹(1 − alpha)`, the normal quantile behind [`CountLaw::lower_bound`].
fn normal_quantile(alpha: f64) -> f64 {
    std::f64::consts::SQRT_2 * erf::erfc_inv((2.0 * alpha).clamp(1e-300, 1.999_999))
}

/// A bucket's threshold: a cheap lower bound from its start, the exact value once computed.
/// Stored in 32 bits (a minute of four billion calls is beyond any ingest): a threshold past
/// that is [`UNREACHABLE`], and [`UNKNOWN`] marks one not computed yet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Threshold {
    at_least: u32,
    exact: u32,
}

const UNKNOWN: u32 = u32::MAX;
const UNREACHABLE: u32 = u32::MAX - 1;

fn narrow(k: u64) -> u32 {
    u32::try_from(k).unwrap_or(UNREACHABLE).min(UNREACHABLE)
}

fn widen(k: u32) -> u64 {
    if k == UNREACHABLE { u64::MAX } else { u64::from(k) }
}

impl Threshold {
    fn new(law: &CountLaw, z: f64) -> Self {
        Threshold {
            at_least: narrow(law.lower_bound(z)),
            exact: UNKNOWN,
        }
    }

    /// Computes the exact threshold once `count` (what the next call would make) may reach it.
    fn refine(&mut self, law: &CountLaw, alpha: f64, count: u64) {
        if self.exact == UNKNOWN && count >= u64::from(self.at_least) {
            self.exact = narrow(law.threshold(alpha));
        }
    }

    fn known(&self) -> Known {
        match self.exact {
            UNKNOWN => Known::AtLeast(u64::from(self.at_least)),
            k => Known::Exact(widen(k)),
        }
    }
}

/// The thresholds of the current bucket, with the parameters they were computed with so a
/// reader with other parameters can tell they do not apply.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct CachedThresholds {
    #[serde(with = "exact_f64")]
    alpha: f64,
    #[serde(with = "exact_f64")]
    mean_floor: f64,
    minute: Threshold,
    window: Option<Threshold>,
}

/// What is known of a threshold without computing it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    Exact(u64),
    AtLeast(u64),
    Nothing,
}

/// The learned rate of one stream of calls (one tool, a whole tenant, or a tool's failures).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RateBaseline {
    /// The bucket being counted (minutes since the epoch); `None` before the first call.
    minute: Option<i64>,
    /// Calls in the current bucket, unweighted: a spike is judged on what the agent did.
    calls: u64,
    /// How much the current bucket will teach when it completes: the smallest weight of its
    /// calls. The caller lowers the weight of the call that raised a finding; since a rate
    /// finding fires once per bucket, this is what keeps the rest of an attacked minute from
    /// being learned at full weight.
    #[serde(with = "exact_f64")]
    weight: f64,
    /// Means of completed buckets, slow and fast.
    slow: Ewma,
    fast: Ewma,
    /// How much more than Poisson the counts vary around their expectation.
    dispersion: Dispersion,
    /// Completed buckets since the first call, empty ones included: how much the mean knows.
    history: u64,
    /// The current bucket's expectation, before the floor: its residual teaches the dispersion.
    #[serde(with = "exact_f64")]
    expected: f64,
    /// Failure streams only: the counts of the two minutes before the current one, for the
    /// sliding window. `None` marks a call stream (which has a profile instead).
    window: Option<[u32; 2]>,
    /// Failure streams only: the dispersion at the start of each of the window's two earlier
    /// minutes (as `window`). The window is judged with the least of these and the current one,
    /// what was known before it began, so the first minutes of a burst that stayed under the
    /// minute's threshold cannot widen the band the burst's window is judged against. `None`
    /// (a stream from before it was kept) reads as the current dispersion. Boxed: call streams,
    /// inline in every tool, have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    window_dispersion: Option<Box<[Dispersion; 2]>>,
    thresholds: Option<CachedThresholds>,
    /// Call streams busy enough to need one: the hour-of-week profile.
    seasonal: Option<Box<Seasonal>>,
}

/// How a call at a given minute stands against a rate baseline, computed without changing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outlook {
    /// The bucket of the call.
    pub minute: i64,
    /// Calls in that bucket counting this one.
    pub observed: u64,
    /// The law of that bucket's count (mean with the floor applied).
    pub law: CountLaw,
    /// Completed buckets behind that expectation.
    pub history: u64,
    known: Known,
    /// Failure streams: the same over the sliding window ending with this call.
    pub window: Option<WindowOutlook>,
}

/// A failure stream's sliding window, as it stands with the call counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowOutlook {
    /// Calls in the window's minutes counting this one, and before it.
    pub observed: u64,
    pub before: u64,
    pub law: CountLaw,
    known: Known,
}

/// Whether `observed` (counting this call) is the count that reaches the threshold.
fn reaches(known: Known, law: &CountLaw, observed: u64, alpha: f64) -> bool {
    match known {
        Known::Exact(k) => observed == k,
        Known::AtLeast(lo) if observed < lo => false,
        // Whether `observed` is the smallest count with a small tail: two tail evaluations
        // instead of a search.
        _ => law.tail(observed) < alpha && (observed == 0 || law.tail(observed - 1) >= alpha),
    }
}

fn threshold_of(known: Known, law: &CountLaw, alpha: f64) -> u64 {
    match known {
        Known::Exact(k) => k,
        _ => law.threshold(alpha),
    }
}

impl Outlook {
    /// True when this call is the one that makes the bucket's count reach its threshold `k`:
    /// the moment a rate finding fires, once per bucket.
    pub fn crosses(&self, config: &RateConfig) -> bool {
        reaches(self.known, &self.law, self.observed, config.alpha)
    }

    /// The bucket's threshold `k` (cached or computed).
    pub fn threshold(&self, config: &RateConfig) -> u64 {
        threshold_of(self.known, &self.law, config.alpha)
    }
}

impl WindowOutlook {
    /// True when this call makes the window's count reach its threshold. A window already
    /// over it before this minute's calls (an earlier burst) does not fire again.
    pub fn crosses(&self, config: &RateConfig) -> bool {
        reaches(self.known, &self.law, self.observed, config.alpha)
    }

    pub fn threshold(&self, config: &RateConfig) -> u64 {
        threshold_of(self.known, &self.law, config.alpha)
    }
}

/// The state of the means at the start of a bucket, before its first call is counted.
struct Start {
    slow: Ewma,
    fast: Ewma,
    dispersion: Dispersion,
    history: u64,
    /// The expectation, before the floor.
    expected: f64,
    window: Option<[u32; 2]>,
    window_dispersion: Option<[Dispersion; 2]>,
}

impl RateBaseline {
    /// A stream of failing calls that has been watched, and empty, since `minute`: its mean is
    /// zero with the history of the minutes since behind it. A tool that never failed has a
    /// known failure rate of zero, not an unknown one. Failure streams are also judged over a
    /// sliding window and keep no hour-of-week profile.
    pub fn quiet_since(minute: i64) -> Self {
        RateBaseline {
            minute: Some(minute),
            calls: 0,
            weight: 1.0,
            window: Some([0, 0]),
            ..RateBaseline::default()
        }
    }

    /// A stream imported from a reviewed baseline: `mean` and `variance` per minute, learned
    /// over `history` minutes, the current bucket (empty) at `minute`; `failures` for a tool's
    /// failing calls (judged over a sliding window). The hour-of-week profile is not in a
    /// summary: it is learned again.
    pub fn seeded(mean: f64, variance: f64, minute: i64, history: u64, failures: bool) -> Self {
        let dispersion = if mean > 0.0 {
            (variance / mean).clamp(1.0, MAX_DISPERSION)
        } else {
            1.0
        };
        // As if `history` minutes at `mean` had shown this dispersion.
        let expected = mean * history as f64;
        RateBaseline {
            minute: Some(minute),
            calls: 0,
            weight: 1.0,
            slow: Ewma { mean, norm: 1.0 },
            fast: Ewma { mean, norm: 1.0 },
            dispersion: Dispersion {
                squares: (dispersion * (expected + DISPERSION_PRIOR) - DISPERSION_PRIOR).max(0.0),
                expected,
            },
            history,
            expected: mean,
            window: failures.then_some([0, 0]),
            window_dispersion: None,
            thresholds: None,
            seasonal: None,
        }
    }

    /// Counts one call at `minute`. `weight` in [0, 1] (the caller sanitises it) is how much
    /// the call may teach; the minute teaches with the smallest weight among its calls. Calls
    /// for a bucket older than the current one (late or out of order) are ignored here: that
    /// bucket is already folded.
    pub fn observe(&mut self, minute: i64, weight: f64, config: &RateConfig) {
        match self.minute {
            Some(current) if minute < current => return,
            Some(current) if minute == current => {
                self.calls += 1;
                self.weight = self.weight.min(weight);
            }
            previous => {
                let start = self.start_of(minute, config);
                if let Some(previous) = previous
                    && self.window.is_none()
                {
                    self.fold_seasonal(previous, config);
                }
                self.slow = start.slow;
                self.fast = start.fast;
                self.dispersion = start.dispersion;
                self.history = start.history;
                self.expected = start.expected;
                self.window = start.window;
                // The box is reused: a failure stream opens a minute with every call that fails.
                match (&mut self.window_dispersion, start.window_dispersion) {
                    (Some(kept), Some(d)) => **kept = d,
                    (kept, d) => *kept = d.map(Box::new),
                }
                self.minute = Some(minute);
                self.calls = 1;
                self.weight = weight;
                let z = normal_quantile(config.alpha);
                self.thresholds = Some(CachedThresholds {
                    alpha: config.alpha,
                    mean_floor: config.mean_floor,
                    minute: Threshold::new(&self.law(config), z),
                    window: self.window.map(|_| Threshold::new(&self.window_law(config), z)),
                });
            }
        }
        self.refine(config);
    }

    /// Computes the exact thresholds of the current bucket once the next call could reach
    /// them, so the detector finds them cached.
    fn refine(&mut self, config: &RateConfig) {
        let next = self.calls + 1;
        let next_window = next + self.window.map_or(0, |w| u64::from(w[0]) + u64::from(w[1]));
        let Some(t) = self.thresholds else {
            return;
        };
        if t.alpha != config.alpha || t.mean_floor != config.mean_floor {
            return;
        }
        // Most calls are far from the bound: they build no law.
        let wanted = |t: &Threshold, count: u64| t.exact == UNKNOWN && count >= u64::from(t.at_least);
        let (minute, window) = (
            wanted(&t.minute, next),
            t.window.is_some_and(|w| wanted(&w, next_window)),
        );
        if !(minute || window) {
            return;
        }
        let (law, window_law) = (self.law(config), self.window_law(config));
        if let Some(t) = &mut self.thresholds {
            t.minute.refine(&law, config.alpha, next);
            if let Some(w) = &mut t.window {
                w.refine(&window_law, config.alpha, next_window);
            }
        }
    }

    /// Whether a call at `minute` could reach a threshold, asked before building its
    /// [`Outlook`]: false for nearly every call (a late one, one that opens a minute when one
    /// call cannot cross, one short of the bound or past the cached threshold), so the
    /// detectors skip the rest.
    pub fn may_cross(&self, minute: i64, config: &RateConfig) -> bool {
        match self.minute {
            Some(current) if minute < current => false,
            Some(current) if minute == current => {
                let Some(t) = self
                    .thresholds
                    .filter(|t| t.alpha == config.alpha && t.mean_floor == config.mean_floor)
                else {
                    return true;
                };
                let next = self.calls + 1;
                let reachable = |t: &Threshold, count: u64| match t.known() {
                    Known::Exact(k) => count == k,
                    Known::AtLeast(lo) => count >= lo,
                    Known::Nothing => true,
                };
                reachable(&t.minute, next)
                    || t.window.is_some_and(|w| {
                        let before = self.window.map_or(0, |p| u64::from(p[0]) + u64::from(p[1]));
                        reachable(&w, next + before)
                    })
            }
            // A new minute: its window may already hold the minutes before it.
            _ => self.window.is_some() || first_call_can_cross(config),
        }
    }

    /// Folds the bucket that just completed into the hour-of-week profile, starting one once
    /// the stream is busy enough for it to matter (its mean above half the floor).
    fn fold_seasonal(&mut self, previous: i64, config: &RateConfig) {
        if self.seasonal.is_none() && self.slow.mean() >= 0.5 * config.mean_floor {
            self.seasonal = Some(Box::new(Seasonal::starting_at(previous)));
        }
        if let Some(seasonal) = &mut self.seasonal {
            seasonal.fold_minute(previous, self.calls as f64, self.weight);
        }
    }

    /// The law of the current bucket's count.
    fn law(&self, config: &RateConfig) -> CountLaw {
        CountLaw {
            mean: self.expected.max(config.mean_floor),
            dispersion: self.dispersion.value(),
            clustered: self.window.is_some(),
        }
    }

    /// The law of the sliding window's count: its minutes' expectations summed, with the
    /// dispersion known before the window began.
    fn window_law(&self, config: &RateConfig) -> CountLaw {
        CountLaw {
            mean: WINDOW_MINUTES as f64 * self.expected.max(config.mean_floor),
            dispersion: before_window(self.dispersion, self.window_dispersion.as_deref()),
            clustered: true,
        }
    }

    /// What a call at `minute` would be judged against; `None` for a late call (its bucket is
    /// already folded, there is nothing left to compare it with).
    pub fn outlook(&self, minute: i64, config: &RateConfig) -> Option<Outlook> {
        match self.minute {
            Some(current) if minute < current => None,
            Some(current) if minute == current => {
                let cached = self
                    .thresholds
                    .filter(|t| t.alpha == config.alpha && t.mean_floor == config.mean_floor);
                let observed = self.calls + 1;
                let window = self.window.map(|w| WindowOutlook {
                    observed: observed + u64::from(w[0]) + u64::from(w[1]),
                    before: u64::from(w[0]) + u64::from(w[1]),
                    law: self.window_law(config),
                    known: cached.and_then(|t| t.window).map_or(Known::Nothing, |t| t.known()),
                });
                Some(Outlook {
                    minute,
                    observed,
                    law: self.law(config),
                    history: self.history,
                    known: cached.map_or(Known::Nothing, |t| t.minute.known()),
                    window,
                })
            }
            _ => {
                let start = self.start_of(minute, config);
                let law = CountLaw {
                    mean: start.expected.max(config.mean_floor),
                    dispersion: start.dispersion.value(),
                    clustered: start.window.is_some(),
                };
                let window = start.window.map(|w| WindowOutlook {
                    observed: 1 + u64::from(w[0]) + u64::from(w[1]),
                    before: u64::from(w[0]) + u64::from(w[1]),
                    law: CountLaw {
                        mean: WINDOW_MINUTES as f64 * law.mean,
                        dispersion: before_window(start.dispersion, start.window_dispersion.as_ref()),
                        ..law
                    },
                    known: Known::Nothing,
                });
                Some(Outlook {
                    minute,
                    observed: 1,
                    law,
                    history: start.history,
                    known: Known::Nothing,
                    window,
                })
            }
        }
    }

    /// The state at the start of `minute`, a bucket after the current one: the current bucket
    /// folded, then the empty minutes in between. Shared by `observe` and `outlook` so a
    /// prediction is exactly what observing would do. The profile is read as it stands (the
    /// bucket just completed is folded into it after), which keeps this free of its copy.
    fn start_of(&self, minute: i64, config: &RateConfig) -> Start {
        let Some(current) = self.minute else {
            return Start {
                slow: self.slow,
                fast: self.fast,
                dispersion: self.dispersion,
                history: self.history,
                expected: self.expected_at(minute, &self.slow, &self.fast),
                window: self.window,
                window_dispersion: self.window_dispersion.as_deref().copied(),
            };
        };
        let gap = minute.saturating_sub(current).saturating_sub(1).max(0);
        let count = self.calls as f64;
        let slow = self.slow.folded(count, self.weight, KEEP_SLOW);
        // The fast mean follows ramps, so it must not follow an attack: it learns from clean
        // minutes only (the slow one learns a flagged minute a tenth as far).
        let clean = if self.weight >= 1.0 { 1.0 } else { 0.0 };
        let fast = self.fast.folded(count, clean, KEEP_FAST);
        let mut dispersion = self.dispersion.decayed(1 + gap);
        // Only clean minutes teach how bursty the stream is: otherwise an attacker's bursts
        // would widen the band they are judged against.
        if self.weight >= 1.0 {
            // Huber's cap: a minute teaches at most as much as a count HUBER_SD standard
            // deviations out would, so one burst that stayed under the threshold (an attack's
            // first minute) cannot widen the band by itself; many moderate ones do.
            let residual = count - self.expected;
            let cap = HUBER_SD * HUBER_SD * self.dispersion.value() * self.expected.max(config.mean_floor);
            dispersion = dispersion.plus((residual * residual).min(cap), self.expected);
        }
        if gap > 0 {
            // The empty minutes of the gap against the means decaying through it (the profile
            // is left out: a silent stream is a drop, and a drop says nothing of bursts).
            let fast_mean = if self.window.is_some() { 0.0 } else { fast.mean() };
            let (squares, expected) = gap_sums(fast_mean, slow.mean(), gap.min(MAX_GAP_MINUTES));
            dispersion = dispersion.plus(squares, expected);
        }
        let slow = slow.with_zeros(gap, KEEP_SLOW);
        let fast = fast.with_zeros(gap, KEEP_FAST);
        let calls = u32::try_from(self.calls).unwrap_or(u32::MAX);
        let window = self.window.map(|w| match gap {
            0 => [calls, w[0]],
            1 => [0, calls],
            _ => [0, 0],
        });
        // The dispersion at the start of the window's earlier minutes: the bucket just
        // completed began with `self.dispersion`; an empty minute of a gap had no start of its
        // own, and beyond the window the dispersion now is as old as it needs to be.
        let window_dispersion = self.window.map(|_| {
            let earlier = self.window_dispersion.as_ref().map_or(self.dispersion, |d| d[0]);
            match gap {
                0 => [self.dispersion, earlier],
                1 => [self.dispersion, self.dispersion],
                _ => [dispersion, dispersion],
            }
        });
        Start {
            expected: self.expected_at(minute, &slow, &fast),
            slow,
            fast,
            dispersion,
            history: self.history.saturating_add(1).saturating_add(gap as u64),
            window,
            window_dispersion,
        }
    }

    fn expected_at(&self, minute: i64, slow: &Ewma, fast: &Ewma) -> f64 {
        // Failures are sparse: a fast mean of them would mostly remember the last cluster.
        if self.window.is_some() {
            return slow.mean();
        }
        let short = slow.mean().max(fast.mean());
        match self.seasonal.as_ref().and_then(|s| s.expected(minute)) {
            Some(usual) => short.max(usual),
            None => short,
        }
    }

    /// True when `minute` is the open bucket and its calls have already reached its threshold
    /// with enough history behind it: a spike was reported there.
    pub fn spiked_in(&self, minute: i64, config: &RateConfig) -> bool {
        if self.minute != Some(minute) || self.history < config.min_history_minutes {
            return false;
        }
        let cached = self
            .thresholds
            .filter(|t| t.alpha == config.alpha && t.mean_floor == config.mean_floor)
            .map(|t| t.minute.known());
        match cached {
            Some(Known::Exact(k)) => self.calls >= k,
            Some(Known::AtLeast(lo)) if self.calls < lo => false,
            _ => self.calls >= self.law(config).threshold(config.alpha),
        }
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

    /// Mean calls per completed minute (the slow mean), without the floor.
    pub fn mean(&self) -> f64 {
        self.slow.mean()
    }

    /// The current bucket's expectation without the floor: the largest of the slow and fast
    /// means and the hour-of-week profile.
    pub fn expected(&self) -> f64 {
        self.expected
    }

    /// How many times Poisson's variance the counts have shown (1: Poisson).
    pub fn dispersion(&self) -> f64 {
        self.dispersion.value()
    }

    /// Variance of calls per minute under the learned law: dispersion times the mean.
    pub fn variance(&self) -> f64 {
        self.dispersion.value() * self.mean()
    }

    /// True once the hour-of-week profile is in use (a week of history).
    pub fn is_seasonal(&self) -> bool {
        self.seasonal.as_ref().is_some_and(|s| s.hours >= WEEK_HOURS as u64)
    }

    /// Heap bytes held (the profile, when there is one; a failure stream's window dispersions).
    pub fn heap_bytes(&self) -> usize {
        self.seasonal.as_ref().map_or(0, |_| std::mem::size_of::<Seasonal>())
            + self
                .window_dispersion
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<[Dispersion; 2]>())
    }
}

/// Squared residuals and expectations of `gap` empty minutes against the larger of a fast mean
/// `fast` and a slow mean `slow` decaying through them, in closed form.
fn gap_sums(fast: f64, slow: f64, gap: i64) -> (f64, f64) {
    // The fast mean decays faster, so it is the larger only for the first minutes, if at all.
    let split = if fast <= slow {
        0
    } else if slow <= 0.0 {
        gap
    } else {
        ((fast / slow).ln() / (KEEP_SLOW / KEEP_FAST).ln())
            .floor()
            .clamp(0.0, gap as f64) as i64
    };
    let (fs, fe) = geometric(fast, KEEP_FAST, 1, split);
    let (ss, se) = geometric(slow, KEEP_SLOW, split + 1, gap);
    (fs + ss, fe + se)
}

/// `(Σ (a·kⁱ)², Σ a·kⁱ)` for i in `from..=to`.
fn geometric(a: f64, k: f64, from: i64, to: i64) -> (f64, f64) {
    if to < from || a <= 0.0 {
        return (0.0, 0.0);
    }
    let n = (to - from + 1) as i32;
    let first = a * k.powi(from as i32);
    let sum = first * (1.0 - k.powi(n)) / (1.0 - k);
    let k2 = k * k;
    let squares = first * first * (1.0 - k2.powi(n)) / (1.0 - k2);
    (squares, sum)
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
/// Built to be cheap: the Cornish–Fisher estimate of the quantile is within about one of the
/// answer, one incomplete-gamma evaluation gives the tail there, and neighbouring tails follow
/// by adding or removing one pmf term. A bad estimate falls back to bracketing and bisection.
/// Every loop is bounded.
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
    let z = normal_quantile(alpha);
    let estimate = mean + z * mean.sqrt() + (z * z + 2.0) / 6.0;
    let guess = rounded_guess(estimate);

    if mean <= NORMAL_APPROX_ABOVE
        && let Ok(poisson) = Poisson::new(mean)
        && let Some(k) = walk_to_threshold(guess, alpha, poisson_tail(mean, guess), |k| poisson.pmf(k))
    {
        return k;
    }
    bisect_threshold(|k| poisson_tail(mean, k), alpha, guess)
}

/// `P(X >= k)` for a negative binomial with the given mean and variance `dispersion × mean`
/// (`dispersion > 1`): `r = mean / (dispersion − 1)` successes of probability
/// `p = 1 / dispersion`. NaN for parameters with no such law, which never fires.
pub fn nb_tail(mean: f64, dispersion: f64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if mean.is_nan() || mean == f64::INFINITY || dispersion.is_nan() {
        return f64::NAN;
    }
    if mean <= 0.0 {
        return 0.0;
    }
    if dispersion < POISSON_BELOW || dispersion == f64::INFINITY {
        return poisson_tail(mean, k);
    }
    match NegativeBinomial::new(mean / (dispersion - 1.0), 1.0 / dispersion) {
        // sf(x) = P(X > x) = I_{1-p}(x + 1, r), the regularized incomplete beta, computed
        // directly (no 1 - cdf), so the far tail keeps its digits.
        Ok(nb) => nb.sf(k - 1),
        Err(_) => f64::NAN,
    }
}

/// The smallest `k` with [`nb_tail`] below `alpha`. The same shape as [`poisson_threshold`]:
/// a Cornish–Fisher guess with the negative binomial's skewness, one incomplete-beta tail,
/// then a walk of pmf terms by their ratio `P(k+1)/P(k) = (k + r)(1 − p)/(k + 1)`.
pub fn nb_threshold(mean: f64, dispersion: f64, alpha: f64) -> u64 {
    if alpha.is_nan() || alpha <= 0.0 || mean.is_nan() || mean == f64::INFINITY || dispersion.is_nan() {
        return u64::MAX;
    }
    if alpha > 1.0 {
        return 0;
    }
    if mean <= 0.0 {
        return 1;
    }
    if dispersion < POISSON_BELOW || dispersion == f64::INFINITY {
        return poisson_threshold(mean, alpha);
    }
    let r = mean / (dispersion - 1.0);
    let p = 1.0 / dispersion;
    let q = 1.0 - p;
    let sd = (mean * dispersion).sqrt();
    let skew = (1.0 + q) / (r * q).sqrt();
    let z = normal_quantile(alpha);
    let guess = rounded_guess(mean + sd * (z + skew * (z * z - 1.0) / 6.0));
    if let Ok(nb) = NegativeBinomial::new(r, p) {
        let tail = nb_tail(mean, dispersion, guess);
        let pmf = nb.pmf(guess);
        // Walk with pmf ratios from the guess: no further gamma functions.
        let ratio_up = |k: u64| (k as f64 + r) * q / (k as f64 + 1.0);
        if let Some(k) = walk_nb(guess, alpha, tail, pmf, ratio_up) {
            return k;
        }
    }
    bisect_threshold(|k| nb_tail(mean, dispersion, k), alpha, guess)
}

fn rounded_guess(estimate: f64) -> u64 {
    if estimate.is_finite() {
        (estimate.round().max(1.0) as u64).min(1 << 62)
    } else {
        1
    }
}

/// Steps the negative binomial's tail from `guess` with pmf ratios (see [`walk_to_threshold`]).
fn walk_nb(guess: u64, alpha: f64, tail: f64, pmf: f64, ratio_up: impl Fn(u64) -> f64) -> Option<u64> {
    const STEPS: u32 = 8;
    if !(tail.is_finite() && pmf.is_finite()) {
        return None;
    }
    let (mut k, mut tail, mut pmf) = (guess, tail, pmf);
    if tail < alpha {
        // Widen downwards: tail(k − 1) = tail(k) + pmf(k − 1).
        for _ in 0..STEPS {
            if k == 1 {
                return Some(1);
            }
            pmf /= ratio_up(k - 1);
            let wider = tail + pmf;
            if wider >= alpha {
                return Some(k);
            }
            k -= 1;
            tail = wider;
        }
    } else {
        // Narrow upwards: tail(k + 1) = tail(k) − pmf(k).
        for _ in 0..STEPS {
            let narrower = tail - pmf;
            if narrower < alpha {
                return Some(k + 1);
            }
            pmf *= ratio_up(k);
            k += 1;
            tail = narrower;
        }
    }
    None
}

/// Steps from `guess` to the threshold with `P(X >= k ± 1) = P(X >= k) ± pmf`, at most a few
/// steps; `None` when the guess was too far off.
fn walk_to_threshold(guess: u64, alpha: f64, tail: f64, pmf: impl Fn(u64) -> f64) -> Option<u64> {
    const STEPS: u32 = 6;
    let mut k = guess;
    let mut tail = tail;
    if tail < alpha {
        for _ in 0..STEPS {
            if k == 1 {
                return Some(1);
            }
            let wider = tail + pmf(k - 1);
            if wider >= alpha {
                return Some(k);
            }
            k -= 1;
            tail = wider;
        }
    } else {
        for _ in 0..STEPS {
            let narrower = tail - pmf(k);
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
fn bisect_threshold(tail: impl Fn(u64) -> f64, alpha: f64, guess: u64) -> u64 {
    let below = |k: u64| tail(k) < alpha;
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

    /// The threshold by brute force: the pmf by its recurrence in log space from `ln P(0)`,
    /// summed upwards from each candidate until the terms vanish.
    fn brute(ln_p0: f64, ln_ratio: impl Fn(u64) -> f64, span: u64, alpha: f64) -> u64 {
        let mut ln_pmf = vec![ln_p0];
        for i in 0..span {
            ln_pmf.push(ln_pmf[i as usize] + ln_ratio(i));
        }
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

    fn brute_poisson(mean: f64, alpha: f64) -> u64 {
        let span = (mean + 20.0 * mean.sqrt() + 400.0) as u64;
        brute(-mean, |i| (mean / (i + 1) as f64).ln(), span, alpha)
    }

    fn brute_nb(mean: f64, dispersion: f64, alpha: f64) -> u64 {
        let (r, p) = (mean / (dispersion - 1.0), 1.0 / dispersion);
        let q = 1.0 - p;
        let span = (mean + 50.0 * (mean * dispersion).sqrt() + 60.0 / (1.0 - q)) as u64;
        brute(r * p.ln(), |i| ((i as f64 + r) * q / (i + 1) as f64).ln(), span, alpha)
    }

    #[track_caller]
    fn check_threshold(mean: f64, alpha: f64) {
        let k = poisson_threshold(mean, alpha);
        assert_eq!(k, brute_poisson(mean, alpha), "mean {mean}, alpha {alpha}");
        assert!(poisson_tail(mean, k) < alpha);
        assert!(poisson_tail(mean, k - 1) >= alpha);
    }

    #[track_caller]
    fn check_nb_threshold(mean: f64, dispersion: f64, alpha: f64) {
        let k = nb_threshold(mean, dispersion, alpha);
        assert_eq!(
            k,
            brute_nb(mean, dispersion, alpha),
            "mean {mean}, dispersion {dispersion}, alpha {alpha}"
        );
        assert!(nb_tail(mean, dispersion, k) < alpha);
        assert!(nb_tail(mean, dispersion, k - 1) >= alpha);
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
    fn negative_binomial_threshold_matches_a_brute_force_sum_of_the_pmf() {
        for mean in [0.5, 1.3, 4.0, 12.0, 60.0, 400.0] {
            for dispersion in [1.01, 1.2, 2.0, 5.0, 20.0] {
                check_nb_threshold(mean, dispersion, 1e-6);
            }
        }
        for alpha in [0.1, 1e-3, 1e-9] {
            check_nb_threshold(2.0, 1.5, alpha);
        }
    }

    #[test]
    fn the_fast_walk_agrees_with_bisection() {
        for i in 0..400 {
            let mean = 0.5 * 1.03f64.powi(i);
            for alpha in [1e-3, 1e-6, 1e-9] {
                assert_eq!(
                    poisson_threshold(mean, alpha),
                    bisect_threshold(|k| poisson_tail(mean, k), alpha, 1),
                    "mean {mean}, alpha {alpha}"
                );
                for dispersion in [1.05, 1.7, 4.0] {
                    assert_eq!(
                        nb_threshold(mean, dispersion, alpha),
                        bisect_threshold(|k| nb_tail(mean, dispersion, k), alpha, 1),
                        "mean {mean}, dispersion {dispersion}, alpha {alpha}"
                    );
                }
            }
        }
    }

    /// Property: with variance equal to the mean the negative binomial is Poisson; with more,
    /// its upper tail is heavier, and more so the more dispersed.
    #[test]
    fn the_negative_binomial_tail_is_poisson_at_dispersion_one_and_heavier_above() {
        for i in 0..60 {
            let mean = 0.3 * 1.12f64.powi(i);
            let upper = (mean + 3.0 * mean.sqrt()).ceil() as u64 + 1;
            for k in [upper, upper + 2, upper + 10] {
                let poisson = poisson_tail(mean, k);
                let almost = nb_tail(mean, 1.0 + 1e-6, k);
                assert!(
                    (almost - poisson).abs() <= 1e-3 * poisson + 1e-300,
                    "mean {mean} k {k}: {almost} vs {poisson}"
                );
                assert_eq!(nb_tail(mean, 1.0, k), poisson);
                let (a, b) = (nb_tail(mean, 1.3, k), nb_tail(mean, 3.0, k));
                assert!(poisson < a && a < b, "mean {mean} k {k}: {poisson} {a} {b}");
            }
            assert_eq!(nb_threshold(mean, 1.0, 1e-6), poisson_threshold(mean, 1e-6));
            assert!(nb_threshold(mean, 1.5, 1e-6) >= poisson_threshold(mean, 1e-6));
        }
    }

    /// Property: the bound computed at every bucket start never exceeds the exact threshold,
    /// so a count below it can be dismissed without computing one.
    #[test]
    fn the_cheap_lower_bound_never_exceeds_the_threshold() {
        for i in 0..150 {
            let mean = 0.05 * 1.08f64.powi(i);
            for (dispersion, clustered) in [1.0, 1.1, 1.6, 2.0, 3.0, 6.0, 10.0, 25.0, 50.0]
                .into_iter()
                .flat_map(|d| [(d, false), (d, true)])
            {
                for alpha in [0.5, 0.2, 1e-2, 1e-4, 1e-6, 1e-7, 1e-9, 1e-12] {
                    let law = CountLaw {
                        mean,
                        dispersion,
                        clustered,
                    };
                    let k = law.threshold(alpha);
                    assert!(
                        law.lower_bound(normal_quantile(alpha)) <= k,
                        "mean {mean} dispersion {dispersion} alpha {alpha}: bound {} > {k}",
                        law.lower_bound(normal_quantile(alpha))
                    );
                }
            }
        }
    }

    /// Property: when `first_call_can_cross` says no, no law the baselines can hold has a
    /// threshold of one call.
    #[test]
    fn a_first_call_crosses_nothing_when_it_is_said_not_to() {
        let config = RateConfig::default();
        assert!(!first_call_can_cross(&config));
        assert!(first_call_can_cross(&RateConfig { alpha: 0.05, ..config }));
        for mean in [config.mean_floor, 0.7, 3.0] {
            for dispersion in [1.0, 1.5, 10.0, MAX_DISPERSION] {
                for clustered in [false, true] {
                    let law = CountLaw {
                        mean,
                        dispersion,
                        clustered,
                    };
                    assert!(law.threshold(config.alpha) >= 2, "{law:?}");
                    assert!(law.threshold(0.009) >= 2, "{law:?}");
                }
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
        assert_eq!(poisson_threshold(2.0, 1e-300), brute_poisson(2.0, 1e-300));
        // Past the normal switch: near mean + 4.75 sd, and no panic at absurd rates.
        let k = poisson_threshold(1e6, 1e-6);
        assert!((1_004_700..1_004_800).contains(&k), "{k}");
        assert!(poisson_threshold(1e18, 1e-6) > 1e18 as u64);
        assert!(poisson_threshold(1e300, 1e-6) > 0);
        for (mean, dispersion) in [
            (0.0, 2.0),
            (-1.0, 2.0),
            (1e-300, 2.0),
            (2.0, 1e300),
            (1e9, 40.0),
            (1e300, 2.0),
        ] {
            let k = nb_threshold(mean, dispersion, 1e-6);
            assert!(k >= 1, "{mean} {dispersion}: {k}");
        }
        assert_eq!(nb_threshold(f64::NAN, 2.0, 1e-6), u64::MAX);
        assert_eq!(nb_threshold(2.0, f64::NAN, 1e-6), u64::MAX);
        assert_eq!(nb_threshold(2.0, f64::INFINITY, 1e-6), poisson_threshold(2.0, 1e-6));
        assert!(nb_tail(2.0, f64::NAN, 3).is_nan());
    }

    #[test]
    fn tail_is_zero_not_a_panic_when_it_underflows() {
        assert_eq!(poisson_tail(2.0, 10_000), 0.0);
        assert!(poisson_tail(2.0, 40) > 0.0 && poisson_tail(2.0, 40) < 1e-30);
        assert_eq!(poisson_tail(0.0, 1), 0.0);
        assert_eq!(poisson_tail(2.0, 0), 1.0);
        assert!(nb_tail(2.0, 1.5, 100_000) < 1e-300);
        assert_eq!(nb_tail(2.0, 1.5, 0), 1.0);
    }

    #[test]
    fn the_keeps_match_their_half_lives() {
        for (keep, half_life) in [
            (KEEP_SLOW, HALF_LIFE_MINUTES),
            (KEEP_FAST, FAST_HALF_LIFE_MINUTES),
            (KEEP_DISPERSION, DISPERSION_HALF_LIFE_MINUTES),
            (KEEP_LEVEL_PER_HOUR, 6.0),
        ] {
            assert!((keep - 0.5f64.powf(1.0 / half_life)).abs() < 1e-15, "{half_life}");
        }
    }

    #[test]
    fn folding_a_gap_at_once_equals_folding_each_empty_minute() {
        let start = Ewma::default().folded(5.0, 1.0, KEEP_SLOW).folded(3.0, 1.0, KEEP_SLOW);
        let mut one_by_one = start;
        for _ in 0..17 {
            one_by_one = one_by_one.folded(0.0, 1.0, KEEP_SLOW);
        }
        let at_once = start.with_zeros(17, KEEP_SLOW);
        assert!((one_by_one.mean() - at_once.mean()).abs() < 1e-12);
    }

    #[test]
    fn a_gap_teaches_the_dispersion_what_its_minutes_one_by_one_would() {
        for (fast, slow, gap) in [
            (3.0, 1.0, 40),
            (0.5, 2.0, 7),
            (9.0, 0.0, 12),
            (2.0, 2.0, 1),
            (4.0, 1.0, 2000),
        ] {
            let (mut squares, mut expected) = (0.0, 0.0);
            for i in 1..=gap {
                let e = (fast * KEEP_FAST.powi(i as i32)).max(slow * KEEP_SLOW.powi(i as i32));
                squares += e * e;
                expected += e;
            }
            let (s, e) = gap_sums(fast, slow, gap);
            assert!(
                (s - squares).abs() < 1e-9 * (1.0 + squares),
                "{fast} {slow} {gap}: {s} vs {squares}"
            );
            assert!(
                (e - expected).abs() < 1e-9 * (1.0 + expected),
                "{fast} {slow} {gap}: {e} vs {expected}"
            );
        }
    }

    #[test]
    fn the_first_minutes_are_not_biased_towards_zero() {
        let e = Ewma::default()
            .folded(4.0, 1.0, KEEP_FAST)
            .folded(4.0, 0.1, KEEP_FAST)
            .folded(4.0, 1.0, KEEP_FAST);
        assert!((e.mean() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn a_profile_byte_keeps_a_rate_within_four_percent() {
        for i in 0..400 {
            let x = 3e-4 * 1.05f64.powi(i);
            if x > 10_000.0 {
                break;
            }
            let back = decode(encode(x));
            assert!((back - x).abs() <= 0.036 * x, "{x} -> {back}");
        }
        assert_eq!(decode(encode(0.0)), 0.0);
        assert_eq!(decode(encode(1e-9)), 0.0);
        assert_eq!(encode(f64::NAN), 0);
        assert!(decode(encode(1e9)) > 10_000.0, "saturates");
    }

    /// A deterministic stream of counts: Poisson, or Poisson clusters of a fixed size.
    struct Counts(u64);

    impl Counts {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        fn poisson(&mut self, mean: f64) -> u64 {
            let limit = (-mean).exp();
            let (mut k, mut p) = (0, 1.0);
            loop {
                p *= self.uniform();
                if p < limit {
                    return k;
                }
                k += 1;
            }
        }
    }

    /// Folds `minutes` of counts drawn by `draw` into a stream, one call at a time.
    fn stream(minutes: i64, mut draw: impl FnMut(i64) -> u64) -> RateBaseline {
        let config = RateConfig::default();
        let mut rate = RateBaseline::default();
        for minute in 0..minutes {
            for _ in 0..draw(minute) {
                rate.observe(minute, 1.0, &config);
            }
        }
        rate
    }

    /// Property: the learned dispersion is near 1 for Poisson counts, and near the cluster
    /// size when calls come in clusters (retries): variance = size × mean.
    #[test]
    fn the_dispersion_is_one_for_poisson_counts_and_the_cluster_size_for_clusters() {
        for (mean, size) in [(0.3, 1), (2.0, 1), (20.0, 1), (0.4, 3), (3.0, 2), (3.0, 4)] {
            let mut counts = Counts(7);
            let rate = stream(4 * 24 * 60, |_| size * counts.poisson(mean / size as f64));
            let d = rate.dispersion();
            let want = size as f64;
            assert!(
                (d - want).abs() < 0.15 * want,
                "mean {mean} clusters of {size}: dispersion {d}"
            );
        }
    }

    /// Property: `outlook` predicts exactly the law `observe` then holds, whatever the stream
    /// (gaps, bursts, the profile in use).
    #[test]
    fn a_prediction_is_exactly_what_observing_does() {
        let config = RateConfig::default();
        for seed in 1..6u64 {
            let mut counts = Counts(seed);
            let mut rate = RateBaseline::default();
            let mut errors = RateBaseline::quiet_since(0);
            let mut minute = 0;
            while minute < 9 * 24 * 60 {
                let busy = 1.0 + ((minute % 1440) as f64 / 230.0).sin();
                for stream in [&mut rate, &mut errors] {
                    let before = stream.outlook(minute, &config).unwrap();
                    // `may_cross` only ever rules out calls that cross nothing.
                    if before.crosses(&config) || before.window.is_some_and(|w| w.crosses(&config)) {
                        assert!(stream.may_cross(minute, &config), "minute {minute}");
                    }
                    stream.observe(minute, if counts.uniform() < 0.01 { 0.1 } else { 1.0 }, &config);
                    let after = stream.outlook(minute, &config).unwrap();
                    assert_eq!(before.law, after.law, "minute {minute}");
                    assert_eq!(before.history, after.history);
                    assert_eq!(before.window.map(|w| w.law), after.window.map(|w| w.law));
                    // Now and then a burst, so thresholds are reached and crossed.
                    let calls = if counts.uniform() < 0.01 {
                        40
                    } else {
                        counts.poisson(busy)
                    };
                    for _ in 1..calls {
                        let o = stream.outlook(minute, &config).unwrap();
                        if o.crosses(&config) || o.window.is_some_and(|w| w.crosses(&config)) {
                            assert!(stream.may_cross(minute, &config), "minute {minute}");
                        }
                        stream.observe(minute, 1.0, &config);
                    }
                }
                minute += 1 + (counts.uniform() * counts.uniform() * 30.0) as i64;
            }
            assert!(rate.is_seasonal());
        }
    }

    /// A ramp of 40% an hour (a steep morning): the fast mean keeps the expectation within
    /// about 10% of the rate, where the slow one alone falls more than 20% behind.
    #[test]
    fn the_expectation_follows_a_ramp_the_slow_mean_lags() {
        let config = RateConfig::default();
        let rate_at = |minute: i64| 0.5 * (0.4 * minute as f64 / 60.0).exp();
        let mut owed = 0.0;
        let mut rate = RateBaseline::default();
        let end = 6 * 60;
        for minute in 0..end {
            // The rate's calls, spread without noise: what the means can know at best.
            owed += rate_at(minute);
            while owed >= 1.0 {
                rate.observe(minute, 1.0, &config);
                owed -= 1.0;
            }
        }
        let truth = rate_at(end);
        let o = rate.outlook(end, &config).unwrap();
        assert!(o.law.mean > 0.85 * truth, "{} vs {truth}", o.law.mean);
        assert!(rate.mean() < 0.8 * truth, "{} vs {truth}", rate.mean());
    }

    /// A week of a daily pattern, then the profile knows the morning ramp before it comes.
    #[test]
    fn after_a_week_the_profile_expects_the_ramp() {
        let config = RateConfig::default();
        // 0.5 calls a minute at night, 8 from 09:00 to 17:00, every day; exactly, no noise.
        let per_minute = |minute: i64| {
            if (9 * 60..17 * 60).contains(&(minute % 1440)) {
                8
            } else {
                0
            }
        };
        let at = |day: i64, hour: i64, minute: i64| day * 1440 + hour * 60 + minute;
        let mut rate = RateBaseline::default();
        let mut expected_at_nine = Vec::new();
        for minute in 0..at(9, 9, 1) {
            if minute % 1440 == 9 * 60 {
                expected_at_nine.push(rate.outlook(minute, &config).unwrap().law.mean);
            }
            for _ in 0..per_minute(minute).max((minute % 2) as u64) {
                rate.observe(minute, 1.0, &config);
            }
        }
        // Before a week the short-term means see only the night; after it, the profile
        // interpolates towards the busy hour (half way at 09:00, between the 08:00 and 09:00
        // hour centres).
        let [first, .., last] = expected_at_nine[..] else {
            panic!()
        };
        assert!(first < 1.0 && expected_at_nine[6] < 1.0, "{expected_at_nine:?}");
        assert!((3.5..5.0).contains(&last), "{expected_at_nine:?}");
        assert!(rate.is_seasonal());
    }
}
