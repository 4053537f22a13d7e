//! The human view: one line a person reads at a glance.

use std::{fmt::Write as _, time::UNIX_EPOCH};

use crate::{
    output::escape::{push_visible_bytes, visible},
    report::{Container, Report},
};

/// Appends the human line and a newline, e.g.
/// `04:47:30 OOM kill: dd (pid 10390, uid 0) rss 200.0 MiB anon, oom_score_adj 0, cgroup /docker/4f2c…`
pub fn human_line(report: &Report, out: &mut String) {
    let v = &report.victim;
    let secs = report
        .time
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let _ = write!(out, "{h:02}:{m:02}:{s:02} OOM kill: ");
    match (
        &v.comm,
        &report.raw.comm,
        &v.thread_comm,
        &report.raw.thread_comm,
    ) {
        (Some(_), Some(raw), _, _) | (None, _, Some(_), Some(raw)) => push_visible_bytes(out, raw),
        (Some(name), None, _, _) | (None, _, Some(name), None) => out.push_str(&visible(name)),
        (None, _, None, _) => out.push('?'),
    }
    out.push_str(" (");
    match (v.pid, v.tid) {
        (Some(pid), Some(tid)) if pid != tid => {
            let _ = write!(out, "pid {pid}, tid {tid}");
        }
        (Some(pid), _) => {
            let _ = write!(out, "pid {pid}");
        }
        (None, Some(tid)) => {
            let _ = write!(out, "tid {tid}");
        }
        (None, None) => out.push_str("pid ?"),
    }
    if let Some(uid) = v.uid {
        let _ = write!(out, ", uid {uid}");
    }
    out.push(')');

    let mut parts = Vec::with_capacity(4);
    if let Some(anon) = v.rss_anon_bytes {
        parts.push(format!("rss {} anon", bytes(anon)));
        for (value, kind) in [(v.rss_file_bytes, "file"), (v.rss_shmem_bytes, "shmem")] {
            if let Some(value) = value.filter(|&b| b > 0) {
                parts.push(format!("{} {kind}", bytes(value)));
            }
        }
    }
    if let Some(swap) = v.swap_bytes.filter(|&b| b > 0) {
        parts.push(format!("swap {}", bytes(swap)));
    }
    if let Some(adj) = v.oom_score_adj {
        parts.push(format!("oom_score_adj {adj}"));
    }
    match (&report.container, &report.cgroup.path) {
        (Some(container), _) => parts.push(container_phrase(container)),
        (None, Some(path)) => {
            let mut shown = String::from("cgroup ");
            match &report.raw.cgroup_path {
                Some(raw) => push_visible_bytes(&mut shown, raw),
                None => shown.push_str(&visible(&abbreviate_ids(path))),
            }
            parts.push(shown);
        }
        (None, None) => {
            if let Some(id) = report.cgroup.id {
                parts.push(format!("cgroup id {id}"));
            }
        }
    }
    if !parts.is_empty() {
        out.push(' ');
        out.push_str(&parts.join(", "));
    }
    if let Some(container) = &report.container {
        out.push_str(": ");
        out.push_str(&fate(container, v.is_container_init));
    }
    out.push('\n');
}

/// `in container web (docker 4f2c5e6a7b8c, image nginx)`.
fn container_phrase(c: &Container) -> String {
    let short_id = c.id.get(..12).filter(|_| c.id.len() == 64).unwrap_or(&c.id);
    let short_id = visible(short_id);
    let mut phrase = match &c.name {
        Some(name) => format!("in container {} ({} {short_id}", visible(name), c.runtime),
        None => format!("in {} container {short_id} (name unknown", c.runtime),
    };
    if let Some(image) = &c.image {
        let _ = write!(phrase, ", image {}", visible(image));
    }
    if let Some(pod) = &c.pod {
        match (&pod.namespace, &pod.name) {
            (Some(ns), Some(name)) => {
                let _ = write!(phrase, ", pod {}/{}", visible(ns), visible(name));
            }
            _ => {
                let _ = write!(phrase, ", pod {}", visible(&pod.uid));
            }
        }
    }
    phrase.push(')');
    phrase
}

/// What the kill means for the container: the answer to "exit 0 but OOMKilled".
fn fate(c: &Container, is_init: Option<bool>) -> String {
    let runtime = match c.runtime {
        "docker" => "Docker",
        _ if c.pod.is_some() => "Kubernetes",
        _ => "the runtime",
    };
    match is_init {
        Some(false) => format!(
            "a child, not the container's main process, which survived; {runtime} will still report \
             OOMKilled=true, and the container's exit code will be whatever its main process \
             returns, 0 included"
        ),
        Some(true) => {
            let limit = c.memory_limit_bytes.map_or_else(
                || "memory limit".to_owned(),
                |b| format!("{} limit", bytes(b)),
            );
            match &c.restart_policy {
                Some(policy) => format!(
                    "the container's main process; the container exits with 137, and its \
                     {policy} restart policy restarts it into the same {limit}"
                ),
                None => format!(
                    "the container's main process; the container exits with 137, and with a \
                     restart policy it would restart into the same {limit}"
                ),
            }
        }
        None => "whether it was the container's main process is unknown".to_owned(),
    }
}

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

/// Shortens every run of 64 hex digits (container ids) to its first 12, as `docker ps` does.
pub fn abbreviate_ids(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if run == 64 && starts_word {
            out.push_str(&path[i..i + 12]);
            out.push('…');
            i += 64;
        } else {
            let step = run.max(1);
            let end = (i + step..=bytes.len())
                .find(|&e| path.is_char_boundary(e))
                .unwrap_or(bytes.len());
            out.push_str(&path[i..end]);
            i = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing as fixtures;
    use crate::{kernel::cgroups::CgroupMode, source::ebpf::decode};
    use oomtrace_common::field;

    fn report() -> Report {
        fixtures::report()
    }

    #[test]
    fn human_line_reads_at_a_glance() {
        let mut line = String::new();
        human_line(&report(), &mut line);
        assert_eq!(
            line,
            "04:47:30 OOM kill: dd (pid 10390, tid 10391, uid 0) rss 200.0 MiB anon, \
             4.0 KiB file, oom_score_adj 500, cgroup /docker/4f2c\n"
        );
    }

    #[test]
    fn human_line_falls_back_to_what_is_known() {
        let mut event = fixtures::raw_event();
        event.fields = field::TID | field::THREAD_COMM | field::CGROUP_ID;
        let report = decode(&event, &fixtures::decoding(CgroupMode::V1)).unwrap();
        let mut line = String::new();
        human_line(&report, &mut line);
        assert_eq!(
            line,
            "04:47:30 OOM kill: dd-worker (tid 10391) cgroup id 4242\n"
        );
    }

    fn in_container(is_init: Option<bool>, restart: Option<&str>) -> String {
        let mut report = report();
        report.victim.is_container_init = is_init;
        report.container = Some(Container {
            runtime: "docker",
            id: "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80".into(),
            name: Some("data-processor".into()),
            image: Some("oomtrace-busybox:latest".into()),
            labels: None,
            main_pid: Some(10000),
            restart_policy: restart.map(str::to_owned),
            memory_limit_bytes: Some(32 << 20),
            ..Container::default()
        });
        let mut line = String::new();
        human_line(&report, &mut line);
        line
    }

    #[test]
    fn human_line_says_what_the_kill_means_for_the_container() {
        let child = in_container(Some(false), None);
        assert!(
            child.contains("oom_score_adj 500, in container data-processor (docker 4f2c5e6a7b8c, image oomtrace-busybox:latest): a child, not the container's main process, which survived;"),
            "{child}"
        );
        assert!(
            child.contains("Docker will still report OOMKilled=true"),
            "{child}"
        );
        assert!(
            child.contains("whatever its main process returns, 0 included"),
            "{child}"
        );
        assert!(
            !child.contains("cgroup /docker"),
            "the container replaces the path: {child}"
        );

        let init = in_container(Some(true), Some("on-failure"));
        assert!(
            init.contains("the container's main process; the container exits with 137"),
            "{init}"
        );
        assert!(
            init.contains("its on-failure restart policy restarts it into the same 32.0 MiB limit"),
            "{init}"
        );
        let init = in_container(Some(true), None);
        assert!(
            init.contains("with a restart policy it would restart into the same 32.0 MiB limit"),
            "{init}"
        );
        let unknown = in_container(None, None);
        assert!(
            unknown.ends_with("whether it was the container's main process is unknown\n"),
            "{unknown}"
        );
    }

    #[test]
    fn byte_sizes() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (209_715_200, "200.0 MiB"),
            (3 << 30, "3.0 GiB"),
        ];
        for (n, want) in cases {
            assert_eq!(bytes(n), want);
        }
    }

    #[test]
    fn abbreviates_only_whole_container_ids() {
        let id = "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
        assert_eq!(id.len(), 64);
        let cases = [
            (format!("/docker/{id}"), "/docker/4f2c5e6a7b8c…".to_string()),
            (
                format!("/system.slice/docker-{id}.scope"),
                "/system.slice/docker-4f2c5e6a7b8c….scope".to_string(),
            ),
            ("/docker/4f2c".to_string(), "/docker/4f2c".to_string()),
            (format!("/x{id}"), format!("/x{id}")),
            ("/ünïcode/ok".to_string(), "/ünïcode/ok".to_string()),
        ];
        for (path, want) in cases {
            assert_eq!(abbreviate_ids(&path), want);
        }
    }

    /// The finding behind this test: a process controls its own comm, and whoever names a
    /// container controls that name; both reached the terminal byte for byte.
    #[test]
    fn untrusted_strings_reach_the_terminal_escaped() {
        let mut report = report();
        report.victim.comm = Some("\x1b]0;pwned\x07evil".into());
        report.container = Some(Container {
            runtime: "docker",
            id: "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80".into(),
            name: Some("web\x1b[2Jx".into()),
            image: Some("img\u{202e}gpj.exe".into()),
            ..Container::default()
        });
        let mut line = String::new();
        human_line(&report, &mut line);
        assert!(
            !line.trim_end_matches('\n').chars().any(char::is_control),
            "{line:?}"
        );
        assert!(line.contains("\\x1b]0;pwned\\x07evil"), "{line}");
        assert!(line.contains("web\\x1b[2Jx"), "{line}");
        assert!(line.contains("img\\u{202e}gpj.exe"), "{line}");

        let mut report = crate::testing::report();
        report.container = None;
        report.cgroup.path = Some("/a\u{fffd}b".into());
        report.raw.cgroup_path = Some(b"/a\xffb".to_vec());
        let mut line = String::new();
        human_line(&report, &mut line);
        assert!(line.contains("cgroup /a\\xffb"), "{line}");
    }
}
