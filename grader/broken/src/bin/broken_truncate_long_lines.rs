fn main() {
    broken::run(broken::Fault::TruncateLongLines)
}
