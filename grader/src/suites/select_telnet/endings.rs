//! The checks of how a session ends: stdin's end (the half-close), the
//! server closing or resetting, the exit codes (usage errors, a refused
//! connection), and stdout's reader going away.

use super::session::{STALL, Session, mismatch, pattern};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, grader_error, secs};
use crate::harness::process::SpawnOptions;
use crate::harness::text::{bytes, first_difference, quote};
use nix::sys::signal::Signal;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

const CLOSED_MESSAGE: &str = "Connection closed by foreign host.";

pub(super) const STDIN_EOF: Check = Check {
    name: "stdin_eof",
    points: 12,
    title: "at stdin's end the server sees the half-close (read returns 0), then what the server sends still appears on stdout; when the server closes, the program exits 0",
    limit: secs(40),
    run: stdin_eof,
    proven_by: &[broken(
        "broken_select_telnet_exit_at_stdin_eof",
        "do not exit",
    )],
};

fn stdin_eof(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let last: &[u8] = b"the last line before the end of input\n";
    s.type_in(last);
    s.end_stdin();
    s.pump(Duration::from_secs(3), Duration::from_secs(3), |s| {
        s.peer_done()
    });
    // A program that exits closes its socket too: the server's end of file
    // may be that. Give a quick exit the time to be seen.
    if let Some(status) = s.program.wait_exit(Duration::from_millis(150)) {
        let got = s.from_peer.clone();
        let ending = s.program.describe_exit(status);
        return Err(Failure::new(format!(
            "stdin got {} then ended (the grader closed it); the server received {}, and {ending}",
            quote(last),
            quote(&got)
        ))
        .expected("the line, then end of file (the half-close), and the program still running: the server may still answer")
        .cause("at stdin's end, do not exit: send what is buffered, shut down the writing half (shutdown(Shutdown::Write)) and keep copying the socket to stdout until the peer closes")
        .into());
    }
    if !s.peer_done() {
        let got = s.from_peer.clone();
        let asleep = s.asleep_in();
        return Err(Failure::new(format!(
            "stdin got {} then ended (the grader closed it); in 3 s the server received {} but no end of file.{asleep}",
            quote(last),
            quote(&got)
        ))
        .expected("the line, then end of file (read returns 0): the program shuts down its writing half")
        .cause("at stdin's end (read returns 0), call socket.shutdown(Shutdown::Write) once the buffer is sent, and take stdin out of the read set")
        .into());
    }
    if let Some(text) = mismatch("stdin to the server", last, &s.from_peer) {
        return Err(Failure::new(text)
            .expected(format!("exactly {}, then end of file", quote(last)))
            .into());
    }
    let eof_at = s.stdin_closed_at.unwrap_or_else(Instant::now);
    // The half-close ends only the program's side: the server still talks.
    let tail = pattern(256 * 1024, "after your end of input");
    s.send(&tail);
    s.pump(Duration::from_secs(5), STALL, |s| {
        s.from_stdout.len() >= tail.len() || s.stdout_eof
    });
    s.pump_for(Duration::from_millis(50));
    if s.from_stdout != tail {
        let exited = s.program.exit_status();
        let got = s.from_stdout.len();
        let summary = match exited {
            Some(_) => format!(
                "after stdin ended the server sent {} more; only {} reached stdout before the program ended",
                bytes(tail.len()),
                bytes(got)
            ),
            None => format!(
                "after stdin ended the server sent {} more; {} reached stdout{}",
                bytes(tail.len()),
                bytes(got),
                first_difference(&tail, &s.from_stdout)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        };
        return Err(Failure::new(summary)
            .expected("every byte on stdout: stdin's end only closes the program's sending side")
            .cause("at stdin's end, shut down the writing half and keep copying the socket to stdout until the peer closes; do not exit (or close the socket) yet")
            .into());
    }
    s.close_peer(false);
    let status = s.await_exit(Duration::from_secs(3));
    let stderr = s.program.stderr_tail();
    ctx.note(format!(
        "stdin closed {} ms before the server did",
        eof_at.elapsed().as_millis()
    ));
    expect_closed_exit(
        &mut s,
        status,
        &stderr,
        "after stdin had ended, the server closed the connection",
    )
}

/// Exit 0 and the closing message, after the peer closed.
fn expect_closed_exit(
    s: &mut Session,
    status: Option<ExitStatus>,
    stderr: &str,
    situation: &str,
) -> Outcome {
    let Some(status) = status else {
        let asleep = s.asleep_in();
        return Err(Failure::new(format!(
            "{situation}; 3 s later the program was still running.{asleep}"
        ))
        .expected(format!("`{CLOSED_MESSAGE}` on stderr and exit 0 at once"))
        .cause("a read of 0 bytes from the socket means the peer closed: print the message and exit(0)")
        .into());
    };
    if status.code() != Some(0) {
        let ending = s.program.describe_exit(status);
        return Err(Failure::new(format!("{situation}; {ending}"))
            .expected(format!("`{CLOSED_MESSAGE}` on stderr and exit code 0"))
            .cause(if status.signal() == Some(Signal::SIGPIPE as i32) {
                "it wrote to the closed connection and SIGPIPE killed it: ignore SIGPIPE (Rust does by default) and treat EPIPE/ECONNRESET as the peer closing"
            } else {
                "a connection closed or reset by the peer is the normal end of a session, not an error: exit 0"
            })
            .into());
    }
    ensure(stderr.contains(CLOSED_MESSAGE), || {
        Failure::new(format!(
            "{situation}; the program exited 0 but its stderr has no `{CLOSED_MESSAGE}`: {}",
            if stderr.is_empty() {
                "(empty)".to_string()
            } else {
                quote(stderr.as_bytes())
            }
        ))
        .expected(format!("`{CLOSED_MESSAGE}` on stderr"))
    })
}

pub(super) const EXIT_CODES: Check = Check {
    name: "exit_codes",
    points: 10,
    title: "the server closes first: its last line on stdout, `Connection closed by foreign host.` on stderr, exit 0; bad arguments: exit 2; connection refused: `select_telnet: connect to HOST:PORT: REASON`, exit 1",
    limit: secs(40),
    run: exit_codes,
    proven_by: &[
        broken("broken_select_telnet_unwraps", "exited with code 101"),
        broken(
            "broken_select_telnet_usage_exits_one",
            "exit 2 for a bad command line",
        ),
    ],
};

fn exit_codes(ctx: &Ctx) -> Outcome {
    // 1. The server says goodbye and closes, while the user types nothing.
    let mut s = Session::start(ctx)?;
    s.pump_for(Duration::from_millis(200));
    let goodbye: &[u8] = b"the server says goodbye\n";
    s.send(goodbye);
    s.pump(Duration::from_secs(2), STALL, |s| s.peer_flushed());
    s.close_peer(false);
    let status = s.await_exit(Duration::from_secs(3));
    let stderr = s.program.stderr_tail();
    if !s.from_stdout.starts_with(goodbye) {
        return Err(Failure::new(format!(
            "the server sent {} and closed; stdout had {}",
            quote(goodbye),
            if s.from_stdout.is_empty() {
                "nothing".to_string()
            } else {
                quote(&s.from_stdout)
            }
        ))
        .expected("the line on stdout, then the closing message and exit 0")
        .into());
    }
    expect_closed_exit(
        &mut s,
        status,
        &stderr,
        "the server sent a line and closed, with stdin idle",
    )?;
    drop(s);

    // 2. Usage errors.
    for args in [
        vec![],
        vec!["127.0.0.1"],
        vec!["127.0.0.1", "not-a-port"],
        vec!["127.0.0.1", "80", "extra"],
    ] {
        let shown = format!("{} {}", ctx.lab.name, args.join(" "))
            .trim_end()
            .to_string();
        let mut program = ctx.spawn(SpawnOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..SpawnOptions::default()
        })?;
        let Some(status) = program.wait_exit(Duration::from_secs(5)) else {
            return Err(
                Failure::new(format!("`{shown}` was still running after 5 s"))
                    .expected("a usage message on stderr and exit code 2")
                    .into(),
            );
        };
        if status.code() != Some(2) {
            let cause = if status.code() == Some(1) {
                "a usage error is not a fatal error: exit 2 for a bad command line (1 is for errors such as a refused connection)"
            } else {
                "check the number of arguments and that PORT is a number before connecting; exit(2) with a usage line"
            };
            return Err(
                Failure::new(format!("`{shown}`: {}", program.describe_exit(status)))
                    .expected("a usage message on stderr and exit code 2 (usage error)")
                    .cause(cause)
                    .into(),
            );
        }
        if program.stderr_tail().trim().is_empty() {
            return Err(
                Failure::new(format!("`{shown}`: exit code 2, but nothing on stderr"))
                    .expected("a usage message on stderr, e.g. `usage: select_telnet HOST PORT`")
                    .into(),
            );
        }
    }

    // 3. Nobody listens: a port that is bound but not listening refuses.
    let closed =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(grader_error)?;
    closed
        .bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .map_err(grader_error)?;
    let port = closed
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .ok_or_else(|| grader_error("no local address"))?;
    let shown = format!("{} 127.0.0.1 {port}", ctx.lab.name);
    let mut program = ctx.spawn(SpawnOptions {
        args: vec!["127.0.0.1".into(), port.to_string()],
        ..SpawnOptions::default()
    })?;
    let Some(status) = program.wait_exit(Duration::from_secs(5)) else {
        return Err(Failure::new(format!(
            "`{shown}` (nothing listens there) was still running after 5 s"
        ))
        .expected("exit code 1 at once: the connection is refused")
        .into());
    };
    let stderr = program.stderr_tail();
    let wanted = format!("connect to 127.0.0.1:{port}: ");
    let line_ok = stderr.lines().any(|l| {
        l.split_once(&wanted)
            .is_some_and(|(_, reason)| !reason.trim().is_empty())
    });
    if status.code() != Some(1) || !line_ok {
        return Err(Failure::new(format!(
            "`{shown}` (nothing listens there): {}",
            program.describe_exit(status)
        ))
        .expected(format!(
            "one line `{}: {wanted}REASON` on stderr (e.g. Connection refused) and exit code 1",
            ctx.lab.name
        ))
        .cause("report a failed connect with the address and the reason and exit(1), no panic (`.unwrap()` on connect exits 101 with a backtrace hint)")
        .into());
    }
    Ok(())
}

pub(super) const PEER_RESET: Check = Check {
    name: "peer_reset",
    points: 6,
    title: "the server resets the connection while input is waiting on stdin: `Connection closed by foreign host.`, exit 0, no death by SIGPIPE",
    limit: secs(40),
    run: peer_reset,
    proven_by: &[broken(
        "broken_select_telnet_reset_is_error",
        "not an error",
    )],
};

fn peer_reset(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let hello: &[u8] = b"hello before the reset\n";
    s.type_in(hello);
    let got = s.await_peer(0, hello.len(), Duration::from_secs(3));
    ensure(got == hello, || {
        Failure::new(format!(
            "typed {}; the server received {}",
            quote(hello),
            quote(&got)
        ))
        .expected("the line unchanged")
    })?;
    // While the program cannot run: input waits on stdin, and the server
    // resets the connection. When it runs again, both are ready at once.
    s.program.signal(Signal::SIGSTOP);
    s.type_in(&pattern(16 * 1024, "typed while the server resets"));
    s.pump(Duration::from_millis(300), STALL, |s| s.stdin_flushed());
    s.close_peer(true);
    std::thread::sleep(Duration::from_millis(50));
    s.program.signal(Signal::SIGCONT);
    let status = s.await_exit(Duration::from_secs(3));
    let stderr = s.program.stderr_tail();
    expect_closed_exit(
        &mut s,
        status,
        &stderr,
        "the server reset the connection (RST) while input waited on stdin",
    )
}
pub(super) const STDOUT_CLOSED: Check = Check {
    name: "stdout_closed",
    points: 8,
    title: "stdout's reader goes away and the server sends a line: the program reports the error and exits 1, it is not killed by SIGPIPE",
    limit: secs(40),
    run: stdout_closed,
    proven_by: &[broken("broken_select_telnet_sigpipe_default", "SIGPIPE")],
};

fn stdout_closed(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let hello: &[u8] = b"still there?\n";
    s.send(hello);
    let got = s.await_stdout(0, hello.len(), Duration::from_secs(3));
    ensure(got == hello, || {
        Failure::new(format!(
            "the server sent {}; stdout showed {}",
            quote(hello),
            quote(&got)
        ))
        .expected("the line unchanged")
    })?;
    // The reader of stdout goes away (like `select_telnet ... | head -1`).
    s.stdout = None;
    for i in 0..10 {
        s.send(format!("line {i} for a reader that is gone\n").as_bytes());
        s.pump_for(Duration::from_millis(20));
    }
    let status = s.await_exit(Duration::from_secs(3));
    let Some(status) = status else {
        let asleep = s.asleep_in();
        return Err(Failure::new(format!(
            "stdout's reader went away and the server sent 10 lines; 3 s later the program was still running.{asleep}"
        ))
        .expected("write() to stdout fails with EPIPE: one line on stderr, exit code 1")
        .cause("an error writing stdout is fatal: report it and exit(1), do not ignore it")
        .into());
    };
    let ending = s.program.describe_exit(status);
    if status.signal() == Some(Signal::SIGPIPE as i32) {
        return Err(Failure::new(format!(
            "stdout's reader went away and the server sent a line: {ending}"
        ))
        .expected("write() to stdout fails with EPIPE: one line on stderr, exit code 1")
        .cause("SIGPIPE killed it: keep SIGPIPE ignored (Rust's default; C and some runtimes must set SIG_IGN) and handle EPIPE as an error")
        .into());
    }
    ensure(status.code() == Some(1), || {
        Failure::new(format!(
            "stdout's reader went away and the server sent a line: {ending}"
        ))
        .expected("write() to stdout fails with EPIPE: one line on stderr, exit code 1")
        .cause(if status.code() == Some(101) {
            "a panic: println!/print! panic when stdout is closed; write with write_all and handle the error"
        } else {
            "a failed write to stdout is a fatal error: one line on stderr and exit(1)"
        })
    })
}
