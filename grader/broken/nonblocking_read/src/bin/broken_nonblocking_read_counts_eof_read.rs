use broken_nonblocking_read::Fault;

fn main() {
    broken_nonblocking_read::run(Fault::CountsEofRead)
}
