fn main() {
    broken::run(broken::Fault::NoRlimit)
}
