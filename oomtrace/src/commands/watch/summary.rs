//! The line a watch ends with: what was reported, filtered and dropped, and the kernel's own
//! count of OOM kills over the same time (`oom_kill` in `/proc/vmstat`) beside it. A
//! difference is named, never hidden.

use oomtrace_core::output::format::plural;

/// What a watch saw and did, for its last line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Kills written to stdout, and how many of all kills seen were from before the watch.
    pub reported: u64,
    pub past: u64,
    /// Kills the filters hid (`None` without filters).
    pub filtered: Option<u64>,
    /// Events dropped, and why (`"2 found the kernel's ring buffer full"`).
    pub dropped: Vec<(u64, String)>,
    /// Of every kill seen, filtered or not: those the kernel killed, those it only marked,
    /// those whose kind is unknown, and the memory.oom.group kills among the invocations.
    pub killed: u64,
    pub marked: u64,
    pub unknown_kind: u64,
    pub group_kills: u64,
    /// Kills by userspace OOM killers, by killer, and signal records not kept: neither is
    /// in the kernel's count, so they have a line of their own.
    pub userspace_kills: std::collections::BTreeMap<String, u64>,
    pub signals_dropped: u64,
}

/// The line after it for what the kernel does not count: kills by userspace OOM killers,
/// and signal records lost; `None` when there is nothing to say.
pub fn userspace_line(counts: &Counts) -> Option<String> {
    let total: u64 = counts.userspace_kills.values().sum();
    let mut parts = Vec::new();
    if total > 0 {
        let by: Vec<String> = counts
            .userspace_kills
            .iter()
            .map(|(killer, n)| format!("{killer} {n}"))
            .collect();
        parts.push(format!(
            "{total} kill{} by userspace OOM killers ({}), not in the kernel's count",
            plural(total),
            by.join(", ")
        ));
    }
    if counts.signals_dropped > 0 {
        parts.push(format!(
            "{} signal record{} not kept, so an exit may say killed_by null",
            counts.signals_dropped,
            plural(counts.signals_dropped)
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The line, without its `oomtrace: ` prefix. `kernel` is the kernel's count over the watch.
pub fn line(counts: &Counts, kernel: Option<u64>) -> String {
    let mut out = format!(
        "{} OOM kill{} reported",
        counts.reported,
        plural(counts.reported)
    );
    if counts.past > 0 {
        out.push_str(&format!(" ({} from before the watch)", counts.past));
    }
    if let Some(filtered) = counts.filtered {
        out.push_str(&format!(", {filtered} filtered out"));
    }
    let dropped: u64 = counts.dropped.iter().map(|(n, _)| n).sum();
    out.push_str(&format!(", {dropped} event{} dropped", plural(dropped)));
    if dropped > 0 {
        let why: Vec<String> = counts
            .dropped
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, why)| format!("{n} {why}"))
            .collect();
        out.push_str(&format!(" ({})", why.join(", ")));
    }
    if let Some(kernel) = kernel {
        out.push_str(&format!("; the kernel counted {kernel}"));
        if let Some(why) = difference(counts, kernel, dropped) {
            out.push_str(&format!(" ({why})"));
        }
    }
    out
}

/// Why the kernel's count is not the number of kills oomtrace saw, if it is not.
fn difference(counts: &Counts, kernel: u64, dropped: u64) -> Option<String> {
    let mut notes = Vec::new();
    if counts.marked > 0 {
        notes.push(format!(
            "{} victim{} only marked, already exiting: the kernel does not count {}",
            counts.marked,
            plural(counts.marked),
            if counts.marked == 1 { "it" } else { "them" }
        ));
    }
    // A victim whose kind is unknown may or may not be counted.
    let low = counts.killed;
    let high = counts.killed + counts.unknown_kind;
    // A memory.oom.group kill kills its chosen victim, then every member, the chosen one
    // again: counted twice if it still had its memory then.
    let high_with_groups = high + counts.group_kills;
    if (low..=high).contains(&kernel) && (counts.unknown_kind == 0 || kernel == high) {
        return (!notes.is_empty()).then(|| notes.join("; "));
    }
    if kernel > high && kernel <= high_with_groups {
        notes.push(format!(
            "{} more: a memory.oom.group kill counts its chosen victim again when it kills the group",
            kernel - high
        ));
    } else if kernel > high {
        let unseen = kernel - high;
        let mut note = format!("{unseen} kill{} oomtrace did not see", plural(unseen));
        if dropped > 0 {
            note.push_str(", dropped events among them");
        }
        notes.push(note);
    } else if counts.unknown_kind > 0 {
        notes.push(format!(
            "{} of the kills seen may have been only marked, which the kernel does not count",
            high - kernel
        ));
    } else {
        notes.push(format!(
            "{} fewer than seen: kills just as the watch started or ended fall on either side of the count",
            low - kernel
        ));
    }
    Some(notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userspace_kills_and_lost_signals_have_a_line_of_their_own() {
        let mut counts = Counts::default();
        assert_eq!(userspace_line(&counts), None);
        counts.userspace_kills.insert("earlyoom".into(), 2);
        counts.userspace_kills.insert("systemd-oomd".into(), 1);
        assert_eq!(
            userspace_line(&counts).as_deref(),
            Some(
                "3 kills by userspace OOM killers (earlyoom 2, systemd-oomd 1), not in the kernel's count"
            )
        );
        counts.userspace_kills.clear();
        counts.signals_dropped = 1;
        assert_eq!(
            userspace_line(&counts).as_deref(),
            Some("1 signal record not kept, so an exit may say killed_by null")
        );
        assert!(
            !line(&counts, Some(0)).contains("dropped ("),
            "signal records are not kill events: the kernel's count is not held against them"
        );
    }

    fn counts(reported: u64, killed: u64) -> Counts {
        Counts {
            reported,
            killed,
            ..Counts::default()
        }
    }

    #[test]
    fn the_line_names_every_difference_with_the_kernel() {
        let cases: Vec<(Counts, Option<u64>, &str)> = vec![
            (
                counts(87, 87),
                Some(87),
                "87 OOM kills reported, 0 events dropped; the kernel counted 87",
            ),
            (
                counts(1, 1),
                Some(1),
                "1 OOM kill reported, 0 events dropped; the kernel counted 1",
            ),
            (
                Counts {
                    filtered: Some(3),
                    ..counts(1, 4)
                },
                Some(4),
                "1 OOM kill reported, 3 filtered out, 0 events dropped; the kernel counted 4",
            ),
            (
                Counts {
                    marked: 1,
                    ..counts(3, 2)
                },
                Some(2),
                "3 OOM kills reported, 0 events dropped; the kernel counted 2 (1 victim only marked, already exiting: the kernel does not count it)",
            ),
            (
                Counts {
                    group_kills: 1,
                    ..counts(3, 3)
                },
                Some(4),
                "3 OOM kills reported, 0 events dropped; the kernel counted 4 (1 more: a memory.oom.group kill counts its chosen victim again when it kills the group)",
            ),
            (
                Counts {
                    dropped: vec![(2, "found the kernel's ring buffer full".into())],
                    ..counts(5, 5)
                },
                Some(7),
                "5 OOM kills reported, 2 events dropped (2 found the kernel's ring buffer full); the kernel counted 7 (2 kills oomtrace did not see, dropped events among them)",
            ),
            (counts(2, 2), None, "2 OOM kills reported, 0 events dropped"),
            (
                counts(0, 0),
                Some(0),
                "0 OOM kills reported, 0 events dropped; the kernel counted 0",
            ),
            (
                Counts {
                    past: 34,
                    ..counts(36, 2)
                },
                Some(2),
                "36 OOM kills reported (34 from before the watch), 0 events dropped; the kernel counted 2",
            ),
        ];
        for (counts, kernel, want) in cases {
            assert_eq!(line(&counts, kernel), want);
        }
    }
}
