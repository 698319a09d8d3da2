fn main() {
    broken::run(broken::Fault::SigpipeDefault)
}
