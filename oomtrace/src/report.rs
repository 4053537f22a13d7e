//! The report: what oomtrace says about one OOM kill, whatever produced it. Decoding a raw
//! kernel record into a report is a pure function.

use std::time::{Duration, SystemTime};

use oomtrace_common::{
    CGROUP_MAX_DEPTH, CGROUP_NAME_LEN, OomEvent, Source, TASK_COMM_LEN, cgroup_mode, field,
};
use serde::Serialize;

/// Version of the JSON contract documented in the README.
pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub schema: u32,
    pub event: &'static str,
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// `CLOCK_BOOTTIME` nanoseconds; `null` where the source has only a coarser clock.
    pub boot_ns: Option<u64>,
    pub victim: Victim,
    pub trigger: Trigger,
    pub cgroup: Cgroup,
    pub container: Option<Container>,
    /// What the kernel's log says about the OOM itself; `null` where it was not read.
    pub oom: Option<OomContext>,
    pub source: &'static str,
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

#[derive(Clone, Debug, PartialEq, Serialize)]
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

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*time))
}

/// Ties the kernel's boot clock to the wall clock, read once per event.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub realtime: SystemTime,
    pub boottime_ns: u64,
}

impl Clock {
    pub fn now() -> Self {
        let boottime_ns = clock_ns(libc::CLOCK_BOOTTIME);
        Self {
            realtime: SystemTime::now(),
            boottime_ns,
        }
    }

    /// The wall-clock time of a `CLOCK_BOOTTIME` stamp.
    pub fn wall_time(&self, boot_ns: u64) -> SystemTime {
        if boot_ns <= self.boottime_ns {
            self.realtime - Duration::from_nanos(self.boottime_ns - boot_ns)
        } else {
            self.realtime + Duration::from_nanos(boot_ns - self.boottime_ns)
        }
    }
}

pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; both clocks exist on every supported kernel.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short { len: usize },
    UnknownSource(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short { len } => write!(
                f,
                "a kernel record of {len} bytes is shorter than the {} an OomEvent needs",
                size_of::<OomEvent>()
            ),
            Self::UnknownSource(raw) => write!(f, "a kernel record names unknown source {raw}"),
        }
    }
}

/// Reads an [`OomEvent`] out of ring buffer bytes.
pub fn read_event(bytes: &[u8]) -> Result<OomEvent, DecodeError> {
    if bytes.len() < size_of::<OomEvent>() {
        return Err(DecodeError::Short { len: bytes.len() });
    }
    // SAFETY: the length is checked; OomEvent is valid for any bit pattern, and
    // read_unaligned copes with the ring buffer's 8-byte alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<OomEvent>()) })
}

pub fn source_name(source: Source) -> &'static str {
    match source {
        Source::TpBtf => "tp_btf",
        Source::RawTp => "raw_tp",
        Source::Tracepoint => "tracepoint",
    }
}

fn comm(raw: &[u8; TASK_COMM_LEN]) -> String {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..len]).into_owned()
}

/// Turns a kernel record into a report: the fields its `fields` bits vouch for, `null` for
/// the rest.
pub fn decode(event: &OomEvent, clock: &Clock, cgroups: u32) -> Result<Report, DecodeError> {
    let source = Source::from_raw(event.source).ok_or(DecodeError::UnknownSource(event.source))?;
    let has = |bit: u32| event.fields & bit != 0;
    let rss = has(field::RSS);

    let victim = Victim {
        pid: has(field::TGID).then_some(event.victim_tgid),
        tid: has(field::TID).then_some(event.victim_tid),
        ns_pid: has(field::NS_PID).then_some(event.victim_ns_pid),
        comm: has(field::PROCESS_COMM).then(|| comm(&event.victim_process_comm)),
        thread_comm: has(field::THREAD_COMM).then(|| comm(&event.victim_thread_comm)),
        uid: has(field::UID).then_some(event.victim_uid),
        oom_score_adj: has(field::OOM_SCORE_ADJ).then_some(event.oom_score_adj),
        rss_anon_bytes: rss.then_some(event.rss_anon_bytes),
        rss_file_bytes: rss.then_some(event.rss_file_bytes),
        rss_shmem_bytes: rss.then_some(event.rss_shmem_bytes),
        swap_bytes: has(field::SWAP).then_some(event.swap_bytes),
        total_vm_bytes: has(field::TOTAL_VM).then_some(event.total_vm_bytes),
        pgtables_bytes: has(field::PGTABLES).then_some(event.pgtables_bytes),
        is_container_init: None,
    };
    let trigger = Trigger {
        pid: Some(event.trigger_tgid),
        tid: Some(event.trigger_tid),
        comm: Some(comm(&event.trigger_comm)),
        cgroup_id: has(field::TRIGGER_CGROUP_ID).then_some(event.trigger_cgroup_id),
    };
    // A truncated path would name a different cgroup: better none than a wrong one.
    let path_ok = has(field::CGROUP_PATH) && !has(field::CGROUP_PATH_TRUNCATED);
    let path = path_ok.then(|| cgroup_path(&event.cgroup_names, event.cgroup_depth));
    let cgroup = Cgroup {
        id: has(field::CGROUP_ID).then_some(event.cgroup_id),
        mode: (path.is_some() || has(field::CGROUP_ID))
            .then(|| mode_name(cgroups))
            .flatten(),
        path,
    };
    Ok(Report {
        schema: SCHEMA,
        event: "oom_kill",
        time: clock.wall_time(event.boot_ns),
        boot_ns: Some(event.boot_ns),
        victim,
        trigger,
        cgroup,
        container: None,
        oom: None,
        source: source_name(source),
    })
}

/// Joins the leaf-first kernfs names the handler recorded into a path from the root.
pub fn cgroup_path(names: &[[u8; CGROUP_NAME_LEN]; CGROUP_MAX_DEPTH], depth: u32) -> String {
    let depth = (depth as usize).min(CGROUP_MAX_DEPTH);
    if depth == 0 {
        return "/".to_owned();
    }
    let mut path = String::with_capacity(depth * 32);
    for name in names[..depth].iter().rev() {
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        path.push('/');
        path.push_str(&String::from_utf8_lossy(&name[..len]));
    }
    path
}

pub fn mode_name(cgroups: u32) -> Option<&'static str> {
    match cgroups {
        cgroup_mode::V1 => Some("v1"),
        cgroup_mode::V2 => Some("v2"),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn comm16(s: &str) -> [u8; 16] {
        let mut out = [0; 16];
        out[..s.len()].copy_from_slice(s.as_bytes());
        out
    }

    /// A record as the tp_btf handler writes it for a `dd` killed in a Docker container.
    pub(crate) fn raw_event() -> OomEvent {
        // Leaf first, as the handler records them; slots past the depth hold garbage.
        let mut cgroup_names = [[0xAA; CGROUP_NAME_LEN]; CGROUP_MAX_DEPTH];
        for (slot, name) in cgroup_names.iter_mut().zip([&b"4f2c\0"[..], b"docker\0"]) {
            slot[..name.len()].copy_from_slice(name);
        }
        OomEvent {
            boot_ns: 123_456_789,
            fields: !field::CGROUP_PATH_TRUNCATED,
            source: Source::TpBtf as u32,
            victim_tid: 10391,
            victim_tgid: 10390,
            victim_ns_pid: 7,
            victim_uid: 0,
            oom_score_adj: 500,
            cgroup_depth: 2,
            trigger_tid: 10391,
            trigger_tgid: 10390,
            rss_anon_bytes: 200 << 20,
            rss_file_bytes: 4096,
            rss_shmem_bytes: 0,
            swap_bytes: 0,
            total_vm_bytes: 211_000_000,
            pgtables_bytes: 450_560,
            cgroup_id: 4242,
            trigger_cgroup_id: 4242,
            victim_thread_comm: comm16("dd-worker"),
            victim_process_comm: comm16("dd"),
            trigger_comm: comm16("dd-worker"),
            cgroup_names,
        }
    }

    pub(crate) fn clock() -> Clock {
        Clock {
            realtime: humantime::parse_rfc3339("2026-11-22T04:47:31.000000Z").unwrap(),
            boottime_ns: 123_456_789 + 966_590_000,
        }
    }

    fn as_bytes(event: &OomEvent) -> Vec<u8> {
        // SAFETY: OomEvent is plain data.
        unsafe {
            std::slice::from_raw_parts(
                (event as *const OomEvent).cast::<u8>(),
                size_of::<OomEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_every_vouched_field() {
        let event = read_event(&as_bytes(&raw_event())).unwrap();
        let report = decode(&event, &clock(), cgroup_mode::V1).unwrap();
        let v = &report.victim;
        assert_eq!(
            (v.pid, v.tid, v.ns_pid),
            (Some(10390), Some(10391), Some(7))
        );
        assert_eq!(v.comm.as_deref(), Some("dd"));
        assert_eq!(v.thread_comm.as_deref(), Some("dd-worker"));
        assert_eq!((v.uid, v.oom_score_adj), (Some(0), Some(500)));
        assert_eq!(v.rss_anon_bytes, Some(200 << 20));
        assert_eq!(v.pgtables_bytes, Some(450_560));
        assert_eq!(report.cgroup.path.as_deref(), Some("/docker/4f2c"));
        assert_eq!(report.cgroup.id, Some(4242));
        assert_eq!(report.cgroup.mode, Some("v1"));
        assert_eq!(report.trigger.tid, Some(10391));
        assert_eq!(report.source, "tp_btf");
        assert_eq!(
            humantime::format_rfc3339_micros(report.time).to_string(),
            "2026-11-22T04:47:30.033410Z"
        );
    }

    #[test]
    fn fields_without_their_bit_are_null_not_zero() {
        let mut event = raw_event();
        event.fields = field::TID | field::THREAD_COMM | field::RSS;
        event.source = Source::Tracepoint as u32;
        let report = decode(&event, &clock(), cgroup_mode::V1).unwrap();
        let v = &report.victim;
        assert_eq!(v.tid, Some(10391));
        assert_eq!((v.pid, v.ns_pid, v.comm.as_deref()), (None, None, None));
        assert_eq!((v.uid, v.oom_score_adj, v.swap_bytes), (None, None, None));
        assert_eq!(report.cgroup, Cgroup::default());
        assert_eq!(report.source, "tracepoint");
    }

    #[test]
    fn a_truncated_cgroup_path_is_dropped_but_the_id_kept() {
        let mut event = raw_event();
        event.fields |= field::CGROUP_PATH_TRUNCATED;
        let report = decode(&event, &clock(), cgroup_mode::V2).unwrap();
        assert_eq!(report.cgroup.path, None);
        assert_eq!(report.cgroup.id, Some(4242));
        assert_eq!(report.cgroup.mode, Some("v2"));
    }

    #[test]
    fn joins_recorded_names_root_first() {
        let mut names = [[0u8; CGROUP_NAME_LEN]; CGROUP_MAX_DEPTH];
        for (slot, name) in names.iter_mut().zip([
            "cri-containerd-ab.scope",
            "kubepods-pod1.slice",
            "kubepods.slice",
        ]) {
            slot[..name.len()].copy_from_slice(name.as_bytes());
        }
        assert_eq!(
            cgroup_path(&names, 3),
            "/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope"
        );
        assert_eq!(cgroup_path(&names, 1), "/cri-containerd-ab.scope");
        assert_eq!(cgroup_path(&names, 0), "/", "a task in the root cgroup");
        assert_eq!(
            cgroup_path(&names, 99).matches('/').count(),
            CGROUP_MAX_DEPTH,
            "depth is clamped"
        );
    }

    #[test]
    fn rejects_short_and_foreign_records() {
        assert!(matches!(
            read_event(&[0; 16]),
            Err(DecodeError::Short { len: 16 })
        ));
        let mut event = raw_event();
        event.source = 9;
        assert_eq!(
            decode(&event, &clock(), 1).unwrap_err(),
            DecodeError::UnknownSource(9)
        );
    }

    #[test]
    fn wall_time_handles_stamps_after_the_clock_was_read() {
        let clock = clock();
        let later = clock.wall_time(clock.boottime_ns + 1_000_000_000);
        assert_eq!(
            later.duration_since(clock.realtime).unwrap(),
            Duration::from_secs(1)
        );
    }
}
