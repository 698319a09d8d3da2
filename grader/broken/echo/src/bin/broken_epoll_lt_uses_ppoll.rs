//! The correct poll server, graded as an epoll lab: its `api` check must
//! fail, because the lab is about epoll.

fn main() {
    broken_echo::run(broken_echo::Fault::None)
}
