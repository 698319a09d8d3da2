fn main() {
    broken_datagram::sigio::run(broken_datagram::sigio::Fault::NoDrain)
}
