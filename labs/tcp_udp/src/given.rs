//! Given, ready-made: the line framing of the earlier labs, and a slab of
//! tokens. Use them as they are; nothing here is graded on its own.
//!
//! - [`LineReader::echo`] is the echo protocol on one chunk you read: it
//!   queues the echo of each complete line on `out`, keeps the unfinished
//!   line for the next chunk, and stops at `quit` (not echoed) or at a line
//!   longer than 8192 bytes (then it queues `ERR line too long\n`). What it
//!   returns says which: anything but [`Fed::All`] ends the conversation.
//!   At the client's EOF, [`LineReader::take_fragment`] is the unfinished
//!   line, to be echoed as it is.
//! - [`Slab`] stores a value under a small integer, reusing freed ones: the
//!   client's token, the `data` of its epoll registration.
//!
//! This is the code of the reference solutions' `echo_core`, copied: the
//! course's stubs test keeps the two the same.

#![allow(dead_code)]

/// Longest line, counting the `\n`.
pub const MAX_LINE: usize = 8192;
/// The reply to a line longer than [`MAX_LINE`], before the connection ends.
pub const TOO_LONG_REPLY: &[u8] = b"ERR line too long\n";

/// `quit\n` or `quit\r\n`.
pub fn is_quit(line: &[u8]) -> bool {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    text == b"quit"
}

/// Cuts a byte stream into lines of at most [`MAX_LINE`] bytes, `\n`
/// included: it keeps the unfinished line between reads.
#[derive(Default)]
pub struct LineReader {
    line: Vec<u8>,
}

/// Whether [`LineReader::feed`] should go on after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The rest of the input is not wanted (after `quit`).
    Stop,
}

/// How [`LineReader::feed`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// Every byte was used: whole lines passed on, the rest kept.
    All,
    /// A line's handler said [`Flow::Stop`]; the bytes after it were dropped.
    Stopped,
    /// The 8193rd byte of a line arrived and none of the first 8192 was a
    /// `\n`: the line is too long, whatever comes next. The line so far and
    /// the rest of the input were dropped.
    TooLong,
}

impl LineReader {
    /// Passes every complete line in `data` (with the bytes kept from
    /// earlier reads in front) to `on_line`, and keeps the unfinished end.
    pub fn feed(&mut self, mut data: &[u8], mut on_line: impl FnMut(&[u8]) -> Flow) -> Fed {
        while !data.is_empty() {
            let room = MAX_LINE - self.line.len();
            let Some(i) = data.iter().take(room).position(|&b| b == b'\n') else {
                if data.len() > room {
                    self.line.clear();
                    return Fed::TooLong;
                }
                self.line.extend_from_slice(data);
                return Fed::All;
            };
            let (line_end, rest) = data.split_at(i + 1);
            data = rest;
            let flow = if self.line.is_empty() {
                on_line(line_end)
            } else {
                self.line.extend_from_slice(line_end);
                let flow = on_line(&self.line);
                self.line.clear(); // keeps the allocation
                flow
            };
            if flow == Flow::Stop {
                return Fed::Stopped;
            }
        }
        Fed::All
    }

    /// The echo protocol on `data`: queues on `out` the echo of every
    /// complete line, up to a `quit` (not echoed) or a too-long line (then
    /// `ERR line too long`). Anything but [`Fed::All`] ends the connection.
    pub fn echo(&mut self, data: &[u8], out: &mut Vec<u8>) -> Fed {
        let fed = self.feed(data, |line| {
            if is_quit(line) {
                return Flow::Stop;
            }
            out.extend_from_slice(line);
            Flow::Continue
        });
        if fed == Fed::TooLong {
            out.extend_from_slice(TOO_LONG_REPLY);
        }
        fed
    }

    /// The unfinished last line, at the end of the input: it is echoed as it is.
    pub fn take_fragment(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.line)
    }
}

/// Connections stored by a small integer, the token an epoll registration
/// carries in its `data` field. Freed slots are reused.
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; returns its token.
    pub fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(token) => {
                self.slots[token] = Some(value);
                token
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    pub fn get_mut(&mut self, token: usize) -> Option<&mut T> {
        self.slots.get_mut(token).and_then(Option::as_mut)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn remove(&mut self, token: usize) -> Option<T> {
        let value = self.slots.get_mut(token)?.take();
        if value.is_some() {
            self.free.push(token);
        }
        value
    }
}
