//! The sigio_udp lab's own checks, after the datagram suite it shares with
//! tcp_udp: `signals.rs` (a burst behind one SIGIO, signals lost between
//! the last receive and the wait) and `process.rs` (the server seen from
//! /proc: signal-driven, where it sleeps, what it costs while idle, the
//! address it binds, its command line).

use crate::check::Suite;

mod process;
mod signals;

pub static SUITE: Suite = Suite {
    name: "sigio_udp",
    checks: &[
        signals::BURST,
        signals::LOST_SIGNAL,
        process::SIGNAL_DRIVEN,
        process::API,
        process::IDLE,
        process::LOOPBACK_ONLY,
        process::USAGE,
    ],
    hints: include_str!("hints.txt"),
    start: None,
    needs: None,
};
