//! Code a stub shares with a solution stays the same code. The timeouts
//! stub gives students the echo protocol ready-made, in
//! `labs/timeouts/src/conn.rs`: it is `solutions/echo_core/src/lib.rs` with
//! the stub's own introduction, without the solutions' shared start-up
//! (`start_listening`, which the stub writes out in `main.rs`) and without
//! the solutions' epoll helper and unit tests. A protocol fix in echo_core
//! must reach the students: this test fails until the stub has it, and
//! `UPDATE_STUBS=1 cargo test -p grader --test stubs` writes it. The same
//! goes for the async_echo, uring_echo and tcp_udp stubs' `given.rs`,
//! echo_core's line framing and slab.

mod common;

const CORE: &str = "solutions/echo_core/src/lib.rs";
const STUB: &str = "labs/timeouts/src/conn.rs";

fn read(path: &str) -> String {
    std::fs::read_to_string(common::workspace().join(path))
        .unwrap_or_else(|err| panic!("cannot read {path}: {err}"))
}

/// `text` without the item whose doc comment starts with `doc`, up to the
/// end of its body (a `}` alone on a line).
fn without_item(text: &str, doc: &str) -> String {
    let start = text
        .find(doc)
        .unwrap_or_else(|| panic!("{CORE} no longer has {doc:?}: update this test"));
    let end = start + text[start..].find("\n}\n").expect("the item's end") + 3;
    let end = end + usize::from(text[end..].starts_with('\n'));
    format!("{}{}", &text[..start], &text[end..])
}

/// The stub's conn.rs as echo_core makes it.
fn expected_stub() -> String {
    let stub = read(STUB);
    let intro_end = stub
        .find("#![allow(dead_code)]\n")
        .expect("the stub's introduction ends with #![allow(dead_code)]")
        + "#![allow(dead_code)]\n".len();
    let core = read(CORE);
    // echo_core's own introduction (its `//!` lines) is replaced by the stub's.
    let body_start = core
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .map(|line| line.len() + 1)
        .sum::<usize>();
    let body = without_item(
        &core[body_start..],
        "/// The start every echo server shares",
    );
    let tail = "\npub mod epoll;\n\n#[cfg(test)]\nmod tests;\n";
    let body = body
        .strip_suffix(tail)
        .unwrap_or_else(|| panic!("{CORE} no longer ends with {tail:?}: update this test"));
    format!("{}{}", &stub[..intro_end], body)
}

#[test]
fn the_timeouts_stub_has_echo_core_s_protocol() {
    same_or_update(STUB, expected_stub());
}

/// The async_echo stub's `given.rs`: its own introduction, then the pieces
/// of echo_core it copies (the line framing and the slab of tokens), each
/// from its first line up to where the next named item starts.
const ASYNC_GIVEN: &str = "labs/async_echo/src/given.rs";
const ASYNC_PIECES: &[(&str, &str)] = &[
    (
        "/// Longest line, counting",
        "/// Stop reading a connection",
    ),
    (
        "/// The reply to a line longer",
        "/// Where a connection is in its life.",
    ),
    ("/// `quit\\n` or", "/// The start every echo server shares"),
    (
        "/// Connections stored by a small integer",
        "pub mod epoll;",
    ),
];

fn expected_given(given: &str) -> String {
    let stub = read(given);
    let intro_end = stub
        .find("#![allow(dead_code)]\n")
        .expect("given.rs's introduction ends with #![allow(dead_code)]")
        + "#![allow(dead_code)]\n".len();
    let core = read(CORE);
    let body: String = ASYNC_PIECES
        .iter()
        .map(|(start, end)| {
            let from = core
                .find(start)
                .unwrap_or_else(|| panic!("{CORE} no longer has {start:?}: update this test"));
            let to = from
                + core[from..].find(end).unwrap_or_else(|| {
                    panic!("{CORE} no longer has {end:?} after {start:?}: update this test")
                });
            &core[from..to]
        })
        .collect();
    format!("{}\n{}\n", &stub[..intro_end], body.trim_end())
}

#[test]
fn the_async_echo_stub_has_echo_core_s_line_framing() {
    same_or_update(ASYNC_GIVEN, expected_given(ASYNC_GIVEN));
}

/// The uring_echo stub's `given.rs`: the same pieces of echo_core as
/// async_echo's, under its own introduction.
#[test]
fn the_uring_echo_stub_has_echo_core_s_line_framing() {
    let given = "labs/uring_echo/src/given.rs";
    same_or_update(given, expected_given(given));
}

/// The tcp_udp stub's `given.rs`: the same pieces, under its own introduction.
#[test]
fn the_tcp_udp_stub_has_echo_core_s_line_framing() {
    let given = "labs/tcp_udp/src/given.rs";
    same_or_update(given, expected_given(given));
}

/// Fails unless `stub` is `expected`; with `UPDATE_STUBS`, writes it.
fn same_or_update(stub: &str, expected: String) {
    if std::env::var_os("UPDATE_STUBS").is_some() {
        std::fs::write(common::workspace().join(stub), &expected).unwrap();
        return;
    }
    let actual = read(stub);
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or(actual.lines().count().min(expected.lines().count()), |n| n)
            + 1;
        panic!(
            "{stub} differs from {CORE} from line {line} on: a change to the echo protocol must reach the stub too.\n\
             Run UPDATE_STUBS=1 cargo test -p grader --test stubs, and review the diff."
        );
    }
}

/// The uring_echo stub's `op.rs` (the user_data encoding, given ready-made)
/// is the solution's, byte for byte: a TA compares the two file by file.
#[test]
fn the_uring_echo_stub_has_the_solution_s_user_data_encoding() {
    let solution = read("solutions/uring_echo/src/op.rs");
    let stub = read("labs/uring_echo/src/op.rs");
    assert!(
        stub == solution,
        "labs/uring_echo/src/op.rs differs from solutions/uring_echo/src/op.rs: the stub gives it ready-made, so copy the solution's"
    );
}

/// The web_client stub's `given.rs` (the command line, the URLs, the output
/// lines and the exit code, given ready-made) is the solution's, byte for
/// byte: a TA compares the two file by file.
#[test]
fn the_web_client_stub_has_the_solution_s_given_code() {
    let solution = read("solutions/web_client/src/given.rs");
    let stub = read("labs/web_client/src/given.rs");
    assert!(
        stub == solution,
        "labs/web_client/src/given.rs differs from solutions/web_client/src/given.rs: the stub gives it ready-made, so copy the solution's"
    );
}
