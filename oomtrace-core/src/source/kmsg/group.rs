//! The line the kernel prints between a `memory.oom.group` kill's chosen victim and its
//! members (`mem_cgroup_print_oom_group`):
//!
//! ```text
//! Tasks in /kubepods/burstable/pod<uid> are going to be killed due to memory.oom.group set
//! ```
//!
//! It is three `pr_cont` pieces, `Tasks in `, the cgroup's path and the rest, so when another
//! CPU prints in between it arrives as two or three records. The path is taken only once the
//! line is whole: a cut line names no cgroup rather than part of one.

use super::lines::MAX_JOIN;
use super::record::{LogText, unescape};

const START: &str = "Tasks in ";
const END: &str = " are going to be killed due to memory.oom.group set";

/// The `Tasks in <cgroup> ...` line, as its pieces come.
#[derive(Clone, Debug)]
pub(super) struct GroupLine {
    text: String,
}

impl GroupLine {
    /// A record that starts the line; `None` for any other.
    pub(super) fn start(message: &str) -> Option<Self> {
        message.starts_with(START).then(|| GroupLine {
            text: message.to_owned(),
        })
    }

    /// Takes `piece` if it is the line's next piece, and says whether it was: the path right
    /// after `Tasks in `, or the end after a path. A record that is the end alone after a line
    /// that already looked whole means the path itself ended with those words (a cgroup may be
    /// named anything without a `/`), and the line goes on: nothing else prints exactly those
    /// words, and OOM kills never overlap.
    pub(super) fn take(&mut self, piece: &str) -> bool {
        let path_so_far = &self.text[START.len()..];
        let next = if path_so_far.is_empty() {
            piece.starts_with('/')
        } else {
            piece == END
        };
        let fits = self.text.len() + piece.len() <= MAX_JOIN;
        if next && fits {
            self.text.push_str(piece);
        }
        next && fits
    }

    /// The cgroup, unescaped, once the line is whole.
    pub(super) fn cgroup(&self) -> Option<LogText> {
        let path = self.text.strip_prefix(START)?.strip_suffix(END)?;
        path.starts_with('/').then(|| unescape(path))
    }
}

/// Whether `cgroup` is `within` or below it, by their exact bytes: the kernel's group is
/// never above the limited cgroup, so a path that is names no group of this kill.
pub(super) fn is_within(cgroup: &LogText, within: &LogText) -> bool {
    let exact = |text: &LogText| text.raw().unwrap_or(text.as_str().as_bytes()).to_vec();
    let (cgroup, within) = (exact(cgroup), exact(within));
    if within == b"/" {
        return true;
    }
    cgroup
        .strip_prefix(within.as_slice())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line's pieces as records, and the cgroup it names once they are all in.
    #[test]
    fn the_cgroup_is_named_only_by_the_whole_line() {
        let whole = "Tasks in /kubepods/pod1 are going to be killed due to memory.oom.group set";
        let cases: [(&[&str], Option<&str>); 11] = [
            (&[whole], Some("/kubepods/pod1")),
            (
                &["Tasks in ", "/kubepods/pod1", END],
                Some("/kubepods/pod1"),
            ),
            (&["Tasks in /kubepods/pod1", END], Some("/kubepods/pod1")),
            (
                &["Tasks in ", &whole[START.len()..]],
                Some("/kubepods/pod1"),
            ),
            // Cut short for good: no cgroup.
            (&["Tasks in "], None),
            (&["Tasks in ", "/kubepods/pod1"], None),
            (&["Tasks in /kubepods/pod1"], None),
            // Escaped as /dev/kmsg escapes, unescaped here.
            (
                &[r"Tasks in /a\x5cb\x0ac are going to be killed due to memory.oom.group set"],
                Some("/a\\b\nc"),
            ),
            // A cgroup whose name ends with the line's own words: the end that follows is the
            // line's, and the name is whole.
            (
                &[&format!("Tasks in /x{END}"), END],
                Some("/x are going to be killed due to memory.oom.group set"),
            ),
            (
                &["Tasks in ", &format!("/x{END}"), END],
                Some("/x are going to be killed due to memory.oom.group set"),
            ),
            (&[&format!("Tasks in {END}")], None),
        ];
        for (records, want) in cases {
            let mut line = GroupLine::start(records[0]).expect("a start");
            for piece in &records[1..] {
                assert!(line.take(piece), "{records:?}: {piece:?} not taken");
            }
            assert_eq!(line.cgroup().as_deref(), want, "{records:?}");
        }
    }

    #[test]
    fn other_records_are_not_pieces() {
        let mut line = GroupLine::start("Tasks in ").unwrap();
        for other in [
            "",
            "memory: usage 1kB",
            " are going to be killed",
            "Memory cgroup out of memory: Killed process 1 (a)",
        ] {
            assert!(!line.take(other), "{other:?}");
        }
        assert!(line.take("/g"));
        // After the path, only the end.
        assert!(!line.take("/h"));
        assert!(line.take(END));
        assert_eq!(line.cgroup().as_deref(), Some("/g"));
        assert!(GroupLine::start("Task in /a killed as a result of limit of /a").is_none());
        // A path without end is bounded.
        let mut line = GroupLine::start("Tasks in ").unwrap();
        assert!(!line.take(&format!("/{}", "a".repeat(MAX_JOIN))));
    }

    #[test]
    fn a_group_is_within_the_limited_cgroup() {
        let text = |s: &str| LogText::from(s);
        let cases = [
            ("/pod", "/pod", true),
            ("/pod/c1", "/pod", true),
            ("/pod", "/", true),
            ("/podx", "/pod", false),
            ("/", "/pod", false),
            ("/other", "/pod", false),
        ];
        for (group, limited, want) in cases {
            assert_eq!(
                is_within(&text(group), &text(limited)),
                want,
                "{group} {limited}"
            );
        }
        let bytes = |b: &[u8]| LogText::from_bytes(b.to_vec());
        assert!(is_within(&bytes(b"/p\xff/c"), &bytes(b"/p\xff")));
        assert!(
            !is_within(&bytes(b"/p\xfe/c"), &bytes(b"/p\xff")),
            "alike as strings only"
        );
    }
}
