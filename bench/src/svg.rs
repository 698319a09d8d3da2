//! The plot, written by hand: RTT p50 against idle connections, one line per
//! server, one panel per number of active clients. Both axes are
//! logarithmic; 0 idle connections, which a log scale cannot show, sits at
//! the left edge, one decade before the smallest other value, behind an
//! axis break.

use crate::sweep::{Plan, Point};
use grader::harness::text::thousands;
use std::fmt::Write;

const PANEL_W: f64 = 430.0;
const PANEL_H: f64 = 340.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 60.0;
const LEGEND_W: f64 = 190.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// Where an idle count goes along the x axis, from 0 (left) to 1 (right).
struct XScale {
    lo: f64,
    hi: f64,
}

impl XScale {
    fn new(idle: &[usize]) -> XScale {
        let nonzero: Vec<f64> = idle
            .iter()
            .filter(|&&i| i > 0)
            .map(|&i| (i as f64).log10())
            .collect();
        let min = nonzero.iter().copied().fold(f64::INFINITY, f64::min);
        let max = nonzero.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if nonzero.is_empty() {
            return XScale { lo: 0.0, hi: 0.0 };
        }
        // With 0 in the sweep, one decade of room is left for it on the left.
        let lo = if idle.contains(&0) { min - 1.0 } else { min };
        XScale { lo, hi: max }
    }

    fn frac(&self, idle: usize) -> f64 {
        if self.hi <= self.lo {
            return 0.5;
        }
        if idle == 0 {
            return 0.0;
        }
        ((idle as f64).log10() - self.lo) / (self.hi - self.lo)
    }
}

/// Log scale over whole decades of microseconds.
struct YScale {
    lo: i32,
    hi: i32,
}

impl YScale {
    fn new(values_us: &[f64]) -> YScale {
        let min = values_us.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values_us.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if values_us.is_empty() {
            return YScale { lo: 1, hi: 3 };
        }
        let lo = min.log10().floor() as i32;
        let hi = (max.log10().ceil() as i32).max(lo + 1);
        YScale { lo, hi }
    }

    /// 0 at the bottom, 1 at the top.
    fn frac(&self, us: f64) -> f64 {
        (us.log10() - self.lo as f64) / (self.hi - self.lo) as f64
    }
}

/// `1 µs`, `20 µs`, `5 ms`, `1 s`.
fn us_label(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", us / 1e3)
    } else {
        format!("{us} µs")
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The whole SVG document.
pub fn plot(points: &[Point], plan: &Plan, subtitle: &str) -> String {
    let mut servers: Vec<&str> = Vec::new();
    for point in points {
        if !servers.contains(&point.server.as_str()) {
            servers.push(&point.server);
        }
    }
    let measured_us: Vec<f64> = points
        .iter()
        .filter_map(|p| p.outcome.as_ref().ok())
        .map(|m| m.p50.as_secs_f64() * 1e6)
        .filter(|us| *us > 0.0)
        .collect();
    let x = XScale::new(&plan.idle);
    let y = YScale::new(&measured_us);
    let panels = plan.active.len().max(1);
    let width = panels as f64 * PANEL_W + LEGEND_W;
    let height = TOP + PANEL_H;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">Round-trip time (p50) against idle connections</text>"#
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="44" fill="#444">{}</text>"##,
        esc(subtitle)
    );
    for (panel, &active) in plan.active.iter().enumerate() {
        let ox = panel as f64 * PANEL_W;
        panel_frame(&mut svg, ox, active, plan, &x, &y);
        for (s, server) in servers.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            let mut series: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.server == *server && p.active == active)
                .filter_map(|p| {
                    let m = p.outcome.as_ref().ok()?;
                    let us = m.p50.as_secs_f64() * 1e6;
                    (us > 0.0).then(|| to_xy(ox, x.frac(p.idle), y.frac(us)))
                })
                .collect();
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
            let coords: Vec<String> = series
                .iter()
                .map(|(px, py)| format!("{px:.1},{py:.1}"))
                .collect();
            if coords.len() > 1 {
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                    coords.join(" ")
                );
            }
            for (px, py) in &series {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{color}"/>"#
                );
            }
        }
    }
    legend(&mut svg, panels as f64 * PANEL_W + 10.0, &servers);
    svg.push_str("</svg>\n");
    svg
}

/// Pixel position of a point given its fractions along the panel's axes.
fn to_xy(ox: f64, fx: f64, fy: f64) -> (f64, f64) {
    let plot_w = PANEL_W - LEFT - RIGHT;
    let plot_h = PANEL_H - BOTTOM - 20.0;
    (
        ox + LEFT + fx * plot_w,
        TOP + 20.0 + (1.0 - fy.clamp(0.0, 1.0)) * plot_h,
    )
}

/// Axes, grid, tick labels and titles of one panel.
fn panel_frame(svg: &mut String, ox: f64, active: usize, plan: &Plan, x: &XScale, y: &YScale) {
    let (left, top) = to_xy(ox, 0.0, 1.0);
    let (right, bottom) = to_xy(ox, 1.0, 0.0);
    let clients = if active == 1 { "client" } else { "clients" };
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{active} active {clients}</text>"#,
        (left + right) / 2.0,
        top - 8.0
    );
    // Horizontal grid: every decade, lighter lines at 2 and 5.
    let few_decades = y.hi - y.lo <= 2;
    for decade in y.lo..=y.hi {
        for step in [1.0, 2.0, 5.0] {
            let us = step * 10f64.powi(decade);
            let fy = y.frac(us);
            if fy > 1.0 + 1e-9 {
                continue;
            }
            let (_, py) = to_xy(ox, 0.0, fy);
            let major = step == 1.0;
            let color = if major { "#ccc" } else { "#eee" };
            let _ = writeln!(
                svg,
                r#"<line x1="{left:.1}" y1="{py:.1}" x2="{right:.1}" y2="{py:.1}" stroke="{color}"/>"#
            );
            if major || few_decades {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                    left - 6.0,
                    py + 4.0,
                    us_label(us)
                );
            }
        }
    }
    // Vertical ticks at each idle count measured.
    for &idle in &plan.idle {
        let (px, _) = to_xy(ox, x.frac(idle), 0.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="#eee"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            bottom + 16.0,
            thousands(idle)
        );
    }
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="black" points="{left:.1},{top:.1} {left:.1},{bottom:.1} {right:.1},{bottom:.1}"/>"#
    );
    // The break between 0 and the first decade: a log axis has no 0.
    if plan.idle.contains(&0) && x.hi > x.lo {
        let (bx, _) = to_xy(ox, 0.5 / (x.hi - x.lo), 0.0);
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="6" height="8" fill="white"/><path d="M{:.1},{:.1} l4,-8 M{:.1},{:.1} l4,-8" stroke="black"/>"#,
            bx - 3.0,
            bottom - 4.0,
            bx - 5.0,
            bottom + 4.0,
            bx - 1.0,
            bottom + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">idle connections (log scale)</text>"#,
        (left + right) / 2.0,
        bottom + 36.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">RTT p50, {}-byte lines (log scale)</text>"#,
        ox + 14.0,
        (top + bottom) / 2.0,
        plan.line_bytes
    );
}

fn legend(svg: &mut String, lx: f64, servers: &[&str]) {
    let (_, top) = to_xy(0.0, 0.0, 1.0);
    for (s, server) in servers.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let ly = top + 10.0 + 22.0 * s as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><circle cx="{:.1}" cy="{ly:.1}" r="3.5" fill="{color}"/>"#,
            lx + 28.0,
            lx + 14.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 36.0,
            ly + 4.0,
            esc(server)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Measure;
    use std::time::Duration;

    #[test]
    fn zero_sits_at_the_left_edge_one_decade_before_the_rest() {
        let x = XScale::new(&[0, 100, 1000, 10000]);
        assert_eq!(x.frac(0), 0.0);
        assert!((x.frac(100) - 1.0 / 3.0).abs() < 1e-9);
        assert!((x.frac(10000) - 1.0).abs() < 1e-9);
        assert_eq!(XScale::new(&[0]).frac(0), 0.5);
    }

    #[test]
    fn y_axis_covers_whole_decades() {
        let y = YScale::new(&[23.0, 480.0]);
        assert_eq!((y.lo, y.hi), (1, 3));
        let y = YScale::new(&[30.0]);
        assert_eq!((y.lo, y.hi), (1, 2));
    }

    #[test]
    fn a_plot_has_a_line_per_server_and_skips_failures() {
        let plan = Plan {
            idle: vec![0, 100],
            active: vec![1, 50],
            line_bytes: 64,
            warmup: Duration::ZERO,
            pinning: crate::sweep::Pinning::Off,
            duration: Duration::from_secs(1),
            syscalls: Ok(()),
        };
        let mut points = Vec::new();
        for server in ["poll_echo", "a<b"] {
            for &active in &plan.active {
                for &idle in &plan.idle {
                    points.push(Point {
                        server: server.into(),
                        idle,
                        active,
                        outcome: Ok(Measure {
                            round_trips: 10,
                            seconds: 1.0,
                            p50: Duration::from_micros(30 + idle as u64),
                            p99: Duration::from_micros(90),
                        }),
                        syscalls: Err(String::new()),
                        by_call: None,
                        rss_kib: None,
                        kib_per_idle: None,
                    });
                }
            }
        }
        points[0].outcome = Err("failed".into());
        let svg = plot(&points, &plan, "test");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // 2 servers x 2 panels, one of the four lines has a single point left.
        assert_eq!(svg.matches("<polyline fill=\"none\" stroke=\"#").count(), 3);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains(">10,000<") || svg.contains(">100<"));
    }
}
