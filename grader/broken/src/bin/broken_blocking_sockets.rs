fn main() {
    broken::run(broken::Fault::BlockingSockets)
}
