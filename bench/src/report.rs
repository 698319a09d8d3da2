//! The sweep's results as a table, a few findings and a CSV.

use crate::sweep::{Plan, Point};
use crate::syscalls::Syscalls;
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
        "{:<name_width$}  {:>6}  {:>6}  {:>13}  {:>9}  {:>9}  {:>11}  {:>8}",
        "server",
        "idle",
        "active",
        "round trips/s",
        "RTT p50",
        "RTT p99",
        "syscalls/rt",
        "KiB/idle"
    );
    let mut failures: Vec<&str> = Vec::new();
    for point in points {
        let numbers = match &point.outcome {
            Ok(m) => format!(
                "{:>13}  {:>9}  {:>9}  {:>11}  {:>8}",
                thousands(m.per_second().round() as usize),
                duration(m.p50),
                duration(m.p99),
                point
                    .syscalls
                    .as_ref()
                    .map_or("n/a".into(), |s| format!("{:.2}", s.per_round_trip())),
                point
                    .kib_per_idle
                    .map_or("-".into(), |kib| format!("{kib:.1}"))
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
    let mut not_counted: Vec<&str> = Vec::new();
    for point in points.iter().filter(|p| p.outcome.is_ok()) {
        if let Err(why) = &point.syscalls
            && !why.is_empty()
            && !not_counted.contains(&why.as_str())
        {
            not_counted.push(why);
        }
    }
    for why in not_counted {
        let _ = writeln!(out, "syscalls/rt n/a: {why}");
    }
    let _ = writeln!(
        out,
        "syscalls/rt: the server's system calls in the measured window (perf stat, raw_syscalls:sys_enter) \
         per round trip; KiB/idle: its VmRSS with the idle connections held, minus before the first, per connection"
    );
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
            let mut line = format!("  {server:<width$}", width = name_width(&servers));
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
    out.push_str(&interfaces(points, plan, &servers));
    out
}

/// The width of the server column in the findings.
fn name_width(servers: &[&str]) -> usize {
    servers
        .iter()
        .map(|s| s.chars().count())
        .chain([16])
        .max()
        .unwrap_or(16)
}

/// The interface each server waits with, as the course's table names it.
fn interface(server: &str) -> &str {
    let lab = server
        .strip_prefix("yours (")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(server);
    match lab {
        "select_echo" => "select",
        "poll_echo" => "poll",
        "epoll_lt" | "tcp_udp" => "epoll, level-triggered",
        "epoll_et" => "epoll, edge-triggered",
        "uring_echo" => "io_uring",
        "async_echo" | "timeouts" => "epoll, own runtime",
        "tokio" => "epoll, tokio",
        "threads" => "blocking, a thread each",
        _ => "?",
    }
}

/// A measured point's numbers.
fn measured<'a>(
    points: &'a [Point],
    server: &str,
    idle: usize,
    active: usize,
) -> Option<(&'a Point, &'a crate::load::Measure)> {
    let point = find(points, server, idle, active)?;
    Some((point, point.outcome.as_ref().ok()?))
}

fn syscalls_at<'a>(
    points: &'a [Point],
    server: &str,
    idle: usize,
    active: usize,
) -> Option<&'a Syscalls> {
    measured(points, server, idle, active)?
        .0
        .syscalls
        .as_ref()
        .ok()
}

/// Memory per idle connection at the most idle connections the server held.
fn memory(points: &[Point], server: &str) -> Option<(usize, f64)> {
    points
        .iter()
        .filter(|p| p.server == server && p.idle > 0)
        .filter_map(|p| Some((p.idle, p.kib_per_idle?)))
        .max_by_key(|(idle, _)| *idle)
}

/// How a lone client's p50 RTT grows from the fewest idle connections to
/// the most the server held: (factor, idle).
fn growth(points: &[Point], server: &str, active: usize, fewest: usize) -> Option<(f64, usize)> {
    let (_, from) = measured(points, server, fewest, active)?;
    let (idle, to) = points
        .iter()
        .filter(|p| p.server == server && p.active == active && p.idle > fewest)
        .filter_map(|p| Some((p.idle, p.outcome.as_ref().ok()?)))
        .max_by_key(|(idle, _)| *idle)?;
    Some((to.p50.as_secs_f64() / from.p50.as_secs_f64(), idle))
}

/// The course's comparison table (select, poll, epoll, io_uring), with this
/// run's numbers: where each interface's cost grows, and where io_uring's
/// batching pays and where it does not.
fn interfaces(points: &[Point], plan: &Plan, servers: &[&str]) -> String {
    let mut out = String::new();
    let (Some(&fewest), Some(&one), Some(&many)) = (
        plan.idle.first(),
        plan.active.first(),
        plan.active.iter().max(),
    ) else {
        return out;
    };
    let width = name_width(servers);
    let per_rt = |server: &str, active| {
        syscalls_at(points, server, fewest, active)
            .map_or("n/a".to_string(), |s| format!("{:.2}", s.per_round_trip()))
    };
    let _ = writeln!(
        out,
        "\nThe course's interface table, measured: system calls per round trip at {} idle connections; \
         a lone client's RTT p50 from {} idle connections to the most held; memory per idle connection there",
        thousands(fewest),
        thousands(fewest)
    );
    let _ = writeln!(
        out,
        "  {:<24} {:<width$} {:>11} {:>11}  {:<20} KiB per idle connection",
        "interface",
        "server",
        format!("{one} active"),
        if many > one {
            format!("{many} active")
        } else {
            String::new()
        },
        "RTT p50 growth",
    );
    for server in servers {
        let grows = growth(points, server, one, fewest)
            .map_or("not measured".into(), |(x, idle)| {
                format!("{x:.1}x at {}", thousands(idle))
            });
        let kib = memory(points, server).map_or("not measured".into(), |(idle, kib)| {
            format!("{kib:.1} (at {})", thousands(idle))
        });
        let _ = writeln!(
            out,
            "  {:<24} {:<width$} {:>11} {:>11}  {:<20} {kib}",
            interface(server),
            server,
            per_rt(server, one),
            if many == one {
                String::new()
            } else {
                per_rt(server, many)
            },
            grows
        );
    }
    let mut calls = String::new();
    for server in servers {
        let at = |active| {
            find(points, server, fewest, active)?
                .by_call
                .as_ref()
                .map(|s| format!("{active} active: {}", s.breakdown()))
        };
        let parts: Vec<String> = plan.active.iter().filter_map(|&a| at(a)).collect();
        if !parts.is_empty() {
            let _ = writeln!(calls, "  {server:<width$} {}", parts.join("; "));
        }
    }
    if !calls.is_empty() {
        let _ = writeln!(
            out,
            "Which system calls, per round trip ({} idle; counted by name in one more slice, not measured):\n{calls}",
            thousands(fewest)
        );
    }
    out.push_str(&cost_growth(points, servers, fewest, one, many));
    out.push_str(&batching(points, fewest, one, many));
    out.push_str(&idle_memory(points, servers));
    out
}

/// Which servers' cost grows with the fds they watch, and how their system
/// calls per round trip change from one active client to many.
fn cost_growth(
    points: &[Point],
    servers: &[&str],
    fewest: usize,
    one: usize,
    many: usize,
) -> String {
    let mut out = String::new();
    let (mut grows, mut flat) = (Vec::new(), Vec::new());
    for server in servers {
        if let Some((x, idle)) = growth(points, server, one, fewest) {
            let text = format!("{server} {x:.1}x at {}", thousands(idle));
            // Twice the RTT is far beyond run-to-run noise here.
            if x >= 2.0 {
                grows.push(text)
            } else {
                flat.push(text)
            }
        }
    }
    if !grows.is_empty() || !flat.is_empty() {
        let _ = writeln!(
            out,
            "Cost per fd watched (a lone client's RTT p50 from {} idle connections to the most held): grows for {}; \
             flat (under 2x) for {}.",
            thousands(fewest),
            if grows.is_empty() {
                "no server".into()
            } else {
                grows.join(", ")
            },
            if flat.is_empty() {
                "no server".into()
            } else {
                flat.join(", ")
            }
        );
    }
    if many > one {
        let changes: Vec<String> = servers
            .iter()
            .filter_map(|server| {
                let a = syscalls_at(points, server, fewest, one)?.per_round_trip();
                let b = syscalls_at(points, server, fewest, many)?.per_round_trip();
                Some(format!("{server} {a:.2} -> {b:.2}"))
            })
            .collect();
        if !changes.is_empty() {
            let _ = writeln!(
                out,
                "System calls per round trip from {one} to {many} active clients: {}. A readiness interface \
                 shares only its wait among the ready sockets and still reads and writes each one itself; \
                 io_uring shares the one call that both submits and waits.",
                changes.join(", ")
            );
        }
    }
    out
}

/// io_uring against epoll_lt: where batching pays (many active clients)
/// and where it does not (one).
fn batching(points: &[Point], idle: usize, one: usize, many: usize) -> String {
    let mut out = String::new();
    let enters = |point: &Point| {
        let s = point.by_call.as_ref()?;
        s.by_name
            .iter()
            .find(|(name, _)| name == "io_uring_enter")
            .map(|(_, n)| *n as f64 / s.round_trips.max(1) as f64)
    };
    for active in [many, one] {
        let (Some((_, epoll)), Some((uring_point, uring))) = (
            measured(points, "epoll_lt", idle, active),
            measured(points, "uring_echo", idle, active),
        ) else {
            continue;
        };
        let rates = format!(
            "{} vs {} round trips/s ({:.2}x{})",
            thousands(uring.per_second().round() as usize),
            thousands(epoll.per_second().round() as usize),
            uring.per_second() / epoll.per_second(),
            if idle == 0 { ", interleaved" } else { "" }
        );
        let (Some(e), Some(u)) = (
            syscalls_at(points, "epoll_lt", idle, active),
            syscalls_at(points, "uring_echo", idle, active),
        ) else {
            let _ = writeln!(
                out,
                "uring_echo against epoll_lt at {active} active: {rates}; system calls not counted"
            );
            continue;
        };
        let (eu, ee) = (u.per_round_trip(), e.per_round_trip());
        let enter_text = enters(uring_point).map_or(String::new(), |n| {
            if n >= 1.0 {
                format!(", {n:.2} io_uring_enter per round trip")
            } else {
                format!(
                    ", one io_uring_enter per {:.1} round trips",
                    1.0 / n.max(1e-9)
                )
            }
        });
        let compared = if eu < ee {
            format!("{:.1}x fewer", ee / eu.max(1e-9))
        } else {
            format!("{:.1}x as many", eu / ee.max(1e-9))
        };
        let lesson = match (active == many && many > one, eu < ee) {
            (true, true) => {
                "batching pays: each io_uring_enter submits the sends and receives of every completion \
                 it reaped and waits for the next ones, where epoll_lt makes a recvfrom and a sendto per line \
                 whatever epoll_wait batches"
            }
            (true, false) => {
                "batching did not pay here: the ring was entered about as often as completions came, \
                 so the submissions were not shared"
            }
            (false, true) => {
                "with one client there is nothing to batch: one round trip is one completion to wait \
                 for, so at least one io_uring_enter each; what is saved is only the recvfrom and sendto that \
                 became entries in the submission queue, and a round trip's cost is mostly the kernel's TCP work \
                 and the wake-up, which io_uring does not remove"
            }
            (false, false) => {
                "with one client there is nothing to batch: one round trip is one completion to wait \
                 for, so at least one io_uring_enter each, and the syscall count is no lower than epoll's"
            }
        };
        let _ = writeln!(
            out,
            "io_uring at {active} active, {} idle: uring_echo makes {eu:.2} system calls per round trip, \
             epoll_lt {ee:.2} ({compared}{enter_text}): {lesson}. Throughput: {rates}.",
            thousands(idle)
        );
        if active == many && many > one && uring.per_second() < epoll.per_second() {
            let _ = writeln!(
                out,
                "  uring_echo serves {:.0} % fewer round trips per second than epoll_lt here: fewer system \
                 calls do not make the kernel's TCP work (most of a round trip) any cheaper",
                100.0 * (1.0 - uring.per_second() / epoll.per_second())
            );
        }
    }
    out
}

/// Memory per idle connection, and what a receive posted on each costs.
fn idle_memory(points: &[Point], servers: &[&str]) -> String {
    let mut out = String::new();
    let held: Vec<(&str, usize, f64)> = servers
        .iter()
        .filter_map(|s| memory(points, s).map(|(idle, kib)| (*s, idle, kib)))
        .collect();
    if held.is_empty() {
        return out;
    }
    let list: Vec<String> = held
        .iter()
        .map(|(s, idle, kib)| {
            format!(
                "{s} {kib:.1} KiB ({:.1} MB at {})",
                kib * *idle as f64 / 1024.0,
                thousands(*idle)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "Memory per idle connection (VmRSS growth): {}.",
        list.join(", ")
    );
    let kib = |name: &str| {
        held.iter()
            .find(|(s, ..)| *s == name)
            .map(|(_, i, k)| (*i, *k))
    };
    if let (Some((idle, uring)), Some((_, epoll))) = (kib("uring_echo"), kib("epoll_lt")) {
        let _ = writeln!(
            out,
            "  uring_echo keeps a receive posted on every idle connection, and the buffer it names is the \
             kernel's until that receive completes: {:.1} KiB more per connection than epoll_lt, {:.1} MB at {} \
             idle. Provided buffer rings (IORING_REGISTER_PBUF_RING, IORING_OP_RECV with IOSQE_BUFFER_SELECT) \
             let the kernel take a buffer from a shared pool only when data arrives: idle connections then hold none.",
            uring - epoll,
            (uring - epoll) * idle as f64 / 1024.0,
            thousands(idle)
        );
    }
    out
}

/// One row per point, numbers in plain units for spreadsheets.
pub fn csv(points: &[Point], plan: &Plan) -> String {
    let mut out = String::from(
        "server,idle,active,line_bytes,seconds,round_trips,round_trips_per_s,rtt_p50_us,rtt_p99_us,\
         syscalls,syscalls_per_round_trip,rss_kib,kib_per_idle_connection,error\n",
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
        let (syscalls, per_rt) = match &p.syscalls {
            Ok(s) => (s.total.to_string(), format!("{:.3}", s.per_round_trip())),
            Err(_) => (String::new(), String::new()),
        };
        let memory = format!(
            "{},{}",
            p.rss_kib.map_or(String::new(), |kib| kib.to_string()),
            p.kib_per_idle
                .map_or(String::new(), |kib| format!("{kib:.2}"))
        );
        let _ = match &p.outcome {
            Ok(m) => writeln!(
                out,
                "{:.3},{},{:.0},{:.1},{:.1},{syscalls},{per_rt},{memory},",
                m.seconds,
                m.round_trips,
                m.per_second(),
                m.p50.as_secs_f64() * 1e6,
                m.p99.as_secs_f64() * 1e6
            ),
            Err(err) => writeln!(out, ",,,,,,,{memory},{}", csv_field(err)),
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
            syscalls: Err(String::new()),
            by_call: None,
            rss_kib: None,
            kib_per_idle: None,
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
            syscalls: Ok(()),
        }
    }

    fn with_syscalls(mut point: Point, per_rt: f64, enters: Option<f64>) -> Point {
        let round_trips = 1000;
        let total = (per_rt * round_trips as f64) as u64;
        point.syscalls = Ok(Syscalls {
            total,
            round_trips,
            by_name: Vec::new(),
        });
        point.by_call = enters.map(|n| Syscalls {
            total,
            round_trips,
            by_name: vec![("io_uring_enter".into(), (n * round_trips as f64) as u64)],
        });
        point
    }

    #[test]
    fn the_interface_table_is_computed_from_the_run() {
        let plan = Plan {
            idle: vec![0, 100],
            active: vec![1, 50],
            ..plan()
        };
        let mut points = Vec::new();
        for (server, one, many, enters, kib) in [
            ("epoll_lt", 3.0, 2.03, None, 0.1),
            ("uring_echo", 1.6, 0.19, Some(0.16), 4.1),
        ] {
            points.push(with_syscalls(point(server, 0, 1, 20), one, None));
            points.push(with_syscalls(point(server, 0, 50, 400), many, enters));
            for active in [1, 50] {
                let mut held = point(server, 100, active, 21);
                held.kib_per_idle = Some(kib);
                points.push(held);
            }
        }
        points.push(point("poll_echo", 0, 1, 20));
        points.push(point("poll_echo", 100, 1, 60));
        let table = table(&points);
        assert!(table.contains("0.19"), "{table}");
        assert!(table.contains("4.1"), "{table}");
        let text = findings(&points, &plan);
        for expected in [
            "io_uring                 uring_echo              1.60        0.19",
            "grows for poll_echo 3.0x at 100; flat (under 2x) for epoll_lt 1.0x at 100",
            "epoll_lt 3.00 -> 2.03, uring_echo 1.60 -> 0.19",
            "uring_echo makes 0.19 system calls per round trip, epoll_lt 2.03 (10.7x fewer, \
             one io_uring_enter per 6.2 round trips): batching pays",
            "at 1 active, 0 idle: uring_echo makes 1.60 system calls per round trip, epoll_lt 3.00 \
             (1.9x fewer): with one client there is nothing to batch",
            "4.0 KiB more per connection than epoll_lt, 0.4 MB at 100 idle",
            "IOSQE_BUFFER_SELECT",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
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
        assert!(csv.contains(",,,,,,,,,\"boom, \"\"quoted\"\"\""), "{csv}");
        assert!(
            csv.contains("epoll_lt,0,1,64,2.000,20000,10000,40.0,120.0,,,,,\n"),
            "{csv}"
        );
    }
}
