//! The journal's format: one JSON line per event, as `output::json` writes it, read back
//! here. A line that is not whole (the last one, while a watch writes it, or after a crash) is
//! skipped; one that does not parse is counted, never guessed at. Reading the files is
//! oomtrace's (`oomtrace::source::journal`).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::{
    attribution::userspace_killer::UserspaceOomKill,
    report::{ContainerExit, Report},
    stall::OomStall,
};

/// What the journal holds.
#[derive(Debug, Default)]
pub struct Entries {
    pub kills: Vec<Report>,
    pub exits: Vec<ContainerExit>,
    pub userspace_kills: Vec<UserspaceOomKill>,
    pub stalls: Vec<OomStall>,
    /// Whole lines that were not a report of this schema.
    pub unreadable: u64,
    /// Whether any part of the journal was read.
    pub found: bool,
    /// The parts that are there and could not be read, current half first.
    pub denied: Vec<Denied>,
}

/// A part of the journal that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub file: PathBuf,
    /// Whether it is the older half, `<path>.1`.
    pub older: bool,
    /// The reason, and what to do about it when the reader can do something.
    pub why: String,
}

impl Denied {
    /// `cannot read the journal at /var/lib/oomtrace/journal.jsonl: permission denied (…)`.
    pub fn sentence(&self) -> String {
        format!(
            "cannot read {} at {}: {}",
            if self.older {
                "the journal's older half"
            } else {
                "the journal"
            },
            self.file.display(),
            self.why
        )
    }
}

/// What became of reading the journal, for history and explain to word.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum State {
    /// `--no-journal`.
    #[default]
    NotRead,
    /// Read, whole or in part (a part that could not be read is among the gaps).
    Read,
    /// There is no journal at this path: no watch kept one there.
    Absent(PathBuf),
    /// It may be there and could not be read.
    Unreadable(Denied),
}

impl State {
    /// The state reading `path` left: read if any part was, else why not.
    pub fn of(path: &Path, entries: &Entries) -> Self {
        match entries.denied.first() {
            _ if entries.found => Self::Read,
            Some(denied) => Self::Unreadable(denied.clone()),
            None => Self::Absent(path.to_owned()),
        }
    }

    pub fn is_read(&self) -> bool {
        *self == Self::Read
    }
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
            Some("userspace_oom_kill") => serde_json::from_slice::<UserspaceOomKill>(line)
                .map(|k| entries.userspace_kills.push(k))
                .is_ok(),
            Some("oom_stall") => serde_json::from_slice::<OomStall>(line)
                .map(|s| entries.stalls.push(s))
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

    #[test]
    fn every_event_a_watch_writes_is_read_back() {
        let mut text = Vec::new();
        let kill = crate::testing::report();
        crate::output::json::write_line(&kill, &mut text);
        let stall = OomStall {
            schema: 1,
            event: "oom_stall",
            time: kill.time,
            phase: "started",
            reason: Some("oom_killer_disabled"),
            since: kill.time,
            seconds: Some(0.0),
            cgroup: "/docker/ab".into(),
            cgroup_mode: Some("v1"),
            container: None,
            usage_bytes: Some(1),
            limit_bytes: Some(1),
            host: None,
        };
        crate::output::json::write_event(&stall, &mut text);
        let userspace = UserspaceOomKill {
            schema: 1,
            event: "userspace_oom_kill",
            time: kill.time,
            boot_ns: Some(1),
            killer: Default::default(),
            signal: Some("SIGTERM"),
            victim: Default::default(),
            container: None,
            acted_on: None,
            host: None,
        };
        crate::output::json::write_event(&userspace, &mut text);
        let mut entries = Entries::default();
        parse_into(&text, &mut entries, &mut HashSet::new());
        assert_eq!(entries.unreadable, 0);
        assert_eq!(entries.kills.len(), 1);
        assert_eq!(entries.stalls, vec![stall]);
        assert_eq!(entries.userspace_kills, vec![userspace]);
    }

    #[test]
    fn lines_that_are_not_reports_are_counted_not_guessed() {
        let mut entries = Entries::default();
        let text = b"garbage\n{\"event\":\"oom_kill\",\"schema\":\"x\"}\n{\"event\":\"other\"}\n";
        parse_into(text, &mut entries, &mut HashSet::new());
        assert_eq!((entries.kills.len(), entries.unreadable), (0, 3));
    }

    #[test]
    fn the_state_is_read_if_any_part_was() {
        let path = Path::new("/var/lib/oomtrace/journal.jsonl");
        let denied = Denied {
            file: path.to_owned(),
            older: false,
            why: "permission denied".into(),
        };
        let entries = |found, denied: &[Denied]| Entries {
            found,
            denied: denied.to_vec(),
            ..Entries::default()
        };
        let cases = [
            (entries(false, &[]), State::Absent(path.to_owned())),
            (entries(true, &[]), State::Read),
            (entries(true, std::slice::from_ref(&denied)), State::Read),
            (
                entries(false, std::slice::from_ref(&denied)),
                State::Unreadable(denied.clone()),
            ),
        ];
        for (entries, expected) in cases {
            assert_eq!(State::of(path, &entries), expected, "{entries:?}");
        }
    }
}
