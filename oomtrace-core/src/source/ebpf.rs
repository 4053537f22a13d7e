//! The eBPF source: turns a record the kernel program wrote into a report. Pure: the record
//! and what is known about the host in, a report out.

use oomtrace_common::{
    CGROUP_MAX_DEPTH, CGROUP_NAME_LEN, MemcgLevel, OomEvent, STACK_DEPTH, TASK_COMM_LEN, field,
    kind, memcg_flag,
};

use crate::{
    kernel::{attach_mode::AttachMode, cgroups::CgroupMode},
    report::{
        Cgroup, KernelFacts, MemcgReading, OomContext, Report, SCHEMA, Trigger, Victim, kernel_text,
    },
    time::ClockPair,
};

/// What decoding needs besides the record.
#[derive(Clone, Copy, Debug)]
pub struct Decoding {
    pub clock: ClockPair,
    pub cgroups: CgroupMode,
    pub page_shift: u32,
    /// Whether `signal_generate` is attached, without which `kind` means nothing.
    pub kind_known: bool,
}

/// `PAGE_COUNTER_MAX` on 64-bit kernels is `LONG_MAX / PAGE_SIZE`: a counter at or above
/// this many bytes has no limit.
const NO_LIMIT_BYTES: u64 = i64::MAX as u64 - 4095;

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short { len: usize },
    UnknownAttachMode(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short { len } => write!(
                f,
                "a kernel record of {len} bytes is shorter than the {} an OomEvent needs",
                size_of::<OomEvent>()
            ),
            Self::UnknownAttachMode(raw) => {
                write!(f, "a kernel record names unknown attach mode {raw}")
            }
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

/// A NUL-terminated comm as text, with its bytes where they are not UTF-8.
fn comm(raw: &[u8; TASK_COMM_LEN]) -> (String, Option<Vec<u8>>) {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    kernel_text(&raw[..len])
}

/// Turns a kernel record into a report: the fields its `fields` bits vouch for, `null` for
/// the rest.
pub fn decode(event: &OomEvent, decoding: &Decoding) -> Result<Report, DecodeError> {
    let Decoding {
        clock,
        cgroups,
        page_shift,
        kind_known,
    } = *decoding;
    let mode = AttachMode::from_raw(event.attach_mode)
        .ok_or(DecodeError::UnknownAttachMode(event.attach_mode))?;
    let has = |bit: u32| event.fields & bit != 0;
    let rss = has(field::RSS);
    let (process_comm, process_comm_bytes) = has(field::PROCESS_COMM)
        .then(|| comm(&event.victim_process_comm))
        .unzip();
    let (thread_comm, thread_comm_bytes) = has(field::THREAD_COMM)
        .then(|| comm(&event.victim_thread_comm))
        .unzip();
    let (trigger_comm, trigger_comm_bytes) = comm(&event.trigger_comm);

    let victim = Victim {
        pid: has(field::TGID).then_some(event.victim_tgid),
        tid: has(field::TID).then_some(event.victim_tid),
        ns_pid: has(field::NS_PID).then_some(event.victim_ns_pid),
        comm: process_comm,
        comm_bytes: process_comm_bytes.flatten(),
        thread_comm,
        thread_comm_bytes: thread_comm_bytes.flatten(),
        uid: has(field::UID).then_some(event.victim_uid),
        oom_score_adj: has(field::OOM_SCORE_ADJ).then_some(event.oom_score_adj),
        rss_anon_bytes: rss.then_some(event.rss_anon_bytes),
        rss_file_bytes: rss.then_some(event.rss_file_bytes),
        rss_shmem_bytes: rss.then_some(event.rss_shmem_bytes),
        swap_bytes: has(field::SWAP).then_some(event.swap_bytes),
        total_vm_bytes: has(field::TOTAL_VM).then_some(event.total_vm_bytes),
        pgtables_bytes: has(field::PGTABLES).then_some(event.pgtables_bytes),
        is_container_init: None,
        ppid: has(field::PARENT).then_some(event.parent_tgid),
        // The parent's pid namespace is the victim's, or an ancestor of it.
        parent_in_container: has(field::PID_LEVELS)
            .then_some(event.parent_pid_level >= event.victim_pid_level),
        is_container_main: None,
    };
    let trigger = Trigger {
        pid: Some(event.trigger_tgid),
        tid: Some(event.trigger_tid),
        comm: Some(trigger_comm),
        comm_bytes: trigger_comm_bytes,
        cgroup_id: has(field::TRIGGER_CGROUP_ID).then_some(event.trigger_cgroup_id),
    };
    // A truncated path would name a different cgroup: better none than a wrong one.
    let path_ok = has(field::CGROUP_PATH) && !has(field::CGROUP_PATH_TRUNCATED);
    let (path, path_bytes) = path_ok
        .then(|| kernel_text(&cgroup_path_bytes(&event.cgroup_names, event.cgroup_depth)))
        .unzip();
    let cgroup = Cgroup {
        id: has(field::CGROUP_ID).then_some(event.cgroup_id),
        mode: (path.is_some() || has(field::CGROUP_ID))
            .then(|| cgroups.json_name())
            .flatten(),
        path,
        path_bytes: path_bytes.flatten(),
    };
    let oom_kind = (kind_known && has(field::KIND)).then_some(match event.kind {
        kind::KILLED => "killed",
        _ => "marked",
    });
    Ok(Report {
        schema: SCHEMA,
        event: "oom_kill",
        time: clock.wall_time(event.boot_ns),
        boot_ns: Some(event.boot_ns),
        victim,
        trigger,
        cgroup,
        container: None,
        oom: Some(OomContext {
            kind: oom_kind,
            ..OomContext::default()
        }),
        source: mode.name(),
        past: false,
        host: None,
        facts: Some(Box::new(facts(event, page_shift))),
    })
}

/// The memory cgroups, ids and stack the handler read, each kept only if read whole.
fn facts(event: &OomEvent, page_shift: u32) -> KernelFacts {
    let has = |bit: u32| event.fields & bit != 0;
    let memcgs = if has(field::MEMCGS) && !has(field::MEMCGS_TRUNCATED) {
        let levels = (event.memcg_levels as usize).min(event.memcgs.len());
        event.memcgs[..levels]
            .iter()
            .map(|level| memcg_reading(level, page_shift))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let trigger_levels = (event.trigger_memcg_levels as usize).min(event.trigger_memcg_ids.len());
    let path_levels = (event.cgroup_depth as usize).min(CGROUP_MAX_DEPTH);
    let stack_frames = (event.stack_bytes as usize / 8).min(STACK_DEPTH);
    KernelFacts {
        memcgs,
        trigger_memcg_ids: has(field::TRIGGER_MEMCGS)
            .then(|| event.trigger_memcg_ids[..trigger_levels].to_vec()),
        cgroup_ids: if has(field::CGROUP_PATH) && !has(field::CGROUP_PATH_TRUNCATED) {
            event.cgroup_ids[..path_levels].to_vec()
        } else {
            Vec::new()
        },
        stack: if has(field::STACK) {
            event.stack[..stack_frames].to_vec()
        } else {
            Vec::new()
        },
    }
}

/// One level in bytes; `None` unless its id, charge and limit were all read.
fn memcg_reading(level: &MemcgLevel, page_shift: u32) -> Option<MemcgReading> {
    let has = |bit: u32| level.flags & bit != 0;
    if !(has(memcg_flag::ID) && has(memcg_flag::MEMORY)) {
        return None;
    }
    let bytes = |pages: u64| pages.saturating_mul(1 << (page_shift & 63));
    let limit = |pages: u64| Some(bytes(pages)).filter(|&b| b < NO_LIMIT_BYTES);
    Some(MemcgReading {
        id: level.id,
        usage_bytes: bytes(level.usage_pages),
        limit_bytes: limit(level.max_pages),
        memsw: has(memcg_flag::MEMSW)
            .then(|| (bytes(level.memsw_usage_pages), limit(level.memsw_max_pages))),
        oom_group: has(memcg_flag::OOM_GROUP_READ).then(|| has(memcg_flag::OOM_GROUP)),
    })
}

/// Joins the leaf-first kernfs names the handler recorded into a path from the root.
pub fn cgroup_path(names: &[[u8; CGROUP_NAME_LEN]; CGROUP_MAX_DEPTH], depth: u32) -> String {
    kernel_text(&cgroup_path_bytes(names, depth)).0
}

fn cgroup_path_bytes(names: &[[u8; CGROUP_NAME_LEN]; CGROUP_MAX_DEPTH], depth: u32) -> Vec<u8> {
    let depth = (depth as usize).min(CGROUP_MAX_DEPTH);
    if depth == 0 {
        return b"/".to_vec();
    }
    let mut path = Vec::with_capacity(depth * 32);
    for name in names[..depth].iter().rev() {
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        path.push(b'/');
        path.extend_from_slice(&name[..len]);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{decoding, raw_event};
    use oomtrace_common::attach_mode;

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
        let report = decode(&event, &decoding(CgroupMode::V1)).unwrap();
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
            humantime::format_rfc3339_micros(report.time.unwrap()).to_string(),
            "2026-11-22T04:47:30.033410Z"
        );
    }

    #[test]
    fn fields_without_their_bit_are_null_not_zero() {
        let mut event = raw_event();
        event.fields = field::TID | field::THREAD_COMM | field::RSS;
        event.attach_mode = attach_mode::TRACEPOINT;
        let report = decode(&event, &decoding(CgroupMode::V1)).unwrap();
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
        let report = decode(&event, &decoding(CgroupMode::V2)).unwrap();
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
        event.attach_mode = 9;
        assert_eq!(
            decode(&event, &decoding(CgroupMode::V1)).unwrap_err(),
            DecodeError::UnknownAttachMode(9)
        );
    }

    #[test]
    fn comms_that_are_not_utf8_keep_their_bytes_for_the_human_view() {
        let mut event = raw_event();
        event.victim_process_comm = [0; 16];
        event.victim_process_comm[..4].copy_from_slice(b"a\xffb\x1b");
        let report = decode(&event, &decoding(CgroupMode::V1)).unwrap();
        assert_eq!(report.victim.comm.as_deref(), Some("a\u{fffd}b\x1b"));
        assert_eq!(
            report.victim.comm_bytes.as_deref(),
            Some(&b"a\xffb\x1b"[..])
        );
        assert_eq!(
            report.victim.thread_comm_bytes, None,
            "valid UTF-8 keeps no copy"
        );
    }
}
