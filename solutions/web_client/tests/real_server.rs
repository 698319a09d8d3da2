//! The reference against a real server: `python3 -m http.server` on
//! loopback serves a binary file (with `\r\n\r\n` and zero bytes inside), an
//! empty one and a small text one, and answers 404 for a missing path. Every
//! file must arrive byte for byte.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A temporary directory, removed at the end whatever happens.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("web_client-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `python3 -m http.server`, killed at the end whatever happens.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    /// Serves `root` on 127.0.0.1 and a free port, once it accepts.
    fn start(root: &Path) -> HttpServer {
        // The free port is found by binding it; another program could take
        // it before python does, so a server that dies at once is retried.
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    &port.to_string(),
                ])
                .current_dir(root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot run python3: this test needs it");
            let mut server = HttpServer { child, port };
            if server.accepts_within(Duration::from_secs(10)) {
                return server;
            }
        }
        panic!("python3 -m http.server never accepted a connection");
    }

    fn accepts_within(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A few MiB that look like HTTP inside: empty lines, zero bytes, and
/// every byte value.
fn binary_body() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..(3u32 << 20) / 16 {
        body.extend_from_slice(b"\r\n\r\n\0\0HTTP/1.0 ");
        body.extend_from_slice(&u32::to_le_bytes(i.wrapping_mul(2_654_435_761)));
    }
    body
}

#[test]
fn fetches_real_files_byte_for_byte() {
    let root = TempDir::new("root");
    let out = TempDir::new("out");
    let files: [(&str, Vec<u8>); 3] = [
        ("binary.dat", binary_body()),
        ("empty", Vec::new()),
        ("hello.txt", b"hello, world\n".to_vec()),
    ];
    for (name, body) in &files {
        std::fs::write(root.0.join(name), body).unwrap();
    }
    let server = HttpServer::start(&root.0);
    let mut urls: Vec<String> = files.iter().map(|(name, _)| server.url(name)).collect();
    urls.push(server.url("missing"));

    let run = Command::new(env!("CARGO_BIN_EXE_web_client_solution"))
        .args(["--parallel", "2", "--out"])
        .arg(&out.0)
        .args(&urls)
        .output()
        .unwrap();
    let stdout = String::from_utf8(run.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // Lines come in completion order: compare them sorted by fetch number.
    let mut lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.pop(), Some("done ok=4 failed=0"), "stdout:\n{stdout}");
    lines.sort_by_key(|line| line.split(' ').next().unwrap().parse::<usize>().unwrap());
    for (i, (_, body)) in files.iter().enumerate() {
        let n = i + 1;
        let expected = format!("{n} {} status=200 bytes={}", urls[i], body.len());
        assert_eq!(lines[i], expected);
        let got = std::fs::read(out.0.join(n.to_string())).unwrap();
        assert!(
            got == *body,
            "{n}: {} bytes differ from the file served",
            got.len()
        );
    }
    // A 404 is a fetch like any other: its body (the server's error page) is kept.
    let missing = std::fs::read(out.0.join("4")).unwrap();
    assert_eq!(
        lines[3],
        format!("4 {} status=404 bytes={}", urls[3], missing.len())
    );
    assert!(!missing.is_empty());
    assert_eq!(lines.len(), 4, "stdout:\n{stdout}");

    let mut left: Vec<String> = std::fs::read_dir(&out.0)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["1", "2", "3", "4"], "only the complete files remain");
}
