fn main() {
    broken::run(broken::Fault::ThreadPerClient)
}
