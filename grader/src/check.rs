//! Checks, their context, and the runner that gives each one a deadline.

use crate::client::{Client, ClientOptions};
use crate::process::{Program, Registry, SpawnOptions};
use crate::report::{CheckReport, Status};
use crate::transcript::Transcript;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A graded check.
pub struct Check {
    pub name: &'static str,
    pub points: u32,
    /// One line: what the check does.
    pub description: &'static str,
    pub run: fn(&Ctx) -> Outcome,
    /// The runner stops the check (and kills its programs) after this long.
    pub limit: Duration,
}

impl Check {
    /// A check worth `points`, stopped after `limit_secs` seconds.
    pub fn new(
        name: &'static str,
        points: u32,
        description: &'static str,
        run: fn(&Ctx) -> Outcome,
        limit_secs: u64,
    ) -> Check {
        Check {
            name,
            points,
            description,
            run,
            limit: Duration::from_secs(limit_secs),
        }
    }
}

pub type Outcome = Result<(), Verdict>;

/// Why a check did not pass.
#[derive(Debug)]
pub enum Verdict {
    Fail(Failure),
    /// The check cannot run on this machine: why, and how to fix it.
    Skip(String),
}

/// A failed check, told the way a student can act on it.
#[derive(Debug, Default)]
pub struct Failure {
    /// What happened, in one or two sentences.
    pub summary: String,
    /// What the contract expected instead.
    pub expected: Option<String>,
    /// The likely mistake, in one sentence.
    pub cause: Option<String>,
    /// Which clients' transcripts to show (`None`: none; empty: all).
    pub clients: Option<Vec<usize>>,
}

impl Failure {
    pub fn new(summary: impl Into<String>) -> Failure {
        Failure {
            summary: summary.into(),
            ..Failure::default()
        }
    }

    pub fn expected(mut self, text: impl Into<String>) -> Failure {
        self.expected = Some(text.into());
        self
    }

    pub fn cause(mut self, text: impl Into<String>) -> Failure {
        self.cause = Some(text.into());
        self
    }

    /// Show these clients' transcripts (all of them if empty).
    pub fn transcript(mut self, clients: &[usize]) -> Failure {
        self.clients = Some(clients.to_vec());
        self
    }
}

impl From<Failure> for Verdict {
    fn from(failure: Failure) -> Verdict {
        Verdict::Fail(failure)
    }
}

/// Fails with `failure` unless `condition` holds.
pub fn ensure(condition: bool, failure: impl FnOnce() -> Failure) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(failure().into())
    }
}

/// The program under test, started and listening.
pub struct Server {
    pub program: Program,
    pub addr: SocketAddr,
}

impl Server {
    pub fn pid(&self) -> i32 {
        self.program.pid
    }

    /// Fails the check if the server is no longer running.
    pub fn alive(&mut self, during: &str) -> Outcome {
        self.program.check_alive().map_err(|ending| {
            Failure::new(format!("the server stopped running {during}: {ending}"))
                .expected("the server keeps running and serving other clients")
                .into()
        })
    }
}

/// Everything a check needs: the program, a transcript, client ids.
pub struct Ctx {
    pub bin: PathBuf,
    pub lab: &'static str,
    pub registry: Arc<Registry>,
    pub log: Arc<Mutex<Transcript>>,
    notes: Mutex<Vec<String>>,
    next_client: AtomicUsize,
    /// Source address of this check's clients: each check uses its own, so
    /// TIME_WAIT sockets of one check never exhaust another's ports.
    pub source: Ipv4Addr,
}

static CHECKS_STARTED: AtomicUsize = AtomicUsize::new(0);

impl Ctx {
    pub fn new(lab: &'static str, bin: PathBuf) -> Ctx {
        let n = CHECKS_STARTED.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() as usize;
        let source = Ipv4Addr::new(
            127,
            20 + (pid % 200) as u8,
            (n / 250 % 250) as u8,
            (n % 250 + 1) as u8,
        );
        Ctx {
            bin,
            lab,
            registry: Arc::new(Registry::default()),
            log: Arc::new(Mutex::new(Transcript::default())),
            notes: Mutex::new(Vec::new()),
            next_client: AtomicUsize::new(1),
            source,
        }
    }

    /// A measurement worth showing with `--verbose`.
    pub fn note(&self, text: impl Into<String>) {
        self.notes.lock().unwrap().push(text.into());
    }

    pub fn spawn(&self, options: SpawnOptions) -> Result<Program, Verdict> {
        Program::spawn(&self.bin, options, &self.registry).map_err(|err| Failure::new(err).into())
    }

    /// Starts the program and waits for its `listening on` line.
    pub fn start_server(&self, options: SpawnOptions) -> Result<Server, Verdict> {
        let mut program = self.spawn(options)?;
        let port = program
            .wait_listening(Duration::from_secs(10))
            .map_err(|err| {
                Failure::new(err).expected(
                    "`listening on 127.0.0.1:PORT` on stdout, flushed, once listen() has succeeded",
                )
            })?;
        Ok(Server {
            program,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        })
    }

    pub fn start(&self) -> Result<Server, Verdict> {
        self.start_server(SpawnOptions::default())
    }

    pub fn connect_with(&self, server: &Server, options: ClientOptions) -> Result<Client, Verdict> {
        self.connect_full(server, options, Duration::from_secs(5))
    }

    /// Connects, giving up after `timeout` (a full listen backlog makes the
    /// kernel drop SYNs, and connect waits for a retransmission).
    pub fn connect_within(&self, server: &Server, timeout: Duration) -> Result<Client, Verdict> {
        self.connect_full(server, ClientOptions::default(), timeout)
    }

    fn connect_full(
        &self,
        server: &Server,
        options: ClientOptions,
        timeout: Duration,
    ) -> Result<Client, Verdict> {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let options = ClientOptions {
            source: options.source.or(Some(self.source)),
            ..options
        };
        Client::connect(server.addr, options, id, &self.log, timeout).map_err(|err| {
            Failure::new(format!(
                "client c{id} could not connect to {}: {err}",
                server.addr
            ))
            .expected("the server accepts connections on the port it announced")
            .transcript(&[id])
            .into()
        })
    }

    pub fn connect(&self, server: &Server) -> Result<Client, Verdict> {
        self.connect_with(server, ClientOptions::default())
    }

    pub fn connect_small(&self, server: &Server) -> Result<Client, Verdict> {
        self.connect_with(
            server,
            ClientOptions {
                small_buffers: true,
                ..ClientOptions::default()
            },
        )
    }

    fn render(&self, failure: &Failure) -> String {
        let mut parts = vec![failure.summary.clone()];
        for ending in self.registry.endings() {
            if !failure.summary.contains(&ending) {
                parts.push(format!("note: {ending}"));
            }
        }
        if let Some(clients) = &failure.clients {
            let transcript = self.log.lock().unwrap().render(clients, 16);
            if !transcript.is_empty() {
                parts.push(format!(
                    "transcript (-> sent by the grader, <- sent by your program):\n{transcript}"
                ));
            }
        }
        if let Some(expected) = &failure.expected {
            parts.push(format!("expected: {expected}"));
        }
        if let Some(cause) = &failure.cause {
            parts.push(format!("likely cause: {cause}"));
        }
        parts.join("\n")
    }
}

/// Runs one check in its own thread with a deadline; kills whatever it
/// started if it overruns. Never panics, never hangs.
pub fn run_check(lab: &'static str, check: &Check, bin: PathBuf) -> CheckReport {
    let started = Instant::now();
    let ctx = Arc::new(Ctx::new(lab, bin));
    let (tx, rx) = channel();
    let runner = ctx.clone();
    let run = check.run;
    let thread = std::thread::Builder::new()
        .name(check.name.to_string())
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(&runner)));
            let _ = tx.send(result);
        });
    let (status, message) = match thread {
        Err(err) => (
            Status::Fail,
            format!("grader error: cannot start the check: {err}"),
        ),
        Ok(_) => match rx.recv_timeout(check.limit) {
            Ok(Ok(Ok(()))) => (Status::Pass, String::new()),
            Ok(Ok(Err(Verdict::Fail(failure)))) => (Status::Fail, ctx.render(&failure)),
            Ok(Ok(Err(Verdict::Skip(why)))) => (Status::Skip, why),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                (
                    Status::Fail,
                    format!("grader error (please report it): the check panicked: {what}"),
                )
            }
            Err(_) => {
                ctx.registry.kill_all();
                let failure = Failure::new(format!(
                    "the check did not finish within {} s and was stopped",
                    check.limit.as_secs()
                ))
                .cause("the program stopped responding in a way the check did not expect (a deadlock, or blocking in a read or write)")
                .transcript(&[]);
                (Status::Fail, ctx.render(&failure))
            }
        },
    };
    ctx.registry.kill_all();
    let notes = ctx.notes.lock().unwrap().clone();
    CheckReport {
        name: check.name.to_string(),
        description: check.description.to_string(),
        max: check.points,
        points: if status == Status::Pass {
            check.points
        } else {
            0
        },
        status,
        seconds: started.elapsed().as_secs_f64(),
        message,
        notes,
        hint: crate::hints::hint(lab, check.name),
        flaky: false,
    }
}
