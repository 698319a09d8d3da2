fn main() {
    broken::run(broken::Fault::ShutdownAfterWriteOnly)
}
