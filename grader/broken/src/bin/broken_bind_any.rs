fn main() {
    broken::run(broken::Fault::BindAny)
}
