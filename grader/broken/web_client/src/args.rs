//! The command line, the URL rules and the output directory: every variant shares them
//! (the LazyUrls and LazyDir faults only decide when they are checked).

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process;
use std::time::Duration;

use nix::unistd::{AccessFlags, access};

use crate::Fault;

const USAGE: &str = "usage: web_client [--parallel N] [--timeout-ms T] [--out DIR] URL...";

/// What the command line asks for.
pub struct Config {
    pub parallel: usize,
    pub timeout: Duration,
    pub dir: PathBuf,
    /// The URLs as given (checked up front except by the LazyUrls fault).
    pub urls: Vec<String>,
}

/// A URL the contract accepts, and the request it asks for.
#[derive(Clone, Debug)]
pub struct Url {
    pub addr: SocketAddrV4,
    pub request: Vec<u8>,
}

/// Prints `why` and the usage, exits 2.
pub fn usage_exit(prog: &str, why: &str) -> ! {
    eprintln!("{prog}: {why}\n{USAGE}");
    process::exit(2)
}

/// Parses the command line, or prints why not and exits 2.
pub fn parse_or_exit(prog: &str, fault: Fault) -> Config {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.into_string())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| usage_exit(prog, "an argument is not UTF-8"));
    let config = parse(&args).unwrap_or_else(|why| usage_exit(prog, &why));
    if fault != Fault::LazyUrls {
        for url in &config.urls {
            if let Err(why) = Url::parse(url) {
                usage_exit(prog, &why);
            }
        }
    }
    config
}

fn parse(args: &[String]) -> Result<Config, String> {
    let mut config = Config {
        parallel: 4,
        timeout: Duration::from_millis(5000),
        dir: PathBuf::from("."),
        urls: Vec::new(),
    };
    let mut rest = args;
    while let Some(arg) = rest.first().filter(|arg| arg.starts_with('-')) {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let taken = if inline.is_some() { 1 } else { 2 };
        let value = inline
            .or_else(|| rest.get(1).cloned())
            .ok_or_else(|| format!("{name} needs a value"))?;
        match name {
            "--parallel" => config.parallel = positive(name, &value)? as usize,
            "--timeout-ms" => config.timeout = Duration::from_millis(positive(name, &value)?),
            "--out" => config.dir = PathBuf::from(value),
            _ => return Err(format!("unknown option {arg}")),
        }
        rest = &rest[taken..];
    }
    if rest.is_empty() {
        return Err("no URL given".into());
    }
    if let Some(late) = rest.iter().find(|arg| arg.starts_with('-')) {
        return Err(format!("{late}: options go before the URLs"));
    }
    config.urls = rest.to_vec();
    Ok(config)
}

/// A positive decimal number, digits only.
fn positive(name: &str, value: &str) -> Result<u64, String> {
    let number = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .filter(|&n| n > 0 && n <= u32::MAX as u64);
    number.ok_or_else(|| format!("{name} {value:?}: not a positive number"))
}

impl Url {
    /// `http://A.B.C.D[:PORT][/PATH]`, or why not.
    pub fn parse(text: &str) -> Result<Url, String> {
        let bad = |why: &str| Err(format!("{text:?}: {why}"));
        let Some(rest) = text.strip_prefix("http://") else {
            return bad("not an http:// URL");
        };
        if text
            .bytes()
            .any(|b| b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return bad("a URL has no '#', spaces or control characters");
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        let (host, port_text) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let Some(ip) = dotted_quad(host) else {
            return bad("the host must be a dotted IPv4 address (no name lookup)");
        };
        let port = match port_text {
            None => 80,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return bad("the port must be a number from 1 to 65535"),
            },
        };
        // The Host header names the host and port as the URL does, :80 when it gives none.
        let host_port = format!("{host}:{}", port_text.unwrap_or("80"));
        let request = format!("GET {path} HTTP/1.0\r\nHost: {host_port}\r\n\r\n").into_bytes();
        Ok(Url {
            addr: SocketAddrV4::new(ip, port),
            request,
        })
    }
}

/// Four decimal numbers 0-255 separated by dots, nothing else.
fn dotted_quad(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(parts) {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

/// DIR must be a directory this user may create files in, or one line and exit 1.
pub fn check_dir_or_exit(prog: &str, dir: &Path) {
    let shown = dir.display();
    let why = match fs::metadata(dir) {
        Err(e) => Some(e.to_string()),
        Ok(meta) if !meta.is_dir() => Some("not a directory".to_owned()),
        // access() asks the kernel with this process's own ids: exactly "may I create here".
        Ok(_) => access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
            .err()
            .map(|e| e.desc().to_owned()),
    };
    if let Some(why) = why {
        eprintln!("{prog}: cannot write into --out {shown}: {why}");
        process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn urls_the_contract_accepts() {
        let url = Url::parse("http://127.0.0.1:8080/a/b?c=d").unwrap();
        assert_eq!(url.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            url.request,
            b"GET /a/b?c=d HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        let url = Url::parse("http://10.0.0.2").unwrap();
        assert_eq!(url.request, b"GET / HTTP/1.0\r\nHost: 10.0.0.2:80\r\n\r\n");
    }

    #[test]
    fn urls_the_contract_refuses() {
        for bad in [
            "https://127.0.0.1/",
            "HTTP://127.0.0.1/",
            "http://localhost:80/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:70000/",
            "http://127.0.0.1:/",
            "http://127.0.0.1/a#b",
            "http://127.0.0.1/a b",
            "http://127.0.0.256/",
            "http://127.0.0/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn command_lines() {
        let config = parse(&strings(&[
            "--parallel",
            "2",
            "--timeout-ms=300",
            "http://1.2.3.4/",
        ]));
        let config = config.unwrap();
        assert_eq!((config.parallel, config.timeout.as_millis()), (2, 300));
        for bad in [
            &["--parallel", "0", "http://1.2.3.4/"][..],
            &["--timeout-ms", "x", "http://1.2.3.4/"],
            &["--out", "/tmp"],
            &["http://1.2.3.4/", "--parallel", "2"],
            &["--verbose", "http://1.2.3.4/"],
        ] {
            assert!(parse(&strings(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
