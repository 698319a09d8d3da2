fn main() {
    broken::run(broken::Fault::LeakFds)
}
