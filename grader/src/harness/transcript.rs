//! A short record of what moved on the grader's connections, for messages:
//! consecutive chunks in one direction are merged, and long data is shown by
//! its size, its start and its end.

use super::text::{HEAD, TAIL, bytes, escape};
use std::io;
const MAX_ENTRIES: usize = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sent,
    Received,
    Note,
}

#[derive(Clone, Debug)]
struct Entry {
    client: usize,
    kind: Kind,
    bytes: usize,
    head: Vec<u8>,
    tail: Vec<u8>,
    text: String,
}

#[derive(Default)]
pub struct Transcript {
    entries: Vec<Entry>,
    dropped: usize,
}

impl Transcript {
    fn push(&mut self, entry: Entry) {
        if self.entries.len() >= MAX_ENTRIES {
            self.dropped += 1;
            return;
        }
        self.entries.push(entry);
    }

    fn data(&mut self, client: usize, kind: Kind, data: &[u8]) {
        if let Some(last) = self.entries.last_mut()
            && last.client == client
            && last.kind == kind
        {
            last.bytes += data.len();
            if last.head.len() < HEAD {
                let take = (HEAD - last.head.len()).min(data.len());
                last.head.extend_from_slice(&data[..take]);
            }
            last.tail
                .extend_from_slice(&data[data.len().saturating_sub(TAIL)..]);
            let excess = last.tail.len().saturating_sub(TAIL);
            last.tail.drain(..excess);
            return;
        }
        self.entry(client, kind, data);
    }

    fn entry(&mut self, client: usize, kind: Kind, data: &[u8]) {
        self.push(Entry {
            client,
            kind,
            bytes: data.len(),
            head: data[..data.len().min(HEAD)].to_vec(),
            tail: data[data.len().saturating_sub(TAIL)..].to_vec(),
            text: String::new(),
        });
    }

    /// A datagram sent by the grader: an entry of its own, never merged
    /// with the one before (datagrams keep their bounds).
    pub fn sent_datagram(&mut self, client: usize, data: &[u8]) {
        self.entry(client, Kind::Sent, data);
    }

    pub fn received_datagram(&mut self, client: usize, data: &[u8]) {
        self.entry(client, Kind::Received, data);
    }

    pub fn sent(&mut self, client: usize, data: &[u8]) {
        self.data(client, Kind::Sent, data);
    }

    pub fn received(&mut self, client: usize, data: &[u8]) {
        self.data(client, Kind::Received, data);
    }

    pub fn note(&mut self, client: usize, text: &str) {
        self.push(Entry {
            client,
            kind: Kind::Note,
            bytes: 0,
            head: Vec::new(),
            tail: Vec::new(),
            text: text.to_string(),
        });
    }

    pub fn connect(&mut self, client: usize, result: &io::Result<()>) {
        match result {
            Ok(()) => self.note(client, "connected"),
            Err(err) => self.note(client, &format!("connect failed: {err}")),
        }
    }

    pub fn eof(&mut self, client: usize) {
        self.note(client, "<- EOF (the server closed its side)");
    }

    pub fn timeout(&mut self, client: usize) {
        self.note(client, "... nothing more arrived (gave up waiting)");
    }

    pub fn error(&mut self, client: usize, op: &str, err: &io::Error) {
        self.note(client, &format!("{op} failed: {err}"));
    }

    /// At most `max_lines` lines about the given clients (all if empty): the
    /// first ones and the last ones, with a count of what was left out.
    pub fn render(&self, clients: &[usize], max_lines: usize) -> String {
        let lines: Vec<String> = self
            .entries
            .iter()
            .filter(|e| clients.is_empty() || clients.contains(&e.client))
            .map(render_entry)
            .collect();
        let mut out = Vec::new();
        if lines.len() <= max_lines {
            out.extend(lines.iter().cloned());
        } else {
            let head = max_lines / 2;
            let tail = max_lines - head;
            out.extend(lines[..head].iter().cloned());
            out.push(format!("   ... {} more lines ...", lines.len() - max_lines));
            out.extend(lines[lines.len() - tail..].iter().cloned());
        }
        if self.dropped > 0 {
            out.push(format!("   ... {} events not recorded ...", self.dropped));
        }
        out.join("\n")
    }
}

fn render_entry(entry: &Entry) -> String {
    let who = format!("c{}", entry.client);
    match entry.kind {
        Kind::Note => format!("{who:>5} {}", entry.text),
        Kind::Sent | Kind::Received => {
            let arrow = if entry.kind == Kind::Sent { "->" } else { "<-" };
            let shown = if entry.bytes <= HEAD {
                format!("\"{}\"", escape(&entry.head))
            } else {
                format!(
                    "\"{}\" ... \"{}\"",
                    escape(&entry.head),
                    escape(&entry.tail)
                )
            };
            format!("{who:>5} {arrow} {} {shown}", bytes(entry.bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::text::*;

    #[test]
    fn chunks_in_one_direction_merge() {
        let mut t = Transcript::default();
        t.sent(1, b"hello ");
        t.sent(1, b"world\n");
        t.received(1, b"hello world\n");
        t.eof(1);
        let text = t.render(&[], 10);
        assert_eq!(
            text,
            "   c1 -> 12 bytes \"hello world\\n\"\n   c1 <- 12 bytes \"hello world\\n\"\n   c1 <- EOF (the server closed its side)"
        );
    }

    #[test]
    fn long_data_shows_its_ends() {
        let mut t = Transcript::default();
        t.sent(2, &[b'a'; 100_000]);
        t.sent(2, b"zz\n");
        let text = t.render(&[2], 10);
        assert!(text.contains("100,003 bytes"), "{text}");
        assert!(text.ends_with("aazz\\n\""), "{text}");
    }

    #[test]
    fn render_keeps_head_and_tail() {
        let mut t = Transcript::default();
        for i in 0..50 {
            t.note(i, "connected");
        }
        let text = t.render(&[], 6);
        assert!(text.contains("c0 connected"));
        assert!(text.contains("44 more lines"));
        assert!(text.contains("c49 connected"));
        assert_eq!(t.render(&[3], 6), "   c3 connected");
    }

    #[test]
    fn escaping_and_differences() {
        assert_eq!(escape(b"a\r\n\x00\xff\""), "a\\r\\n\\x00\\xff\\\"");
        assert_eq!(thousands(1_048_576), "1,048,576");
        assert_eq!(first_difference(b"abc", b"abc"), None);
        let diff = first_difference(b"hello\r\n", b"hello\n").unwrap();
        assert!(diff.starts_with("first difference at byte 5"), "{diff}");
        let short = first_difference(b"abcdef", b"abc").unwrap();
        assert!(short.contains("at byte 3"), "{short}");
        assert!(
            short.ends_with("expected \"abc«d»ef\" but got \"abc\" «ends here»"),
            "{short}"
        );
        assert!(diff.contains("expected \"hello«\\r»\\n\" but got \"hello«\\n»\""));
        let empty = first_difference(b"x", b"").unwrap();
        assert!(empty.ends_with("but got nothing"), "{empty}");
        assert_eq!(quote(b"hi\n"), "\"hi\\n\"");
    }
}
