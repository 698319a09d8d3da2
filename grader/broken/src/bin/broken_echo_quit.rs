fn main() {
    broken::run(broken::Fault::EchoQuit)
}
