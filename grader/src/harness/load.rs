//! TCP load from a process of its own: many clients, each pipelining a very
//! short line as fast as the server echoes it, so that the server, not the
//! grader, is the bottleneck (a load generator sharing the grader's process
//! competes with the checks that measure it). It knows no lab.
//!
//! The load process is a fork of the grader that makes only system calls
//! (poll, read, write) on sockets and memory prepared before the fork: no
//! allocation, no lock, nothing a fork of a multi-threaded process may not
//! do. It counts the lines echoed in a page shared with the grader, and it
//! dies with its owner (`Drop`, the check's registry, or the grader's own
//! death).

use super::process::Registry;
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lines each client keeps in flight (2 KiB of 2-byte lines): enough that
/// some client is always readable, so a server that serves its other
/// sources only when no client is ready is starved; few enough that a fair
/// server's round over every client stays short (32 KiB each made a round
/// of 200 clients 6 MB of lines, and a fair server that reads 64 KiB at a
/// time took up to 0.9 s to come back to its UDP socket).
const IN_FLIGHT: u64 = 1024;
/// Lines per write (512 bytes of them).
const BATCH: usize = 256;

/// A running TCP load; dropping it ends the load process.
pub struct TcpLoad {
    child: Pid,
    counter: *mut AtomicU64,
}

// The counter is a shared page that lives as long as the TcpLoad; the
// pointer is only read through an atomic.
unsafe impl Send for TcpLoad {}

impl TcpLoad {
    /// Connects `clients` clients to `addr` from `source`, then starts the
    /// load process: each client sends `line` (ending in `\n`) over and
    /// over, at most [`IN_FLIGHT`] lines ahead of the echoes.
    pub fn start(
        addr: SocketAddr,
        source: std::net::Ipv4Addr,
        clients: usize,
        line: &'static [u8],
        registry: &Registry,
    ) -> io::Result<TcpLoad> {
        assert!(line.ends_with(b"\n") && !line[..line.len() - 1].contains(&b'\n'));
        let mut fds = Vec::with_capacity(clients);
        for _ in 0..clients {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            socket.bind(&SocketAddr::from((source, 0)).into())?;
            socket.connect(&addr.into())?;
            socket.set_nonblocking(true)?;
            let stream: TcpStream = socket.into();
            fds.push(stream.into_raw_fd());
        }
        let mut pollfds: Vec<libc::pollfd> = fds
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN | libc::POLLOUT,
                revents: 0,
            })
            .collect();
        let mut ahead = vec![0u64; clients];
        let batch: Vec<u8> = line.repeat(BATCH);
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: a fresh anonymous shared mapping, one page, unmapped in
        // Drop; an AtomicU64 is valid for all-zero bytes.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            close_all(&fds);
            return Err(io::Error::last_os_error());
        }
        let counter = page as *mut AtomicU64;
        // SAFETY: the child only makes system calls on memory allocated
        // above, then _exits (see `run`).
        match unsafe { fork() } {
            Err(err) => {
                close_all(&fds);
                // SAFETY: the mapping made above, not used by anyone else.
                unsafe { libc::munmap(page, 4096) };
                Err(err.into())
            }
            Ok(ForkResult::Child) => {
                // SAFETY: plain system calls on memory prepared before the
                // fork; never returns.
                unsafe { run(&mut pollfds, &mut ahead, &batch, &mut buf, counter) }
            }
            Ok(ForkResult::Parent { child }) => {
                close_all(&fds);
                // Both sides set the group, so that it exists before
                // anyone may kill it.
                let _ = nix::unistd::setpgid(child, child);
                registry.adopt(child.as_raw());
                Ok(TcpLoad { child, counter })
            }
        }
    }

    /// Lines echoed back to the load's clients so far.
    pub fn lines_echoed(&self) -> u64 {
        // SAFETY: the shared page lives until Drop.
        unsafe { (*self.counter).load(Ordering::Relaxed) }
    }
}

impl Drop for TcpLoad {
    fn drop(&mut self) {
        let _ = kill(self.child, Signal::SIGKILL);
        let _ = waitpid(self.child, None);
        // SAFETY: the page mapped in start; the child is gone.
        unsafe { libc::munmap(self.counter as *mut libc::c_void, 4096) };
    }
}

fn close_all(fds: &[i32]) {
    for &fd in fds {
        // SAFETY: fds this module opened and owns.
        unsafe { libc::close(fd) };
    }
}

/// The load process: poll every client, send batches while fewer than
/// [`IN_FLIGHT`] lines are unanswered, count the newlines that come back.
/// Ends when the grader dies or kills it, or when every client is closed.
unsafe fn run(
    pollfds: &mut [libc::pollfd],
    ahead: &mut [u64],
    batch: &[u8],
    buf: &mut [u8],
    counter: *mut AtomicU64,
) -> ! {
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // Its own process group, which the check's registry kills.
        libc::setpgid(0, 0);
        let per_batch = (batch.iter().filter(|&&b| b == b'\n').count()) as u64;
        loop {
            let ready = libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, 1000);
            if ready < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(1);
            }
            let mut open = 0;
            for (i, p) in pollfds.iter_mut().enumerate() {
                if p.fd < 0 {
                    continue;
                }
                open += 1;
                if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 && p.revents & libc::POLLIN == 0
                {
                    libc::close(p.fd);
                    p.fd = -1;
                    continue;
                }
                if p.revents & libc::POLLIN != 0 {
                    let n = libc::read(p.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
                    if n <= 0 {
                        libc::close(p.fd);
                        p.fd = -1;
                        continue;
                    }
                    let lines = buf[..n as usize].iter().filter(|&&b| b == b'\n').count() as u64;
                    ahead[i] = ahead[i].saturating_sub(lines);
                    (*counter).fetch_add(lines, Ordering::Relaxed);
                }
                if p.revents & libc::POLLOUT != 0 && ahead[i] + per_batch <= IN_FLIGHT {
                    let n = libc::write(p.fd, batch.as_ptr() as *const libc::c_void, batch.len());
                    // A short write is fine: what was written counts in
                    // whole lines only approximately, and IN_FLIGHT bounds it.
                    if n > 0 {
                        ahead[i] += (n as u64) / (batch.len() as u64 / per_batch).max(1);
                    }
                }
                p.events = if ahead[i] + per_batch <= IN_FLIGHT {
                    libc::POLLIN | libc::POLLOUT
                } else {
                    libc::POLLIN
                };
                p.revents = 0;
            }
            if open == 0 {
                libc::_exit(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::Duration;

    #[test]
    fn the_load_is_echoed_counted_and_ended_with_its_owner() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let registry = Registry::default();
        let load = TcpLoad::start(addr, Ipv4Addr::LOCALHOST, 4, b"a\n", &registry).unwrap();
        let child = load.child;
        std::thread::sleep(Duration::from_millis(300));
        let first = load.lines_echoed();
        std::thread::sleep(Duration::from_millis(200));
        assert!(first > 0 && load.lines_echoed() > first, "{first}");
        drop(load);
        assert!(kill(child, None).is_err(), "the load process is gone");
    }
}
