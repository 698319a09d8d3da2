fn main() {
    broken::run(broken::Fault::None)
}
