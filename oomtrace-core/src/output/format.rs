//! The forms every human text gives the same things: sizes, counts, local times, container
//! ids, cgroup paths, a cgroup's memory and its biggest processes. The kill line, the exit
//! line and `oomtrace explain` all write them, so that a size or a time reads the same in each.

use std::{fmt::Write as _, time::SystemTime};

use jiff::{Timestamp, tz::TimeZone};

use crate::{
    output::escape::visible_bytes,
    report::{MemcgStat, TopTask, exact},
};

/// `209715200` → `200.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `3 restarts so far`: a count Docker gives, never what it will do next.
pub fn restarts_so_far(count: u32) -> String {
    format!("{count} restart{} so far", plural(u64::from(count)))
}

/// `at most 3 retries`, what an `on-failure` policy allows.
pub fn at_most_retries(max: u32) -> String {
    format!("at most {max} retr{}", if max == 1 { "y" } else { "ies" })
}

/// `4f2c5e6a7b8c`, as `docker ps` shows an id.
pub fn short_id(id: &str) -> &str {
    id.get(..12).filter(|_| id.len() == 64).unwrap_or(id)
}

/// A local time: the date only when not today, and the zone where the clock reading is
/// ambiguous.
pub fn clock(tz: &TimeZone, time: Option<SystemTime>, now: SystemTime) -> String {
    let Some(ts) = time.and_then(|t| Timestamp::try_from(t).ok()) else {
        return "??:??:??".into();
    };
    let zoned = ts.to_zoned(tz.clone());
    let today = Timestamp::try_from(now)
        .map(|now| now.to_zoned(tz.clone()).date())
        .ok();
    let mut text = String::new();
    if today != Some(zoned.date()) {
        let _ = write!(text, "{} ", zoned.strftime("%Y-%m-%d"));
    }
    let _ = write!(text, "{}", zoned.strftime("%H:%M:%S"));
    // A clock reading repeated by a DST change says which one it was.
    if tz.to_ambiguous_zoned(zoned.datetime()).is_ambiguous() {
        let _ = write!(text, " {}", zoned.strftime("%Z"));
    }
    text
}

/// The biggest processes at a kill, as `comm 12.0 MiB (pid 42), ...`.
pub fn top_tasks(tasks: &[TopTask]) -> String {
    let top: Vec<String> = tasks
        .iter()
        .map(|t| {
            format!(
                "{} {} (pid {})",
                visible_bytes(exact(&t.comm, t.comm_bytes.as_deref())),
                bytes(t.rss_bytes),
                t.pid
            )
        })
        .collect();
    top.join(", ")
}

/// `anon 60.0 MiB, file 2.0 MiB, ...`: what a cgroup's memory was, as far as it is known.
pub fn memory(stat: &MemcgStat) -> Option<String> {
    let parts: Vec<String> = [
        ("anon", stat.anon_bytes),
        ("file", stat.file_bytes),
        ("kernel", stat.kernel_bytes),
        ("shmem", stat.shmem_bytes),
        ("sock", stat.sock_bytes),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| format!("{name} {}", bytes(value))))
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A cgroup path given as its exact bytes, container ids shortened, escaped for the terminal.
pub fn shown_path(path: &[u8]) -> String {
    visible_bytes(&abbreviate_id_bytes(path))
}

/// Shortens every run of 64 hex digits (container ids) to its first 12, as `docker ps` does.
pub fn abbreviate_ids(path: &str) -> String {
    // Only ASCII runs are replaced, by ASCII and `…`: valid UTF-8 stays valid.
    String::from_utf8_lossy(&abbreviate_id_bytes(path.as_bytes())).into_owned()
}

/// [`abbreviate_ids`] on a path's exact bytes, which need not be UTF-8.
pub fn abbreviate_id_bytes(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let run = path[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let starts_word = i == 0 || !path[i - 1].is_ascii_alphanumeric();
        if run == 64 && starts_word {
            out.extend_from_slice(&path[i..i + 12]);
            out.extend_from_slice("…".as_bytes());
            i += 64;
        } else {
            let step = run.max(1);
            out.extend_from_slice(&path[i..i + step]);
            i += step;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing as fixtures;

    #[test]
    fn sizes() {
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (209_715_200, "200.0 MiB"),
            (3 << 30, "3.0 GiB"),
        ] {
            assert_eq!(bytes(n), want);
        }
    }

    #[test]
    fn times_are_local_with_the_date_when_not_today_and_the_zone_when_ambiguous() {
        let tz = TimeZone::get("America/New_York").unwrap();
        // The fixture's kill time, `2026-11-22T04:47:30.033410Z`.
        let kill = fixtures::report().time.unwrap();
        let today = kill + Duration::from_secs(60);
        assert_eq!(
            clock(&tz, Some(kill), today),
            "23:47:30",
            "04:47 UTC is the evening before in New York, which is today there"
        );
        assert_eq!(
            clock(&tz, Some(kill), kill + Duration::from_secs(3 * 86_400)),
            "2026-11-21 23:47:30"
        );
        // 2026-11-01 01:30 happens twice in New York: the zone says which.
        let fold: SystemTime = humantime::parse_rfc3339("2026-11-01T05:30:00Z").unwrap();
        assert_eq!(clock(&tz, Some(fold), fold), "01:30:00 EDT");
        assert_eq!(clock(&tz, None, fold), "??:??:??");
    }

    #[test]
    fn abbreviates_only_whole_container_ids() {
        const ID: &str = "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
        assert_eq!(ID.len(), 64);
        let cases = [
            (format!("/docker/{ID}"), "/docker/4f2c5e6a7b8c…".to_string()),
            (
                format!("/system.slice/docker-{ID}.scope"),
                "/system.slice/docker-4f2c5e6a7b8c….scope".to_string(),
            ),
            ("/docker/4f2c".to_string(), "/docker/4f2c".to_string()),
            (format!("/x{ID}"), format!("/x{ID}")),
            ("/ünïcode/ok".to_string(), "/ünïcode/ok".to_string()),
        ];
        for (path, want) in cases {
            assert_eq!(abbreviate_ids(&path), want);
        }
    }
}
