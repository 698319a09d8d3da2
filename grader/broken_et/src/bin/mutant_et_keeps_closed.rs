fn main() {
    broken_et::run(broken_et::Fault::KeepsClosedFds)
}
