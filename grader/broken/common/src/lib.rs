//! What every deliberately broken echo server shares and never breaks: its
//! command line, the fd limit, the listener, the `quit` test and the two
//! small enums of a connection's life. The faults live in each crate's own
//! connection and server code, not here.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process;
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use socket2::{Domain, Socket, Type};

/// The contract's longest line, counting its `\n`.
pub const MAX_LINE: usize = 8192;
/// The contract's backpressure rule: stop reading a connection while this
/// many reply bytes are unsent.
pub const HIGH_WATER: usize = 64 * 1024;
/// The contract's reply to a line longer than [`MAX_LINE`].
pub const TOO_LONG: &[u8] = b"ERR line too long\n";
/// The contract's goodbye to an idle connection (timeouts).
pub const BYE: &[u8] = b"BYE idle\n";

const BACKLOG: i32 = 4096;
/// How long a blocking accept waits when the process is out of fds.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading and echoing lines.
    Open,
    /// The client ended its input: send what is pending, then close.
    Closing,
    /// `quit` or a too-long line: send what is pending, then shut down writing.
    Ending,
    /// Writing is shut down: discard input until the client closes.
    Lingering,
}

impl Phase {
    /// Whether a connection in this phase reads its socket, with `unsent`
    /// reply bytes waiting and `peer_eof` once the client has shut down its
    /// writing half: an open one while under the backpressure limit, an
    /// ending one until the client's EOF, a lingering one always (to see the
    /// close), a closing one never.
    pub fn wants_read(self, unsent: usize, peer_eof: bool) -> bool {
        match self {
            Phase::Open => unsent < HIGH_WATER,
            Phase::Ending => !peer_eof,
            Phase::Lingering => true,
            Phase::Closing => false,
        }
    }
}

/// What to do with a connection after serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Keep,
    Close,
}

/// The name this program was run as, for its messages.
pub fn program_name(default: &str) -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| default.to_owned())
}

/// A numeric flag of a command line, `--name VALUE` or `--name=VALUE`, and
/// the values it accepts.
pub struct Flag {
    pub name: &'static str,
    pub min: u64,
    pub max: u64,
}

/// `--port PORT`: 0 lets the system pick.
pub const PORT: Flag = Flag {
    name: "--port",
    min: 0,
    max: u16::MAX as u64,
};

/// Parses a command line of numeric `flags` only; the last one of a flag
/// wins. Returns each flag's value (`None` where it was not given), in the
/// order of `flags`, or what is wrong.
pub fn parse_flags(flags: &[Flag]) -> Result<Vec<Option<u64>>, String> {
    let mut values = vec![None; flags.len()];
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|arg| format!("unexpected argument {arg:?}"))?;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let Some(at) = flags.iter().position(|flag| flag.name == name) else {
            return Err(format!("unexpected argument '{arg}'"));
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or(format!("{name} needs a value"))?
                .into_string()
                .map_err(|value| format!("invalid value {value:?} for {name}"))?,
        };
        values[at] = Some(number(&flags[at], &value)?);
    }
    Ok(values)
}

/// A decimal number in the flag's range.
fn number(flag: &Flag, value: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid value '{value}' for {} ({}-{})",
            flag.name, flag.min, flag.max
        )
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    value
        .parse()
        .ok()
        .filter(|n| (flag.min..=flag.max).contains(n))
        .ok_or_else(invalid)
}

/// [`parse_flags`], or the message and `usage: PROG USAGE` on stderr and
/// exit status 2.
pub fn flags_or_exit(prog: &str, usage: &str, flags: &[Flag]) -> Vec<Option<u64>> {
    parse_flags(flags).unwrap_or_else(|msg| {
        eprintln!("{prog}: {msg}");
        eprintln!("usage: {prog} {usage}");
        process::exit(2);
    })
}

/// The port of `[--port PORT]`, or the usage message and exit status 2.
pub fn port_or_exit(prog: &str) -> u16 {
    flags_or_exit(prog, "[--port PORT]", &[PORT])[0].unwrap_or(0) as u16
}

/// Parses `[--port PORT]` (also `--port=PORT`); the last `--port` wins.
pub fn parse_port_args() -> Result<u16, String> {
    Ok(parse_flags(&[PORT])?[0].unwrap_or(0) as u16)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Failing is not fatal.
pub fn raise_nofile_limit() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard || setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return;
    }
    // An unlimited hard limit is refused above fs.nr_open: take the most the kernel allows.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok());
    if let Some(nr_open) = nr_open {
        let target = hard.min(nr_open);
        if target > soft {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, target, hard);
        }
    }
}

/// Binds `ip:port` and listens, or prints why not and exits 1. Returns the
/// listener and its port.
pub fn listen_or_exit(prog: &str, ip: Ipv4Addr, port: u16, nonblocking: bool) -> (Socket, u16) {
    open_listener(ip, port, nonblocking).unwrap_or_else(|msg| {
        eprintln!("{prog}: {msg}");
        process::exit(1);
    })
}

fn open_listener(ip: Ipv4Addr, port: u16, nonblocking: bool) -> Result<(Socket, u16), String> {
    let addr = SocketAddrV4::new(ip, port);
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)
        .map_err(|e| format!("cannot create a socket: {e}"))?;
    sock.set_reuse_address(true)
        .map_err(|e| format!("cannot set SO_REUSEADDR: {e}"))?;
    sock.bind(&addr.into())
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    sock.listen(BACKLOG)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    sock.set_nonblocking(nonblocking)
        .map_err(|e| format!("cannot set O_NONBLOCK on the listener: {e}"))?;
    let port = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .ok_or_else(|| format!("cannot read the local address of {addr}"))?;
    Ok((sock, port))
}

/// The contract's `listening on` line, flushed.
pub fn announce(port: u16) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "listening on 127.0.0.1:{port}");
    let _ = stdout.flush();
}

pub fn is_out_of_fds(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// Whether a line split in two pieces (a partial line kept from an earlier
/// read, and the rest) is `quit`.
pub fn is_quit(head: &[u8], tail: &[u8]) -> bool {
    let len = head.len() + tail.len();
    if len > 6 {
        return false;
    }
    let mut line = [0; 6];
    line[..head.len()].copy_from_slice(head);
    line[head.len()..len].copy_from_slice(tail);
    matches!(&line[..len], b"quit\n" | b"quit\r\n")
}

/// Blocking accept, retrying what a server should survive.
pub fn accept_blocking(listener: &Socket) -> Socket {
    loop {
        match listener.accept() {
            Ok((sock, _)) => return sock,
            Err(e) if is_out_of_fds(&e) => thread::sleep(ACCEPT_PAUSE),
            Err(_) => {}
        }
    }
}
