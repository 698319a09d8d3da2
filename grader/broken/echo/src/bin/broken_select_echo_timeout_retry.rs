fn main() {
    broken_echo::run_select(broken_echo::SelectFault::TimeoutRetry)
}
