//! `write_set`: replies that did not fit when the server wrote them go out
//! as soon as the client makes room, because a socket with unsent replies is
//! in select's write set.
//!
//! Two ways to get it wrong, and what each looks like from the client:
//! - no write set, writing only after a read: once backpressure has stopped
//!   the reads, the rest of the replies never come;
//! - no write set, but a select timeout after which every pending write is
//!   tried again: the replies come, but only when the timeout expires.
//!
//! So the client sends lines as fast as the server takes them and reads the
//! echoes more slowly than any server writes them: the server's writes keep
//! returning EAGAIN with replies queued, and backpressure stops its reads.
//! Each time the client has read everything that arrived while replies are
//! due, it times the wait for the next bytes. The kernel forwards what the
//! server's send buffer holds by itself; once that is gone, a server waiting
//! with the socket in the write set is woken and writes within milliseconds.
//! A timeout-retry server writes at its next timeout, fills its send buffer
//! at once (the client reads slowly), and sleeps out the whole next timeout
//! while the client drains it: with a 1 s timeout the client waits about
//! 0.9 s for every few MiB (the server's send buffer), again and again.
//! A wait does not count the time the server or the client spent waiting
//! for a CPU (`/proc/.../schedstat`): on a busy machine that is the
//! machine's delay, not the server's.

use crate::check::{Check, Ctx, Failure, Outcome, broken, secs, within};
use crate::harness::client::{Client, End, Received};
use crate::harness::proc;
use crate::harness::text::bytes;
use crate::suites::echo::{bulk_outcome, lines};
use std::time::{Duration, Instant};

/// Bytes sent in all. A timeout-retry server moves a send buffer or two
/// per timeout (6 to 15 MiB here), so this gives it several to sleep out;
/// a correct server takes 2.5 s for it, up to 7 s with both cores busy.
const TOTAL: usize = 64 << 20;
/// The client reads at most this much, then pauses for [`READ_PAUSE`]:
/// about 30 MB/s, well below what a server writes even on a busy machine,
/// so the server's send buffer stays full and a correct server is woken by
/// select again and again. (At 60 MB/s a timeout-retry server slowed down
/// by other processes took up to 18 MiB to fill its send buffer again.)
const READ_AT_ONCE: usize = 64 * 1024;
const READ_PAUSE: Duration = Duration::from_millis(2);
/// Nothing at all for this long while replies are due: they never come.
const NEVER: Duration = Duration::from_secs(2);
/// A wait this long for replies after making room is late. Measured on 2
/// cores: a correct server (Rust or Python) almost never lets the client's
/// buffer run dry, and then for under 50 ms; with a load average of 7, 1 wait
/// in 24 gradings reached 317 ms before the time spent waiting for a CPU
/// was taken out. A 1 s timeout retry makes the client wait 700 to 1,000 ms.
const LATE: Duration = Duration::from_millis(300);
/// This many late waits fail the check: one pause of a busy machine does not.
const LATE_WAITS: usize = 2;

pub(super) const WRITE_SET: Check = Check {
    name: "write_set",
    points: 8,
    title: "a client with small buffers sends 64 MiB of lines and reads the echoes slowly, so the server's writes keep hitting EAGAIN: every byte comes back, each time within 300 ms of the client making room (select reports the socket writable)",
    limit: secs(60),
    run: write_set,
    proven_by: &[
        broken(
            "broken_select_echo_no_write_set",
            "put the socket in the write set",
        ),
        broken(
            "broken_select_echo_timeout_retry",
            "only when select's timeout expires",
        ),
    ],
};

/// What the client saw of one slow-reading exchange.
struct Stream {
    /// Bytes the server took.
    sent: usize,
    got: Received,
    /// How often the client had read everything that had arrived while
    /// replies were due, and how long it then waited for the next bytes,
    /// the late waits (at least [`LATE`]) only.
    emptied: usize,
    late: Vec<Duration>,
    longest: Duration,
    /// Time taken out of the waits: the server or the client was runnable
    /// but had no CPU.
    no_cpu: Duration,
}

fn write_set(ctx: &Ctx) -> Outcome {
    let mut server = ctx.start()?;
    let mut c = ctx.connect_small(&server)?;
    let data = lines(TOTAL, 41);
    let started = Instant::now();
    let stream = slow_reader(&mut c, server.pid(), &data, within(secs(50)));
    ctx.note(format!(
        "{} sent, {} back in {:.1} s; the client emptied its buffer with replies due {} times, longest wait {} ms, {} waits of {} ms or more ({} ms without a CPU taken out)",
        bytes(stream.sent),
        bytes(stream.got.data.len()),
        started.elapsed().as_secs_f64(),
        stream.emptied,
        stream.longest.as_millis(),
        stream.late.len(),
        LATE.as_millis(),
        stream.no_cpu.as_millis()
    ));
    if stream.late.len() >= LATE_WAITS {
        return Err(late(&c, &stream));
    }
    // Whole lines come back; an unfinished last one is not due.
    let owed = owed(&data[..stream.sent]);
    if stream.got.data == data[..owed] {
        if stream.got.end == End::Complete {
            return server.alive("during the check");
        }
        if stream.got.end == End::Timeout {
            return Err(Failure::new(format!(
                "c{} sent {} of lines while reading the echoes slowly, and got every reply; then the server took no more bytes for {} s",
                c.id,
                bytes(stream.sent),
                NEVER.as_secs()
            ))
            .expected(format!("all {} taken and echoed", bytes(data.len())))
            .cause("reading stopped for good: a connection leaves the read set only while 64 KiB or more of its replies are unsent, and joins it again as soon as they drain")
            .stalled()
            .transcript(&[c.id])
            .into());
        }
    }
    let mut summary = format!(
        "c{} sent {} of lines while reading the echoes slowly (the server's writes then hit EAGAIN, and backpressure stops its reads), and got {} of the {} due back",
        c.id,
        bytes(stream.sent),
        bytes(stream.got.data.len()),
        bytes(owed)
    );
    summary += &bulk_outcome(&data[..owed], &stream.got, NEVER).0;
    Err(Failure::new(summary)
        .expected("every byte back")
        .cause("replies that did not fit when you wrote them must go out once the client reads: while a connection has unsent replies put the socket in the write set, and write again when select reports it writable (waiting for the next read never comes: backpressure has stopped reading)")
        .transcript(&[c.id])
        .into())
}

/// The bytes of `sent` up to its last `\n`: the replies due.
fn owed(sent: &[u8]) -> usize {
    sent.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Sends `data` as fast as the server takes it while reading the echoes at
/// most [`READ_AT_ONCE`] per [`READ_PAUSE`], until every reply is back, none
/// comes for [`NEVER`], [`LATE_WAITS`] waits were late, or the deadline.
fn slow_reader(c: &mut Client, pid: i32, data: &[u8], deadline: Instant) -> Stream {
    let mut stream = Stream {
        sent: 0,
        got: Received {
            data: Vec::with_capacity(data.len()),
            end: End::Complete,
        },
        emptied: 0,
        late: Vec::new(),
        longest: Duration::ZERO,
        no_cpu: Duration::ZERO,
    };
    let mut buf = vec![0u8; READ_AT_ONCE];
    let mut last_sent = Instant::now();
    while stream.late.len() < LATE_WAITS {
        if stream.sent < data.len() {
            let chunk = &data[stream.sent..(stream.sent + 256 * 1024).min(data.len())];
            match c.send_some(chunk) {
                Ok(0) => {}
                Ok(n) => {
                    stream.sent += n;
                    last_sent = Instant::now();
                }
                Err(end) => {
                    stream.got.end = end;
                    break;
                }
            }
        }
        let due = owed(&data[..stream.sent]);
        if stream.got.data.len() >= due {
            if stream.sent == data.len() {
                break; // every reply is back
            }
            // Everything sent is echoed, and the server takes no more bytes.
            if last_sent.elapsed() >= NEVER || Instant::now() >= deadline {
                stream.got.end = End::Timeout;
                break;
            }
            std::thread::sleep(READ_PAUSE);
            continue;
        }
        let room = (due - stream.got.data.len()).min(buf.len());
        match c.recv_some(&mut buf[..room]) {
            Ok(Some(n)) => {
                stream.got.data.extend_from_slice(&buf[..n]);
                std::thread::sleep(READ_PAUSE);
                continue;
            }
            Ok(None) => {}
            Err(end) => {
                stream.got.end = end;
                break;
            }
        }
        // Everything that arrived is read and replies are due: from here on
        // the client waits for the server.
        stream.emptied += 1;
        let empty = Instant::now();
        let queued = run_delay(pid);
        let next = c.recv_exact(1, deadline.min(empty + NEVER));
        let no_cpu = run_delay(pid).saturating_sub(queued);
        stream.no_cpu += no_cpu;
        let wait = empty.elapsed().saturating_sub(no_cpu);
        stream.longest = stream.longest.max(wait);
        if wait >= LATE {
            stream.late.push(wait);
        }
        stream.got.data.extend_from_slice(&next.data);
        if next.end != End::Complete {
            stream.got.end = next.end;
            break;
        }
    }
    stream
}

/// How long the server's threads and this client thread have waited for a
/// CPU so far, runnable but not running (zero where the kernel does not
/// keep it).
fn run_delay(pid: i32) -> Duration {
    let client = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok());
    Duration::from_nanos(proc::run_delay_ns(pid).unwrap_or(0) + client.unwrap_or(0))
}

/// Every byte came, but each time only at the server's timeout.
fn late(c: &Client, stream: &Stream) -> crate::check::Verdict {
    let millis: Vec<String> = stream
        .late
        .iter()
        .map(|w| w.as_millis().to_string())
        .collect();
    Failure::new(format!(
        "c{id} sent lines while reading the echoes slowly, so that the server's writes kept hitting EAGAIN. \
         The replies were right but late: {} times c{id} had read everything that had arrived while replies \
         were still due, and {} of those times the next bytes took {} ms, not counting any time the server waited \
         for a CPU (the check stopped there, after {} of replies)",
        stream.emptied,
        stream.late.len(),
        millis.join(" and "),
        bytes(stream.got.data.len()),
        id = c.id,
    ))
    .expected(format!(
        "the next bytes within {} ms of the client making room (one longer wait is forgiven, for a busy machine): \
         a server waiting in select with the socket in the write set is woken as soon as there is room, \
         and writes within milliseconds",
        LATE.as_millis()
    ))
    .cause("the replies go out only when select's timeout expires: while a connection has unsent replies put its socket in the write set, so that select returns as soon as it is writable, and wait with no timeout")
    .into()
}
