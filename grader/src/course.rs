//! The course registry: every lab, in teaching order, and everything the
//! rest of the project needs to know about it. `grader --list`, `grader
//! all`, hints, batch, Gradescope, the watch loop and the tests all read this
//! table; `grader/tests/course.rs` fails if a lab's folders, packages,
//! handout, contract section or Makefile entry are missing.
//!
//! Adding a lab: one entry here, its suite in `grader/src/suites/<family>/`
//! (checks and `hints.txt`), its broken programs in
//! `grader/broken/<family>/`, its stub in `labs/<lab>`, its solution in
//! `solutions/<lab>`, its handout in `docs/labs/<lab>.md` and its section in
//! `docs/CONTRACT.md`.

pub use crate::check::{BadArgs, EchoLab, Idle, Lab, Trigger};
use crate::check::{Check, secs};
use crate::harness::proc::nr;
use crate::suites;

const POLL: Idle = Idle {
    syscalls: &[nr::POLL, nr::PPOLL],
    names: "poll or ppoll",
    call: "poll",
    how: "wait for all sockets at once with nix::poll::poll",
};

const SELECT: Idle = Idle {
    syscalls: &[nr::SELECT, nr::PSELECT6],
    names: "select or pselect6",
    call: "select",
    how: "wait for all sockets at once with nix::sys::select::select",
};

const EPOLL: Idle = Idle {
    syscalls: &[nr::EPOLL_WAIT, nr::EPOLL_PWAIT, nr::EPOLL_PWAIT2],
    names: "epoll_wait, epoll_pwait or epoll_pwait2",
    call: "epoll_wait",
    how: "wait for all sockets at once with nix::sys::epoll::Epoll::wait",
};

/// Any of the three readiness APIs: the lab leaves the choice to the student.
const ANY_READINESS: Idle = Idle {
    syscalls: &[
        nr::POLL,
        nr::PPOLL,
        nr::EPOLL_WAIT,
        nr::EPOLL_PWAIT,
        nr::EPOLL_PWAIT2,
        nr::SELECT,
        nr::PSELECT6,
    ],
    names: "poll, ppoll, epoll_wait, epoll_pwait, epoll_pwait2, select or pselect6",
    call: "the readiness call",
    how: "wait for every socket at once, in one poll, epoll_wait or select",
};

pub static LABS: &[Lab] = &[
    Lab {
        name: "nonblocking_read",
        summary: "copy a pipe, FIFO or file to stdout in non-blocking mode",
        idle: Idle {
            syscalls: &[nr::NANOSLEEP, nr::CLOCK_NANOSLEEP],
            names: "nanosleep or clock_nanosleep",
            call: "read",
            how: "sleep a little after EAGAIN (std::thread::sleep) before reading again",
        },
        suites: &[&suites::nonblocking_read::SUITE],
        echo: None,
        trigger: None,
        stub: "nonblocking_read",
        solution: "nonblocking_read_solution",
        broken: "broken_nonblocking_read",
        correct: &[
            "correct_nonblocking_read",
            "grader/tests/impls/nonblocking_read.py",
        ],
        bench: false,
        budget: secs(30),
    },
    Lab {
        name: "select_echo",
        summary: "line echo server on select(2), each connection an explicit state machine, within FD_SETSIZE",
        idle: SELECT,
        suites: &[&suites::echo::SUITE, &suites::select_echo::SUITE],
        echo: Some(EchoLab {
            clients: 1000,
            args: &[],
            flags: &[],
            bad_args: &[],
            stall: None,
            lifted: &[],
        }),
        trigger: None,
        stub: "select_echo",
        solution: "select_echo_solution",
        broken: "broken_echo",
        correct: &["correct_select_echo", "grader/tests/impls/select_echo.py"],
        bench: true,
        budget: secs(60),
    },
    Lab {
        name: "poll_echo",
        summary: "line echo server on poll(2)",
        idle: POLL,
        suites: &[&suites::echo::SUITE],
        echo: Some(EchoLab {
            clients: 1000,
            args: &[],
            flags: &[],
            bad_args: &[],
            stall: None,
            lifted: &[],
        }),
        trigger: None,
        stub: "poll_echo",
        solution: "poll_echo_solution",
        broken: "broken_echo",
        correct: &["correct_poll_echo", "grader/tests/impls/poll_echo.py"],
        bench: true,
        budget: secs(60),
    },
    Lab {
        name: "epoll_lt",
        summary: "line echo server on level-triggered epoll, 10,000 clients",
        idle: EPOLL,
        suites: &[&suites::echo::SUITE, &suites::epoll::SUITE],
        echo: Some(EchoLab {
            clients: 10_000,
            args: &[],
            flags: &[],
            bad_args: &[],
            stall: None,
            lifted: &[],
        }),
        trigger: Some(Trigger::Level),
        stub: "epoll_lt",
        solution: "epoll_lt_solution",
        broken: "broken_epoll",
        // The poll crate's epoll server is a correct level-triggered one.
        correct: &["correct_epoll_lt", "broken_poll_echo_uses_epoll"],
        bench: true,
        budget: secs(75),
    },
    Lab {
        name: "epoll_et",
        summary: "line echo server on edge-triggered epoll, draining until EAGAIN, 10,000 clients",
        idle: EPOLL,
        suites: &[&suites::echo::SUITE, &suites::epoll::SUITE],
        echo: Some(EchoLab {
            clients: 10_000,
            args: &[],
            flags: &[],
            bad_args: &[],
            stall: Some(
                "in edge-triggered mode an edge comes once: after each event, read until EAGAIN (WouldBlock), and write until the replies are sent or EAGAIN, or the bytes left behind wait for an edge that never comes",
            ),
            lifted: &[],
        }),
        trigger: Some(Trigger::Edge),
        stub: "epoll_et",
        solution: "epoll_et_solution",
        broken: "broken_epoll",
        correct: &["correct_epoll_et"],
        bench: true,
        budget: secs(75),
    },
    Lab {
        name: "timeouts",
        summary: "epoll echo server with idle timeouts and a periodic tick",
        idle: Idle {
            how: "wait for all sockets at once with nix::sys::epoll::Epoll::wait, with a timeout computed from the earliest deadline",
            ..EPOLL
        },
        suites: &[&suites::echo::SUITE, &suites::timeouts::SUITE],
        // Idle closes must not disturb the echo checks (backpressure and
        // scale keep connections quiet for several seconds): a 10-minute
        // timeout.
        echo: Some(EchoLab {
            clients: 10_000,
            args: &["--idle-timeout-ms", "600000"],
            flags: &["--idle-timeout-ms", "--tick-ms"],
            bad_args: &[],
            stall: None,
            lifted: &[],
        }),
        trigger: None,
        stub: "timeouts",
        solution: "timeouts_solution",
        broken: "broken_timeouts",
        correct: &["correct_timeouts"],
        bench: true,
        budget: secs(120),
    },
    Lab {
        name: "async_echo",
        summary: "line echo server as async functions on your own executor and epoll reactor, with idle timeouts",
        idle: Idle {
            how: "park the executor in the reactor: epoll_wait with the earliest timer's deadline as its timeout",
            ..EPOLL
        },
        suites: &[&suites::echo::SUITE, &suites::async_echo::SUITE],
        // As for timeouts: a 10-minute idle timeout for the echo checks.
        echo: Some(EchoLab {
            clients: 10_000,
            args: &["--idle-timeout-ms", "600000"],
            flags: &["--idle-timeout-ms"],
            bad_args: &[BadArgs {
                args: &["--idle-timeout-ms", "0"],
                why: "the contract makes --idle-timeout-ms 0 a usage error (a server that closes every connection at once is never what was meant): refuse it before listening",
            }],
            stall: Some(
                "most often a lost wake-up: an edge that came while no task waited must not be forgotten (the reactor keeps a readiness flag that only WouldBlock or a short read clears, or the task tries reading again before it waits: with an edge-triggered registration no new event comes for bytes already there), and a read that returns Pending must leave its waker first",
            ),
            lifted: &[],
        }),
        trigger: None,
        stub: "async_echo",
        solution: "async_echo_solution",
        broken: "broken_async_echo",
        correct: &["correct_async_echo", "grader/tests/impls/async_echo.py"],
        bench: true,
        budget: secs(120),
    },
    Lab {
        name: "uring_echo",
        summary: "line echo server on io_uring: accept, receive and send submitted to a ring, completions instead of readiness",
        idle: Idle {
            syscalls: &[nr::IO_URING_ENTER],
            names: "io_uring_enter",
            call: "io_uring_enter",
            how: "submit what is ready and wait for the next completion in one io_uring_enter (submit_and_wait(1)), never a readiness call",
        },
        suites: &[&suites::echo::SUITE, &suites::uring_echo::SUITE],
        echo: Some(EchoLab {
            clients: 10_000,
            args: &[],
            flags: &[],
            bad_args: &[],
            stall: Some(
                "a connection's next operation was never submitted: after each completion submit what comes next (another receive once fewer than 64 KiB are unsent, the rest of a short send), and keep one accept armed",
            ),
            // io_uring never waits in a socket call: a blocking socket is
            // fine (the contract lifts this rule for uring_echo).
            lifted: &["nonblocking_sockets"],
        }),
        trigger: None,
        stub: "uring_echo",
        solution: "uring_echo_solution",
        broken: "broken_uring",
        correct: &["correct_uring_echo"],
        bench: true,
        budget: secs(90),
    },
    Lab {
        name: "sigio_udp",
        summary: "UDP echo server driven by SIGIO: signal-driven I/O, draining until EAGAIN, waiting with sigsuspend",
        idle: Idle {
            syscalls: &[nr::RT_SIGSUSPEND, nr::PAUSE, nr::RT_SIGTIMEDWAIT],
            names: "rt_sigsuspend, pause or rt_sigtimedwait",
            call: "sigsuspend",
            how: "block SIGIO while receiving until EAGAIN, then wait for it with sigsuspend(old mask)",
        },
        suites: &[&suites::datagram::SUITE, &suites::sigio_udp::SUITE],
        echo: None,
        trigger: None,
        stub: "sigio_udp",
        solution: "sigio_udp_solution",
        broken: "broken_datagram",
        correct: &["correct_sigio_udp", "grader/tests/impls/sigio_udp.py"],
        bench: false,
        budget: secs(60),
    },
    Lab {
        name: "tcp_udp",
        summary: "one server, one readiness loop: the line echo over TCP and datagram echo over UDP on the same port, no TCP client delaying a datagram",
        idle: Idle {
            how: "wait for the listener, the UDP socket and every TCP client at once, in one poll, epoll_wait or select",
            ..ANY_READINESS
        },
        suites: &[
            &suites::echo::SUITE,
            &suites::datagram::SUITE,
            &suites::tcp_udp::SUITE,
        ],
        echo: Some(EchoLab {
            clients: 1000,
            args: &[],
            flags: &[],
            bad_args: &[],
            stall: None,
            lifted: &[],
        }),
        trigger: None,
        stub: "tcp_udp",
        solution: "tcp_udp_solution",
        broken: "broken_datagram",
        correct: &["correct_tcp_udp"],
        bench: true,
        budget: secs(120),
    },
    Lab {
        name: "select_telnet",
        summary: "telnet-like client multiplexing stdin and a socket with select(2)",
        idle: Idle {
            how: "wait for stdin and the socket at once with nix::sys::select::select",
            ..SELECT
        },
        suites: &[&suites::select_telnet::SUITE],
        echo: None,
        trigger: None,
        stub: "select_telnet",
        solution: "select_telnet_solution",
        broken: "broken_select_telnet",
        correct: &[
            "correct_select_telnet",
            "grader/tests/impls/select_telnet.py",
        ],
        bench: false,
        budget: secs(45),
    },
    Lab {
        name: "web_client",
        summary: "HTTP/1.0 client fetching many URLs at once: non-blocking connect, one readiness loop, a deadline per fetch, a sliding window of N",
        idle: Idle {
            how: "wait for every fetch's socket at once, in one poll, epoll_wait or select, with the time left until the earliest deadline as its timeout",
            ..ANY_READINESS
        },
        suites: &[&suites::web_client::SUITE],
        echo: None,
        trigger: None,
        stub: "web_client",
        solution: "web_client_solution",
        broken: "broken_web_client",
        correct: &["correct_web_client", "grader/tests/impls/web_client.py"],
        bench: false,
        budget: secs(120),
    },
];

pub fn find(name: &str) -> Option<&'static Lab> {
    LABS.iter().find(|lab| lab.name == name)
}

/// The hint for `check` of `lab`: its section of the hints file of the
/// suite it belongs to, with `{handout}` and `{api}` filled in.
pub fn hint(lab: &Lab, check: &Check) -> Option<String> {
    let suite = lab
        .suites
        .iter()
        .find(|suite| suite.checks.iter().any(|c| c.name == check.name))?;
    section(suite.hints, check.name).map(|hint| {
        hint.replace("{handout}", &lab.handout())
            .replace("{api}", lab.idle.call)
    })
}

/// The section `## check` of a hint file, its lines joined; lines starting
/// with `#` are notes to the authors.
fn section(text: &str, check: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|line| {
        line.strip_prefix("## ")
            .is_none_or(|name| name.trim() != check)
    });
    lines.next()?;
    let body: Vec<&str> = lines
        .take_while(|line| !line.starts_with("## "))
        .filter(|line| !line.starts_with('#'))
        .map(str::trim)
        .collect();
    let body = body.join("\n").trim().to_string();
    (!body.is_empty()).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_found_and_comments_skipped() {
        let text = "# comment\n## a\nfirst line\n# note to self\nsecond {api}\n\n## b\nother\n";
        assert_eq!(section(text, "a").unwrap(), "first line\nsecond {api}");
        assert_eq!(section(text, "b").unwrap(), "other");
        assert_eq!(section(text, "c"), None);
    }

    #[test]
    fn every_check_of_every_lab_has_a_hint_with_its_placeholders_filled() {
        for lab in LABS {
            for check in lab.checks() {
                let hint = hint(lab, check)
                    .unwrap_or_else(|| panic!("{}/{} has no hint", lab.name, check.name));
                assert!(
                    !hint.contains("{handout}") && !hint.contains("{api}"),
                    "{}/{}: {hint}",
                    lab.name,
                    check.name
                );
            }
        }
    }

    #[test]
    fn every_hint_section_names_a_check_of_its_suite() {
        for lab in LABS {
            for suite in lab.suites {
                for line in suite.hints.lines() {
                    if let Some(name) = line.strip_prefix("## ") {
                        assert!(
                            suite.checks.iter().any(|c| c.name == name.trim()),
                            "{}/hints.txt has a hint for {name}, which is not one of its checks",
                            suite.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn names_are_unique_and_echo_labs_say_what_they_expect() {
        for (i, lab) in LABS.iter().enumerate() {
            assert!(
                LABS[..i].iter().all(|other| other.name != lab.name),
                "{} twice",
                lab.name
            );
            let mut names: Vec<&str> = lab.checks().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                lab.checks().count(),
                "{}: a check name twice",
                lab.name
            );
            let has_echo = lab.suites.iter().any(|s| s.name == "echo");
            assert_eq!(has_echo, lab.echo.is_some(), "{}: echo entry", lab.name);
            let has_epoll = lab.suites.iter().any(|s| s.name == "epoll");
            assert_eq!(has_epoll, lab.trigger.is_some(), "{}: trigger", lab.name);
        }
    }
}
