//! Step 1 of the build order: the executor, the reactor's timers and
//! `sleep`, without any socket. Run them with
//! `cargo test -p async_echo -- --ignored` (they are ignored by default so
//! that a plain `cargo test` of the course passes on the stub as given).
//!
//! Each test runs its own runtime on a thread of its own (the reactor and
//! the executor are per-thread), and waits for what the tasks report.

use super::executor;
use super::time::sleep;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

const STEP_1: &str = "step 1: cargo test -p async_echo -- --ignored";

/// Runs the future `main(tx)` makes on a runtime of its own, and returns
/// the first `count` values it sends, or fails after `limit`.
fn run_and_collect<T: Send + 'static, F: Future<Output = ()> + 'static>(
    count: usize,
    limit: Duration,
    main: impl FnOnce(Sender<T>) -> F + Send + 'static,
) -> Vec<T> {
    let (tx, rx) = mpsc::channel();
    // The runtime runs for ever: its thread is left behind when the test
    // ends.
    std::thread::spawn(move || executor::run(main(tx)));
    let end = Instant::now() + limit;
    (0..count)
        .map(|i| {
            let left = end.saturating_duration_since(Instant::now());
            rx.recv_timeout(left).unwrap_or_else(|err| match err {
                RecvTimeoutError::Disconnected => panic!(
                    "the runtime stopped after {i} of the {count} results the tasks send: it panicked (its message is above) ({STEP_1})"
                ),
                RecvTimeoutError::Timeout => panic!(
                    "after {limit:?}, only {i} of the {count} results the tasks send had come: a task never ran, or never woke up ({STEP_1})"
                ),
            })
        })
        .collect()
}

#[test]
#[ignore = "step 1: cargo test -p async_echo -- --ignored"]
fn run_polls_its_main_task() {
    let got = run_and_collect(1, Duration::from_secs(2), |tx| async move {
        tx.send("main ran").unwrap();
    });
    assert_eq!(got, ["main ran"], "{STEP_1}");
}

#[test]
#[ignore = "step 1: cargo test -p async_echo -- --ignored"]
fn sleep_wakes_its_task_after_the_duration() {
    let got = run_and_collect(1, Duration::from_secs(3), |tx| async move {
        let start = Instant::now();
        sleep(Duration::from_millis(200)).await;
        tx.send(start.elapsed()).unwrap();
    });
    assert!(
        got[0] >= Duration::from_millis(200),
        "sleep(200 ms) ended after {:?}: too early ({STEP_1})",
        got[0]
    );
}

#[test]
#[ignore = "step 1: cargo test -p async_echo -- --ignored"]
fn spawned_tasks_sleep_at_the_same_time() {
    let start = Instant::now();
    let got = run_and_collect(3, Duration::from_secs(5), |tx| async move {
        for (name, ms) in [("slow", 600), ("fast", 300)] {
            let tx = tx.clone();
            executor::spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                tx.send(name).unwrap();
            });
        }
        // The spawned tasks run once this one yields: before, none has.
        tx.send("main").unwrap();
    });
    let took = start.elapsed();
    assert_eq!(
        got,
        ["main", "fast", "slow"],
        "the order in which the tasks finished ({STEP_1})"
    );
    // One after the other, the sleeps would take 900 ms: together, 600.
    assert!(
        took < Duration::from_millis(850),
        "two tasks sleeping 600 and 300 ms took {took:?} in all: they should sleep at the same time, so about 600 ms ({STEP_1})"
    );
}
