//! Probes of `/proc/PID`: what a program is doing, seen from outside.
//!
//! Each probe is a small function over one file. The parsing is split from the
//! reading so that it can be tested on fixed text.

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// What `/proc/PID/syscall` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallState {
    /// On a CPU (or runnable): not sleeping in a system call.
    Running,
    /// Sleeping in the system call with this number (x86_64 numbering).
    Blocked(u64),
}

/// x86_64 numbers of the system calls the grader talks about.
pub mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const OPEN: u64 = 2;
    pub const POLL: u64 = 7;
    pub const READV: u64 = 19;
    pub const WRITEV: u64 = 20;
    pub const SELECT: u64 = 23;
    pub const NANOSLEEP: u64 = 35;
    pub const ACCEPT: u64 = 43;
    pub const SENDTO: u64 = 44;
    pub const RECVFROM: u64 = 45;
    pub const SENDMSG: u64 = 46;
    pub const RECVMSG: u64 = 47;
    pub const WAIT4: u64 = 61;
    pub const FUTEX: u64 = 202;
    pub const EPOLL_WAIT: u64 = 232;
    pub const CLOCK_NANOSLEEP: u64 = 230;
    pub const OPENAT: u64 = 257;
    pub const PSELECT6: u64 = 270;
    pub const PPOLL: u64 = 271;
    pub const EPOLL_PWAIT: u64 = 281;
    pub const ACCEPT4: u64 = 288;
    pub const RECVMMSG: u64 = 299;
    pub const SENDMMSG: u64 = 307;
    pub const PAUSE: u64 = 34;
    pub const RT_SIGTIMEDWAIT: u64 = 128;
    pub const RT_SIGSUSPEND: u64 = 130;
    pub const IO_URING_SETUP: u64 = 425;
    pub const IO_URING_ENTER: u64 = 426;
    pub const EPOLL_PWAIT2: u64 = 441;
}

/// A readable name for a system call number, for messages.
pub fn syscall_name(number: u64) -> String {
    let name = match number {
        nr::READ => "read",
        nr::WRITE => "write",
        nr::OPEN => "open",
        nr::READV => "readv",
        nr::WRITEV => "writev",
        nr::OPENAT => "openat",
        nr::POLL => "poll",
        nr::SELECT => "select",
        nr::NANOSLEEP => "nanosleep",
        nr::ACCEPT => "accept",
        nr::SENDTO => "sendto",
        nr::RECVFROM => "recvfrom",
        nr::WAIT4 => "wait4",
        nr::FUTEX => "futex",
        nr::EPOLL_WAIT => "epoll_wait",
        nr::CLOCK_NANOSLEEP => "clock_nanosleep",
        nr::PSELECT6 => "pselect6",
        nr::PPOLL => "ppoll",
        nr::EPOLL_PWAIT => "epoll_pwait",
        nr::ACCEPT4 => "accept4",
        nr::EPOLL_PWAIT2 => "epoll_pwait2",
        nr::IO_URING_SETUP => "io_uring_setup",
        nr::PAUSE => "pause",
        nr::RT_SIGTIMEDWAIT => "rt_sigtimedwait",
        nr::RT_SIGSUSPEND => "rt_sigsuspend",
        nr::IO_URING_ENTER => "io_uring_enter",
        _ => return format!("syscall {number}"),
    };
    format!("{name} ({number})")
}

fn read(pid: i32, file: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

pub fn parse_syscall(text: &str) -> Option<SyscallState> {
    let first = text.split_whitespace().next()?;
    if first == "running" {
        return Some(SyscallState::Running);
    }
    // A negative number (-1) means "blocked, but not in a system call".
    first.parse().ok().map(SyscallState::Blocked)
}

/// The system call the process's main thread is sleeping in, if it is.
pub fn syscall(pid: i32) -> Option<SyscallState> {
    parse_syscall(&read(pid, "syscall")?)
}

/// Number of threads.
///
/// The kernel's io_uring workers (`iou-wrk-PID`) are not counted: they are
/// the kernel's threads, started for the program's ring, and linger for
/// seconds. They are told by the kernel's own mark (`PF_IO_WORKER` in the
/// task's flags), not only by a name a thread can give itself. Anything
/// else the process runs, an SQPOLL thread (`iou-sqp-PID`) included, is.
pub fn threads(pid: i32) -> Option<usize> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .filter_map(|task| task.ok())
            .filter(|task| !is_io_worker(&task.path()))
            .count(),
    )
}

/// `PF_IO_WORKER`: the kernel started this thread for an io_uring.
const PF_IO_WORKER: u64 = 0x10;

/// Whether the task at `/proc/PID/task/TID` is one of io_uring's worker
/// threads: named `iou-wrk-*` and marked by the kernel as an io thread.
fn is_io_worker(task: &std::path::Path) -> bool {
    let named = fs::read_to_string(task.join("comm")).is_ok_and(|c| c.starts_with("iou-wrk-"));
    named && task_flags(task).is_some_and(|flags| flags & PF_IO_WORKER != 0)
}

/// The task's `flags` (the 9th field of its stat; the name before it may
/// hold spaces and parentheses, so fields are counted after its last `)`).
fn task_flags(task: &std::path::Path) -> Option<u64> {
    let stat = fs::read_to_string(task.join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// The name (`comm`) of each of the process's threads.
pub fn thread_names(pid: i32) -> Option<Vec<String>> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .filter_map(|task| {
                let comm = fs::read_to_string(task.ok()?.path().join("comm")).ok()?;
                Some(comm.trim_end().to_string())
            })
            .collect(),
    )
}

/// The read and write system calls the process made so far (`syscr`,
/// `syscw` in /proc/PID/io: read, readv, write, writev and friends on any
/// fd; send, recv and io_uring's own operations are not counted).
pub fn io_syscalls(pid: i32) -> Option<(u64, u64)> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| -> Option<u64> {
        io.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
    };
    Some((field("syscr:")?, field("syscw:")?))
}

/// Number of open file descriptors.
pub fn open_fds(pid: i32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The open fds and what each points to (`socket:[123]`, `pipe:[4]`, a path...).
pub fn fd_targets(pid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<(i32, String)> = dir
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

/// Fields of `/proc/PID/stat` after the command name (which may hold spaces),
/// so that index 0 is the state (field 3 in proc(5)).
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let after_name = &text[text.rfind(')')? + 1..];
    Some(after_name.split_whitespace().collect())
}

/// The ports of TCP sockets in LISTEN state, from the text of
/// `/proc/net/tcp` (or `tcp6`), among the socket inodes in `inodes`.
pub fn parse_listening_ports(text: &str, inodes: &[u64]) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            let listening = *fields.get(3)? == "0A";
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (listening && inodes.contains(&inode)).then_some(port)
        })
        .collect()
}

/// The ports the process listens on (TCP), seen through its own fds.
pub fn listening_ports(pid: i32) -> Vec<u16> {
    let inodes: Vec<u64> = fd_targets(pid)
        .iter()
        .filter_map(|(_, target)| {
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    ["net/tcp", "net/tcp6"]
        .iter()
        .filter_map(|file| read(pid, file))
        .flat_map(|text| parse_listening_ports(&text, &inodes))
        .collect()
}

/// utime + stime in clock ticks, from the text of `/proc/PID/stat`.
pub fn parse_cpu_ticks(text: &str) -> Option<u64> {
    let fields = stat_fields(text)?;
    // proc(5): utime is field 14, stime field 15; the state is field 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// The parent pid, from the text of `/proc/PID/stat`.
pub fn parse_ppid(text: &str) -> Option<i32> {
    stat_fields(text)?.get(4 - 3)?.parse().ok()
}

/// CPU time used so far (user + system), all threads.
pub fn cpu_time(pid: i32) -> Option<Duration> {
    let ticks = parse_cpu_ticks(&read(pid, "stat")?)?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / per_second))
}

/// A `Key: value kB` or `Key: number` line of `/proc/PID/status`.
pub fn parse_status_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn status_field(pid: i32, key: &str) -> Option<u64> {
    parse_status_field(&read(pid, "status")?, key)
}

/// Resident memory now, in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    status_field(pid, "VmRSS")
}

/// Peak resident memory since start, in KiB.
pub fn peak_rss_kib(pid: i32) -> Option<u64> {
    status_field(pid, "VmHWM")
}

/// How many times the main thread went to sleep (blocked) so far.
pub fn voluntary_ctxt_switches(pid: i32) -> Option<u64> {
    status_field(pid, "voluntary_ctxt_switches")
}

/// The `flags:` of an open fd, from `/proc/PID/fdinfo/FD` (octal in the file).
pub fn parse_fdinfo_flags(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("flags:")?.trim();
        u32::from_str_radix(value, 8).ok()
    })
}

pub fn fd_flags(pid: i32, fd: i32) -> Option<u32> {
    parse_fdinfo_flags(&read(pid, &format!("fdinfo/{fd}"))?)
}

/// `O_NONBLOCK` as it appears in `flags:`.
pub const O_NONBLOCK: u32 = 0o4000;
/// `EPOLLET` in an epoll registration's event mask.
pub const EPOLLET: u32 = 0x8000_0000;

/// One fd registered in an epoll instance: the `tfd:` lines of its fdinfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpollEntry {
    pub fd: i32,
    pub events: u32,
}

pub fn parse_epoll_fdinfo(text: &str) -> Vec<EpollEntry> {
    // tfd:        5 events:       19 data:                5  pos:0 ino:... sdev:...
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "tfd:" {
                return None;
            }
            let fd = words.next()?.parse().ok()?;
            if words.next()? != "events:" {
                return None;
            }
            let events = u32::from_str_radix(words.next()?, 16).ok()?;
            Some(EpollEntry { fd, events })
        })
        .collect()
}

/// The fds that are epoll instances (`anon_inode:[eventpoll]`).
pub fn epoll_fds(pid: i32) -> Vec<i32> {
    fd_targets(pid)
        .into_iter()
        .filter(|(_, target)| target == "anon_inode:[eventpoll]")
        .map(|(fd, _)| fd)
        .collect()
}

/// The registrations of the epoll instance `epfd`.
pub fn epoll_entries(pid: i32, epfd: i32) -> Vec<EpollEntry> {
    read(pid, &format!("fdinfo/{epfd}"))
        .map(|text| parse_epoll_fdinfo(&text))
        .unwrap_or_default()
}

/// Child processes of `pid` (scans `/proc`).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let child: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let ppid = parse_ppid(&read(child, "stat")?)?;
        (ppid == pid).then_some(child)
    })
    .collect()
}

/// TCP socket inodes of a process's network namespace and their state
/// (`0A` is LISTEN), from `/proc/PID/net/tcp` and `tcp6`.
pub fn tcp_socket_states(pid: i32) -> HashMap<u64, u8> {
    let mut states = HashMap::new();
    for file in ["net/tcp", "net/tcp6"] {
        let Some(text) = read(pid, file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (Some(state), Some(inode)) = (words.get(3), words.get(9)) else {
                continue;
            };
            if let (Ok(state), Ok(inode)) = (u8::from_str_radix(state, 16), inode.parse()) {
                states.insert(inode, state);
            }
        }
    }
    states
}

/// CPU time of all the process's threads, in nanoseconds (the first field
/// of each `/proc/PID/task/TID/schedstat`): finer than utime+stime, which
/// move in 10 ms ticks.
pub fn cpu_ns(pid: i32) -> Option<u64> {
    schedstat_sum(pid, 0)
}

/// How long all the process's threads have waited for a CPU, runnable but
/// not running, in nanoseconds (the second field of each schedstat).
pub fn run_delay_ns(pid: i32) -> Option<u64> {
    schedstat_sum(pid, 1)
}

/// Field `field` of every thread's `/proc/PID/task/TID/schedstat`, added up.
fn schedstat_sum(pid: i32, field: usize) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let text = fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_whitespace().nth(field)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The soft RLIMIT_NOFILE the process has now (`Max open files` in
/// `/proc/PID/limits`).
pub fn nofile_soft(pid: i32) -> Option<u64> {
    let text = read(pid, "limits")?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub const TCP_LISTEN: u8 = 0x0A;

/// The peer of each connected TCP socket of the process's network
/// namespace, by socket inode: `rem_address` of `/proc/PID/net/tcp`.
pub fn tcp_peers(pid: i32) -> HashMap<u64, std::net::SocketAddrV4> {
    read(pid, "net/tcp")
        .map(|text| parse_tcp_peers(&text))
        .unwrap_or_default()
}

pub fn parse_tcp_peers(text: &str) -> HashMap<u64, std::net::SocketAddrV4> {
    let mut peers = HashMap::new();
    for line in text.lines().skip(1) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(remote), Some(inode)) = (words.get(2), words.get(9)) else {
            continue;
        };
        let Some((ip, port)) = remote.split_once(':') else {
            continue;
        };
        if let (Ok(ip), Ok(port), Ok(inode)) = (
            u32::from_str_radix(ip, 16),
            u16::from_str_radix(port, 16),
            inode.parse::<u64>(),
        ) {
            // The kernel prints the address as the u32 it holds, in network
            // order: its bytes in memory are the address's bytes.
            let ip = std::net::Ipv4Addr::from(ip.to_ne_bytes());
            if inode != 0 {
                peers.insert(inode, std::net::SocketAddrV4::new(ip, port));
            }
        }
    }
    peers
}

/// The process's connected TCP sockets: fd and peer address.
pub fn tcp_connections(pid: i32) -> Vec<(i32, std::net::SocketAddrV4)> {
    let peers = tcp_peers(pid);
    fd_targets(pid)
        .into_iter()
        .filter_map(|(fd, target)| {
            let peer = peers.get(&socket_inode(&target)?)?;
            (peer.port() != 0).then_some((fd, *peer))
        })
        .collect()
}

/// The inode number in a `socket:[12345]` link.
pub fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `O_ASYNC` in the `flags:` of /proc/PID/fdinfo: signal-driven I/O.
pub const O_ASYNC: u32 = 0o20000;

/// The signals the process catches (a handler installed): `SigCgt` in
/// /proc/PID/status, bit `n - 1` for signal `n`.
pub fn signals_caught(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))?;
    u64::from_str_radix(mask.trim(), 16).ok()
}

/// One of the process's IPv4 TCP or UDP sockets, from /proc/PID/net/tcp
/// and udp, matched to its fd by inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InetSocket {
    pub fd: i32,
    pub udp: bool,
    pub local: SocketAddrV4,
    /// TCP's state (`0A` is LISTEN); 07 for an unconnected UDP socket.
    pub state: u8,
    /// Bytes waiting to be received (a UDP socket's whole datagrams).
    pub rx_queue: u64,
}

/// The process's IPv4 TCP and UDP sockets.
pub fn inet_sockets(pid: i32) -> Vec<InetSocket> {
    let fds: HashMap<u64, i32> = fd_targets(pid)
        .into_iter()
        .filter_map(|(fd, target)| Some((socket_inode(&target)?, fd)))
        .collect();
    let mut sockets = Vec::new();
    for (file, udp) in [("net/tcp", false), ("net/udp", true)] {
        let Some(text) = read(pid, file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some((inode, socket)) = parse_inet_line(line, udp)
                && let Some(&fd) = fds.get(&inode)
            {
                sockets.push(InetSocket { fd, ..socket });
            }
        }
    }
    sockets.sort_by_key(|s| s.fd);
    sockets
}

/// Bytes waiting in the process's UDP sockets, all of them together.
pub fn udp_rx_queue(pid: i32) -> Option<u64> {
    let sockets: Vec<InetSocket> = inet_sockets(pid).into_iter().filter(|s| s.udp).collect();
    (!sockets.is_empty()).then(|| sockets.iter().map(|s| s.rx_queue).sum())
}

/// `  1: 0100007F:1F90 00000000:0000 07 00000000:00000000 ... inode`:
/// the inode and the socket (its fd still unknown).
fn parse_inet_line(line: &str, udp: bool) -> Option<(u64, InetSocket)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (ip, port) = words.get(1)?.split_once(':')?;
    // The address is the kernel's network-order u32 printed as a native one.
    let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
    let port = u16::from_str_radix(port, 16).ok()?;
    let state = u8::from_str_radix(words.get(3)?, 16).ok()?;
    let (_, rx) = words.get(4)?.split_once(':')?;
    let rx_queue = u64::from_str_radix(rx, 16).ok()?;
    let inode = words.get(9)?.parse().ok()?;
    Some((
        inode,
        InetSocket {
            fd: -1,
            udp,
            local: SocketAddrV4::new(ip, port),
            state,
            rx_queue,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_are_read_from_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
           1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0\n\
           2: 0100007F:1F92 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0 100 0 0 10 0\n";
        assert_eq!(parse_listening_ports(text, &[4242, 4243]), vec![8080]);
    }

    #[test]
    fn peers_are_read_from_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
           2: 0100007F:1F92 0201147F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0 100 0 0 10 0\n";
        let peers = parse_tcp_peers(text);
        assert_eq!(peers[&4243], "127.20.1.2:54321".parse().unwrap());
        assert_eq!(peers[&4242].port(), 0);
    }

    #[test]
    fn syscall_lines() {
        assert_eq!(
            parse_syscall("7 0x55d0 0x3 0xffffffff 0x0 0x0 0x0 0x7ffd 0x7f12\n"),
            Some(SyscallState::Blocked(7))
        );
        assert_eq!(parse_syscall("running\n"), Some(SyscallState::Running));
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn stat_with_spaces_in_the_name() {
        let stat = "42 (my (odd) prog) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 50";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert_eq!(parse_ppid(stat), Some(1));
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tx\nThreads:\t3\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nvoluntary_ctxt_switches:\t17\n";
        assert_eq!(parse_status_field(status, "VmRSS"), Some(1024));
        assert_eq!(parse_status_field(status, "VmHWM"), Some(2048));
        assert_eq!(parse_status_field(status, "Threads"), Some(3));
        assert_eq!(
            parse_status_field(status, "voluntary_ctxt_switches"),
            Some(17)
        );
        assert_eq!(parse_status_field(status, "Missing"), None);
    }

    #[test]
    fn fdinfo_flags_are_octal() {
        let info = "pos:\t0\nflags:\t0104002\nmnt_id:\t9\nino:\t1\n";
        let flags = parse_fdinfo_flags(info).unwrap();
        assert_eq!(flags, 0o104002);
        assert_ne!(flags & O_NONBLOCK, 0);
    }

    #[test]
    fn epoll_registrations() {
        let info = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n\
            tfd:        5 events:       19 data:                5  pos:0 ino:3a8 sdev:8\n\
            tfd:        6 events: 80000019 data:                6  pos:0 ino:3a9 sdev:8\n";
        let entries = parse_epoll_fdinfo(info);
        assert_eq!(
            entries,
            [
                EpollEntry {
                    fd: 5,
                    events: 0x19
                },
                EpollEntry {
                    fd: 6,
                    events: 0x8000_0019
                },
            ]
        );
        assert_eq!(entries[1].events & EPOLLET, EPOLLET);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[98765]"), Some(98765));
        assert_eq!(socket_inode("pipe:[98765]"), None);
    }

    #[test]
    fn probes_of_a_live_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            syscall(pid),
            Some(SyscallState::Blocked(nr::CLOCK_NANOSLEEP))
        );
        assert_eq!(threads(pid), Some(1));
        assert!(open_fds(pid).unwrap() >= 3);
        assert!(cpu_time(pid).unwrap() < Duration::from_millis(100));
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(peak_rss_kib(pid).unwrap() >= rss_kib(pid).unwrap());
        assert!(voluntary_ctxt_switches(pid).is_some());
        assert!(children(std::process::id() as i32).contains(&pid));
        assert!(epoll_fds(pid).is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn epoll_probe_sees_our_own_registrations() {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        epoll.add(&listener, EpollEvent::new(flags, 7)).unwrap();
        let pid = std::process::id() as i32;
        let epfd = std::os::fd::AsRawFd::as_raw_fd(&epoll.0);
        assert!(epoll_fds(pid).contains(&epfd));
        let entries = epoll_entries(pid, epfd);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        // The kernel adds EPOLLERR and EPOLLHUP to every registration.
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].fd, fd);
        let wanted = flags.bits() as u32;
        assert_eq!(entries[0].events & wanted, wanted);
        let inode = fd_targets(pid)
            .into_iter()
            .find(|(n, _)| *n == fd)
            .and_then(|(_, target)| socket_inode(&target))
            .unwrap();
        assert_eq!(tcp_socket_states(pid).get(&inode), Some(&TCP_LISTEN));
    }

    #[test]
    fn a_udp_socket_is_found_by_its_fd_with_its_address_and_queue() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        sender.send_to(b"waiting", addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let pid = std::process::id() as i32;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        let found = inet_sockets(pid)
            .into_iter()
            .find(|s| s.fd == fd)
            .expect("the socket, by its fd");
        assert!(found.udp);
        assert_eq!(std::net::SocketAddr::V4(found.local), addr);
        assert!(found.rx_queue > 0, "{found:?}");
        assert!(udp_rx_queue(pid).unwrap() > 0);
    }
}
