fn main() {
    broken::run(broken::Fault::EchoEachRead)
}
