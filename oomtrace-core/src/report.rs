//! The report: what oomtrace says about one OOM kill, whatever source saw it. The sources
//! (`crate::source`) build it, attribution completes it, and the output renders it.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::attribution::killer::{
    EarlierSignal, KilledBy, Sender, SenderContainer, SenderParent,
};

/// A word from the schema's fixed vocabulary (`"oom_kill"`, `"tp_btf"`, `"docker"`, ...).
/// An alias, not `&'static str` written out: serde would otherwise borrow it from the input,
/// and a journal read from a buffer could not be deserialized.
pub type Label = &'static str;

/// Version of the JSON contract documented in the README.
pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: u32,
    #[serde(deserialize_with = "known")]
    pub event: Label,
    /// Wall-clock time of the kill; `null` if the wall clock cannot place it.
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub time: Option<SystemTime>,
    /// `CLOCK_BOOTTIME` nanoseconds; `null` where the source has only a coarser clock.
    pub boot_ns: Option<u64>,
    pub victim: Victim,
    pub trigger: Trigger,
    pub cgroup: Cgroup,
    pub container: Option<Container>,
    /// The OOM itself: which limit, which invocation, killed or only marked.
    pub oom: Option<OomContext>,
    #[serde(deserialize_with = "known")]
    pub source: Label,
    /// True for a kill from before the watch started (`--since`), replayed from the journal
    /// and the kernel log.
    #[serde(default)]
    pub past: bool,
    /// The node and the boot the kill happened in; `null` in journals written before it was.
    #[serde(default)]
    pub host: Option<Host>,
    /// What the kernel program read that the OOM context is worked out from.
    #[serde(skip)]
    pub facts: Option<Box<KernelFacts>>,
}

/// One memory cgroup on the way from the victim's to the root, as the handler read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcgReading {
    pub id: u64,
    pub usage_bytes: u64,
    /// `None`: no limit.
    pub limit_bytes: Option<u64>,
    /// Memory plus swap on cgroup v1, where accounted.
    pub memsw: Option<(u64, Option<u64>)>,
    /// `memory.oom.group`, where it could be read.
    pub oom_group: Option<bool>,
}

/// What the kernel program read besides the report's own fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// The victim's memory cgroup and its ancestors below the root, victim's first; empty if
    /// they could not all be read, or if more of them sit above the last one read.
    pub memcgs: Vec<MemcgReading>,
    /// The trigger's memory cgroup ids the same way; `None` if not read whole.
    pub trigger_memcg_ids: Option<Vec<u64>>,
    /// The ids of the victim's cgroup path components, leaf first.
    pub cgroup_ids: Vec<u64>,
    /// Return addresses from the tracepoint outwards; empty if not taken.
    pub stack: Vec<u64>,
}

/// `"event":"container_exit"`: a container exited, as its runtime says, and who ended it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerExit {
    pub schema: u32,
    #[serde(deserialize_with = "known")]
    pub event: Label,
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub time: Option<SystemTime>,
    pub container: Container,
    /// The exit code Docker reports (PID 1's).
    pub exit_code: Option<i64>,
    /// Docker's `State.OOMKilled` for this run.
    pub runtime_oom_killed: Option<bool>,
    /// Docker's `RestartCount` at the exit. Docker counts a restart when it decides on it,
    /// before the exit is announced, so this includes the one `restarting` says is under way.
    pub restart_count: Option<u32>,
    /// Docker's `State.Restarting` at the exit: its restart policy is restarting the container.
    pub restarting: Option<bool>,
    /// The `oom.id`s of the container's kills since it started, `null` where unknown.
    pub kills: Vec<Option<u64>>,
    /// Who sent the signal its main process died of; `null` where it did not die of one, or
    /// the kernel's record does not say.
    #[serde(default)]
    pub killed_by: Option<KilledBy>,
    /// Why `runtime_oom_killed` says what it says, where the facts tell (see
    /// `attribution::killer::flag_reason`); `null` where they do not.
    #[serde(default, deserialize_with = "known_option")]
    pub runtime_oom_killed_reason: Option<Label>,
    /// The node and the boot the exit happened in.
    #[serde(default)]
    pub host: Option<Host>,
    /// The last of those kills, for the human line.
    #[serde(skip)]
    pub last_kill: Option<KillSummary>,
}

/// What a container exit line says about the kill before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillSummary {
    pub comm: String,
    /// `comm`'s exact bytes, where they are not UTF-8.
    pub comm_bytes: Option<Vec<u8>>,
    pub pid: Option<u32>,
    pub time: Option<SystemTime>,
    pub is_container_main: Option<bool>,
}

impl KillSummary {
    pub fn of(report: &Report) -> Self {
        let v = &report.victim;
        let (comm, comm_bytes) = match (&v.comm, &v.thread_comm) {
            (Some(comm), _) => (comm.clone(), v.comm_bytes.clone()),
            (None, Some(comm)) => (comm.clone(), v.thread_comm_bytes.clone()),
            (None, None) => (String::new(), None),
        };
        Self {
            comm,
            comm_bytes,
            pid: v.pid.or(v.tid),
            time: report.time,
            is_container_main: v.is_container_main,
        }
    }
}

/// Decodes kernel bytes: the string (U+FFFD for what is not UTF-8) and, only when something
/// was replaced, the bytes themselves.
pub fn kernel_text(bytes: &[u8]) -> (String, Option<Vec<u8>>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(bytes.to_vec()),
        ),
    }
}

/// The exact bytes of a kernel-given string: `bytes`, its `_hex` sibling, when `text` is what
/// they read as with U+FFFD, else `text`'s own. A pair that disagrees (a journal line edited by
/// hand) shows what the string says rather than bytes of unknown origin.
pub fn exact<'a>(text: &'a str, bytes: Option<&'a [u8]>) -> &'a [u8] {
    match bytes {
        Some(bytes) if String::from_utf8_lossy(bytes) == text => bytes,
        _ => text.as_bytes(),
    }
}

/// `1b5b33`: every byte as two lowercase hex digits, the form of the `_hex` fields.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The bytes a `_hex` field holds; `None` for anything but pairs of lowercase hex digits, and
/// for bytes that are UTF-8 (their string is exact, so such a field is not oomtrace's).
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let pairs = hex.as_bytes().chunks(2);
    let bytes = pairs
        .map(|pair| match *pair {
            [high, low] => Some(digit(high)? << 4 | digit(low)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()?;
    std::str::from_utf8(&bytes).is_err().then_some(bytes)
}

/// Serde for the `_hex` siblings of kernel-given strings: written only where the string is
/// not exact; read back as `None` when absent, `null` or malformed, never as a guess. Each such
/// field is `#[serde(rename = "<name>_hex", with = "hex")]`, and absent unless needed:
/// `#[serde(default, skip_serializing_if = "Option::is_none")]`.
pub mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_str(&super::to_hex(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let hex = Option::<String>::deserialize(d)?;
        Ok(hex.as_deref().and_then(super::from_hex))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OomContext {
    /// The same for every victim of one OOM invocation: the `CLOCK_BOOTTIME` nanosecond (from
    /// the kernel log, the log's) at which the kernel marked its first victim.
    pub id: Option<u64>,
    /// `"killed"`: SIGKILL sent and counted by the kernel. `"marked"`: the victim was already
    /// exiting, so the kernel only marked it: no signal, no count, no log line.
    #[serde(deserialize_with = "known_option")]
    pub kind: Option<Label>,
    /// `CONSTRAINT_MEMCG`, `CONSTRAINT_NONE`, ...
    pub constraint: Option<String>,
    /// The cgroup whose limit was hit: the victim's own, or an ancestor's (a pod's slice).
    pub memcg: Option<String>,
    /// `memcg`'s exact bytes, where they are not UTF-8.
    #[serde(rename = "memcg_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memcg_bytes: Option<Vec<u8>>,
    /// That cgroup's limit and charge at the kill.
    pub memcg_limit_bytes: Option<u64>,
    pub memcg_usage_bytes: Option<u64>,
    /// The whole machine ran out of memory.
    pub global: Option<bool>,
    /// Killed as a member of a `memory.oom.group` cgroup.
    pub group_kill: Option<bool>,
    /// The cgroup whose every task the kernel kills together with this victim, because
    /// `memory.oom.group` is set on it (the highest such level from the victim's cgroup up to
    /// the limited one): the same for the chosen victim and the members. `null` when the victim
    /// is killed alone, or when that is not known; in journals written before it was.
    #[serde(default)]
    pub group_memcg: Option<String>,
    /// `group_memcg`'s exact bytes, where they are not UTF-8.
    #[serde(rename = "group_memcg_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_memcg_bytes: Option<Vec<u8>>,
    /// The limited cgroup's memory breakdown at the kill (the kernel log's report), or right
    /// after it (its `memory.stat`).
    pub memcg_stat: Option<MemcgStat>,
    /// Its biggest processes by RSS, largest first, at most five.
    pub top_tasks: Option<Vec<TopTask>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemcgStat {
    pub anon_bytes: Option<u64>,
    pub file_bytes: Option<u64>,
    pub kernel_bytes: Option<u64>,
    pub shmem_bytes: Option<u64>,
    pub sock_bytes: Option<u64>,
}

/// How many of the limited cgroup's processes a report lists.
pub const TOP_TASKS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopTask {
    pub pid: u32,
    pub comm: String,
    /// `comm`'s exact bytes, where they are not UTF-8.
    #[serde(rename = "comm_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_bytes: Option<Vec<u8>>,
    pub rss_bytes: u64,
}

impl TopTask {
    /// The [`TOP_TASKS`] biggest of `tasks` by RSS, largest first, the lower pid first among
    /// equals.
    pub fn biggest(mut tasks: Vec<TopTask>) -> Vec<TopTask> {
        tasks.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
        tasks.truncate(TOP_TASKS);
        tasks
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Victim {
    /// The process id (tgid) users know.
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    /// The pid inside the victim's own pid namespace (1 for a container's init).
    pub ns_pid: Option<u32>,
    /// The process (thread group leader) name; U+FFFD for each sequence that is not UTF-8.
    pub comm: Option<String>,
    /// `comm`'s exact bytes, only where they are not UTF-8; JSON has them as `comm_hex`.
    #[serde(rename = "comm_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_bytes: Option<Vec<u8>>,
    pub thread_comm: Option<String>,
    #[serde(rename = "thread_comm_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_comm_bytes: Option<Vec<u8>>,
    pub uid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub rss_anon_bytes: Option<u64>,
    pub rss_file_bytes: Option<u64>,
    pub rss_shmem_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    pub total_vm_bytes: Option<u64>,
    pub pgtables_bytes: Option<u64>,
    /// True when the victim is its container's PID 1; `null` outside containers or unknown.
    pub is_container_init: Option<bool>,
    /// The parent process's host pid.
    pub ppid: Option<u32>,
    /// False when the victim's parent lives outside its container's pid namespace, as a
    /// process started by `docker exec` does (and the container's PID 1, whose parent is the
    /// runtime's shim).
    pub parent_in_container: Option<bool>,
    /// True when the victim's death ends the container: its PID 1, or the app an init shim
    /// (docker-init, tini, dumb-init, s6-svscan) runs as PID 1 and exits with.
    pub is_container_main: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<String>,
    #[serde(rename = "comm_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_bytes: Option<Vec<u8>>,
    pub cgroup_id: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cgroup {
    pub id: Option<u64>,
    /// The victim's memory cgroup, relative to its hierarchy's root.
    pub path: Option<String>,
    #[serde(rename = "path_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<Vec<u8>>,
    /// `v1` or `v2`: the hierarchy `path` is in.
    #[serde(deserialize_with = "known_option")]
    pub mode: Option<Label>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    #[serde(deserialize_with = "known")]
    pub runtime: Label,
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub main_pid: Option<u32>,
    /// Docker's restart policy (`always`, `on-failure`, `unless-stopped`), if any.
    pub restart_policy: Option<String>,
    /// For `on-failure`: how many restarts the policy allows (0: no limit).
    pub restart_max_retries: Option<u32>,
    /// Restarts Docker had made, as read in the victim's own run (its PID 1 the victim or its
    /// parent); `null` when the count at hand may be another run's.
    pub restart_count: Option<u32>,
    /// The program the container's PID 1 runs (`docker inspect`'s `Path`).
    pub main_command: Option<String>,
    /// The container's memory limit, when the runtime says.
    pub memory_limit_bytes: Option<u64>,
    pub pod: Option<Pod>,
}

/// Which node and which boot of it an event happened on (see `source::host`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// The node's name; `null` where it cannot be told from the container's.
    pub name: Option<String>,
    /// Where the name came from: `"env"` (`OOMTRACE_NODE_NAME`) or `"uts"` (the host's hostname).
    #[serde(deserialize_with = "known_option")]
    pub name_from: Option<Label>,
    /// The kernel's id of the boot the event happened in.
    pub boot_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    pub uid: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    #[serde(deserialize_with = "known_option")]
    pub qos: Option<Label>,
    /// How many workload containers the pod had at the report: those whose cgroups were in
    /// the pod's cgroup, and the victim's own, whose cgroup may be gone already; never the
    /// sandbox ("pause") container. `null` when not known, and in journals written before it
    /// was.
    #[serde(default)]
    pub containers: Option<u32>,
}

pub(crate) fn rfc3339<S: serde::Serializer>(
    time: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => s.collect_str(&humantime::format_rfc3339_micros(*time)),
        None => s.serialize_none(),
    }
}

/// Every value a `&'static str` field of the schema takes; reading a journal maps each back
/// to it, and anything else to `"unknown"` rather than a made-up value. The renderers' fuzz
/// target writes these words and reads them back.
pub const KNOWN_WORDS: &[&str] = &[
    "oom_kill",
    "container_exit",
    "tp_btf",
    "raw_tp",
    "tracepoint",
    "kmsg",
    "v1",
    "v2",
    "docker",
    "containerd",
    "cri-o",
    "podman",
    "nerdctl",
    "lxc",
    "systemd-nspawn",
    "kubernetes",
    "guaranteed",
    "burstable",
    "besteffort",
    "killed",
    "marked",
    "unknown",
    "",
    "journal",
    "kmsg+journal",
    "oom",
    "host",
    "container",
    "env",
    "uts",
    "oom_killer",
    "runtime",
    "userspace_oom_killer",
    "cgroup_kill",
    "process",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "oom_kill_ended_it",
    "earlier_oom_kill",
    "oom_killer_disabled",
    "oom_kill_not_flagged",
    "userspace_oom_kill",
    "oom_stall",
    "started",
    "continues",
    "ended",
];

fn intern(text: &str) -> &'static str {
    KNOWN_WORDS
        .iter()
        .find(|k| **k == text)
        .copied()
        .unwrap_or("unknown")
}

pub(crate) fn known<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let text = String::deserialize(d)?;
    Ok(intern(&text))
}

pub(crate) fn known_option<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<&'static str>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text.as_deref().map(intern))
}

pub(crate) fn from_rfc3339<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SystemTime>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| humantime::parse_rfc3339(&t).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_every_byte_in_lowercase() {
        let cases: [(&[u8], &str); 4] = [
            (b"\x1b[31mEV\xffIL", "1b5b33316d4556ff494c"),
            (b"\xff", "ff"),
            (b"\x00\x0a\xfe\xc3", "000afec3"),
            (b"", ""),
        ];
        for (bytes, hex) in cases {
            assert_eq!(to_hex(bytes), hex);
            let back = from_hex(hex);
            if std::str::from_utf8(bytes).is_err() {
                assert_eq!(back.as_deref(), Some(bytes), "{hex}");
            } else {
                assert_eq!(back, None, "{hex}: UTF-8, so its string is exact");
            }
        }
    }

    #[test]
    fn malformed_hex_is_no_bytes_rather_than_a_guess() {
        for hex in [
            "f", "fff", "gg", "ff0", "FF", "fF", " ff", "ff ", "0x", "+f", "é1", "ff\n",
            // Pairs of hex digits, but UTF-8: not a field oomtrace writes.
            "41", "c3a9",
        ] {
            assert_eq!(from_hex(hex), None, "{hex:?}");
        }
    }

    #[test]
    fn the_exact_bytes_are_used_only_for_their_own_string() {
        let bytes: &[u8] = b"a\xffb";
        // The string, its bytes, what is shown.
        type Case<'a> = (&'a str, Option<&'a [u8]>, &'a [u8]);
        let cases: [Case; 4] = [
            ("a\u{fffd}b", Some(bytes), bytes),
            ("a\u{fffd}b", None, "a\u{fffd}b".as_bytes()),
            // A hand-edited pair: the string is what JSON says, so it is what is shown.
            ("xyz", Some(bytes), b"xyz"),
            (
                "a\u{fffd}\u{fffd}b",
                Some(bytes),
                "a\u{fffd}\u{fffd}b".as_bytes(),
            ),
        ];
        for (text, raw, want) in cases {
            assert_eq!(exact(text, raw), want, "{text:?}");
        }
    }
}
