//! Given ready-made, the same in the stub and the solution: the command line
//! and its URLs, the check that DIR is a writable directory, the request,
//! the output lines and the exit code. Nothing here touches a socket.

use labkit::usage_error;
use std::fmt;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const USAGE: &str = "[--parallel N] [--timeout-ms T] [--out DIR] URL...";

/// The command line: `web_client [--parallel N] [--timeout-ms T] [--out DIR] URL...`.
pub struct Config {
    /// At most this many fetches in progress at once (N, default 4).
    pub parallel: usize,
    /// Each fetch's deadline, counted from the start of its connect (T, default 5000 ms).
    pub timeout: Duration,
    /// Where fetch `i`'s body goes: `out/i` (DIR, default `.`).
    pub out: PathBuf,
    /// The URLs in command-line order: fetch `i` is `urls[i - 1]`.
    pub urls: Vec<Url>,
}

impl Config {
    /// Parses `std::env::args()`; any mistake is a usage error (exit 2).
    pub fn parse() -> Config {
        Config::parse_from(std::env::args().skip(1))
    }

    /// Options come first, then the URLs: once a URL is seen, every later
    /// argument must be a URL, so an option after a URL is a usage error.
    pub fn parse_from(args: impl IntoIterator<Item = String>) -> Config {
        let mut config = Config {
            parallel: 4,
            timeout: Duration::from_millis(5000),
            out: PathBuf::from("."),
            urls: Vec::new(),
        };
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next_if(|arg| arg.starts_with('-')) {
            if arg == "-h" || arg == "--help" {
                println!("usage: {} {USAGE}", labkit::program_name());
                std::process::exit(0);
            }
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = args
                        .next()
                        .unwrap_or_else(|| usage(format!("{arg} needs a value")));
                    (arg, value)
                }
            };
            match name.as_str() {
                "--parallel" => config.parallel = positive(&name, &value) as usize,
                "--timeout-ms" => config.timeout = Duration::from_millis(positive(&name, &value)),
                "--out" => config.out = PathBuf::from(value),
                _ => usage(format!("unknown option '{name}'")),
            }
        }
        for arg in args {
            if arg.starts_with('-') {
                usage(format!("option '{arg}' after a URL: options come first"));
            }
            match Url::parse(&arg) {
                Ok(url) => config.urls.push(url),
                Err(why) => usage(format!("bad URL '{arg}': {why}")),
            }
        }
        if config.urls.is_empty() {
            usage("no URL to fetch");
        }
        config
    }
}

fn usage(message: impl fmt::Display) -> ! {
    usage_error(message, USAGE)
}

/// `value` as a number of at least 1, or a usage error.
fn positive(name: &str, value: &str) -> u64 {
    match value.parse::<u64>() {
        Ok(n) if n >= 1 && n <= u64::from(u32::MAX) => n,
        _ => usage(format!("{name} takes a positive number, not '{value}'")),
    }
}

/// `http://HOST[:PORT][/PATH]`, HOST a dotted IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The URL as given on the command line, for the output lines.
    pub text: String,
    pub addr: SocketAddrV4,
    /// Starts with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, &'static str> {
        let rest = text
            .strip_prefix("http://")
            .ok_or("the scheme must be http:// (in lower case)")?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| "bad port")?),
            None => (authority, 80),
        };
        // No name lookup: getaddrinfo blocks, and this client never blocks.
        let host: Ipv4Addr = host
            .parse()
            .map_err(|_| "the host must be a dotted IPv4 address")?;
        if port == 0 {
            return Err("the port must be 1 to 65535");
        }
        // A space, a control character (CR, LF) or a `#` would break the request line.
        if path.contains(|c: char| c == '#' || c.is_whitespace() || c.is_control()) {
            return Err("no '#', space or control character in the path");
        }
        Ok(Url {
            text: text.to_string(),
            addr: SocketAddrV4::new(host, port),
            path: path.to_string(),
        })
    }

    /// `GET PATH HTTP/1.0\r\nHost: HOST:PORT\r\n\r\n`.
    pub fn request(&self) -> Vec<u8> {
        format!("GET {} HTTP/1.0\r\nHost: {}\r\n\r\n", self.path, self.addr).into_bytes()
    }
}

/// Fails (one line on stderr, exit 1) unless `dir` is a directory this
/// process can create files in. Only trying says so: as root, a directory
/// of mode 0555 is still writable, and access(2) cannot see every reason
/// (a read-only file system, an ACL).
pub fn check_writable_dir(dir: &Path) {
    let probe = dir.join(format!(".web_client-probe-{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(err) => labkit::fail(format_args!(
            "--out {}: not a writable directory ({err})",
            dir.display()
        )),
    }
}

/// Why a fetch failed: the word after `error=` in its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused.
    Refused,
    /// Not ended T ms after its connect started.
    Timeout,
    /// The connection was reset while sending or receiving.
    Reset,
    /// The stream ended before the empty line, or the status line is not HTTP's.
    BadResponse,
    /// Anything else: a word naming it (`socket`, `connect`, `io`, `file`...).
    Other(&'static str),
}

impl Failure {
    /// The failure an I/O error on the socket means.
    pub fn of(err: &io::Error, otherwise: &'static str) -> Failure {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure::Reset,
            io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Other(otherwise),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
            Failure::Reset => "reset",
            Failure::BadResponse => "bad-response",
            Failure::Other(word) => word,
        })
    }
}

/// How a fetch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server closed the connection after the body: CODE and body bytes.
    Fetched {
        status: u16,
        bytes: u64,
    },
    Failed(Failure),
}

/// The lines on stdout and the exit code.
pub struct Report {
    out: io::Stdout,
    pub ok: usize,
    pub failed: usize,
}

impl Report {
    pub fn new() -> Report {
        Report {
            out: io::stdout(),
            ok: 0,
            failed: 0,
        }
    }

    /// `i URL status=CODE bytes=B` or `i URL error=REASON`, flushed at once:
    /// the lines come in the order fetches end, while the others go on.
    pub fn ended(&mut self, i: usize, url: &Url, outcome: Outcome) -> io::Result<()> {
        let text = &url.text;
        let mut out = self.out.lock();
        match outcome {
            Outcome::Fetched { status, bytes } => {
                self.ok += 1;
                writeln!(out, "{i} {text} status={status} bytes={bytes}")?;
            }
            Outcome::Failed(why) => {
                self.failed += 1;
                writeln!(out, "{i} {text} error={why}")?;
            }
        }
        out.flush()
    }

    /// `done ok=K failed=F`, then exit 0 if every fetch succeeded, else 1.
    pub fn done(self) -> ! {
        let (ok, failed) = (self.ok, self.failed);
        let mut out = self.out.lock();
        if let Err(err) = writeln!(out, "done ok={ok} failed={failed}").and_then(|()| out.flush()) {
            Report::stdout_failed(err)
        }
        std::process::exit(if failed == 0 { 0 } else { 1 })
    }

    /// Writing stdout failed (EPIPE when its reader is gone: Rust ignores
    /// SIGPIPE, so it shows as an error): one line on stderr, exit 1.
    pub fn stdout_failed(err: io::Error) -> ! {
        labkit::fail(format_args!("cannot write to stdout: {err}"))
    }
}

impl Default for Report {
    fn default() -> Report {
        Report::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|why| panic!("{text}: {why}"))
    }

    #[test]
    fn a_url_gives_its_address_and_path() {
        let u = url("http://127.0.0.2:8080/a/b?c=d");
        assert_eq!(u.addr, "127.0.0.2:8080".parse().unwrap());
        assert_eq!(u.path, "/a/b?c=d");
        assert_eq!(u.text, "http://127.0.0.2:8080/a/b?c=d");
    }

    #[test]
    fn port_and_path_have_defaults() {
        let u = url("http://10.0.0.1");
        assert_eq!(u.addr, "10.0.0.1:80".parse().unwrap());
        assert_eq!(u.path, "/");
        assert_eq!(url("http://10.0.0.1:81").path, "/");
    }

    #[test]
    fn the_request_names_host_and_port() {
        assert_eq!(
            url("http://127.0.0.1/x").request(),
            b"GET /x HTTP/1.0\r\nHost: 127.0.0.1:80\r\n\r\n"
        );
        assert_eq!(
            url("http://127.0.0.1:9000").request(),
            b"GET / HTTP/1.0\r\nHost: 127.0.0.1:9000\r\n\r\n"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "https://127.0.0.1/",
            "HTTP://127.0.0.1/",
            "http://localhost/",
            "http://127.0.0/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:70000/",
            "http://127.0.0.1:/",
            "http://127.0.0.1/a#b",
            "http://127.0.0.1/a b",
            "http://127.0.0.1/a\r\nX: y",
            "http://",
            "--parallel",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn options_come_before_the_urls() {
        let args = [
            "--parallel",
            "2",
            "--timeout-ms=300",
            "--out",
            "/tmp",
            "http://127.0.0.1/",
        ];
        let config = Config::parse_from(args.map(String::from));
        assert_eq!(config.parallel, 2);
        assert_eq!(config.timeout, Duration::from_millis(300));
        assert_eq!(config.out, PathBuf::from("/tmp"));
        assert_eq!(config.urls, [url("http://127.0.0.1/")]);
    }

    #[test]
    fn lines_name_the_outcome() {
        assert_eq!(Failure::BadResponse.to_string(), "bad-response");
        assert_eq!(Failure::Other("file").to_string(), "file");
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(Failure::of(&reset, "io"), Failure::Reset);
    }
}
