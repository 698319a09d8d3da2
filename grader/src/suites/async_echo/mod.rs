//! Checks of async_echo beyond the echo suite and the idle-timeout checks it
//! shares with `timeouts`: the runtime is the student's own (no runtime crate
//! in the binary), a wake-up costs the same with 10,000 idle tasks as
//! with none, and a closed connection's timer never fires on the next connection
//! that gets its fd.

use crate::check::{Check, Ctx, Failure, Outcome, Suite, broken, secs};
use crate::suites::timeouts;
use std::collections::BTreeSet;

mod stale;
mod wakeup;

pub static SUITE: Suite = Suite {
    name: "async_echo",
    checks: &[
        OWN_RUNTIME,
        timeouts::IDLE_CLOSE,
        timeouts::ACTIVE_KEPT,
        timeouts::IDLE_TRICKLE,
        timeouts::IDLE_FLOODER,
        timeouts::FEW_WAKEUPS,
        wakeup::PER_WAKEUP_COST,
        stale::STALE_TIMER,
    ],
    hints: include_str!("hints.txt"),
    start: None,
    needs: None,
};

/// Crates that would do the lab's work, refused whole: runtimes, executors
/// and event loops.
const RUNTIMES: &[&str] = &[
    "tokio",
    "tokio-uring",
    "async-std",
    "smol",
    "async-io",
    "async-executor",
    "async-global-executor",
    "async-task",
    "pollster",
    "futures-executor",
    "mio",
    "polling",
    "calloop",
    "glommio",
    "monoio",
    "compio",
];

/// A module of a crate that is otherwise allowed.
struct Piece {
    krate: &'static str,
    /// Its folder inside the crate.
    module: &'static str,
    name: &'static str,
}

/// Executor pieces of allowed crates: `futures::join!`, the channels or the
/// `Stream` traits do none of the lab's work, but `FuturesUnordered` polls
/// only the futures that were woken, the executor's whole point (one task
/// holding every connection's future in one would need no executor of its
/// own). `SelectAll`, `FuturesOrdered`, `join_all`, `buffer_unordered` and
/// `for_each_concurrent` run on it. (`LocalPool` and `block_on` are in
/// `futures-executor`, refused whole.)
const PIECES: &[Piece] = &[Piece {
    krate: "futures-util",
    module: "src/stream/futures_unordered",
    name: "futures-util's FuturesUnordered (which SelectAll, FuturesOrdered, join_all, buffer_unordered and for_each_concurrent use)",
}];

pub const OWN_RUNTIME: Check = Check {
    name: "own_runtime",
    points: 4,
    title: "the program is built on its own executor and reactor: no async runtime, executor or event-loop crate (tokio, async-std, smol, async-io, async-task, pollster, mio, polling, calloop, futures-executor, futures-util's FuturesUnordered, ...) in the binary",
    limit: secs(10),
    run: own_runtime,
    proven_by: &[broken("broken_async_echo_uses_tokio", "your own")],
};

fn own_runtime(ctx: &Ctx) -> Outcome {
    let program = std::fs::read(&ctx.bin)
        .map_err(|err| Failure::new(format!("could not read {}: {err}", ctx.bin.display())))?;
    let found = forbidden(&dependency_paths(&program));
    if found.is_empty() {
        return Ok(());
    }
    Err(Failure::new(format!(
        "the program contains code of {}: their source paths (in cargo's registry, a git checkout or vendor/) are in the binary",
        found.join(", ")
    ))
    .expected("no async runtime, executor or event-loop crate: the executor, the reactor and the async sockets are the lab")
    .cause("remove the dependency from labs/async_echo/Cargo.toml and write your own executor and reactor (runtime/): that is the point of this lab")
    .into())
}

/// The refused crates and pieces among `paths`, as (crate, path inside it).
fn forbidden(paths: &BTreeSet<(String, String)>) -> Vec<String> {
    let uses = |krate: &str, module: Option<&str>| {
        paths.iter().any(|(name, inside)| {
            name == krate
                && module.is_none_or(|module| {
                    inside
                        .strip_prefix(module)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                })
        })
    };
    let crates = RUNTIMES
        .iter()
        .filter(|name| uses(name, None))
        .map(|name| name.to_string());
    let pieces = PIECES
        .iter()
        .filter(|piece| uses(piece.krate, Some(piece.module)))
        .map(|piece| piece.name.to_string());
    crates.chain(pieces).collect()
}

/// The dependencies' source paths in `program`, as (crate, path inside it).
/// Every crate a Rust binary links leaves them there (panic locations, line
/// tables), in one of the places cargo keeps a dependency's sources:
/// `.../registry/src/<index>/<crate>-<version>/`,
/// `.../git/checkouts/<repo>-<hash>/<rev>/[<dir>/]<crate>/src/` or
/// `vendor/<crate>[-<version>]/src/` (`cargo vendor`, which `grader build`
/// uses). Only there: the program's own paths are in the binary too, and a
/// clone in `~/tokio-2025/` says nothing about tokio.
fn dependency_paths(program: &[u8]) -> BTreeSet<(String, String)> {
    type Parse = fn(&[&str]) -> Option<(String, String)>;
    let places: [(&[u8], Parse); 3] = [
        (b"/registry/src/", registry),
        (b"/git/checkouts/", git),
        (b"/vendor/", vendor),
    ];
    let mut found = BTreeSet::new();
    for (marker, parse) in places {
        let mut from = 0;
        while let Some(at) = find(&program[from..], marker) {
            let start = from + at + marker.len();
            let len = program[start..]
                .iter()
                .position(|b| !b.is_ascii_graphic())
                .unwrap_or(program.len() - start);
            let path = String::from_utf8_lossy(&program[start..start + len]);
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            found.extend(parse(&parts));
            from = start;
        }
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `<index>/<crate>-<version>/...`
fn registry(parts: &[&str]) -> Option<(String, String)> {
    let krate = without_version(parts.get(1)?)?;
    Some((krate.to_string(), parts[2..].join("/")))
}

/// `<repo>-<hash>/<rev>/...`: the crate is the folder that holds `src`, the
/// repository itself when `src` is at its top.
fn git(parts: &[&str]) -> Option<(String, String)> {
    let repo = parts.first()?.rsplit_once('-')?.0;
    let inside = parts.get(2..)?;
    let (krate, rest) = match inside.iter().position(|p| *p == "src") {
        Some(0) => (repo, inside),
        Some(src) => (inside[src - 1], &inside[src..]),
        None => (inside.last().copied().unwrap_or(repo), &[][..]),
    };
    Some((krate.to_string(), rest.join("/")))
}

/// `<crate>[-<version>]/src/...`: a crate's `src` only, so that a clone in a
/// folder named `vendor/` is not taken for a dependency.
fn vendor(parts: &[&str]) -> Option<(String, String)> {
    if parts.get(1) != Some(&"src") {
        return None;
    }
    let krate = without_version(parts[0]).unwrap_or(parts[0]);
    Some((krate.to_string(), parts[1..].join("/")))
}

/// `tokio` of `tokio-1.48.0`, `md-5` of `md-5-0.10.6`: what comes before the
/// first `-` that a `major.minor.patch` version follows.
fn without_version(dir: &str) -> Option<&str> {
    let is_version = |version: &str| {
        let core = version.split(['-', '+']).next().unwrap_or("");
        let numbers: Vec<&str> = core.split('.').collect();
        numbers.len() == 3
            && numbers
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    dir.match_indices('-')
        .map(|(i, _)| i)
        .find(|&i| is_version(&dir[i + 1..]))
        .map(|i| &dir[..i])
}

#[cfg(test)]
mod tests {
    use super::{dependency_paths, forbidden};

    fn refused(binary: &[u8]) -> Vec<String> {
        forbidden(&dependency_paths(binary))
    }

    /// Strings as they are in real release binaries (`strings`): the
    /// workspace's own folder (DWARF's compilation directory) and the
    /// dependencies' panic locations and line-table folders.
    #[test]
    fn a_clone_under_a_runtimes_name_is_not_a_dependency() {
        let binary = b"\0/tmp/tokio-2025/iomux\0/home/me/mio-1/labs/async_echo/src/main.rs\0\
            /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/nix-0.32.0/src/sys/epoll.rs\0\
            /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/libc-0.2.191\0\
            /home/me/vendor/tokio\0/home/me/vendor/polling/labs/async_echo/src/main.rs\0";
        assert_eq!(refused(binary), Vec::<String>::new());
    }

    #[test]
    fn registry_git_and_vendored_crates_are_found_by_name() {
        let registry = b"\0/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.48.0/src/runtime/mod.rs\0";
        assert_eq!(refused(registry), ["tokio"]);
        let uring =
            b"/usr/local/cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-uring-0.5.0\0";
        assert_eq!(refused(uring), ["tokio-uring"]);
        let util = b"/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-util-0.7.1/src/lib.rs\0";
        assert_eq!(refused(util), Vec::<String>::new());
        let git =
            b"/root/.cargo/git/checkouts/tokio-a1b2c3d4e5f60718/9c1a2b3/tokio/src/net/tcp.rs\0\
            /root/.cargo/git/checkouts/pollster-0123456789abcdef/1a2b3c4/src/lib.rs\0";
        assert_eq!(refused(git), ["tokio", "pollster"]);
        let vendored = b"/autograder/build/ws/vendor/async-task/src/raw.rs\0\
            /autograder/build/ws/vendor/mio-0.8.11/src/poll.rs\0";
        assert_eq!(refused(vendored), ["async-task", "mio"]);
    }

    #[test]
    fn futures_util_is_refused_only_for_its_executor_piece() {
        let join = b"/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-util-0.3.34/src/future/join.rs\0";
        assert_eq!(refused(join), Vec::<String>::new());
        let unordered = b"/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-util-0.3.34/src/stream/futures_unordered/mod.rs\0";
        let found = refused(unordered);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("futures-util's FuturesUnordered"));
    }
}
