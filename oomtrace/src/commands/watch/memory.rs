//! An idle watch's memory: what start-up and bursts of kills touched is given back once the
//! watch has been quiet for a while, so a tracer that waits days for the next OOM holds only
//! what waiting needs. Armed by activity, never by a timer of its own: idle costs nothing.

use std::time::Duration;

/// How long a watch must have been quiet before it gives memory back: start-up's work is over
/// by then (attached before the ready line, Docker answering in milliseconds, the kernel's
/// symbols loaded in about 100 ms), and so is a burst of kills with Docker's answers about them.
pub(super) const SETTLES: Duration = Duration::from_secs(2);

/// Gives back what start-up or a burst of activity touched and an idle watch does not need.
/// Freed heap goes back to the kernel, and the clean file pages that were mapped (code and
/// read-only data of oomtrace and its libraries, which fault-around maps 64 KiB at a time) are
/// unmapped: they stay in the page cache, and the next kill maps back the few it runs, as minor
/// faults. Only read-only private file mappings without a private copy of any page are
/// touched, so nothing but page table entries is dropped.
pub(super) fn release() {
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in clean_file_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of a file that is neither writable nor holds a
        // private copy of any page: dropping its page table entries loses nothing, and the
        // next access faults the same bytes back in from the page cache.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// The address ranges of private, read-only file mappings with no anonymous (copied-on-write)
/// pages, from `/proc/self/smaps`.
fn clean_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("");
            current = (path.starts_with('/')
                && perms.len() == 4
                && !perms.contains('w')
                && perms.ends_with('p'))
            .then_some((start, end));
        } else if first == "Anonymous:"
            && let Some(range) = current.take()
            && words.next() == Some("0")
        {
            out.push(range);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::clean_file_mappings;

    #[test]
    fn only_clean_read_only_file_mappings_are_released() {
        let smaps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:00 42 /usr/bin/oomtrace
Rss:                 400 kB
Anonymous:             0 kB
55d0a0100000-55d0a0200000 r-xp 00100000 fe:00 42 /usr/bin/oomtrace
Anonymous:             0 kB
55d0a0200000-55d0a0210000 r--p 00200000 fe:00 42 /usr/bin/oomtrace
Anonymous:            64 kB
55d0a0210000-55d0a0220000 rw-p 00210000 fe:00 42 /usr/bin/oomtrace
Anonymous:             0 kB
7f0000000000-7f0000100000 r--s 00001000 00:10 26 anon_inode:bpf-map
Anonymous:             0 kB
7f0000100000-7f0000200000 rw-p 00000000 00:00 0 [heap]
Anonymous:           128 kB
7f0000200000-7f0000300000 r-xp 00000000 fe:00 7 /usr/lib/libc.so.6 (deleted)
Anonymous:             0 kB
";
        assert_eq!(
            clean_file_mappings(smaps),
            [
                (0x55d0_a000_0000, 0x55d0_a010_0000),
                (0x55d0_a010_0000, 0x55d0_a020_0000),
                (0x7f00_0020_0000, 0x7f00_0030_0000),
            ]
        );
    }
}
