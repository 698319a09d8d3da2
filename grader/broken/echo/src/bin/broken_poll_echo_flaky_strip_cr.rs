//! A server that misbehaves on one start in three: a given parent (the
//! grader) starts it once to see it start, once for the check (it drops the
//! `\r` of `\r\n`) and once more for the rerun (it is correct). Proves that
//! the grader runs a failed check twice and says that the program is flaky
//! instead of passing or plainly failing it.

fn main() {
    let parent = std::os::unix::process::parent_id();
    let counter = std::env::temp_dir().join(format!("iomux-labs-flaky-{parent}"));
    let starts: u32 = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let _ = std::fs::write(&counter, (starts + 1).to_string());
    if starts % 3 == 1 {
        broken_echo::run(broken_echo::Fault::StripCr)
    }
    broken_echo::run(broken_echo::Fault::None)
}
