fn main() {
    broken_web_client::run(broken_web_client::Fault::NoFdLimit)
}
