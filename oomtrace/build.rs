//! Builds the kernel program (oomtrace-ebpf) with aya-build, so a plain `cargo build` of the
//! user-space crate produces both halves.
use aya_build::{Package, Toolchain};

/// The nightly that builds the kernel program. Its LLVM major (22) must match bpf-linker's;
/// `cargo xtask` installs both. Override with OOMTRACE_EBPF_TOOLCHAIN.
const EBPF_TOOLCHAIN: &str = "nightly";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=OOMTRACE_EBPF_TOOLCHAIN");
    let toolchain =
        std::env::var("OOMTRACE_EBPF_TOOLCHAIN").unwrap_or_else(|_| EBPF_TOOLCHAIN.into());
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../oomtrace-ebpf");
    aya_build::build_ebpf(
        [Package {
            name: "oomtrace-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
}
