//! Text for messages: sizes, quotations of bytes, the first difference
//! between two byte strings, indentation. Used by the grader's messages and
//! by the bench.

/// How much of the start and the end of long data a quotation shows.
pub(crate) const HEAD: usize = 40;
pub(crate) const TAIL: usize = 20;

/// `1 byte`, `12,345 bytes`.
pub fn bytes(n: usize) -> String {
    if n == 1 {
        return "1 byte".into();
    }
    format!("{} bytes", thousands(n))
}

pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as a readable string: printable ASCII as is, the rest escaped.
pub fn escape(data: &[u8]) -> String {
    let mut out = String::new();
    for &b in data {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// A short quotation of `data`: the whole of it when short, else its start,
/// its size and its end.
pub fn quote(data: &[u8]) -> String {
    if data.len() <= HEAD + TAIL {
        format!("\"{}\"", escape(data))
    } else {
        format!(
            "\"{}\" ... \"{}\" ({})",
            escape(&data[..HEAD]),
            escape(&data[data.len() - TAIL..]),
            bytes(data.len())
        )
    }
}

/// Where two byte strings first differ, described for a student: up to 16
/// bytes of context before it, the first differing byte between « » (the
/// report shows it highlighted on a terminal; escaped data never contains
/// these characters, so they cannot be mistaken for bytes).
pub fn first_difference(expected: &[u8], got: &[u8]) -> Option<String> {
    let at = expected.iter().zip(got).position(|(a, b)| a != b);
    let at = match at {
        Some(at) => at,
        None if expected.len() == got.len() => return None,
        None => expected.len().min(got.len()),
    };
    let from = at.saturating_sub(16);
    let window = |data: &[u8]| {
        if data.is_empty() {
            return "nothing".to_string();
        }
        // `at` is within both inputs or just past the end of the shorter.
        let before = escape(&data[from..at]);
        match data.get(at) {
            Some(byte) => {
                let after = escape(&data[at + 1..(at + 24).min(data.len())]);
                format!(
                    "\"{before}{MARK_START}{}{MARK_END}{after}\"",
                    escape(&[*byte])
                )
            }
            None => format!("\"{before}\" {MARK_START}ends here{MARK_END}"),
        }
    };
    Some(format!(
        "first difference at byte {}: expected {} but got {}",
        thousands(at),
        window(expected),
        window(got)
    ))
}

/// The marks around the first differing byte in [`first_difference`].
pub const MARK_START: char = '«';
pub const MARK_END: char = '»';

/// Every line of `text` with `prefix` in front.
pub fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
