//! A userspace OOM killer's log, followed (`--killer-log FILE`): earlyoom's stderr as a file
//! holds it, or a syslog file with earlyoom's and systemd-oomd's tagged lines. Only what is
//! appended after the watch starts is read, as it is appended: inotify says when, so a quiet
//! log costs nothing. A log rotated by renaming it and making a new one under the same name is
//! followed to the new file, and one truncated in place is read again from its start.

use std::{
    ffi::{CString, OsString},
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

use tokio::io::{Interest, unix::AsyncFd};

use oomtrace_core::{
    attribution::acted_on::{Killer, Logged, LoggedKill, killer_message},
    source::userspace_log::{earlyoom::EarlyoomLog, systemd_oomd::parse_killed},
};

/// A line longer than this is no killer's (earlyoom's longest, with a command line, is about
/// 4 KiB; systemd-oomd's hold two cgroup paths): it is dropped whole.
const MAX_LINE: usize = 64 * 1024;

pub struct KillerLog {
    path: PathBuf,
    name: OsString,
    file: File,
    inotify: AsyncFd<OwnedFd>,
    partial: Vec<u8>,
    /// In a line longer than [`MAX_LINE`], until its end: none of it is read.
    skipping: bool,
    /// earlyoom's lines, read in order: a kill is told over three of them.
    earlyoom: EarlyoomLog,
}

impl KillerLog {
    /// Opens `path` at its end and watches it and its directory; the error is one sentence.
    pub fn open(path: &Path) -> Result<Self, String> {
        let says =
            |what: &str, err: io::Error| format!("cannot follow {}: {what}{err}", path.display());
        let name = path
            .file_name()
            .ok_or_else(|| format!("cannot follow {}: it names no file", path.display()))?
            .to_os_string();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut file = File::open(path).map_err(|e| says("", e))?;
        file.seek(SeekFrom::End(0)).map_err(|e| says("", e))?;
        // SAFETY: plain syscall; the fd is checked before it is owned.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(says("inotify: ", io::Error::last_os_error()));
        }
        // SAFETY: a new fd that nothing else owns.
        let inotify = unsafe { OwnedFd::from_raw_fd(raw) };
        watch(&inotify, path, libc::IN_MODIFY).map_err(|e| says("", e))?;
        watch(&inotify, &dir, libc::IN_CREATE | libc::IN_MOVED_TO)
            .map_err(|e| says("its directory: ", e))?;
        // SAFETY: the AsyncFd owns the inotify fd, which stays open and unchanged until it is
        // dropped.
        let inotify = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }
            .map_err(|e| says("", e.into_parts().1))?;
        Ok(Self {
            path: path.to_path_buf(),
            name,
            file,
            inotify,
            partial: Vec::new(),
            skipping: false,
            earlyoom: EarlyoomLog::default(),
        })
    }

    /// The kills the log tells next, waiting for them.
    pub async fn next(&mut self) -> io::Result<Vec<LoggedKill>> {
        loop {
            let mut guard = self.inotify.readable().await?;
            let renewed = match guard.try_io(|fd| created_under(fd.get_ref(), &self.name)) {
                Ok(result) => result?,
                // Nothing to read after all: wait again.
                Err(_would_block) => continue,
            };
            let mut kills = self.read_new()?;
            if renewed {
                // What was written to the old file before the rename was read above.
                self.file = File::open(&self.path)?;
                watch(self.inotify.get_ref(), &self.path, libc::IN_MODIFY)?;
                self.partial.clear();
                self.skipping = false;
                kills.extend(self.read_new()?);
            }
            if !kills.is_empty() {
                return Ok(kills);
            }
        }
    }

    /// Reads what was appended since the last read and gives the kills its whole lines tell.
    fn read_new(&mut self) -> io::Result<Vec<LoggedKill>> {
        let at = self.file.stream_position()?;
        if self.file.metadata()?.len() < at {
            // Truncated in place (copytruncate): everything in it now is new.
            self.file.seek(SeekFrom::Start(0))?;
            self.partial.clear();
            self.skipping = false;
        }
        let mut appended = Vec::new();
        self.file.read_to_end(&mut appended)?;
        let mut kills = Vec::new();
        for piece in appended.split_inclusive(|&b| b == b'\n') {
            let ends = piece.ends_with(b"\n");
            if self.skipping {
                self.skipping = !ends;
                continue;
            }
            self.partial.extend_from_slice(piece);
            if self.partial.len() > MAX_LINE {
                // Its tail is no line of its own.
                self.partial.clear();
                self.skipping = !ends;
                continue;
            }
            if !ends {
                continue;
            }
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            let Some((killer, writer_pid, message)) = killer_message(&line) else {
                continue;
            };
            let kill = match killer {
                Killer::Earlyoom => self.earlyoom.feed(message).map(Logged::Earlyoom),
                Killer::SystemdOomd => parse_killed(message).map(Logged::SystemdOomd),
            };
            kills.extend(kill.map(|kill| LoggedKill { writer_pid, kill }));
        }
        Ok(kills)
    }
}

fn watch(inotify: &OwnedFd, path: &Path, mask: u32) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: a valid inotify fd and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), mask) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads every inotify event waiting; whether one says a file named `name` was made or moved
/// into the directory. `WouldBlock` when there was none.
fn created_under(inotify: &OwnedFd, name: &OsString) -> io::Result<bool> {
    // Aligned for inotify_event, with room for many events with names.
    let mut buffer = vec![0u64; 512];
    let mut renewed = false;
    let mut read_any = false;
    loop {
        // SAFETY: the buffer is valid for its length in bytes.
        let n = unsafe {
            libc::read(
                inotify.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len() * 8,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock if read_any => Ok(renewed),
                _ => Err(err),
            };
        }
        read_any = true;
        // SAFETY: the kernel wrote `n` bytes into the buffer.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), n as usize) };
        renewed |= names(bytes).any(|(mask, event_name)| {
            mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 && event_name == name.as_bytes()
        });
    }
}

/// Each event's mask and name (empty for an event about the watched file itself).
fn names(mut bytes: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    std::iter::from_fn(move || {
        if bytes.len() < HEADER {
            return None;
        }
        let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let (mask, len) = (word(4), word(12) as usize);
        let name = bytes.get(HEADER..HEADER + len)?;
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        bytes = &bytes[HEADER + len..];
        Some((mask, name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inotify_events_and_their_names() {
        let mut bytes = Vec::new();
        for (mask, name) in [
            (libc::IN_MODIFY, &b""[..]),
            (libc::IN_CREATE, b"earlyoom.log"),
        ] {
            let len = if name.is_empty() { 0 } else { 16 };
            bytes.extend(1i32.to_ne_bytes());
            bytes.extend(mask.to_ne_bytes());
            bytes.extend(0u32.to_ne_bytes());
            bytes.extend((len as u32).to_ne_bytes());
            let mut padded = name.to_vec();
            padded.resize(len, 0);
            bytes.extend(padded);
        }
        let events: Vec<_> = names(&bytes).collect();
        assert_eq!(
            events,
            vec![
                (libc::IN_MODIFY, &b""[..]),
                (libc::IN_CREATE, &b"earlyoom.log"[..])
            ]
        );
        assert_eq!(names(&bytes[..10]).count(), 0, "a cut header is no event");
    }

    const KILL: &str = "mem avail:    45 of   481 MiB ( 9.48%), swap free:    0 of    0 MiB ( 0.00%)\n\
        low memory! at or below SIGTERM limits: mem 10.00%, swap 10.00%\n\
        sending SIGTERM to process 900 uid 0 \"hog\": badness 1000, VmRSS 400 MiB\n";

    fn append(path: &Path, text: &str) {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn earlyoom_pids(kills: &[LoggedKill]) -> Vec<u32> {
        kills
            .iter()
            .filter_map(|k| match &k.kill {
                Logged::Earlyoom(k) => Some(k.sending.pid),
                Logged::SystemdOomd(_) => None,
            })
            .collect()
    }

    async fn next_within(log: &mut KillerLog) -> Vec<LoggedKill> {
        tokio::time::timeout(std::time::Duration::from_secs(10), log.next())
            .await
            .expect("a kill within 10 s")
            .expect("read")
    }

    /// Only what is appended is read, a line written in pieces is read whole, and a log
    /// rotated by rename is followed to its new file.
    #[tokio::test]
    async fn follows_appended_lines_across_a_rotation() {
        let dir = std::env::temp_dir().join(format!("oomtrace-killer-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("earlyoom.log");
        std::fs::write(&path, KILL.replace("900", "800")).unwrap();
        let mut log = KillerLog::open(&path).unwrap();

        let (head, tail) = KILL.split_at(KILL.len() - 20);
        append(&path, head);
        append(&path, tail);
        let kills = next_within(&mut log).await;
        assert_eq!(
            earlyoom_pids(&kills),
            vec![900],
            "not the kill logged before the watch"
        );
        assert!(
            matches!(&kills[0].kill, Logged::Earlyoom(k) if k.stats.is_some() && k.limits.is_some())
        );

        std::fs::rename(&path, dir.join("earlyoom.log.1")).unwrap();
        append(&path, &KILL.replace("process 900", "process 901"));
        let kills = next_within(&mut log).await;
        assert_eq!(earlyoom_pids(&kills), vec![901]);

        // The tail of an overlong line, read apart from its start, is not read as a line,
        // whatever it says.
        append(&path, &"x".repeat(MAX_LINE + 1));
        assert!(log.read_new().unwrap().is_empty());
        let last = KILL
            .lines()
            .last()
            .unwrap()
            .replace("process 900", "process 903");
        append(&path, &format!("{last}\n"));
        assert!(
            log.read_new().unwrap().is_empty(),
            "the tail was read as a line"
        );
        append(&path, &KILL.replace("process 900", "process 904"));
        assert_eq!(earlyoom_pids(&log.read_new().unwrap()), vec![904]);

        // A syslog file: each killer's tagged lines.
        let syslog = "Dec  7 21:00:00 node earlyoom[300]: sending SIGKILL to process 902 uid 0 \"hog\": badness 1000, VmRSS 400 MiB\n\
            Dec  7 21:00:01 node systemd-oomd[42]: Killed /system.slice/press.service due to memory pressure for /system.slice being 62.11% > 50.00% for > 20s with reclaim activity\n";
        append(&path, syslog);
        let kills = next_within(&mut log).await;
        assert_eq!(earlyoom_pids(&kills), vec![902]);
        assert_eq!(kills[0].writer_pid, Some(300));
        assert!(
            matches!(&kills[1].kill, Logged::SystemdOomd(k) if k.cgroup == "/system.slice/press.service"),
            "{kills:?}"
        );
        assert_eq!(kills[1].writer_pid, Some(42));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_one_sentence() {
        let err = KillerLog::open(Path::new("/nonexistent/earlyoom.log"))
            .err()
            .expect("an error");
        assert_eq!(
            err,
            "cannot follow /nonexistent/earlyoom.log: No such file or directory (os error 2)"
        );
    }
}
