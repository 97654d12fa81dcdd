//! Log lines built in a fixed buffer: the library may not allocate, and one `write(2)` of a
//! whole line keeps lines from several processes or threads from interleaving.

use core::fmt;

/// Longest line written; longer text is cut and ends in `...`.
pub const LINE_MAX: usize = 480;

pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    cut: bool,
}

impl Line {
    /// A line that starts with the prefix every message carries: `libreuse[PID]: `.
    pub fn new(pid: i32) -> Line {
        let mut l = Line {
            buf: [0; LINE_MAX],
            len: 0,
            cut: false,
        };
        let _ = write!(l, "libreuse[{pid}]: ");
        l
    }

    /// The finished line with its newline: cut lines end in `...`.
    pub fn finish(&mut self) -> &[u8] {
        let tail: &[u8] = if self.cut { b"...\n" } else { b"\n" };
        let end = self.len.min(LINE_MAX - tail.len());
        for (d, s) in self.buf.iter_mut().skip(end).zip(tail) {
            *d = *s;
        }
        self.len = end + tail.len();
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // One byte is kept for the newline.
        let room = (LINE_MAX - 1).saturating_sub(self.len);
        let n = s.len().min(room);
        for (d, b) in self.buf.iter_mut().skip(self.len).zip(s.bytes().take(n)) {
            *d = b;
        }
        self.len += n;
        if n < s.len() {
            self.cut = true;
        }
        Ok(())
    }
}

pub use core::fmt::Write;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    extern crate std;

    #[test]
    fn prefix_and_newline() {
        let mut l = Line::new(4242);
        write!(
            l,
            "{} tcp: SO_REUSEADDR",
            Endpoint::V4([127, 0, 0, 1], 8000)
        )
        .unwrap();
        assert_eq!(
            l.finish(),
            b"libreuse[4242]: 127.0.0.1:8000 tcp: SO_REUSEADDR\n"
        );
    }

    #[test]
    fn ipv6_is_bracketed_and_compressed() {
        let mut a = [0u8; 16];
        a[15] = 1;
        assert_eq!(std::format!("{}", Endpoint::V6(a, 9)), "[::1]:9");
    }

    #[test]
    fn long_lines_are_cut_not_overflowed() {
        let mut l = Line::new(1);
        for _ in 0..100 {
            write!(l, "0123456789").unwrap();
        }
        let out = l.finish();
        assert_eq!(out.len(), LINE_MAX);
        assert!(out.ends_with(b"...\n"));
    }
}
