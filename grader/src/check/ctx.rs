//! What a check's body gets: the program under test, clients, a transcript.

use super::{Failure, Lab, Outcome, Verdict};
use crate::harness::client::{Client, ClientOptions};
use crate::harness::process::{Program, Registry, SpawnOptions};
use crate::harness::transcript::Transcript;
use crate::harness::udp::Peer;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    pub lab: &'static Lab,
    pub registry: Arc<Registry>,
    pub log: Arc<Mutex<Transcript>>,
    pub(crate) notes: Mutex<Vec<String>>,
    next_client: AtomicUsize,
    /// Source address of this check's clients: each check uses its own, so
    /// TIME_WAIT sockets of one check never exhaust another's ports.
    pub source: Ipv4Addr,
}

static CHECKS_STARTED: AtomicUsize = AtomicUsize::new(0);

impl Ctx {
    pub fn new(lab: &'static Lab, bin: PathBuf) -> Ctx {
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

    /// A UDP peer of the grader's on `ip` (a port the kernel picks), whose
    /// datagrams go in the transcript under a client id of its own.
    pub fn udp_peer(&self, ip: Ipv4Addr) -> Result<Peer, Verdict> {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        Peer::bind(ip, id, &self.log)
            .map_err(|err| super::grader_error(format!("cannot bind a UDP socket on {ip}: {err}")))
    }

    pub(crate) fn render(&self, failure: &Failure) -> String {
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
        let usual = failure
            .stalled
            .then(|| self.lab.echo.as_ref().and_then(|echo| echo.stall))
            .flatten();
        match (&failure.cause, usual) {
            (Some(cause), Some(usual)) => {
                parts.push(format!("likely cause: {cause}; in this lab {usual}"))
            }
            (Some(cause), None) => parts.push(format!("likely cause: {cause}")),
            (None, Some(usual)) => parts.push(format!("likely cause: {usual}")),
            (None, None) => {}
        }
        parts.join("\n")
    }
}
