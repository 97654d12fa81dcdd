//! Log lines built in a fixed buffer: the library may not allocate, and one `write(2)` of a
//! whole line keeps lines from several processes or threads from interleaving.
//!
//! Text is written through [`Sink`] and [`Put`] (the [`put!`](crate::put) macro), not
//! `core::fmt`: `fmt` works through tables of function pointers (`&mut dyn Write`, the
//! `Display` of addresses), and each pointer in a loaded library is a relocation the loader
//! applies at every exec (about 13 instructions each, in every process that inherits
//! `LD_PRELOAD`, logging or not). `Put` is resolved at compile time, so the library's data
//! holds none. The command and the tests reach any `fmt::Write` through [`Fmt`].

use core::fmt;

/// Longest line written; longer text is cut and ends in `...`.
pub const LINE_MAX: usize = 480;

/// Where text goes.
pub trait Sink {
    fn push(&mut self, s: &str);
}

/// A value written as text.
pub trait Put {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S);
}

/// Writes each value in turn: `put!(line, ep, ": bound after ", ms, " ms")`.
#[macro_export]
macro_rules! put {
    ($sink:expr $(, $x:expr)+ $(,)?) => {{
        let sink = $crate::line::sink($sink);
        $( $crate::line::Put::put(&$x, sink); )+
    }};
}

#[doc(hidden)]
#[inline(always)]
pub fn sink<S: Sink + ?Sized>(s: &mut S) -> &mut S {
    s
}

impl Put for str {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.push(self);
    }
}

impl<T: Put + ?Sized> Put for &T {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
        (**self).put(sink);
    }
}

/// A number in decimal.
fn put_u64<S: Sink + ?Sized>(mut n: u64, sink: &mut S) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    let digits = buf.get(at..).unwrap_or_default();
    sink.push(core::str::from_utf8(digits).unwrap_or_default());
}

macro_rules! put_unsigned {
    ($($t:ty),*) => {$(
        impl Put for $t {
            fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
                put_u64(*self as u64, sink);
            }
        }
    )*};
}
put_unsigned!(u8, u16, u32, u64, usize);

macro_rules! put_signed {
    ($($t:ty),*) => {$(
        impl Put for $t {
            fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
                if *self < 0 {
                    sink.push("-");
                }
                put_u64(self.unsigned_abs() as u64, sink);
            }
        }
    )*};
}
put_signed!(i32, i64);

/// A number in lowercase hexadecimal, without leading zeros (`{:x}`).
pub struct Hex(pub u32);

/// A byte as two lowercase hexadecimal digits (`{:02x}`).
pub struct Hex2(pub u8);

const DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_digit(n: u32) -> u8 {
    DIGITS.get((n & 0xf) as usize).copied().unwrap_or(b'0')
}

impl Put for Hex {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
        let mut buf = [0u8; 8];
        let mut at = buf.len();
        let mut n = self.0;
        loop {
            at -= 1;
            if let Some(d) = buf.get_mut(at) {
                *d = hex_digit(n);
            }
            n >>= 4;
            if n == 0 || at == 0 {
                break;
            }
        }
        let digits = buf.get(at..).unwrap_or_default();
        sink.push(core::str::from_utf8(digits).unwrap_or_default());
    }
}

impl Put for Hex2 {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
        let b = u32::from(self.0);
        let two = [hex_digit(b >> 4), hex_digit(b)];
        sink.push(core::str::from_utf8(&two).unwrap_or_default());
    }
}

/// Any `fmt::Write` (a `String`, a `Formatter`) as a [`Sink`]; the first error is kept.
pub struct Fmt<'a, W: ?Sized> {
    out: &'a mut W,
    result: fmt::Result,
}

impl<'a, W: fmt::Write + ?Sized> Fmt<'a, W> {
    pub fn new(out: &'a mut W) -> Self {
        Fmt {
            out,
            result: Ok(()),
        }
    }

    pub fn result(&self) -> fmt::Result {
        self.result
    }
}

impl<W: fmt::Write + ?Sized> Sink for Fmt<'_, W> {
    fn push(&mut self, s: &str) {
        if self.result.is_ok() {
            self.result = self.out.write_str(s);
        }
    }
}

/// `Display` through [`Put`], for the command and the tests.
pub fn display<T: Put + ?Sized>(value: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut sink = Fmt::new(f);
    value.put(&mut sink);
    sink.result()
}

#[cfg(test)]
impl Sink for std::string::String {
    fn push(&mut self, s: &str) {
        self.push_str(s);
    }
}

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
        crate::put!(&mut l, "libreuse[", pid, "]: ");
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

impl Sink for Line {
    // Out of line: the library builds dozens of messages, each a run of pushes.
    #[inline(never)]
    fn push(&mut self, s: &str) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    extern crate std;
    use proptest::prelude::*;
    use std::string::String;

    fn text(f: impl FnOnce(&mut Fmt<'_, String>)) -> String {
        let mut s = String::new();
        f(&mut Fmt::new(&mut s));
        s
    }

    #[test]
    fn prefix_and_newline() {
        let mut l = Line::new(4242);
        crate::put!(
            &mut l,
            Endpoint::V4([127, 0, 0, 1], 8000),
            " tcp: SO_REUSEADDR"
        );
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
            crate::put!(&mut l, "0123456789");
        }
        let out = l.finish();
        assert_eq!(out.len(), LINE_MAX);
        assert!(out.ends_with(b"...\n"));
    }

    #[test]
    fn numbers_at_their_edges() {
        assert_eq!(
            text(|s| crate::put!(s, 0u8, " ", u64::MAX)),
            "0 18446744073709551615"
        );
        assert_eq!(
            text(|s| crate::put!(s, i32::MIN, " ", -1i32, " ", 7i64)),
            "-2147483648 -1 7"
        );
        assert_eq!(
            text(|s| crate::put!(s, Hex(0), " ", Hex(u32::MAX), " ", Hex2(0x0a))),
            "0 ffffffff 0a"
        );
    }

    proptest! {
        // The library's own formatting of numbers and addresses says what core::fmt says.
        #[test]
        fn numbers_read_as_fmt_writes_them(a: u64, b: i32, c: i64, d: u32, e: u8) {
            let ours = text(|s| crate::put!(s, a, " ", b, " ", c, " ", Hex(d), " ", Hex2(e)));
            prop_assert_eq!(ours, std::format!("{a} {b} {c} {d:x} {e:02x}"));
        }

        #[test]
        fn endpoints_read_as_std_writes_them(
            v4: [u8; 4],
            v6: [u8; 16],
            port: u16,
            zeros in proptest::collection::vec(0usize..8, 0..6),
            mapped: bool,
        ) {
            let mut v6 = v6;
            // Runs of zero groups (the `::` cases) and IPv4-mapped addresses are what the
            // formatting gets wrong if anything: make them common.
            for z in zeros {
                v6[2 * z] = 0;
                v6[2 * z + 1] = 0;
            }
            if mapped {
                v6[..10].fill(0);
                v6[10] = 0xff;
                v6[11] = 0xff;
            }
            let std4 = std::net::SocketAddr::from((v4, port)).to_string();
            let std6 = std::net::SocketAddr::from((v6, port)).to_string();
            prop_assert_eq!(text(|s| crate::put!(s, Endpoint::V4(v4, port))), std4);
            prop_assert_eq!(text(|s| crate::put!(s, Endpoint::V6(v6, port))), std6);
        }
    }
}
