//! Refusing one system call to a program, with the errno a container or an
//! old kernel would give: how the grader shows a program what a machine
//! without io_uring looks like (Docker's default seccomp profile answers
//! `io_uring_setup` with `EPERM`; a kernel without it, `ENOSYS`).
//!
//! A seccomp filter of a few BPF instructions: other architectures and
//! other system calls pass untouched. It is installed between fork and exec
//! and inherited by everything the program starts; it cannot be removed.

use nix::errno::Errno;
use nix::libc;
use std::io;

/// System calls the program is refused, and the error each gets instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub syscalls: &'static [u32],
    pub errno: Errno,
}

/// `AUDIT_ARCH_X86_64`: the filter refuses the calls only for this ABI
/// (a syscall number means something else on another one).
const AUDIT_ARCH: u32 = 0xC000_003E;
/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump_eq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

/// A filter, built before fork so that installing it allocates nothing.
#[derive(Clone, Debug)]
pub struct Filter(Vec<libc::sock_filter>);

impl Filter {
    pub fn new(refusal: Refusal) -> Filter {
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let ret = libc::BPF_RET | libc::BPF_K;
        let n = refusal.syscalls.len();
        assert!(n < 200, "a short list of system calls");
        let mut filter = vec![
            stmt(load, ARCH),
            jump_eq(AUDIT_ARCH, 1, 0),
            stmt(ret, libc::SECCOMP_RET_ALLOW),
            stmt(load, NR),
        ];
        // Each match jumps over the rest of the list and the "allow" to
        // the "refuse" at the end.
        for (i, &syscall) in refusal.syscalls.iter().enumerate() {
            filter.push(jump_eq(syscall, (n - i) as u8, 0));
        }
        filter.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
        filter.push(stmt(
            ret,
            libc::SECCOMP_RET_ERRNO | (refusal.errno as u32 & 0xffff),
        ));
        Filter(filter)
    }

    /// Installs the filter in the calling process. Only plain system calls
    /// (prctl): safe between fork and exec.
    pub fn install(&self) -> io::Result<()> {
        let program = libc::sock_fprog {
            len: self.0.len() as u16,
            filter: self.0.as_ptr() as *mut libc::sock_filter,
        };
        // Without root, a filter needs no_new_privs (it cannot be used to
        // fool a setuid program); it changes nothing else here.
        // SAFETY: plain prctl calls; `program` outlives the second one.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_call_fails_with_the_errno_and_others_run() {
        for errno in [Errno::EPERM, Errno::ENOSYS] {
            // In a child: the filter cannot be removed from this process.
            // SAFETY: the child makes plain system calls only, then _exit.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => {
                    let refusal = Refusal {
                        syscalls: &[libc::SYS_getuid as u32, libc::SYS_getppid as u32],
                        errno,
                    };
                    let code = match Filter::new(refusal).install() {
                        Err(_) => 3,
                        Ok(()) => {
                            let ret = unsafe { libc::syscall(libc::SYS_getppid) };
                            let got = Errno::last_raw();
                            let pid = unsafe { libc::syscall(libc::SYS_getpid) };
                            if ret == -1 && got == errno as i32 && pid > 0 {
                                0
                            } else {
                                4
                            }
                        }
                    };
                    unsafe { libc::_exit(code) };
                }
                nix::unistd::ForkResult::Parent { child } => {
                    let status = nix::sys::wait::waitpid(child, None).expect("wait");
                    assert_eq!(
                        status,
                        nix::sys::wait::WaitStatus::Exited(child, 0),
                        "{errno}"
                    );
                }
            }
        }
    }
}
