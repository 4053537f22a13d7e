//! The skip rule every test follows (`oomtrace-test-skips`, which the xtask reads back), and
//! the precondition most tests that skip have in common: root.

pub use oomtrace_test_skips::{SKIPS_ENV, not_applicable, skip, under_ci};

/// True when `test` may go on because it runs as root; otherwise it is [`skip`]ped for `why`,
/// which fails it under `CI=true`.
pub fn as_root(test: &str, why: &str) -> bool {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(test, why);
    false
}
