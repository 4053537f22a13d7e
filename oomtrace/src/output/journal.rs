//! The journal: every report a watch makes, kept on disk, so `history` and `explain` can tell
//! an incident after the container is gone and the kernel log has moved on (cadvisor#3015,
//! kube-state-metrics#344). JSON lines in the report schema, mode 0600, bounded: when the file
//! reaches [`MAX_BYTES`] it becomes `<path>.1` (replacing the older one) and a new file starts,
//! so the journal never holds more than twice that.
//!
//! Each line is appended with one `write`, whole or not at all, so a reader that opens the file
//! while it is written, or after a crash, finds whole lines and at most one torn last line,
//! which it skips (`source::journal`), and which the next watch cuts off before appending.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::sink::{LineFile, append_whole};

pub const DEFAULT_PATH: &str = "/var/lib/oomtrace/journal.jsonl";
/// Past this size the journal is rotated.
pub const MAX_BYTES: u64 = 16 << 20;

pub struct Journal {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
}

impl Journal {
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_bounded(path, MAX_BYTES)
    }

    pub fn open_bounded(path: &Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut file = open_append(path)?;
        let size = cut_torn_tail(&mut file)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
        })
    }

    /// The older half of the journal.
    pub fn rotated_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, Self::rotated_path(&self.path))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl LineFile for Journal {
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        append_whole(&mut self.file, line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

/// A crash mid-write can leave a last line without its newline: cut it off, so the next line
/// does not run into it. Returns the size left.
fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(0);
    }
    // Read back at most the last 64 KiB: a line is a few KiB.
    let window = size.min(64 << 10);
    file.seek(SeekFrom::Start(size - window))?;
    let mut tail = Vec::with_capacity(window as usize);
    file.take(window).read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(size);
    }
    let keep = match tail.iter().rposition(|&b| b == b'\n') {
        Some(at) => size - window + at as u64 + 1,
        None if window == size => 0,
        // A last line longer than the window is no line of ours: keep what precedes it.
        None => size - window,
    };
    file.set_len(keep)?;
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn it_is_created_private_with_its_directory() {
        let dir = TempDir::new("journal-create");
        let path = dir.path().join("state/journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        journal.append(b"{\"a\":1}\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn it_rotates_into_one_older_file() {
        let dir = TempDir::new("journal-rotate");
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open_bounded(&path, 30).unwrap();
        for n in 0..7 {
            journal
                .append(format!("{{\"n\":{n}}}\n").as_bytes())
                .unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let older = std::fs::read_to_string(Journal::rotated_path(&path)).unwrap();
        // 8-byte lines, 30 bytes a file: three a file, the oldest gone.
        assert_eq!(older, "{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n");
        assert_eq!(current, "{\"n\":6}\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the new file is private too");
    }

    #[test]
    fn a_torn_last_line_is_cut_off_before_appending() {
        let dir = TempDir::new("journal-torn");
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, "{\"n\":1}\n{\"n\":2}\n{\"n\":").unwrap();
        let mut journal = Journal::open(&path).unwrap();
        journal.append(b"{\"n\":3}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
        );
        // Nothing but a torn line.
        std::fs::write(&path, "{\"n\":").unwrap();
        Journal::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn a_full_disk_fails_the_line_without_a_half_line() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let Ok(file) = OpenOptions::new().append(true).open("/dev/full") else {
            return;
        };
        let mut journal = Journal {
            path: PathBuf::from("/dev/full"),
            file,
            size: 0,
            max_bytes: MAX_BYTES,
        };
        let err = journal.append(b"{\"n\":1}\n").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(journal.size, 0, "a line not written is not counted");
    }
}
