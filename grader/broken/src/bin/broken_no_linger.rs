fn main() {
    broken::run(broken::Fault::NoLinger)
}
