use broken_timeouts::Fault;

fn main() {
    broken_timeouts::run(Fault::FixedTick { ms: 150 })
}
