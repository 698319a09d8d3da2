//! Checks of async_echo beyond the echo suite and the idle-timeout checks it
//! shares with `timeouts`: the runtime is the student's own (no runtime crate
//! in the binary), a wake-up costs the same with 5,000 idle tasks as with
//! none, and a closed connection's timer never fires on the next connection
//! that gets its fd.

use crate::check::{Check, Ctx, Failure, Outcome, Suite, broken, secs};
use crate::suites::timeouts;

mod stale;
mod wakeup;

pub static SUITE: Suite = Suite {
    name: "async_echo",
    checks: &[
        OWN_RUNTIME,
        timeouts::IDLE_CLOSE,
        timeouts::ACTIVE_KEPT,
        timeouts::FEW_WAKEUPS,
        wakeup::PER_WAKEUP_COST,
        stale::STALE_TIMER,
    ],
    hints: include_str!("hints.txt"),
    start: None,
};

/// Crates that would do the lab's work: their source paths end up in a Rust
/// binary that uses them (panic locations name the file).
const RUNTIMES: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "async-io",
    "async-executor",
    "async-global-executor",
    "mio",
    "polling",
    "futures-executor",
    "glommio",
    "monoio",
    "compio",
];

pub const OWN_RUNTIME: Check = Check {
    name: "own_runtime",
    points: 4,
    title: "the program is built on its own executor and reactor: no async runtime or event-loop crate (tokio, async-std, smol, async-io, mio, polling, futures-executor, ...) in the binary",
    limit: secs(10),
    run: own_runtime,
    proven_by: &[broken("broken_async_echo_uses_tokio", "your own")],
};

fn own_runtime(ctx: &Ctx) -> Outcome {
    let program = std::fs::read(&ctx.bin)
        .map_err(|err| Failure::new(format!("could not read {}: {err}", ctx.bin.display())))?;
    let found: Vec<&str> = RUNTIMES
        .iter()
        .copied()
        .filter(|name| uses_crate(&program, name))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    Err(Failure::new(format!(
        "the program contains code of {} (its source paths are in the binary)",
        found.join(", ")
    ))
    .expected("no async runtime or event-loop crate: the executor, the reactor and the async sockets are the lab")
    .cause("remove the dependency from labs/async_echo/Cargo.toml and write your own executor and reactor (runtime/): that is the point of this lab")
    .into())
}

/// Whether `program` holds a registry path of `name`: `/name-1.2.3/`.
fn uses_crate(program: &[u8], name: &str) -> bool {
    let needle = format!("/{name}-");
    let needle = needle.as_bytes();
    program
        .windows(needle.len() + 1)
        .any(|window| window.starts_with(needle) && window[needle.len()].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::uses_crate;

    #[test]
    fn crate_paths_are_found_by_name_and_version() {
        let binary =
            b"\0/root/.cargo/registry/src/index.crates.io-abc/tokio-1.48.0/src/runtime.rs\0";
        assert!(uses_crate(binary, "tokio"));
        assert!(!uses_crate(binary, "mio"));
        assert!(!uses_crate(b"/tokio-util-0.7/", "tokio"));
        assert!(!uses_crate(b"docs/polling-explained.md", "polling"));
    }
}
