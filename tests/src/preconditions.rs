//! What a test needs before it runs: the binaries under test, root (or a recorded skip), the
//! host's OOM killer to itself, and to know whether it runs in a kernel-matrix VM.
//!
//! The skip rule itself is `oomtrace-test-skips`' (here through oomtrace-core's
//! `testing::skips`, which the unit tests use too), and `cargo xtask test` reads it back.

use std::{
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

pub use oomtrace_core::testing::skips::{SKIPS_ENV, not_applicable, skip, under_ci};

/// OOM tests share the host's OOM killer and tracing; one at a time keeps every report
/// attributable to the test that caused it.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True when the test may go on: it runs as root. Otherwise it is [`skip`]ped, which fails
/// it under `CI=true`.
pub fn privileged(test: &str) -> bool {
    oomtrace_core::testing::skips::as_root(
        test,
        "it needs root to load eBPF and create memory cgroups",
    )
}

/// Set to `1` by the kernel matrix's init (`cargo xtask vm-test`, xtask/vm/init): the tests run
/// in a VM of their own, the only place a test may exhaust the machine's memory or count every
/// OOM kill the kernel makes as its own.
pub const VM_ENV: &str = "OOMTRACE_VM";

/// Whether this runs inside a kernel-matrix VM; see [`VM_ENV`].
pub fn in_kernel_matrix_vm() -> bool {
    std::env::var_os(VM_ENV).is_some_and(|v| v == "1")
}

/// The oomtrace binary under test: `OOMTRACE_BIN`, else the release build of the target
/// directory this program was built in (a test in `target/<profile>/deps/`, the bench in
/// `target/release/`).
pub fn oomtrace_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("OOMTRACE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join("release/oomtrace"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no release/oomtrace in any directory above {}: build it with `cargo build \
                 --release` or run `cargo xtask test`",
                exe.display()
            )
        })
}

/// The test hog: `OOMTRACE_HOG`, else `built`, the one cargo built. The override lets the
/// kernel-matrix VMs, whose initramfs has no cargo target directory, run the tests.
pub fn hog_bin(built: impl Into<PathBuf>) -> PathBuf {
    std::env::var_os("OOMTRACE_HOG").map_or_else(|| built.into(), PathBuf::from)
}
