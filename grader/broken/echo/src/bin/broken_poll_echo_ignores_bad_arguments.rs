fn main() {
    broken_echo::run(broken_echo::Fault::IgnoresBadArguments)
}
