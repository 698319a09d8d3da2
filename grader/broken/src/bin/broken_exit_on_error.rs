fn main() {
    broken::run(broken::Fault::ExitOnError)
}
