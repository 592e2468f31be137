//! What keeps the log trustworthy when its fields come from the network or from a certificate.
//!
//! - [`EscapingStderr`]: the writer of the text log. Every control character inside a log line
//!   (a newline, a carriage return, an escape sequence...) is written as an escape (`\n`,
//!   `\r`, `\x1b`), so that a certificate subject, a client id or a broker's string can never
//!   start a line of its own (a forged audit line) or drive the reader's terminal. One place
//!   for every field of every line, instead of escaping at each call site. The JSON format
//!   escapes them itself.
//! - [`bounded`]: an audit entry's resources cut to a bounded size, with a marker and the full
//!   count, so that one request cannot write a line of hundreds of kilobytes.
//! - [`next_audit_id`]: the id that ties an audited request's line to its outcome's.
//! - [`LineLimit`]: lines of one kind (denials) limited per key (identity), with the count of
//!   those suppressed carried in the next line written.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Makes the text log's writer: stderr, behind [`Escaping`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapingStderr;

impl<'a> MakeWriter<'a> for EscapingStderr {
    type Writer = Escaping<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping(io::stderr())
    }
}

/// A writer that escapes every control character of what it is given except a line's final
/// newline. tracing's formatter writes each event as one buffer ending in its newline, so
/// whatever a field holds, one event stays one line.
#[derive(Debug)]
pub struct Escaping<W>(pub W);

/// True for the bytes written as escapes: C0 controls and DEL.
fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        if !body.iter().copied().any(is_control) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b if is_control(b) => {
                    let _ = write!(out, "\\x{b:02x}");
                }
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Longest resource name an audit line keeps, in bytes; a longer one is cut with a marker
/// that gives its full length.
pub const MAX_ENTRY_BYTES: usize = 256;

/// Most bytes of resource names one audit line holds; the rest are counted, not written.
pub const MAX_LINE_BYTES: usize = 4096;

/// `entries` as an audit line holds them: each cut to [`MAX_ENTRY_BYTES`], and no more than
/// [`MAX_LINE_BYTES`] in all, then one entry that counts the rest. Linear in the input.
pub fn bounded(entries: Vec<String>) -> Vec<String> {
    let total = entries.len();
    let mut out = Vec::new();
    let mut bytes = 0;
    for (i, mut entry) in entries.into_iter().enumerate() {
        if entry.len() > MAX_ENTRY_BYTES {
            let mut cut = MAX_ENTRY_BYTES;
            while !entry.is_char_boundary(cut) {
                cut -= 1;
            }
            let full = entry.len();
            entry.truncate(cut);
            entry.push_str(&format!("…(cut, {full} bytes)"));
        }
        if bytes + entry.len() > MAX_LINE_BYTES {
            out.push(format!("…and {} more (of {total})", total - i));
            break;
        }
        bytes += entry.len();
        out.push(entry);
    }
    out
}

/// `outcome` (resource, error code) as an audit line holds it: bounded like [`bounded`]; the
/// entry that counts the rest carries the first non-zero error code among them (or 0).
pub fn bounded_outcome(outcome: Vec<(String, i16)>) -> Vec<(String, i16)> {
    let total = outcome.len();
    let codes: Vec<i16> = outcome.iter().map(|(_, c)| *c).collect();
    let names = bounded(outcome.into_iter().map(|(name, _)| name).collect());
    let kept = if names.len() < total || names.last().is_some_and(|n| n.starts_with("…and ")) {
        names.len() - 1
    } else {
        names.len()
    };
    let mut out: Vec<(String, i16)> = names.into_iter().zip(codes.iter().copied()).collect();
    if kept < out.len() {
        let rest = codes[kept..].iter().copied().find(|c| *c != 0).unwrap_or(0);
        out[kept].1 = rest;
    }
    out
}

/// A new id for an audited request: its request line and its outcome line carry the same.
pub fn next_audit_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// At most `burst` lines per `period` for each key; the rest are counted and the count goes
/// into the next line let through. The keys are the proxy's own (identity names), so the map
/// is as bounded as the configuration.
#[derive(Debug)]
pub struct LineLimit {
    period: Duration,
    burst: u32,
    /// key → (start of the current period, lines let through in it, suppressed since the last
    /// line let through).
    state: Mutex<HashMap<String, (Instant, u32, u64)>>,
}

impl LineLimit {
    /// A limit of `burst` lines per `period` and key.
    pub fn new(period: Duration, burst: u32) -> Self {
        Self {
            period,
            burst,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed before this one)` when a line for `key` may be written now; `None`
    /// when it is suppressed (and counted).
    pub fn allow(&self, key: &str) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = match state.get_mut(key) {
            Some(entry) => entry,
            None => state.entry(key.to_owned()).or_insert((now, 0, 0)),
        };
        if now.duration_since(entry.0) >= self.period {
            entry.0 = now;
            entry.1 = 0;
        }
        if entry.1 >= self.burst {
            entry.2 += 1;
            return None;
        }
        entry.1 += 1;
        Some(std::mem::take(&mut entry.2))
    }
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
