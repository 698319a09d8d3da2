use broken_select_telnet::Fault;

fn main() {
    broken_select_telnet::run(Fault::UsageExitsOne)
}
