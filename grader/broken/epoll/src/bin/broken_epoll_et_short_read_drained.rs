use broken_epoll::{Fault, Mode};

fn main() {
    broken_epoll::run(Mode::Edge, Fault::ShortReadDrained)
}
