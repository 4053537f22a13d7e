//! The report: what oomtrace says about one OOM kill, whatever source saw it. The sources
//! (`crate::source`) build it, attribution completes it, and the output renders it.

use std::time::SystemTime;

use serde::Serialize;

/// Version of the JSON contract documented in the README.
pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub schema: u32,
    pub event: &'static str,
    /// Wall-clock time of the kill; `null` if the wall clock cannot place it.
    #[serde(serialize_with = "rfc3339")]
    pub time: Option<SystemTime>,
    /// `CLOCK_BOOTTIME` nanoseconds; `null` where the source has only a coarser clock.
    pub boot_ns: Option<u64>,
    pub victim: Victim,
    pub trigger: Trigger,
    pub cgroup: Cgroup,
    pub container: Option<Container>,
    /// What the kernel's log says about the OOM itself; `null` where it was not read.
    pub oom: Option<OomContext>,
    pub source: &'static str,
    /// Kernel strings that were not valid UTF-8, byte for byte.
    #[serde(skip)]
    pub raw: RawText,
}

/// The exact bytes of kernel-given strings that were not valid UTF-8. JSON carries such a
/// string with U+FFFD in place of each invalid sequence; the human view shows these bytes
/// escaped one by one. `None` where the string was valid UTF-8 (or absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawText {
    pub comm: Option<Vec<u8>>,
    pub thread_comm: Option<Vec<u8>>,
    pub trigger_comm: Option<Vec<u8>>,
    pub cgroup_path: Option<Vec<u8>>,
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

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OomContext {
    /// `CONSTRAINT_MEMCG`, `CONSTRAINT_NONE`, ...
    pub constraint: Option<String>,
    /// The cgroup whose limit was hit: the victim's own, or an ancestor's (a pod's slice).
    pub memcg: Option<String>,
    /// The whole machine ran out of memory.
    pub global: bool,
    /// Killed as a member of a `memory.oom.group` cgroup.
    pub group_kill: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Victim {
    /// The process id (tgid) users know.
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    /// The pid inside the victim's own pid namespace (1 for a container's init).
    pub ns_pid: Option<u32>,
    /// The process (thread group leader) name.
    pub comm: Option<String>,
    pub thread_comm: Option<String>,
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
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Trigger {
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup_id: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cgroup {
    pub id: Option<u64>,
    /// The victim's memory cgroup, relative to its hierarchy's root.
    pub path: Option<String>,
    /// `v1` or `v2`: the hierarchy `path` is in.
    pub mode: Option<&'static str>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Container {
    pub runtime: &'static str,
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub main_pid: Option<u32>,
    /// Docker's restart policy (`always`, `on-failure`, `unless-stopped`), if any.
    pub restart_policy: Option<String>,
    /// The container's memory limit, when the runtime says.
    pub memory_limit_bytes: Option<u64>,
    pub pod: Option<Pod>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pod {
    pub uid: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub qos: Option<&'static str>,
}

fn rfc3339<S: serde::Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => s.collect_str(&humantime::format_rfc3339_micros(*time)),
        None => s.serialize_none(),
    }
}
