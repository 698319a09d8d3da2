//! The run the pause checks share: a stdin pipe opened with O_APPEND, half the
//! data waiting, the writer pausing 500 ms, the other half, end of input; the
//! input's flags are read before, during and after, and where the program
//! sleeps is sampled during the pause.

use super::harness::{
    Collector, Ran, Report, finish, get_flags, judge_copy, pattern, pipe, set_flags, spawn,
};
use crate::check::{Ctx, Failure, Outcome, Verdict, ensure, grader_error, within};
use crate::harness::proc::{self, SyscallState};
use crate::harness::process::Program;
use crate::harness::text::bytes;
use nix::fcntl::OFlag;
use nix::unistd::dup;
use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

/// How long the writer pauses in the middle of the stream.
const PAUSE: Duration = Duration::from_millis(500);
/// The `--retry-ms` the pause checks pass.
pub(super) const RETRY_MS: u64 = 10;
/// Each half of the stream around the pause: less than a pipe holds, so the
/// grader's writes never block.
const HALF: usize = 48 * 1024;

/// What one run with a pause in the middle of the stream showed.
pub(super) struct PauseRun {
    program: Program,
    /// Flags of the input's open file description before the program started.
    pub(super) original: i32,
    /// ... in the middle of the pause.
    pub(super) during: i32,
    /// ... after the program exited.
    pub(super) after: i32,
    /// How long the pipe stayed empty, as the grader saw it.
    pub(super) pause: Duration,
    /// CPU time the program used during the pause.
    pub(super) cpu: Option<Duration>,
    /// Where the program was, sampled during the pause.
    pub(super) samples: Vec<Option<SyscallState>>,
    /// The program exited while the writer was pausing.
    ended_early: bool,
    expected: Vec<u8>,
    pub(super) ran: Ran,
}

/// Runs the program on a stdin pipe opened with O_APPEND (a flag a program
/// that overwrites the flags loses): 48 KiB waiting, a 500 ms pause, 48 KiB,
/// end of input.
pub(super) fn pause_run(ctx: &Ctx, args: &[&str]) -> Result<PauseRun, Verdict> {
    let expected = pattern(2 * HALF, 3);
    let (input, mut feeder) = pipe().map(|(r, w)| (r, File::from(w)))?;
    set_flags(&input, get_flags(&input)? | OFlag::O_APPEND.bits())?;
    let original = get_flags(&input)?;
    feeder
        .write_all(&expected[..HALF])
        .map_err(|err| grader_error(format!("writing the first half: {err}")))?;
    let (out_read, out_write) = pipe()?;
    let collector = Collector::start(out_read, false);
    let theirs = dup(&input).map_err(|err| grader_error(format!("dup: {err}")))?;
    let mut program = spawn(ctx, args, Some(theirs), out_write)?;
    let pid = program.pid;
    if !collector.wait_for(HALF, within(Duration::from_secs(10))) {
        let ending = program
            .wait_exit(Duration::from_millis(200))
            .map(|status| format!("; {}", program.describe_exit(status)))
            .unwrap_or_default();
        return Err(Failure::new(format!(
            "{} were waiting in the stdin pipe; within 10 s only {} came out on stdout{ending}",
            bytes(HALF),
            bytes(collector.total())
        ))
        .expected("the bytes copied to stdout as soon as they can be read")
        .into());
    }
    // The program has copied the first half: from now on the pipe is empty.
    let started = Instant::now();
    let cpu_before = proc::cpu_time(pid);
    std::thread::sleep(PAUSE / 2);
    let during = get_flags(&input)?;
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(proc::syscall(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(PAUSE.saturating_sub(started.elapsed()));
    let cpu_after = proc::cpu_time(pid);
    let ended_early = program.exit_status().is_some();
    let pause = started.elapsed();
    // Our own read end keeps the pipe open: this write cannot fail with
    // EPIPE nor block (the pipe holds 64 KiB), even if the program is gone.
    feeder
        .write_all(&expected[HALF..])
        .map_err(|err| grader_error(format!("writing the second half: {err}")))?;
    drop(feeder);
    let ran = finish(&mut program, &collector, Duration::from_secs(10));
    let after = get_flags(&input)?;
    let cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(PauseRun {
        program,
        original,
        during,
        after,
        pause,
        cpu,
        samples,
        ended_early,
        expected,
        ran,
    })
}

const PAUSE_INPUT: &str = "48 KiB on a stdin pipe, a 500 ms pause, 48 KiB more";

impl PauseRun {
    /// The program gave up while the writer was only pausing.
    pub(super) fn ended_early(&self) -> Outcome {
        ensure(!self.ended_early, || {
            Failure::new(format!(
                "the program ended during the writer's 500 ms pause, after copying {} of {}: {}",
                bytes(self.ran.total.min(HALF)),
                bytes(self.expected.len()),
                self.ran
                    .status
                    .map(|s| self.program.describe_exit(s))
                    .unwrap_or_default()
            ))
            .expected("keep retrying: the writer still has the pipe open, more data will come")
            .cause("EAGAIN is not end of input: it means no data yet; only read() returning 0 is the end")
        })
    }

    pub(super) fn judge_copy(&self) -> Outcome {
        judge_copy(&self.program, &self.ran, &self.expected, PAUSE_INPUT)
    }

    pub(super) fn report(&self) -> Report {
        self.ran.report.expect("judge_copy checked it")
    }
}
