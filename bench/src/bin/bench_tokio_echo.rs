//! bench_tokio_echo: the line echo server as a Rust user would write it with
//! tokio, on the single-threaded (`current_thread`) runtime. A baseline for
//! `make bench`, not a lab solution.
//!
//! One task per connection, written as straight-line code; tokio turns every
//! `.await` into a registration with its epoll (edge-triggered, through mio)
//! and resumes the task when the socket is ready. The comparison with
//! epoll_lt shows what that convenience costs, or does not.
//!
//! The protocol follows CONTRACT.md for what the bench needs (lines echoed
//! byte for byte, `quit`, the 8192-byte limit, a lingering close); a blocking
//! `write_all` in the task is the backpressure.

use labkit::OrFail;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MAX_LINE: usize = 8192;

fn main() {
    let args = labkit::EchoArgs::parse();
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(args.port);
    // tokio requires a non-blocking socket to adopt.
    listener
        .set_nonblocking(true)
        .or_fail("cannot make the listening socket non-blocking");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .or_fail("cannot start the tokio runtime");
    // The socket listens already: clients may connect before the runtime runs.
    labkit::announce(&listener);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).or_fail("tokio listener");
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    tokio::spawn(async move {
                        let _ = serve(stream).await;
                    });
                }
                Err(err) => {
                    // EMFILE and friends: say so, and give the clients time to
                    // leave (blocking the runtime briefly, on an error path).
                    eprintln!("accept: {err}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    })
}

/// Echoes lines until `quit`, a too-long line or the client's EOF.
async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let (reader, mut writer) = stream.split();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::with_capacity(MAX_LINE);
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if line.last() != Some(&b'\n') {
            if n < MAX_LINE {
                // End of input: echo the unterminated fragment, then close.
                writer.write_all(&line).await?;
                return Ok(());
            }
            // 8192 bytes and no `\n`: the line is too long.
            writer.write_all(b"ERR line too long\n").await?;
            break;
        }
        if is_quit(&line) {
            break;
        }
        writer.write_all(&line).await?;
    }
    // Lingering close: our FIN, then discard input until the client's EOF.
    writer.shutdown().await?;
    let mut sink = [0u8; 4096];
    while reader.read(&mut sink).await? > 0 {}
    Ok(())
}

fn is_quit(line: &[u8]) -> bool {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    text == b"quit"
}
