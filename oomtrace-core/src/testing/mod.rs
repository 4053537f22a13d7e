//! What the tests of every crate share: one realistic kernel record and the report it decodes
//! to, for unit tests ([`report`]), and the rule by which a test that cannot run here says so
//! ([`skips`]). Built for this crate's tests and, with the `testing` feature, for the others'.

pub mod kmsg;
pub mod skips;

use oomtrace_common::{
    CGROUP_MAX_DEPTH, CGROUP_NAME_LEN, MEMCG_MAX_DEPTH, MemcgLevel, OomEvent, STACK_DEPTH,
    attach_mode, field, kind, memcg_flag,
};

use crate::{
    attribution::userspace_killer::{UserspaceKiller, UserspaceOomKill, UserspaceVictim},
    kernel::cgroups::CgroupMode,
    report::Report,
    source::ebpf,
    time::ClockPair,
};

/// A userspace OOM killer's kill as the kernel's record of its signal gives it: `killer`
/// (pid 300) sent `signal` to `victim`.
pub fn userspace_kill(killer: &str, signal: &'static str, victim: u32) -> UserspaceOomKill {
    UserspaceOomKill {
        schema: 1,
        event: "userspace_oom_kill",
        time: None,
        boot_ns: Some(1),
        killer: UserspaceKiller {
            name: killer.into(),
            pid: 300,
            uid: Some(0),
            via_cgroup_kill: false,
        },
        signal: Some(signal),
        victim: UserspaceVictim {
            pid: Some(victim),
            tid: victim,
            ..Default::default()
        },
        container: None,
        acted_on: None,
        host: None,
    }
}

pub fn comm16(s: &str) -> [u8; 16] {
    let mut out = [0; 16];
    out[..s.len()].copy_from_slice(s.as_bytes());
    out
}

/// A record as the tp_btf handler writes it for a `dd` killed in a Docker container whose
/// 32 MiB limit it filled (cgroup 4242, `/docker/4f2c`, under `/docker`, 100).
pub fn raw_event() -> OomEvent {
    // Leaf first, as the handler records them; slots past the depth hold garbage.
    let mut cgroup_names = [[0xAA; CGROUP_NAME_LEN]; CGROUP_MAX_DEPTH];
    for (slot, name) in cgroup_names.iter_mut().zip([&b"4f2c\0"[..], b"docker\0"]) {
        slot[..name.len()].copy_from_slice(name);
    }
    let mut cgroup_ids = [0xAAAA; CGROUP_MAX_DEPTH];
    cgroup_ids[..2].copy_from_slice(&[4242, 100]);
    let mut memcgs = [MemcgLevel::default(); MEMCG_MAX_DEPTH];
    let read = memcg_flag::ID | memcg_flag::MEMORY | memcg_flag::MEMSW;
    memcgs[0] = MemcgLevel {
        id: 4242,
        usage_pages: 8192,
        max_pages: 8192,
        memsw_usage_pages: 8192,
        memsw_max_pages: 16384,
        flags: read,
        _pad: 0,
    };
    memcgs[1] = MemcgLevel {
        id: 100,
        usage_pages: 10_000,
        max_pages: (i64::MAX as u64) / 4096,
        memsw_usage_pages: 10_000,
        memsw_max_pages: (i64::MAX as u64) / 4096,
        flags: read,
        _pad: 0,
    };
    let mut trigger_memcg_ids = [0; MEMCG_MAX_DEPTH];
    trigger_memcg_ids[..2].copy_from_slice(&[4242, 100]);
    OomEvent {
        boot_ns: 123_456_789,
        fields: !(field::CGROUP_PATH_TRUNCATED | field::MEMCGS_TRUNCATED | field::STACK),
        attach_mode: attach_mode::TP_BTF,
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
        parent_tgid: 10201,
        victim_pid_level: 1,
        parent_pid_level: 1,
        cgroup_ids,
        kind: kind::KILLED,
        memcg_levels: 2,
        trigger_memcg_levels: 2,
        stack_bytes: 0,
        memcgs,
        trigger_memcg_ids,
        stack: [0; STACK_DEPTH],
    }
}

pub fn clock() -> ClockPair {
    ClockPair {
        realtime: humantime::parse_rfc3339("2026-11-22T04:47:31.000000Z").unwrap(),
        kernel_ns: 123_456_789 + 966_590_000,
    }
}

/// How the fixture host decodes: 4 KiB pages, `signal_generate` attached.
pub fn decoding(cgroups: CgroupMode) -> ebpf::Decoding {
    ebpf::Decoding {
        clock: clock(),
        cgroups,
        page_shift: 12,
        kind_known: true,
    }
}

/// `raw_event()` decoded on a cgroup v1 host.
pub fn report() -> Report {
    ebpf::decode(&raw_event(), &decoding(CgroupMode::V1)).expect("the fixture decodes")
}
