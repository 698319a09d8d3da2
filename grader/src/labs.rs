//! The labs the grader knows, and their checks.

use crate::check::Check;

pub struct Lab {
    pub name: &'static str,
    pub summary: &'static str,
    pub checks: Vec<Check>,
}

/// Every lab of the course, in teaching order, with whether it can be graded yet.
pub const COURSE: &[(&str, &str)] = &[
    (
        "nonblocking_read",
        "copy a pipe, FIFO or file to stdout in non-blocking mode",
    ),
    ("poll_echo", "line echo server on poll(2)"),
    ("epoll_lt", "line echo server on level-triggered epoll"),
    (
        "epoll_et",
        "line echo server on edge-triggered epoll, draining until EAGAIN",
    ),
    (
        "timeouts",
        "echo server with idle timeouts and a periodic tick",
    ),
    (
        "select_telnet",
        "telnet-like client multiplexing stdin and a socket with select(2)",
    ),
];

/// The labs that have checks.
pub fn all() -> Vec<Lab> {
    let epoll_lab = |name, summary| Lab {
        name,
        summary,
        checks: crate::echo::checks()
            .into_iter()
            .chain(crate::epoll::checks())
            .collect(),
    };
    vec![
        Lab {
            name: "nonblocking_read",
            summary: "copy a pipe, FIFO or file to stdout in non-blocking mode",
            checks: crate::nonblocking_read::checks(),
        },
        Lab {
            name: "poll_echo",
            summary: "line echo server on poll(2)",
            checks: crate::echo::checks(),
        },
        epoll_lab(
            "epoll_lt",
            "line echo server on level-triggered epoll, 10,000 clients",
        ),
        epoll_lab(
            "epoll_et",
            "line echo server on edge-triggered epoll, draining until EAGAIN, 10,000 clients",
        ),
        Lab {
            name: "timeouts",
            summary: "epoll echo server with idle timeouts and a periodic tick",
            checks: crate::echo::checks()
                .into_iter()
                .chain(crate::timeouts::checks())
                .collect(),
        },
        Lab {
            name: "select_telnet",
            summary: "telnet-like client multiplexing stdin and a socket with select(2)",
            checks: crate::select_telnet::checks(),
        },
    ]
}

pub fn find(name: &str) -> Option<Lab> {
    all().into_iter().find(|lab| lab.name == name)
}
