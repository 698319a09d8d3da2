fn main() {
    broken::run(broken::Fault::StripCr)
}
