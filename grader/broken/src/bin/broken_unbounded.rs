fn main() {
    broken::run(broken::Fault::Unbounded)
}
