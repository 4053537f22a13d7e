//! What the xtask asks of cargo besides running it: the release build every command starts
//! from, and where cargo puts what it builds.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, progress, run};
use crate::toolchain::Toolchain;

/// The eBPF crate is not a default member, so a plain release build covers exactly the host
/// crates; oomtrace/build.rs builds the kernel program with aya-build. Returns oomtrace's path.
pub fn build(toolchain: &Toolchain) -> Result<PathBuf> {
    run(toolchain.cargo().args(["build", "--release"]))?;
    let bin = release_dir(toolchain)?.join("oomtrace");
    if !bin.is_file() {
        bail!("the build succeeded but {} does not exist", bin.display());
    }
    progress(format_args!("built {}", bin.display()));
    Ok(bin)
}

/// Where [`build`] puts its binaries.
pub fn release_dir(toolchain: &Toolchain) -> Result<PathBuf> {
    Ok(target_dir(toolchain)?.join("release"))
}

/// Asks cargo, so CARGO_TARGET_DIR and build.target-dir in any config are honoured.
pub fn target_dir(toolchain: &Toolchain) -> Result<PathBuf> {
    let metadata =
        cmd::stdout_of(
            toolchain
                .cargo()
                .args(["metadata", "--format-version", "1", "--no-deps"]),
        )?;
    target_directory(&metadata).context("`cargo metadata` printed no target_directory")
}

fn target_directory(metadata: &str) -> Option<PathBuf> {
    let metadata: serde_json::Value = serde_json::from_str(metadata).ok()?;
    metadata["target_directory"].as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_target_directory() {
        let json = r#"{"packages":[],"target_directory":"/w/my \"t\"\\dir\u00e9","version":1}"#;
        assert_eq!(
            target_directory(json),
            Some(PathBuf::from("/w/my \"t\"\\dir\u{e9}"))
        );
        assert_eq!(target_directory(r#"{"workspace_root":"/w"}"#), None);
        assert_eq!(target_directory("not json"), None);
    }
}
