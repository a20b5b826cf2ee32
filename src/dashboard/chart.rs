//! The per-tool rate chart as plain geometry for an SVG template: observed calls per minute
//! against the band the baseline expects and the threshold at which a finding fires. Pure: numbers in, coordinates out;
//! nothing an agent sent ever becomes markup here.

/// Drawing size in SVG user units; the CSS scales it to the column.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 140.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// What the baseline expects of one minute of this tool.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// Mean calls per minute.
    pub mean: f64,
    /// Variance of calls per minute.
    pub variance: f64,
    /// Calls in one minute at which a rate finding fires.
    pub threshold: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub x: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: String,
    pub y: String,
}

/// Everything the SVG template draws, as formatted numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct RateChart {
    pub width: String,
    pub height: String,
    /// `x,y x,y …` of observed calls per minute, one point per bucket.
    pub line: String,
    /// The expected band (mean ± 2 standard deviations of a minute's count), as a rectangle.
    pub band_y: String,
    pub band_height: String,
    pub mean_y: String,
    /// The alert threshold: a minute reaching it raises a rate finding.
    pub threshold_y: String,
    pub plot_left: String,
    pub plot_right: String,
    pub plot_width: String,
    pub plot_bottom: String,
    pub y_max_label: String,
    pub y_max_y: String,
    pub x_ticks: Vec<Tick>,
    /// Minutes that reached the threshold, marked so they stand out.
    pub over: Vec<Point>,
    pub peak: f64,
}

fn f(v: f64) -> String {
    format!("{v:.1}")
}

/// `counts[i]` calls in minute `i` (oldest first) of a span of `hours` ending now.
pub fn rate_chart(counts: &[u64], hours: i64, expected: Expected) -> RateChart {
    let per_minute: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
    let peak = per_minute.iter().copied().fold(0.0, f64::max);
    // A count's spread is at least Poisson's (variance = mean), whatever the history says:
    // perfectly regular synthetic traffic must not draw a band of zero width.
    let sd = expected.variance.max(expected.mean).max(0.0).sqrt();
    let band_lo = (expected.mean - 2.0 * sd).max(0.0);
    let band_hi = expected.mean + 2.0 * sd;
    let threshold = expected.threshold as f64;
    // The threshold is always in range: where the alert line sits is the point of the chart.
    let top_value = (peak.max(band_hi).max(threshold) * 1.1).max(1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h * (1.0 - v / top_value);
    let n = per_minute.len().max(1);
    let x = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / n as f64;

    let line = per_minute
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{},{}", f(x(i)), f(y(*v))))
        .collect::<Vec<_>>()
        .join(" ");
    let over = per_minute
        .iter()
        .enumerate()
        .filter(|(_, v)| **v >= threshold)
        .map(|(i, v)| Point {
            x: f(x(i)),
            y: f(y(*v)),
        })
        .collect();
    let x_ticks = (0..=4)
        .map(|q| {
            let label = if q == 4 {
                "now".to_owned()
            } else {
                format!("−{}h", hours * (4 - q) / 4)
            };
            Tick {
                x: f(LEFT + plot_w * q as f64 / 4.0),
                label,
            }
        })
        .collect();
    RateChart {
        width: f(WIDTH),
        height: f(HEIGHT),
        line,
        band_y: f(y(band_hi)),
        band_height: f((y(band_lo) - y(band_hi)).max(1.0)),
        mean_y: f(y(expected.mean)),
        threshold_y: f(y(threshold)),
        plot_left: f(LEFT),
        plot_right: f(WIDTH - RIGHT),
        plot_width: f(plot_w),
        plot_bottom: f(TOP + plot_h),
        y_max_label: format_rate(top_value),
        y_max_y: f(TOP + 4.0),
        x_ticks,
        over,
        peak,
    }
}

/// A rate for an axis or a sentence: `0.25`, `3.5`, `41`.
pub fn format_rate(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            mean: 2.0,
            variance: 2.0,
            threshold: 12,
        }
    }

    #[test]
    fn a_quiet_day_with_one_burst_marks_only_the_burst() {
        let mut counts = vec![2; 1440];
        counts[1439] = 40;
        counts[1000] = 5;
        let chart = rate_chart(&counts, 24, expected());
        assert_eq!(chart.line.split(' ').count(), 1440);
        assert_eq!(chart.over.len(), 1, "only the minute at or above 12: {:?}", chart.over);
        assert_eq!(chart.peak, 40.0);
        assert_eq!(chart.y_max_label, "44");
        let labels: Vec<&str> = chart.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["−24h", "−18h", "−12h", "−6h", "now"]);
    }

    #[test]
    fn the_band_sits_around_the_mean_and_the_threshold_is_always_drawn() {
        let chart = rate_chart(&[0; 60], 1, expected());
        let band_top: f64 = chart.band_y.parse().unwrap();
        let band_bottom = band_top + chart.band_height.parse::<f64>().unwrap();
        let mean: f64 = chart.mean_y.parse().unwrap();
        let threshold: f64 = chart.threshold_y.parse().unwrap();
        assert!(threshold < band_top && band_top < mean && mean < band_bottom);
        assert!(band_bottom <= chart.plot_bottom.parse::<f64>().unwrap() + 0.1);
        assert!(chart.over.is_empty());
    }

    #[test]
    fn perfectly_regular_traffic_still_gets_a_poisson_wide_band() {
        let chart = rate_chart(
            &[4; 10],
            1,
            Expected {
                mean: 4.0,
                variance: 0.0,
                threshold: 14,
            },
        );
        assert!(
            chart.band_height.parse::<f64>().unwrap() > 20.0,
            "{}",
            chart.band_height
        );
    }

    #[test]
    fn an_empty_history_still_draws_a_chart() {
        let chart = rate_chart(
            &[],
            24,
            Expected {
                mean: 0.0,
                variance: 0.0,
                threshold: 1,
            },
        );
        assert_eq!(chart.line, "");
        assert_eq!(chart.y_max_label, "1.1");
    }
}
