//! A server that misbehaves on every other start: the first time a given
//! parent (the grader) starts it, it drops the `\r` of `\r\n`; the next time
//! it is correct. Proves that the grader runs a failed check twice and says
//! that the program is flaky instead of passing or plainly failing it.

fn main() {
    let parent = std::os::unix::process::parent_id();
    let marker = std::env::temp_dir().join(format!("iomux-labs-flaky-{parent}"));
    if std::fs::remove_file(&marker).is_ok() {
        broken_echo::run(broken_echo::Fault::None)
    }
    let _ = std::fs::write(&marker, b"");
    broken_echo::run(broken_echo::Fault::StripCr)
}
