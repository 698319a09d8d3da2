//! Containing the program under test: which user it runs as, and finding
//! and killing every process it started, wherever it went.
//!
//! - The grader is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a process
//!   that escapes its process group (`setsid`, a double fork) is re-parented
//!   to the grader instead of init, so it stays among the grader's
//!   descendants and can be found.
//! - Each program is started with a tag in its environment; the sweep at the
//!   end of every check kills (SIGKILL, until none is left) every descendant
//!   of the grader that descends from a program of the check or carries its
//!   tag. A grader process that only grades ([`dedicate`]) kills every
//!   descendant.
//! - As root, the program runs as an unprivileged user (default `nobody`),
//!   so that `RLIMIT_NPROC` holds and it cannot write the grader's files.
//! - Where this process may create a cgroup (v2: as root, or in a delegated
//!   subtree), each check's programs start in a [`Cgroup`] of their own, which
//!   none of their descendants can leave and which is killed at once. It is
//!   a help, never a need: without it the subreaper and the sweep do the work.

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Gid, Pid, Uid, User};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that tags a check's programs.
pub const TAG: &str = "IOMUX_GRADER_TAG";
/// The environment variable naming the user programs run as under root.
pub const RUN_AS: &str = "GRADER_RUN_AS";

static DEDICATED: AtomicBool = AtomicBool::new(false);
static CREDENTIALS: OnceLock<Result<Option<Credentials>, String>> = OnceLock::new();

/// Who the program under test runs as.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Makes this process a child subreaper (idempotent; an error is ignored:
/// without it, escaped processes are still found while their parent lives).
pub fn become_subreaper() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Declares this process a grader and nothing else: every descendant is a
/// program under test (or one it started), and the sweep kills them all.
pub fn dedicate() {
    DEDICATED.store(true, Ordering::Relaxed);
    become_subreaper();
}

/// Chooses the user programs run as when the grader is root: `name`, else
/// `$GRADER_RUN_AS`, else `nobody`; `root` keeps root (unprotected). Must
/// be called before the first program starts; later calls are ignored.
pub fn choose_user(name: Option<&str>) -> Result<Option<Credentials>, String> {
    let env = std::env::var(RUN_AS).ok().filter(|s| !s.is_empty());
    let name = name.map(str::to_string).or(env);
    CREDENTIALS
        .get_or_init(|| resolve(name.as_deref().unwrap_or("nobody")))
        .clone()
}

/// Who programs run as: `None` when they run as the grader's own user.
pub fn credentials() -> Result<Option<Credentials>, String> {
    choose_user(None)
}

fn resolve(name: &str) -> Result<Option<Credentials>, String> {
    if !Uid::effective().is_root() || name == "root" {
        return Ok(None);
    }
    let user = User::from_name(name)
        .map_err(|err| format!("cannot look up the user {name:?}: {err}"))?
        .ok_or_else(|| {
            format!(
                "the grader runs as root, and then runs programs as the user {name:?}, which does not exist: \
                 create it or choose another with --run-as USER (or {RUN_AS}=USER)"
            )
        })?;
    if user.uid.is_root() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        name: name.to_string(),
        uid: user.uid,
        gid: user.gid,
    }))
}

/// Becomes `user` (in a child, before exec): its group only, then its uid.
pub fn drop_privileges(user: &Credentials) -> std::io::Result<()> {
    nix::unistd::setgroups(&[user.gid])?;
    nix::unistd::setgid(user.gid)?;
    nix::unistd::setuid(user.uid)?;
    Ok(())
}

/// A cgroup v2 of one check's programs (see the module's comment).
pub struct Cgroup {
    dir: std::path::PathBuf,
    procs: std::fs::File,
}

impl Cgroup {
    /// A new cgroup below this process's own, if one can be made and
    /// entered; `None` otherwise (cgroup v1 only, not root, not delegated,
    /// or `GRADER_NO_CGROUP` set).
    pub fn create(tag: &str) -> Option<Cgroup> {
        if std::env::var_os("GRADER_NO_CGROUP").is_some() {
            return None;
        }
        let mount = cgroup2_mount()?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|line| line.strip_prefix("0::"))?;
        let dir = mount
            .join(own.trim_start_matches('/'))
            .join(format!("iomux-grader-{tag}"));
        std::fs::create_dir(&dir).ok()?;
        match std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
        {
            Ok(procs) => Some(Cgroup { dir, procs }),
            Err(_) => {
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// The open `cgroup.procs`: a child writes `0` to it between fork and
    /// exec to enter the group (one write(2), async-signal-safe).
    pub fn procs_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.procs.as_raw_fd()
    }

    /// The processes in the group.
    pub fn members(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills every process in the group (`cgroup.kill`, or one by one on a
    /// kernel without it) and waits, briefly, until it is empty.
    pub fn kill(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let atomic = std::fs::write(self.dir.join("cgroup.kill"), "1").is_ok();
        loop {
            let members = self.members();
            if members.is_empty() || Instant::now() >= deadline {
                break;
            }
            if !atomic {
                for pid in members {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills the group and removes it: a check's end, even if the check's
    /// thread (which holds the group) is still stuck. A program started
    /// after that is not in a cgroup, and the sweep still finds it.
    pub fn end(&self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.dir.exists()
            && std::fs::remove_dir(&self.dir).is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.end();
    }
}

/// Where the cgroup v2 hierarchy is mounted, if it is.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(std::path::PathBuf::from))?
    })
}

/// A copy of the program that the run-as user can execute, when it cannot
/// execute `bin` where it is (a checkout under a private home, a file
/// without o+x). Dropped with its folder.
pub struct Runnable {
    pub path: std::path::PathBuf,
    folder: Option<std::path::PathBuf>,
}

impl Drop for Runnable {
    fn drop(&mut self) {
        if let Some(folder) = &self.folder {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// `bin`, or a copy of it in a fresh world-readable folder if the user the
/// program runs as could not execute it.
pub fn runnable(bin: &std::path::Path) -> Runnable {
    let stay = Runnable {
        path: bin.to_path_buf(),
        folder: None,
    };
    if !matches!(credentials(), Ok(Some(_))) || others_can_run(bin) {
        return stay;
    }
    copy_out(bin).unwrap_or(stay)
}

/// Whether a user who is neither owner nor group can reach and run `bin`.
pub fn others_can_run(bin: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode());
    let Ok(bin) = bin.canonicalize() else {
        return true;
    };
    mode(&bin) & 0o005 == 0o005 && bin.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0)
}

fn copy_out(bin: &std::path::Path) -> std::io::Result<Runnable> {
    use std::os::unix::fs::PermissionsExt;
    let folder = std::env::temp_dir().join(format!(
        "iomux-grader-bin-{}-{}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&folder)?;
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))?;
    let path = folder.join(bin.file_name().unwrap_or("program".as_ref()));
    std::fs::copy(bin, &path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(Runnable {
        path,
        folder: Some(folder),
    })
}

static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One process of the table: its parent and whether it is a zombie.
struct Entry {
    ppid: i32,
    zombie: bool,
}

fn table() -> HashMap<i32, Entry> {
    let mut table = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let Some(ppid) = fields.next().and_then(|s| s.parse().ok()) else {
            continue;
        };
        table.insert(
            pid,
            Entry {
                ppid,
                zombie: state == "Z" || state == "X",
            },
        );
    }
    table
}

fn has_tag(pid: i32, tag: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{TAG}={tag}");
    environ
        .split(|&b| b == 0)
        .any(|var| var == wanted.as_bytes())
}

/// The chain from `pid` up to this process's child it descends from (`pid`
/// first), or `None` if `pid` is not a descendant of this process.
fn lineage(table: &HashMap<i32, Entry>, pid: i32) -> Option<Vec<i32>> {
    let me = std::process::id() as i32;
    let mut chain = vec![pid];
    let mut cursor = pid;
    for _ in 0..4096 {
        match table.get(&cursor)?.ppid {
            ppid if ppid == me => return Some(chain),
            ppid if ppid <= 1 => return None,
            ppid => {
                chain.push(ppid);
                cursor = ppid;
            }
        }
    }
    None
}

/// The descendants of this process that belong to the check: below one of
/// `roots`, or tagged `tag`, or any at all in a dedicated grader.
fn victims(table: &HashMap<i32, Entry>, tag: &str, roots: &HashSet<i32>) -> Vec<(i32, bool)> {
    let dedicated = DEDICATED.load(Ordering::Relaxed);
    table
        .iter()
        .filter(|&(&pid, _)| {
            lineage(table, pid).is_some_and(|chain| {
                dedicated || chain.iter().any(|p| roots.contains(p)) || has_tag(pid, tag)
            })
        })
        .map(|(&pid, entry)| (pid, entry.zombie))
        .collect()
}

/// Kills every process of the check (see [`victims`]) until none is left,
/// reaping those that were re-parented to the grader. `roots` are the
/// programs the check started itself: their owners reap them. Gives up
/// after 3 s (a process stuck in the kernel cannot be waited for). Returns
/// how many processes were killed.
pub fn sweep(tag: &str, roots: &HashSet<i32>) -> usize {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut killed = HashSet::new();
    loop {
        let table = table();
        let found = victims(&table, tag, roots);
        let mut alive = 0;
        for &(pid, zombie) in &found {
            if !zombie {
                alive += 1;
                // Stop it first, so a fork bomb cannot outrun the sweep.
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                killed.insert(pid);
            }
            let ppid = table.get(&pid).map_or(0, |e| e.ppid);
            if ppid == me && !roots.contains(&pid) {
                let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            }
        }
        // Zombies left are children of our roots (their owners reap them)
        // or of processes just killed (reaped as those die).
        if alive == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    killed.len()
}

/// Every live descendant of this process (the tests' view: nothing may be
/// left running).
pub fn live_descendants() -> Vec<i32> {
    let table = table();
    let mut out: Vec<i32> = table
        .iter()
        .filter(|(_, e)| !e.zombie)
        .map(|(&pid, _)| pid)
        .filter(|&pid| lineage(&table, pid).is_some())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_the_run_as_user_cannot_reach_is_copied_out_and_cleaned_up() {
        use std::os::unix::fs::PermissionsExt;
        if !matches!(credentials(), Ok(Some(_))) {
            eprintln!("not root: programs run as the grader's user, nothing to copy");
            return;
        }
        let private = std::env::temp_dir().join(format!("iomux-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let bin = private.join("poll_echo");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!others_can_run(&bin));
        let copy = runnable(&bin);
        assert_ne!(copy.path, bin);
        assert_eq!(copy.path.file_name(), bin.file_name());
        assert!(others_can_run(&copy.path));
        let folder = copy.path.parent().unwrap().to_path_buf();
        drop(copy);
        assert!(!folder.exists());
        std::fs::remove_dir_all(&private).unwrap();
    }

    #[test]
    fn a_cgroup_holds_a_daemon_and_kills_it_at_once() {
        use std::os::unix::process::CommandExt;
        let Some(cgroup) = Cgroup::create(&format!("test-{}", std::process::id())) else {
            eprintln!("no cgroup v2 can be made here: the subreaper and the sweep do the work");
            return;
        };
        let fd = cgroup.procs_fd();
        let mut command = std::process::Command::new("/bin/sh");
        command.args(["-c", "setsid sh -c 'sleep 30' & sleep 30"]);
        // SAFETY: one write(2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let _ = nix::unistd::write(std::os::fd::BorrowedFd::borrow_raw(fd), b"0");
                Ok(())
            });
        }
        let mut shell = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while cgroup.members().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(cgroup.members().len() >= 3, "{:?}", cgroup.members());
        cgroup.kill();
        assert_eq!(cgroup.members(), Vec::<i32>::new());
        let _ = shell.wait();
        become_subreaper();
        sweep("no tag", &HashSet::new());
    }

    #[test]
    fn a_process_that_escapes_its_group_is_found_and_killed() {
        become_subreaper();
        let tag = format!("test-{}", std::process::id());
        // A daemon: setsid, then fork again, then sleep.
        let mut shell = std::process::Command::new("/bin/sh")
            .args(["-c", "setsid sh -c 'sleep 30 & exit 0' & sleep 0.1; exit 0"])
            .env(TAG, &tag)
            .spawn()
            .unwrap();
        shell.wait().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let tagged = |pid: &i32| has_tag(*pid, &tag);
        let before: Vec<i32> = live_descendants().into_iter().filter(tagged).collect();
        assert!(
            !before.is_empty(),
            "the escaped sleep was re-parented to us"
        );
        sweep(&tag, &HashSet::new());
        let after: Vec<i32> = live_descendants().into_iter().filter(tagged).collect();
        assert!(after.is_empty(), "left running: {after:?}");
    }
}
