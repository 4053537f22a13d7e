//! Reading the journal a watch keeps (`output::journal`): its older half, then the current
//! one, line by line. A line that is not whole (the last one, while a watch writes it, or
//! after a crash) is skipped; one that does not parse is counted, never guessed at.

use std::{collections::HashSet, path::Path};

use crate::{
    output::journal::Journal,
    report::{ContainerExit, Report},
};

/// What the journal holds.
#[derive(Debug, Default)]
pub struct Entries {
    pub kills: Vec<Report>,
    pub exits: Vec<ContainerExit>,
    /// Whole lines that were not a report of this schema.
    pub unreadable: u64,
    /// Whether there was a journal to read at all.
    pub found: bool,
}

/// Reads the journal at `path` (and its rotated half). A journal that does not exist is
/// empty; one that cannot be read is an error.
pub fn read(path: &Path) -> Result<Entries, String> {
    let mut entries = Entries::default();
    let mut seen = HashSet::new();
    for file in [Journal::rotated_path(path), path.to_owned()] {
        let text = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(format!("cannot read the journal {}: {err}", file.display())),
        };
        entries.found = true;
        parse_into(&text, &mut entries, &mut seen);
    }
    Ok(entries)
}

/// Adds the whole lines of `text` to `entries`; `seen` drops a line met twice (read from both
/// halves while the journal rotated).
pub fn parse_into(text: &[u8], entries: &mut Entries, seen: &mut HashSet<Vec<u8>>) {
    let whole = match text.iter().rposition(|&b| b == b'\n') {
        Some(end) => &text[..=end],
        None => return,
    };
    for line in whole.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if !seen.insert(line.to_vec()) {
            continue;
        }
        let event = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_owned));
        let parsed = match event.as_deref() {
            Some("oom_kill") => serde_json::from_slice::<Report>(line)
                .map(|r| entries.kills.push(r))
                .is_ok(),
            Some("container_exit") => serde_json::from_slice::<ContainerExit>(line)
                .map(|e| entries.exits.push(e))
                .is_ok(),
            _ => false,
        };
        if !parsed {
            entries.unreadable += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        output::{journal::Journal, json, sink::LineFile as _},
        testing::{TempDir, report},
    };

    fn line(report: &Report) -> Vec<u8> {
        let mut out = Vec::new();
        json::json_line(report, &mut out);
        out
    }

    #[test]
    fn a_journal_round_trips_its_reports() {
        let dir = TempDir::new("journal-read");
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        let original = report();
        journal.append(&line(&original)).unwrap();
        let entries = read(&path).unwrap();
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
        let dir = TempDir::new("journal-halves");
        let path = dir.path().join("journal.jsonl");
        let mut first = report();
        first.victim.pid = Some(1);
        let mut second = report();
        second.victim.pid = Some(2);
        std::fs::write(Journal::rotated_path(&path), line(&first)).unwrap();
        let mut current = line(&second);
        current.extend_from_slice(b"{\"schema\":1,\"event\":\"oom_ki");
        std::fs::write(&path, &current).unwrap();
        let entries = read(&path).unwrap();
        let pids: Vec<Option<u32>> = entries.kills.iter().map(|r| r.victim.pid).collect();
        assert_eq!(pids, [Some(1), Some(2)]);
        assert_eq!(entries.unreadable, 0, "a torn last line is not counted");
    }

    #[test]
    fn lines_that_are_not_reports_are_counted_not_guessed() {
        let mut entries = Entries::default();
        let text = b"garbage\n{\"event\":\"oom_kill\",\"schema\":\"x\"}\n{\"event\":\"other\"}\n";
        parse_into(text, &mut entries, &mut HashSet::new());
        assert_eq!((entries.kills.len(), entries.unreadable), (0, 3));
    }

    #[test]
    fn no_journal_is_empty_not_an_error() {
        let dir = TempDir::new("journal-none");
        let entries = read(&dir.path().join("journal.jsonl")).unwrap();
        assert!(!entries.found);
        assert!(entries.kills.is_empty());
    }

    #[test]
    fn a_reader_never_sees_half_a_line_while_a_watch_writes() {
        let dir = TempDir::new("journal-concurrent");
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
            let entries = read(&path).unwrap();
            assert_eq!(entries.unreadable, 0, "a reader saw a broken line");
            reads += 1;
        }
        writer.join().unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(entries.unreadable, 0);
        // Rotation keeps the newest ones, in order.
        let pids: Vec<u32> = entries.kills.iter().filter_map(|r| r.victim.pid).collect();
        assert_eq!(pids.last(), Some(&1999));
        assert!(pids.windows(2).all(|w| w[0] < w[1]), "out of order");
    }
}
