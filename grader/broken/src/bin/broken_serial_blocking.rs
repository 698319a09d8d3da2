fn main() {
    broken::run(broken::Fault::SerialBlocking)
}
