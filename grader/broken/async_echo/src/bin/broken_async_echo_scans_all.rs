fn main() {
    broken_async_echo::run(broken_async_echo::Fault::ScansAll)
}
