fn main() {
    broken::run(broken::Fault::OneLinePerRead)
}
