//! Files that reports are appended to a line at a time, each by a sink's writer thread: an
//! `--output` file here, and the journal (`journal.rs`), which also rotates and keeps out
//! what another watch wrote. Apart from both, so that the sinks and the journal share it
//! without importing each other.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::Path,
};

/// A file lines are appended to, by its writer thread.
pub trait LineFile: Send + 'static {
    /// Appends one line, whole or not at all.
    fn append(&mut self, line: &[u8]) -> io::Result<()>;
}

/// An `--output` file: appended to, never rotated.
pub struct Output(File);

impl Output {
    pub fn open(path: &Path) -> io::Result<Self> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .map(Self)
    }
}

impl LineFile for Output {
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        append_whole(&mut self.0, line)
    }
}

/// Appends `line` whole or not at all: a write cut short by a full disk is cut back off, so
/// the file never holds half a JSON line that the next one would run into.
pub fn append_whole(file: &mut File, line: &[u8]) -> io::Result<()> {
    let before = file.metadata()?.len();
    match file.write_all(line) {
        Ok(()) => Ok(()),
        Err(err) => {
            // SAFETY: ftruncate on our own open fd.
            unsafe { libc::ftruncate(file.as_raw_fd(), before as libc::off_t) };
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_append_leaves_no_half_line() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let Ok(mut full) = OpenOptions::new().append(true).open("/dev/full") else {
            return;
        };
        assert!(append_whole(&mut full, b"{\"schema\":1}\n").is_err());

        let path = std::env::temp_dir().join(format!("oomtrace-sink-{}", std::process::id()));
        let mut file = Output::open(&path).unwrap();
        file.append(b"one\n").unwrap();
        file.append(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let _ = std::fs::remove_file(&path);
    }
}
