//! Lines for the operator on stderr. Every one goes through [`line`], which never panics: a
//! closed or broken stderr must not take the tracer down (`eprintln!` panics there).

use std::io::Write as _;

/// Writes `oomtrace: <message>` and a newline to stderr, ignoring any error.
pub fn line(message: std::fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "oomtrace: {message}");
}

/// `say!("cannot read {path}")` prints `oomtrace: cannot read ...` on stderr; see [`line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::stderr::line(format_args!($($arg)*))
    };
}
