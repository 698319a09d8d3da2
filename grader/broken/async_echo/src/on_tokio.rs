//! FAULT(UsesTokio): compiled into `broken_async_echo_uses_tokio` only (the
//! library does not use tokio, so no other binary links it): the same server
//! on tokio's current-thread runtime instead of a runtime of its own. It works
//! (one thread, epoll, the idle timeout, backpressure): what is wrong is only
//! that the lab's point, the executor and the reactor, came from a crate.
//!
//! Reads and writes alternate here (tokio's `read`/`write` with a deadline
//! each), where `broken_async_echo::run` reads while it writes.

use broken_async_echo::{Session, config_or_exit};
use broken_common::{
    ACCEPT_PAUSE, BYE, Next, Phase, announce, is_out_of_fds, listen_or_exit, program_name,
    raise_nofile_limit,
};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::process;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};

const READ_BUF: usize = 4 * 1024;

/// Runs the server on tokio, exiting 2 on a usage error and 1 on a fatal
/// error. Never returns.
pub fn run_on_tokio() -> ! {
    let prog = program_name("broken_async_echo_uses_tokio");
    let config = config_or_exit(&prog);
    raise_nofile_limit();
    let (listener, port) = listen_or_exit(&prog, Ipv4Addr::LOCALHOST, config.port, true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| {
            eprintln!("{prog}: cannot start the tokio runtime: {err}");
            process::exit(1)
        });
    let listener = {
        let _entered = runtime.enter();
        TcpListener::from_std(StdListener::from(listener)).unwrap_or_else(|err| {
            eprintln!("{prog}: cannot register the listening socket: {err}");
            process::exit(1)
        })
    };
    announce(port);
    runtime.block_on(accept_clients(prog, listener, config.idle));
    process::exit(1)
}

async fn accept_clients(prog: String, listener: TcpListener, idle: Duration) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(client(stream, idle));
            }
            Err(err) if err.kind() == ErrorKind::ConnectionAborted => {}
            Err(err) if is_out_of_fds(&err) => tokio::time::sleep(ACCEPT_PAUSE).await,
            Err(err) => {
                eprintln!("{prog}: accept: {err}");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// Why a connection's conversation ended early.
enum Stop {
    Idle,
    Gone,
}

async fn client(mut stream: TcpStream, idle: Duration) {
    let mut session = Session::accepted();
    if let Err(Stop::Idle) = converse(&mut stream, &mut session, idle).await {
        // One attempt, not waited for.
        let _ = stream.try_write(BYE);
    }
}

fn deadline(session: &Session, idle: Duration) -> Instant {
    Instant::from_std(session.last_moved + idle)
}

async fn converse(
    stream: &mut TcpStream,
    session: &mut Session,
    idle: Duration,
) -> Result<(), Stop> {
    let mut buf = vec![0; READ_BUF];
    loop {
        while !session.out.is_empty() {
            let (front, _) = session.out.as_slices();
            match timeout_at(deadline(session, idle), stream.write(front)).await {
                Err(_) => return Err(Stop::Idle),
                Ok(Ok(n)) => session.sent(n),
                Ok(Err(_)) => return Err(Stop::Gone),
            }
        }
        match session.phase {
            Phase::Closing => return Ok(()),
            Phase::Ending => {
                if stream.shutdown().await.is_err() || session.peer_eof {
                    return Ok(());
                }
                session.phase = Phase::Lingering;
            }
            Phase::Open | Phase::Lingering => {}
        }
        match timeout_at(deadline(session, idle), stream.read(&mut buf)).await {
            Err(_) => return Err(Stop::Idle),
            Ok(Ok(0)) => {
                if session.received_eof() == Next::Close {
                    return Ok(());
                }
            }
            Ok(Ok(n)) => session.received(&buf[..n]),
            Ok(Err(_)) => return Err(Stop::Gone),
        }
    }
}
