fn main() {
    broken::run(broken::Fault::BusyPoll)
}
