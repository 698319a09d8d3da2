use broken_nonblocking::Fault;

fn main() {
    broken_nonblocking::run(Fault::RestoreOnSuccessOnly)
}
