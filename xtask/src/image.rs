//! `cargo xtask image`: the container image, `FROM scratch` with nothing in it but a static
//! oomtrace. No base image can be pulled where oomtrace is built and tested, and a static binary
//! needs none: no libc, no shell, no package manager to patch.
//!
//! The build context is a directory staged here with only the binary in it, at `bin/oomtrace`
//! (see the Dockerfile at the workspace root), so `docker build` sends megabytes, not `target/`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd::{self, progress, run};
use crate::host;
use crate::toolchain::{Toolchain, workspace_root};

/// The image's tag: the one source of truth. deploy/daemonset.yaml and the `docker run` command
/// in the operator's guide name it, and tests/tests/deploy.rs reads it from this line to check
/// that they do.
pub const TAG: &str = "oomtrace:latest";

/// Builds the static oomtrace, stages the build context, and builds the image tagged [`TAG`].
pub fn build(toolchain: &Toolchain) -> Result<()> {
    host::ensure_docker()?;
    // The kernel matrix's static build directory: one build serves the guests and the image.
    let target_dir = crate::cargo::target_dir(toolchain)?;
    let bin = crate::vm::build_static_oomtrace(toolchain, &target_dir.join("vm").join("build"))?;
    // `oomtrace 0.1.0`: runs the binary once before it goes into the image, too.
    let version = cmd::stdout_of(Command::new(&bin).arg("--version"))?;
    let version = version
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("`{} --version` printed {version:?}", bin.display()))?
        .to_owned();
    let context = target_dir.join("image");
    stage(&bin, &context)?;
    let dockerfile = workspace_root().join("Dockerfile");
    run(Command::new("docker")
        .args(["build", "--tag", TAG, "--build-arg"])
        .arg(format!("VERSION={version}"))
        .arg("--file")
        .arg(&dockerfile)
        .arg(&context))
    .with_context(|| format!("could not build the image {TAG}"))?;
    progress(format_args!("built the image {TAG}"));
    Ok(())
}

/// A fresh context holding only `bin/oomtrace`, mode 0755.
fn stage(bin: &Path, context: &Path) -> Result<()> {
    // A leftover from an earlier build is stale by definition.
    if context.exists() {
        fs::remove_dir_all(context)
            .with_context(|| format!("could not empty {}", context.display()))?;
    }
    let dir = context.join("bin");
    fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let staged = dir.join("oomtrace");
    fs::copy(bin, &staged)
        .with_context(|| format!("could not copy {} into {}", bin.display(), dir.display()))?;
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("could not make {} executable", staged.display()))
}
