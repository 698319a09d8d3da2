//! Scaffolding shared by every lab, given to students ready-made.
//!
//! None of this is the subject of a lab: it parses command lines, reports fatal
//! errors the way the contract asks (exit 2 for usage, exit 1 for the rest, one
//! line on stderr, never a panic backtrace), raises the fd limit and opens the
//! listening socket. The I/O multiplexing is yours to write in `labs/<lab>`.

mod args;
mod net;

pub use args::{Args, EchoArgs};
pub use net::{
    announce, announce_udp, bind_loopback, bind_tcp_udp_loopback, bind_udp_loopback, raise_fd_limit,
};

use std::fmt::Display;
use std::process::exit;

/// The program's name as the user typed it, for error messages.
pub fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "lab".to_string())
}

/// A fatal error other than a usage error: one line on stderr, exit code 1.
pub fn fail(what: impl Display) -> ! {
    eprintln!("{}: {what}", program_name());
    exit(1)
}

/// A usage error: the message and the usage on stderr, exit code 2.
pub fn usage_error(message: impl Display, usage: &str) -> ! {
    let name = program_name();
    eprintln!("{name}: {message}");
    eprintln!("usage: {name} {usage}");
    exit(2)
}

/// Unwraps a result or ends the program with `fail("<context>: <error>")`.
pub trait OrFail<T> {
    fn or_fail(self, context: impl Display) -> T;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, context: impl Display) -> T {
        self.unwrap_or_else(|err| fail(format_args!("{context}: {err}")))
    }
}
