#[path = "../on_tokio.rs"]
mod on_tokio;

fn main() {
    on_tokio::run_on_tokio()
}
