//! The correct ppoll server, graded as select_echo: it waits in the wrong call.
fn main() {
    broken_echo::run(broken_echo::Fault::None)
}
