fn main() {
    broken::run(broken::Fault::UsesEpoll)
}
