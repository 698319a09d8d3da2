fn main() {
    broken_uring::run(broken_uring::Fault::PollThenRecv)
}
