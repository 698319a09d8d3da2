//! Running the client: its output folder, its command line, its stdout
//! lines (each with when it arrived), its exit, and the verdicts most checks
//! share: fetch `i` ended this way, then `done ok=K failed=F`, then this exit
//! code. Every message shows what the program was asked and what it said.

use crate::check::{Ctx, Failure, Verdict, grader_error};
use crate::harness::process::{LineError, Program, SpawnOptions};
use crate::harness::text::bytes;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `--out` folder of one run: a fresh directory anyone may write to
/// (the grader runs as root and the program as an unprivileged user),
/// removed afterwards.
pub(super) struct OutDir {
    pub path: PathBuf,
}

impl OutDir {
    pub fn new() -> Result<OutDir, Verdict> {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("iomux-web-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)))
            .map_err(|err| grader_error(format!("cannot make {}: {err}", path.display())))?;
        Ok(OutDir { path })
    }

    /// `DIR/i`.
    pub fn body(&self, i: usize) -> PathBuf {
        self.path.join(i.to_string())
    }

    /// What is in the folder, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|name| (name.len(), name.clone()));
        names
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How a fetch ended, as its line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Fetched {
    Status { code: u16, bytes: u64 },
    Error(String),
}

impl std::fmt::Display for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fetched::Status { code, bytes } => write!(f, "status={code} bytes={bytes}"),
            Fetched::Error(reason) => write!(f, "error={reason}"),
        }
    }
}

/// One output line, parsed.
#[derive(Clone, Debug)]
pub(super) enum Said {
    Ended {
        index: usize,
        url: String,
        fetched: Fetched,
    },
    Done {
        ok: u64,
        failed: u64,
    },
    Other,
}

pub(super) fn parse(line: &str) -> Said {
    let words: Vec<&str> = line.split(' ').collect();
    let number = |word: &str, key: &str| word.strip_prefix(key)?.parse::<u64>().ok();
    match words[..] {
        ["done", ok, failed] => match (number(ok, "ok="), number(failed, "failed=")) {
            (Some(ok), Some(failed)) => Said::Done { ok, failed },
            _ => Said::Other,
        },
        [index, url, status, body] => match (
            index.parse::<usize>(),
            number(status, "status="),
            number(body, "bytes="),
        ) {
            (Ok(index), Some(code), Some(bytes)) if code < 1000 => Said::Ended {
                index,
                url: url.to_string(),
                fetched: Fetched::Status {
                    code: code as u16,
                    bytes,
                },
            },
            _ => Said::Other,
        },
        [index, url, error] => match (index.parse::<usize>(), error.strip_prefix("error=")) {
            (Ok(index), Some(reason)) if !reason.is_empty() => Said::Ended {
                index,
                url: url.to_string(),
                fetched: Fetched::Error(reason.to_string()),
            },
            _ => Said::Other,
        },
        _ => Said::Other,
    }
}

/// A line and when it arrived, counted from the program's start.
#[derive(Clone, Debug)]
pub(super) struct Heard {
    pub at: Duration,
    pub text: String,
    pub said: Said,
}

/// The client, started with its URLs.
pub(super) struct Run {
    pub program: Program,
    pub started: Instant,
    pub urls: Vec<String>,
    command: String,
    pub heard: Vec<Heard>,
    stdout_closed: bool,
}

/// Starts the program: `flags`, then `--out DIR`, then `urls`.
pub(super) fn start(
    ctx: &Ctx,
    dir: &Path,
    flags: &[&str],
    urls: &[String],
) -> Result<Run, Verdict> {
    start_with(ctx, dir, flags, urls, SpawnOptions::default())
}

pub(super) fn start_with(
    ctx: &Ctx,
    dir: &Path,
    flags: &[&str],
    urls: &[String],
    options: SpawnOptions,
) -> Result<Run, Verdict> {
    let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    args.push("--out".into());
    args.push(dir.display().to_string());
    let command = shown_command(&args, urls);
    args.extend(urls.iter().cloned());
    let started = Instant::now();
    let program = ctx.spawn(SpawnOptions { args, ..options })?;
    Ok(Run {
        program,
        started,
        urls: urls.to_vec(),
        command,
        heard: Vec::new(),
        stdout_closed: false,
    })
}

/// The command line as a student reads it: the first URLs, then a count.
fn shown_command(args: &[String], urls: &[String]) -> String {
    let mut words: Vec<String> = args.iter().map(|a| short(a)).collect();
    words.extend(urls.iter().take(4).map(|u| short(u)));
    if urls.len() > 4 {
        words.push(format!("... ({} URLs)", urls.len()));
    }
    format!("web_client {}", words.join(" "))
}

/// A long word cut to its first 70 characters.
fn short(word: &str) -> String {
    if word.len() > 80 {
        format!("{}... ({} characters)", &word[..70], word.len())
    } else {
        word.to_string()
    }
}

impl Run {
    /// The next line, if one comes by `deadline`.
    pub fn next_line(&mut self, deadline: Instant) -> Option<&Heard> {
        if self.stdout_closed {
            return None;
        }
        match self.program.next_line(deadline) {
            Ok(line) => {
                self.heard.push(Heard {
                    at: line.at.saturating_duration_since(self.started),
                    said: parse(&line.text),
                    text: line.text,
                });
                self.heard.last()
            }
            Err(LineError::Closed) => {
                self.stdout_closed = true;
                None
            }
            Err(LineError::Timeout) => None,
        }
    }

    /// Reads lines until the program closes its stdout and exits, or until
    /// `within` from its start has passed. The exit status, if it exited.
    pub fn finish(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = self.started + within;
        while !self.stdout_closed && Instant::now() < deadline {
            self.next_line(deadline);
        }
        let status = self
            .program
            .wait_exit(deadline.saturating_duration_since(Instant::now()));
        if status.is_some() {
            self.program.expect_exit();
        }
        status
    }

    /// While the program runs, until `within` from its start: `look` at it
    /// (its pid, the time since its start) every `every`, reading its lines
    /// meanwhile (a full stdout pipe would stop it).
    pub fn watch(
        &mut self,
        within: Duration,
        every: Duration,
        mut look: impl FnMut(i32, Duration),
    ) {
        let deadline = self.started + within;
        while self.program.exit_status().is_none() && Instant::now() < deadline {
            look(self.program.pid, self.started.elapsed());
            self.next_line(Instant::now() + every);
        }
    }

    /// Fetch `i`'s line, if it came.
    pub fn ended(&self, i: usize) -> Option<(&Heard, &Fetched)> {
        self.heard.iter().find_map(|heard| match &heard.said {
            Said::Ended { index, fetched, .. } if *index == i => Some((heard, fetched)),
            _ => None,
        })
    }

    pub fn done(&self) -> Option<(u64, u64)> {
        self.heard.iter().find_map(|heard| match heard.said {
            Said::Done { ok, failed } => Some((ok, failed)),
            _ => None,
        })
    }

    /// What was asked and what came back, for a failure's message.
    pub fn story(&mut self, status: Option<ExitStatus>) -> String {
        let mut text = format!("command: {}\n", self.command);
        if self.heard.is_empty() {
            text += "its stdout: nothing\n";
        } else {
            text += "its stdout (seconds since it started):\n";
            let shown = 14;
            for heard in self.heard.iter().take(shown) {
                text += &format!(
                    "    {:6.2} s  {}\n",
                    heard.at.as_secs_f64(),
                    short(&heard.text)
                );
            }
            if self.heard.len() > shown {
                text += &format!("    ... and {} lines more\n", self.heard.len() - shown);
            }
        }
        text += &match status.or_else(|| self.program.exit_status()) {
            Some(status) => self.program.describe_exit(status),
            None => format!(
                "the program was still running after {:.1} s",
                self.started.elapsed().as_secs_f64()
            ),
        };
        text
    }

    /// Fetch `i`'s line says `want` (for a success, the status and the
    /// byte count), or a failure saying what it said instead.
    pub fn expect(
        &mut self,
        i: usize,
        want: &Fetched,
        status: Option<ExitStatus>,
    ) -> Result<(), Failure> {
        let url = self.urls[i - 1].clone();
        let expected = format!("`{i} {} {want}`", short(&url));
        match self.ended(i) {
            Some((heard, got)) if got == want => {
                let Said::Ended { url: said_url, .. } = &heard.said else {
                    unreachable!()
                };
                if *said_url == url {
                    return Ok(());
                }
                let said_url = said_url.clone();
                Err(Failure::new(format!(
                    "fetch {i}'s line names the URL `{}`, not the one given\n{}",
                    short(&said_url),
                    self.story(status)
                ))
                .expected(expected)
                .cause("print each URL exactly as it was given on the command line"))
            }
            Some((_, got)) => {
                let got = got.clone();
                Err(Failure::new(format!(
                    "fetch {i} ({}) ended with {got}\n{}",
                    short(&url),
                    self.story(status)
                ))
                .expected(expected))
            }
            None => Err(Failure::new(format!(
                "no line for fetch {i} ({})\n{}",
                short(&url),
                self.story(status)
            ))
            .expected(format!(
                "{expected}, printed and flushed as soon as it ends"
            ))),
        }
    }

    /// After the fetches' lines: `done ok=K failed=F` last, and the exit
    /// code that goes with it.
    pub fn expect_done(
        &mut self,
        ok: u64,
        failed: u64,
        status: Option<ExitStatus>,
    ) -> Result<(), Failure> {
        let code = if failed == 0 { 0 } else { 1 };
        let expected =
            format!("`done ok={ok} failed={failed}` as the last line, then exit code {code}");
        let last_is_done = matches!(self.heard.last().map(|h| &h.said), Some(Said::Done { .. }));
        if self.done() != Some((ok, failed)) || !last_is_done {
            return Err(Failure::new(format!(
                "the last line is not `done ok={ok} failed={failed}`\n{}",
                self.story(status)
            ))
            .expected(expected));
        }
        match status {
            Some(status) if status.code() == Some(code) => Ok(()),
            _ => Err(Failure::new(format!(
                "after `done ok={ok} failed={failed}`: {}",
                self.story(status)
            ))
            .expected(expected)
            .cause(if code == 0 {
                "exit 0 when every fetch succeeded"
            } else {
                "exit 1 when any fetch failed"
            })),
        }
    }

    /// Every fetch's line as `want` says (1-based, in any order), then the
    /// `done` line and the exit code.
    pub fn expect_all(
        &mut self,
        want: &[Fetched],
        status: Option<ExitStatus>,
    ) -> Result<(), Failure> {
        for (i, fetched) in want.iter().enumerate() {
            self.expect(i + 1, fetched, status)?;
        }
        let failed = want
            .iter()
            .filter(|f| matches!(f, Fetched::Error(_)))
            .count() as u64;
        self.expect_done(want.len() as u64 - failed, failed, status)
    }
}

/// The body a check expects in `DIR/i`, or a failure saying how it differs.
pub(super) fn expect_body(
    dir: &OutDir,
    i: usize,
    want: &[u8],
    run: &mut Run,
) -> Result<(), Failure> {
    let path = dir.body(i);
    let got = match std::fs::read(&path) {
        Ok(got) => got,
        Err(err) => {
            return Err(Failure::new(format!(
                "fetch {i} succeeded but DIR/{i} cannot be read ({err}); the folder holds {:?}\n{}",
                dir.names(),
                run.story(None)
            ))
            .expected(format!("the body ({}) in DIR/{i}", bytes(want.len())))
            .cause("write the body to DIR/i.part as it arrives, then rename it to DIR/i when the fetch succeeds"));
        }
    };
    if got == want {
        return Ok(());
    }
    let difference = crate::harness::text::first_difference(want, &got).unwrap_or_default();
    Err(Failure::new(format!(
        "DIR/{i} holds {} where the body was {}: {difference}\n{}",
        bytes(got.len()),
        bytes(want.len()),
        run.story(None)
    ))
    .expected(format!("DIR/{i} the body byte for byte: everything after the header's empty line (\\r\\n\\r\\n), nothing else")))
}
