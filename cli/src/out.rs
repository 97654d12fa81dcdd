//! Output that never takes the command down. `print!` and `eprintln!` panic when the write
//! fails (a stderr pipe whose reader is gone, `reuse doctor | head`), and a panic here would
//! orphan the server in hold mode and leave its rendezvous folder behind. These write or
//! fail quietly: a line nobody can read is not worth stopping for.

use std::io::Write;

/// Writes one line to stderr; errors are ignored.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let mut line = args.to_string();
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Writes to stdout; false when it could not (a closed pipe), so the caller can stop.
pub fn out(bytes: &[u8]) -> bool {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes).and_then(|()| o.flush()).is_ok()
}

/// `eprintln!` that cannot panic.
macro_rules! say {
    ($($t:tt)*) => { $crate::out::err_line(format_args!($($t)*)) };
}
pub(crate) use say;
