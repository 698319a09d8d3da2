//! The checks, one folder per lab family: its checks (`mod.rs` declares the
//! suite; the checks sit in files by theme) and its `hints.txt`. Which labs
//! run which suites is in [`crate::course`].

pub mod async_echo;
pub mod datagram;
pub mod echo;
pub mod epoll;
pub mod nonblocking_read;
pub mod select_echo;
pub mod select_telnet;
pub mod sigio_udp;
pub mod tcp_udp;
pub mod timeouts;
pub mod uring_echo;
pub mod web_client;
