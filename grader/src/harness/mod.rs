//! The harness: everything the checks use that knows no lab. Running a
//! program under test ([`process`]), reading its state from /proc
//! ([`proc`]) and, for one TCP socket, from the kernel's sock_diag
//! ([`diag`]) and an io_uring's fdinfo ([`uring`]), refusing it a system
//! call ([`seccomp`]), talking to it as a TCP client ([`client`]) or a UDP peer ([`udp`]), loading it from a process of its own ([`load`]), ping-ponging lines with many clients at once ([`pingpong`], the bench's and the leaderboard's load), recording what moved
//! ([`transcript`]) and writing it as text ([`text`]). The bench uses it too.

pub mod client;
pub mod contain;
pub mod diag;
pub mod load;
pub mod pingpong;
pub mod proc;
pub mod process;
pub mod seccomp;
pub mod text;
pub mod transcript;
pub mod udp;
pub mod uring;
