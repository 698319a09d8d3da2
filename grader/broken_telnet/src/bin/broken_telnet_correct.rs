use broken_telnet::Fault;

fn main() {
    broken_telnet::run(Fault::None)
}
