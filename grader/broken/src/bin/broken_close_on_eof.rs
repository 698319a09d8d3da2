fn main() {
    broken::run(broken::Fault::CloseOnEof)
}
