//! The sweep's results as a table, a few findings and a CSV.

use crate::sweep::{Plan, Point};
use grader::harness::text::thousands;
use std::fmt::Write;
use std::time::Duration;

/// `8.3 µs`, `412 µs`, `1.24 ms`, `210 ms`.
pub fn duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 100_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.0} ms", us / 1000.0)
    }
}

/// One row per point; failures are numbered and explained below the table.
pub fn table(points: &[Point]) -> String {
    let name_width = points
        .iter()
        .map(|p| p.server.chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$}  {:>6}  {:>6}  {:>13}  {:>9}  {:>9}",
        "server", "idle", "active", "round trips/s", "RTT p50", "RTT p99"
    );
    let mut failures: Vec<&str> = Vec::new();
    for point in points {
        let numbers = match &point.outcome {
            Ok(m) => format!(
                "{:>13}  {:>9}  {:>9}",
                thousands(m.per_second().round() as usize),
                duration(m.p50),
                duration(m.p99)
            ),
            Err(err) => {
                let n = match failures.iter().position(|f| *f == err.as_str()) {
                    Some(i) => i + 1,
                    None => {
                        failures.push(err);
                        failures.len()
                    }
                };
                let what = if err.starts_with(crate::sweep::BEYOND) {
                    "n/a"
                } else {
                    "failed"
                };
                format!("{:>13}", format!("{what} [{n}]"))
            }
        };
        let _ = writeln!(
            out,
            "{:<name_width$}  {:>6}  {:>6}  {numbers}",
            point.server,
            thousands(point.idle),
            point.active
        );
    }
    for (i, failure) in failures.iter().enumerate() {
        let _ = writeln!(out, "[{}] {failure}", i + 1);
    }
    out
}

fn find<'a>(points: &'a [Point], server: &str, idle: usize, active: usize) -> Option<&'a Point> {
    points
        .iter()
        .find(|p| p.server == server && p.idle == idle && p.active == active)
}

/// What the sweep shows: how each server's p50 RTT grows with idle
/// connections, and epoll_lt against tokio side by side.
pub fn findings(points: &[Point], plan: &Plan) -> String {
    let mut out = String::new();
    let (Some(&fewest), Some(&most)) = (plan.idle.first(), plan.idle.last()) else {
        return out;
    };
    let mut servers: Vec<&str> = Vec::new();
    for point in points {
        if !servers.contains(&point.server.as_str()) {
            servers.push(&point.server);
        }
    }
    if most > fewest {
        let _ = writeln!(
            out,
            "RTT p50 from {} to {} idle connections:",
            thousands(fewest),
            thousands(most)
        );
        for server in &servers {
            let mut line = format!("  {server:<16}");
            for &active in &plan.active {
                let from =
                    find(points, server, fewest, active).and_then(|p| p.outcome.as_ref().ok());
                // A server that cannot hold `most` (select): as far as it went.
                let to = points
                    .iter()
                    .filter(|p| p.server == *server && p.active == active && p.idle <= most)
                    .filter_map(|p| Some((p.idle, p.outcome.as_ref().ok()?)))
                    .max_by_key(|(idle, _)| *idle)
                    .filter(|(idle, _)| *idle > fewest);
                let text = match (from, to) {
                    (Some(a), Some((idle, b))) => format!(
                        "{} -> {} ({:.1}x){}",
                        duration(a.p50),
                        duration(b.p50),
                        b.p50.as_secs_f64() / a.p50.as_secs_f64(),
                        if idle == most {
                            String::new()
                        } else {
                            format!(" at {}", thousands(idle))
                        }
                    ),
                    _ => "not measured".to_string(),
                };
                let _ = write!(line, "  active {active}: {text:<28}");
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    if let Some(&active) = plan.active.iter().max() {
        let rate = |server| {
            find(points, server, fewest, active)
                .and_then(|p| p.outcome.as_ref().ok())
                .map(|m| m.per_second())
        };
        if let (Some(epoll), Some(tokio)) = (rate("epoll_lt"), rate("tokio")) {
            let _ = writeln!(
                out,
                "epoll_lt against tokio at {active} active, {} idle: {} vs {} round trips/s ({:.2}x)",
                thousands(fewest),
                thousands(epoll.round() as usize),
                thousands(tokio.round() as usize),
                epoll / tokio
            );
        }
    }
    out
}

/// One row per point, numbers in plain units for spreadsheets.
pub fn csv(points: &[Point], plan: &Plan) -> String {
    let mut out = String::from(
        "server,idle,active,line_bytes,seconds,round_trips,round_trips_per_s,rtt_p50_us,rtt_p99_us,error\n",
    );
    for p in points {
        let _ = write!(
            out,
            "{},{},{},{},",
            csv_field(&p.server),
            p.idle,
            p.active,
            plan.line_bytes
        );
        let _ = match &p.outcome {
            Ok(m) => writeln!(
                out,
                "{:.3},{},{:.0},{:.1},{:.1},",
                m.seconds,
                m.round_trips,
                m.per_second(),
                m.p50.as_secs_f64() * 1e6,
                m.p99.as_secs_f64() * 1e6
            ),
            Err(err) => writeln!(out, ",,,,,{}", csv_field(err)),
        };
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\"").replace('\n', " "))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Measure;

    fn point(server: &str, idle: usize, active: usize, p50_us: u64) -> Point {
        Point {
            server: server.into(),
            idle,
            active,
            outcome: Ok(Measure {
                round_trips: 20_000,
                seconds: 2.0,
                p50: Duration::from_micros(p50_us),
                p99: Duration::from_micros(p50_us * 3),
            }),
        }
    }

    fn plan() -> Plan {
        Plan {
            idle: vec![0, 100],
            active: vec![1],
            line_bytes: 64,
            warmup: Duration::ZERO,
            pinning: crate::sweep::Pinning::Off,
            duration: Duration::from_secs(2),
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_nanos(8_340)), "8.3 µs");
        assert_eq!(duration(Duration::from_micros(412)), "412 µs");
        assert_eq!(duration(Duration::from_micros(1_240)), "1.24 ms");
        assert_eq!(duration(Duration::from_millis(210)), "210 ms");
    }

    #[test]
    fn table_numbers_failures_and_findings() {
        let mut points = vec![
            point("epoll_lt", 0, 1, 40),
            point("epoll_lt", 100, 1, 44),
            point("tokio", 0, 1, 50),
        ];
        points.push(Point {
            outcome: Err("boom, \"quoted\"".into()),
            ..point("tokio", 100, 1, 1)
        });
        let table = table(&points);
        assert!(table.contains("10,000"), "{table}");
        assert!(table.contains("failed [1]"), "{table}");
        assert!(table.contains("[1] boom"), "{table}");
        let findings = findings(&points, &plan());
        assert!(findings.contains("40 µs -> 44 µs (1.1x)"), "{findings}");
        assert!(findings.contains("1.00x"), "{findings}");
        let csv = csv(&points, &plan());
        assert_eq!(csv.lines().count(), 5);
        assert!(csv.contains(",,,,,\"boom, \"\"quoted\"\"\""), "{csv}");
        assert!(
            csv.contains("epoll_lt,0,1,64,2.000,20000,10000,40.0,120.0,"),
            "{csv}"
        );
    }
}
