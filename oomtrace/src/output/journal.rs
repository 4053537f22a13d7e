//! The journal: every report a watch makes, kept on disk, so `history` and `explain` can tell
//! an incident after the container is gone and the kernel log has moved on (cadvisor#3015,
//! kube-state-metrics#344). JSON lines in the report schema, mode 0600, bounded: when the file
//! reaches [`MAX_BYTES`] it becomes `<path>.1` (replacing the older one) and a new file starts,
//! so the journal never holds more than twice that.
//!
//! Several watches may keep one journal (the service's, and a person's during an incident):
//! each event goes in once, whichever writes it first. Every append happens under an advisory
//! lock on `<path>.lock`, after reading what the others appended since this watch last looked,
//! and a line whose event ([`EventId`]) is already there is not written again. The lock is
//! held for one append, so no watch waits on another for longer than a write, and a watch
//! that ends hands nothing over: the others were writing all along.
//!
//! Each line is appended with one `write`, whole or not at all, so a reader that opens the file
//! while it is written, or after a crash, finds whole lines and at most one torn last line,
//! which it skips (`source::journal`), and which the next writer cuts off before appending.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom},
    os::{
        fd::AsRawFd as _,
        unix::fs::{DirBuilderExt as _, FileExt as _, MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use super::line_file::{LineFile, append_whole};
use oomtrace_core::identity::{EventId, Recent};

pub const DEFAULT_PATH: &str = "/var/lib/oomtrace/journal.jsonl";
/// Past this size the journal is rotated.
pub const MAX_BYTES: u64 = 16 << 20;
/// Events remembered to keep out duplicates: far more than watches side by side see at once.
const REMEMBERED: usize = 4096;
/// How much of the journal's end a watch reads when it opens it: the events another watch may
/// have written since this one began to see them. A line is a few KiB.
const TAIL_WINDOW: u64 = 256 << 10;

pub struct Journal {
    path: PathBuf,
    /// `<path>.lock`, held around each append.
    lock: File,
    file: File,
    /// How much of `file` this watch has read or written: the rest is other watches'.
    offset: u64,
    max_bytes: u64,
    recent: Recent,
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
        let lock = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o600)
            .open(Self::lock_path(path))?;
        let held = Held::exclusive(&lock)?;
        let mut file = open_append(path)?;
        let size = cut_torn_tail(&mut file)?;
        let mut recent = Recent::new(REMEMBERED);
        let start = size.saturating_sub(TAIL_WINDOW);
        remember(&mut recent, &read_range(&file, start, size)?, start > 0);
        drop(held);
        Ok(Self {
            path: path.to_owned(),
            lock,
            file,
            offset: size,
            max_bytes,
            recent,
        })
    }

    /// The older half of the journal.
    pub fn rotated_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// The file whose lock writers take in turn.
    pub fn lock_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Reads what other watches appended since this one last looked, following a rotation one
    /// of them made; cuts off a torn line a writer that crashed left.
    fn catch_up(&mut self) -> io::Result<()> {
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(meta),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(err),
        };
        let ours = self.file.metadata()?;
        let replaced = current
            .as_ref()
            .is_none_or(|m| (m.dev(), m.ino()) != (ours.dev(), ours.ino()));
        if replaced {
            // Rotated by another watch: the rest of the old file, then the new one from its start.
            let rest = read_range(&self.file, self.offset, ours.len())?;
            remember(&mut self.recent, &rest, false);
            self.file = open_append(&self.path)?;
            self.offset = 0;
        }
        let len = self.file.metadata()?.len();
        if len < self.offset {
            // Cut by someone else: read it all again.
            self.offset = 0;
        }
        let new = read_range(&self.file, self.offset, len)?;
        remember(&mut self.recent, &new, false);
        let whole = new.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
        if whole < new.len() {
            // A torn line can only be a crashed writer's: the lock is ours.
            self.file.set_len(self.offset + whole as u64)?;
        }
        self.offset += whole as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, Self::rotated_path(&self.path))?;
        self.file = open_append(&self.path)?;
        self.offset = 0;
        Ok(())
    }
}

impl LineFile for Journal {
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let _held = Held::exclusive(&self.lock)?;
        self.catch_up()?;
        let id = EventId::of_line(line);
        if id.as_ref().is_some_and(|id| self.recent.contains(id)) {
            // Another watch recorded it: the journal holds it once.
            return Ok(());
        }
        if self.offset > 0 && self.offset + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        append_whole(&mut self.file, line)?;
        self.offset += line.len() as u64;
        if let Some(id) = id {
            self.recent.insert(id);
        }
        Ok(())
    }
}

/// An advisory lock held until dropped. It keeps the fd, not a borrow of the file, so that
/// the journal can change while it holds its own lock file's lock.
struct Held(std::os::fd::RawFd);

impl Held {
    fn exclusive(file: &File) -> io::Result<Self> {
        loop {
            // SAFETY: flock on an fd we hold open.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Self(file.as_raw_fd()));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: unlocks the lock file's fd, which its owner keeps open longer than this.
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

/// Bytes `start..end` of `file`.
fn read_range(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; end.saturating_sub(start) as usize];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// Remembers the events of the whole lines in `bytes`; `mid_line` when `bytes` may begin
/// inside a line, whose rest is then skipped.
fn remember(recent: &mut Recent, bytes: &[u8], mid_line: bool) {
    let mut lines = bytes.split(|&b| b == b'\n');
    if mid_line {
        lines.next();
    }
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some(id) = EventId::of_line(line) {
            recent.insert(id);
        }
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
    use oomtrace_core::testing::report;

    #[test]
    fn it_is_created_private_with_its_directory() {
        let dir = tempfile::tempdir().expect("a scratch directory");
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
        let dir = tempfile::tempdir().expect("a scratch directory");
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
        let dir = tempfile::tempdir().expect("a scratch directory");
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
        let Ok(file) = OpenOptions::new().append(true).read(true).open("/dev/full") else {
            return;
        };
        let dir = tempfile::tempdir().expect("a scratch directory");
        let lock = File::create(dir.path().join("lock")).unwrap();
        let mut journal = Journal {
            path: PathBuf::from("/dev/full"),
            lock,
            file,
            offset: 0,
            max_bytes: MAX_BYTES,
            recent: Recent::new(8),
        };
        let err = journal.append(b"{\"n\":1}\n").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(journal.offset, 0, "a line not written is not counted");
    }

    /// A kill line as a watch writes it, of the victim `tid` marked at `boot_ns`.
    fn kill_line(boot_ns: u64, tid: u32, name: Option<&str>) -> Vec<u8> {
        let mut report = report();
        report.boot_ns = Some(boot_ns);
        report.victim.tid = Some(tid);
        report.host = Some(oomtrace_core::report::Host {
            boot_id: Some("5b4c8e3a-1f2d-4c6b-9a7e-0d1c2b3a4f5e".into()),
            ..Default::default()
        });
        report.container = name.map(|name| oomtrace_core::report::Container {
            runtime: "docker",
            id: "4f2c".into(),
            name: Some(name.into()),
            ..Default::default()
        });
        let mut out = Vec::new();
        oomtrace_core::output::json::json_line(&report, &mut out);
        out
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn two_writers_record_each_event_once_whoever_writes_first() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("journal.jsonl");
        let mut first = Journal::open(&path).unwrap();
        let mut second = Journal::open(&path).unwrap();
        first.append(&kill_line(1, 10, Some("web"))).unwrap();
        // The other watch's kernel program read the clock a little later.
        second.append(&kill_line(40_000, 10, Some("web"))).unwrap();
        second.append(&kill_line(2, 11, None)).unwrap();
        first.append(&kill_line(2, 11, None)).unwrap();
        // Another boot's kill at the same moment is another kill.
        let mut other_boot = kill_line(1, 10, None);
        let at = other_boot.windows(4).position(|w| w == b"5b4c").unwrap();
        other_boot[at] = b'6';
        first.append(&other_boot).unwrap();
        assert_eq!(lines(&path).len(), 3, "{:#?}", lines(&path));
        // A watch opened later knows what is already there.
        let mut third = Journal::open(&path).unwrap();
        third.append(&kill_line(2, 11, None)).unwrap();
        assert_eq!(lines(&path).len(), 3);
    }

    #[test]
    fn a_rotation_by_one_writer_is_followed_by_the_other() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("journal.jsonl");
        let line_len = kill_line(1, 10, None).len() as u64;
        let mut first = Journal::open_bounded(&path, line_len * 2).unwrap();
        let mut second = Journal::open_bounded(&path, line_len * 2).unwrap();
        for n in 0..5 {
            first.append(&kill_line(1, 10 + n, None)).unwrap();
            second.append(&kill_line(1, 10 + n, None)).unwrap();
        }
        let rotated = lines(&Journal::rotated_path(&path));
        let current = lines(&path);
        assert_eq!(
            rotated.len() + current.len(),
            3,
            "the newest three, each once"
        );
        second.append(&kill_line(1, 14, None)).unwrap();
        assert_eq!(lines(&path), current);
    }

    #[test]
    fn writers_in_threads_never_interleave_or_double() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("journal.jsonl");
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut journal = Journal::open(&path).unwrap();
                    for n in 0..200 {
                        journal.append(&kill_line(1_000, n, Some("web"))).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let written = lines(&path);
        assert_eq!(written.len(), 200, "each kill once");
        let mut ids: Vec<u64> = written
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("whole lines");
                v["victim"]["tid"].as_u64().unwrap()
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200);
    }
}
