fn main() {
    broken_datagram::tcp_udp::run(broken_datagram::tcp_udp::Fault::CrossedReplies)
}
