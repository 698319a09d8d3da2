//! io_uring seen from outside: whether this machine lets a process create a
//! ring at all, and a program's rings through /proc (its ring fds, the
//! ring's mapping, the completion counters in the ring fd's fdinfo).

use super::{contain, proc};
use nix::errno::Errno;
use nix::libc;
use std::fs;

/// What a ring fd links to in /proc/PID/fd, and what its mapping is called
/// in /proc/PID/maps.
pub const RING: &str = "anon_inode:[io_uring]";

/// Whether programs started by the grader can use io_uring here: the
/// grader creates (and closes) a small ring itself, and reads
/// `kernel.io_uring_disabled`. `Err` says why not and how to fix it.
pub fn available() -> Result<(), String> {
    // struct io_uring_params is 120 bytes; zero asks for nothing special.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup writes at most sizeof(io_uring_params) bytes.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(unavailable(Errno::last()));
    }
    // SAFETY: a fd this function just created and owns.
    unsafe { libc::close(fd as i32) };
    let disabled = fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
    if disabled.trim() == "1"
        && let Ok(Some(user)) = contain::credentials()
    {
        return Err(format!(
            "io_uring is restricted on this machine (kernel.io_uring_disabled is 1: only root and members of \
             kernel.io_uring_group may create a ring), and the grader runs programs as the unprivileged user {:?}; \
             every check of this lab is skipped. Fix: `sysctl kernel.io_uring_disabled=0`, or add that user's group \
             to kernel.io_uring_group",
            user.name
        ));
    }
    Ok(())
}

fn unavailable(errno: Errno) -> String {
    let why = match errno {
        Errno::EPERM => {
            "this process may not use io_uring: a container's seccomp profile blocks it (Docker's default \
             profile does, and so do Gradescope's containers), or kernel.io_uring_disabled is 2"
        }
        Errno::ENOSYS => {
            "this kernel has no io_uring (it needs Linux 5.1; this lab wants 5.19 or newer)"
        }
        _ => "an unexpected error",
    };
    format!(
        "io_uring is not available on this machine: the grader's own io_uring_setup failed with {errno}: {why}. \
         Every check of this lab is skipped: no pass, no fail. Fix: grade on a Linux 6.x machine or VM with \
         `sysctl kernel.io_uring_disabled=0`; in Docker, run with a seccomp profile that allows io_uring_setup, \
         io_uring_enter and io_uring_register (docs/instructors.md, \"io_uring availability\")"
    )
}

/// The program's io_uring fds.
pub fn ring_fds(pid: i32) -> Vec<i32> {
    proc::fd_targets(pid)
        .into_iter()
        .filter(|(_, target)| target == RING)
        .map(|(fd, _)| fd)
        .collect()
}

/// Whether a ring is mapped into the program's memory (a program may close
/// its ring fd after registering it; the mapping stays).
pub fn ring_mapped(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|maps| maps.contains(RING))
}

/// How many completions the ring behind `fd` has posted so far: `CqTail`
/// in its fdinfo (a counter that wraps at 2^32).
pub fn completions(pid: i32, fd: i32) -> Option<u32> {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    field(&info, "CqTail")
}

fn field(info: &str, name: &str) -> Option<u32> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields() {
        let info = "pos:\t0\nSqMask:\t0x3\nSqHead:\t7\nCqTail:\t4294967295\nCachedCqTail:\t3\n";
        assert_eq!(field(info, "CqTail"), Some(u32::MAX));
        assert_eq!(field(info, "SqHead"), Some(7));
        assert_eq!(field(info, "CqHead"), None);
    }

    #[test]
    fn this_machine_has_io_uring() {
        // The project's machines and CI do: the lab's proofs run for real.
        assert_eq!(available(), Ok(()));
    }
}
