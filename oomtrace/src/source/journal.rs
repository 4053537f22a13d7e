//! Reading the journal a watch keeps (`output::journal`): its older half, then the current
//! one, line by line. A line that is not whole (the last one, while a watch writes it, or
//! after a crash) is skipped; one that does not parse is counted, never guessed at.

use std::{collections::HashSet, fmt::Write as _, io, os::unix::fs::MetadataExt as _, path::Path};

use oomtrace_core::journal::{Denied, Entries, parse_into};

use crate::output::journal::Journal;

/// Reads the journal at `path` and its rotated half. A journal that does not exist is empty;
/// a part that cannot be read is named in `denied`, except a rotated half that may not exist.
pub fn read(path: &Path) -> Entries {
    let mut entries = Entries::default();
    let rotated = Journal::rotated_path(path);
    // The current half first: a rotation between the two reads then moves lines into the
    // older half, where they are read again (and dropped as seen), never past both reads.
    let current = std::fs::read(path);
    let older = std::fs::read(&rotated);
    let mut texts = Vec::new();
    for (file, result, is_older) in [(&rotated, older, true), (&path.to_owned(), current, false)] {
        match result {
            Ok(text) => texts.push(text),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            // A name in a directory this user cannot search answers EACCES whether the file
            // is there or not: the older half is named only when it is known to be there.
            Err(_) if is_older && std::fs::symlink_metadata(file).is_err() => {}
            Err(err) => entries.denied.push(Denied {
                file: file.clone(),
                older: is_older,
                why: reason(file, &err, euid()),
            }),
        }
    }
    entries.denied.reverse();
    entries.found = !texts.is_empty();
    let mut seen = HashSet::new();
    for text in &texts {
        parse_into(text, &mut entries, &mut seen);
    }
    entries
}

fn euid() -> u32 {
    // SAFETY: geteuid has no failure mode.
    unsafe { libc::geteuid() }
}

/// Why `file` could not be read, and what to do: for a refusal, whose file or directory
/// refused and with what mode, which says who may read it.
fn reason(file: &Path, err: &io::Error, euid: u32) -> String {
    match err.kind() {
        io::ErrorKind::PermissionDenied => refusal(refuser(file), euid),
        io::ErrorKind::IsADirectory => "it is a directory: give --journal the file".into(),
        _ => {
            let text = err.to_string();
            // `Input/output error (os error 5)`: the number says nothing more to a person.
            let text = text.split(" (os error").next().unwrap_or(&text);
            text.to_lowercase()
        }
    }
}

/// A refusal in words: who refused with what mode, when the modes say; and, for a user other
/// than root, the two ways to read it.
fn refusal(refuser: Option<(String, u32, u32)>, euid: u32) -> String {
    let mut text = String::from("permission denied");
    if let Some((what, owner, mode)) = refuser {
        let _ = write!(text, " ({what} is {}, mode {mode:04o})", owner_of(owner));
    }
    if euid != 0 {
        text.push_str(": run oomtrace as root, or give --journal a copy you can read");
    }
    text
}

/// Which of `file` and its directories refuses this user: `("it", uid, mode)` for a file
/// others may not read, `("its directory /x", uid, mode)` for the first directory on the way
/// this user may not search; `None` when the modes do not say (an LSM refused, say).
fn refuser(file: &Path) -> Option<(String, u32, u32)> {
    if let Ok(meta) = std::fs::metadata(file) {
        return (meta.mode() & 0o004 == 0).then(|| ("it".into(), meta.uid(), meta.mode() & 0o7777));
    }
    // `dir/.` can be looked up only by a user who may search `dir`.
    let mut dirs: Vec<&Path> = file.ancestors().skip(1).collect();
    dirs.reverse();
    dirs.into_iter()
        .filter(|d| !d.as_os_str().is_empty())
        .find_map(|dir| {
            let meta = std::fs::metadata(dir).ok()?;
            let searchable = std::fs::metadata(dir.join("."));
            match searchable {
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Some((
                    format!("its directory {}", dir.display()),
                    meta.uid(),
                    meta.mode() & 0o7777,
                )),
                _ => None,
            }
        })
}

fn owner_of(uid: u32) -> String {
    if uid == 0 {
        "root's".into()
    } else {
        format!("uid {uid}'s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{journal::Journal, line_file::LineFile as _};
    use oomtrace_core::{journal::State, output::json, report::Report, testing::report};

    fn line(report: &Report) -> Vec<u8> {
        let mut out = Vec::new();
        json::json_line(report, &mut out);
        out
    }

    #[test]
    fn a_journal_round_trips_its_reports() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        let original = report();
        journal.append(&line(&original)).unwrap();
        let entries = read(&path);
        assert!(entries.found);
        assert_eq!(entries.kills.len(), 1);
        let mut expected = original;
        // What is not in JSON is not read back.
        expected.facts = None;
        assert_eq!(entries.kills[0], expected);
        assert_eq!(entries.unreadable, 0);
    }

    #[test]
    fn both_halves_are_read_oldest_first_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("journal.jsonl");
        let mut first = report();
        first.victim.pid = Some(1);
        let mut second = report();
        second.victim.pid = Some(2);
        std::fs::write(Journal::rotated_path(&path), line(&first)).unwrap();
        let mut current = line(&second);
        current.extend_from_slice(b"{\"schema\":1,\"event\":\"oom_ki");
        std::fs::write(&path, &current).unwrap();
        let entries = read(&path);
        let pids: Vec<Option<u32>> = entries.kills.iter().map(|r| r.victim.pid).collect();
        assert_eq!(pids, [Some(1), Some(2)]);
        assert_eq!(entries.unreadable, 0, "a torn last line is not counted");
    }

    #[test]
    fn no_journal_is_empty_not_an_error() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("journal.jsonl");
        let entries = read(&path);
        assert!(!entries.found);
        assert!(entries.kills.is_empty());
        assert!(entries.denied.is_empty());
        assert_eq!(State::of(&path, &entries), State::Absent(path));
    }

    #[test]
    fn a_part_that_cannot_be_read_is_named_only_when_it_is_there() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        // A directory where the older half should be: there, and not readable as a file.
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, line(&report())).unwrap();
        std::fs::create_dir(Journal::rotated_path(&path)).unwrap();
        let entries = read(&path);
        assert_eq!(entries.kills.len(), 1, "the current half is still read");
        assert_eq!(State::of(&path, &entries), State::Read);
        let older = Journal::rotated_path(&path);
        assert_eq!(
            entries
                .denied
                .iter()
                .map(Denied::sentence)
                .collect::<Vec<_>>(),
            [format!(
                "cannot read the journal's older half at {}: it is a directory: give --journal the file",
                older.display()
            )]
        );

        // A path under a regular file: neither half can be looked up, so neither is known
        // to be there, and only the journal asked for is named.
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let path = blocker.join("journal.jsonl");
        let entries = read(&path);
        assert!(!entries.found);
        let named: Vec<&Path> = entries.denied.iter().map(|d| d.file.as_path()).collect();
        assert_eq!(named, [path.as_path()]);
        match State::of(&path, &entries) {
            State::Unreadable(denied) => assert_eq!(
                denied.sentence(),
                format!(
                    "cannot read the journal at {}: not a directory",
                    path.display()
                )
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_says_who_refused_and_what_to_do() {
        let file = |what: &str, uid, mode| Some((what.to_owned(), uid, mode));
        let cases = [
            (
                file("it", 0, 0o600),
                1000,
                "permission denied (it is root's, mode 0600): run oomtrace as root, or give --journal a copy you can read",
            ),
            (
                file("its directory /var/lib/oomtrace", 0, 0o700),
                65534,
                "permission denied (its directory /var/lib/oomtrace is root's, mode 0700): run oomtrace as root, or give --journal a copy you can read",
            ),
            (
                file("it", 1000, 0o600),
                65534,
                "permission denied (it is uid 1000's, mode 0600): run oomtrace as root, or give --journal a copy you can read",
            ),
            // Root refused: the modes are not why, and running as root is no way out.
            (None, 0, "permission denied"),
            (
                None,
                1000,
                "permission denied: run oomtrace as root, or give --journal a copy you can read",
            ),
        ];
        for (refuser, euid, expected) in cases {
            assert_eq!(
                refusal(refuser.clone(), euid),
                expected,
                "{refuser:?} as {euid}"
            );
        }
        let err = io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(
            reason(Path::new("/j"), &err, 0),
            "input/output error",
            "the errno's number is left out"
        );
    }

    #[test]
    fn a_reader_never_sees_half_a_line_while_a_watch_writes() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("journal.jsonl");
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            let mut journal = Journal::open_bounded(&writer_path, 64 << 10).unwrap();
            for n in 0..2000 {
                let mut r = report();
                // Each a kill of its own: the journal holds an event once.
                r.victim.pid = Some(n);
                r.victim.tid = Some(n);
                journal.append(&line(&r)).unwrap();
            }
        });
        let mut reads = 0;
        while !writer.is_finished() || reads == 0 {
            let entries = read(&path);
            assert_eq!(entries.unreadable, 0, "a reader saw a broken line");
            reads += 1;
        }
        writer.join().unwrap();
        let entries = read(&path);
        assert_eq!(entries.unreadable, 0);
        // Rotation keeps the newest ones, in order.
        let pids: Vec<u32> = entries.kills.iter().filter_map(|r| r.victim.pid).collect();
        assert_eq!(pids.last(), Some(&1999));
        assert!(pids.windows(2).all(|w| w[0] < w[1]), "out of order");
    }
}
