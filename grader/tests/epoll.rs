//! The edge-triggered behaviour checks catch servers that do not drain,
//! nothing else: a correct level-triggered server passes them too. (Every
//! check's proofs are in proofs.rs.)

mod common;

use common::{explain, grade};

#[test]
fn a_level_triggered_server_passes_the_draining_checks() {
    let report = grade(
        "epoll_et",
        "epoll_lt_solution",
        &["burst", "accept_storm", "big_replies"],
    );
    assert!(report.all_passed(), "{}", explain(&report));
}
