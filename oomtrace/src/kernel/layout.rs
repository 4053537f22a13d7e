//! Kernel-layout discovery: fills [`KernelLayout`] from the running kernel's BTF and the
//! tracepoint's tracefs format, and records every offset it could not find together with the
//! report fields that will be `null` because of it. Nothing is ever guessed.

use oomtrace_common::{ABSENT, KernelLayout, tp_args};

use oomtrace_core::kernel::{cgroups::CgroupMode, tracefs::Format};

use crate::kernel::btf::{Btf, Kind, TypeId};

/// A kernel fact a field needs and the running kernel does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// What was looked for, e.g. `task_struct.thread_pid`.
    pub what: String,
    /// Why it is unusable.
    pub why: &'static str,
    /// The report fields that stay `null` for lack of it.
    pub affects: &'static str,
}

#[derive(Clone, Copy)]
enum Expect {
    Pointer,
    Bytes(u32),
    /// An array of `count` elements, each `size` bytes.
    Array {
        size: u32,
        count: u32,
    },
    Any,
}

/// Looks members up in BTF and collects what is missing.
struct Finder<'a> {
    btf: &'a Btf,
    structs: Vec<(&'static str, Option<TypeId>)>,
    missing: Vec<Missing>,
}

impl<'a> Finder<'a> {
    fn new(btf: &'a Btf) -> Self {
        Self {
            btf,
            structs: Vec::new(),
            missing: Vec::new(),
        }
    }

    fn struct_id(&mut self, name: &'static str) -> Option<TypeId> {
        if let Some(&(_, id)) = self.structs.iter().find(|(n, _)| *n == name) {
            return id;
        }
        let id = self.btf.find(Kind::Struct, name);
        self.structs.push((name, id));
        id
    }

    fn lack(&mut self, what: String, why: &'static str, affects: &'static str) -> u32 {
        if !self.missing.iter().any(|m| m.what == what) {
            self.missing.push(Missing { what, why, affects });
        }
        ABSENT
    }

    /// Byte offset of `member` in `strukt`, checked against `expect`; the first name that
    /// exists wins (members get renamed, e.g. kernfs_node.parent became __parent in 6.15).
    fn offset(
        &mut self,
        strukt: &'static str,
        members: &[&'static str],
        expect: Expect,
        affects: &'static str,
    ) -> u32 {
        let what = format!("{strukt}.{}", members[0]);
        let Some(id) = self.struct_id(strukt) else {
            return self.lack(format!("struct {strukt}"), "not in BTF", affects);
        };
        let Some(member) = members.iter().find_map(|m| self.btf.member(id, m)) else {
            return self.lack(what, "not in BTF", affects);
        };
        let Some(offset) = member.byte_offset() else {
            return self.lack(what, "is a bitfield", affects);
        };
        let fits = match expect {
            Expect::Pointer => self.btf.is_pointer(member.type_id),
            Expect::Bytes(n) => self.btf.size(member.type_id) == Some(n),
            Expect::Array { size, count } => self
                .btf
                .array(member.type_id)
                .is_some_and(|(elem, n)| n == count && self.btf.size(elem) == Some(size)),
            Expect::Any => true,
        };
        if !fits {
            return self.lack(what, "has an unexpected type", affects);
        }
        offset
    }

    fn member_type(&self, strukt: TypeId, member: &str) -> Option<TypeId> {
        self.btf.member(strukt, member).map(|m| m.type_id)
    }
}

/// Everything discovered about the running kernel.
#[derive(Clone, Debug)]
pub struct Discovery {
    pub layout: KernelLayout,
    pub missing: Vec<Missing>,
}

/// Fills the struct offsets and the `mark_victim` prototype from BTF.
pub fn from_btf(btf: &Btf, cgroups: CgroupMode, page_shift: u32) -> Discovery {
    let mut f = Finder::new(btf);
    let mut l = KernelLayout {
        cgroup_mode: cgroups.as_raw(),
        page_shift,
        ..KernelLayout::UNKNOWN
    };

    l.tp_args = match btf.typedef_proto_arity("btf_trace_mark_victim") {
        // `void *__data` plus the tracepoint's arguments.
        Some(3) => tp_args::TASK,
        Some(2) => tp_args::PID_ONLY,
        _ => {
            f.lack(
                "typedef btf_trace_mark_victim".into(),
                "not in BTF, or with an unknown prototype",
                "every victim field in tp_btf and raw_tp modes",
            );
            tp_args::UNKNOWN
        }
    };

    let ptr = Expect::Pointer;
    l.task_pid = f.offset("task_struct", &["pid"], Expect::Bytes(4), "victim.tid");
    l.task_tgid = f.offset("task_struct", &["tgid"], Expect::Bytes(4), "victim.pid");
    l.task_comm = f.offset(
        "task_struct",
        &["comm"],
        Expect::Array { size: 1, count: 16 },
        "victim.comm, victim.thread_comm",
    );
    l.task_group_leader = f.offset("task_struct", &["group_leader"], ptr, "victim.comm");
    l.task_real_parent = f.offset(
        "task_struct",
        &["real_parent"],
        ptr,
        "victim.ppid, victim.parent_in_container",
    );
    l.task_real_cred = f.offset("task_struct", &["real_cred"], ptr, "victim.uid");
    l.cred_uid = kuid_offset(&mut f);
    l.task_signal = f.offset("task_struct", &["signal"], ptr, "victim.oom_score_adj");
    l.signal_oom_score_adj = f.offset(
        "signal_struct",
        &["oom_score_adj"],
        Expect::Bytes(2),
        "victim.oom_score_adj",
    );

    const MM: &str =
        "victim.rss_*_bytes, victim.swap_bytes, victim.total_vm_bytes, victim.pgtables_bytes";
    l.task_mm = f.offset("task_struct", &["mm"], ptr, MM);
    (l.mm_rss_stat, l.mm_rss_stride, l.mm_rss_value) = rss_layout(&mut f);
    l.mm_total_vm = f.offset(
        "mm_struct",
        &["total_vm"],
        Expect::Bytes(8),
        "victim.total_vm_bytes",
    );
    l.mm_pgtables_bytes = f.offset(
        "mm_struct",
        &["pgtables_bytes"],
        Expect::Bytes(8),
        "victim.pgtables_bytes",
    );

    const NS_PID: &str = "victim.ns_pid";
    l.task_thread_pid = f.offset("task_struct", &["thread_pid"], ptr, NS_PID);
    l.pid_level = f.offset("pid", &["level"], Expect::Bytes(4), NS_PID);
    l.pid_numbers = f.offset("pid", &["numbers"], Expect::Any, NS_PID);
    l.upid_nr = f.offset("upid", &["nr"], Expect::Bytes(4), NS_PID);
    l.upid_size = match f.struct_id("upid").and_then(|id| btf.size(id)) {
        Some(size) => size,
        None => f.lack("struct upid".into(), "has no size in BTF", NS_PID),
    };

    const CGROUP: &str = "cgroup.id, cgroup.path, trigger.cgroup_id";
    l.task_cgroups = f.offset("task_struct", &["cgroups"], ptr, CGROUP);
    l.css_set_subsys = f.offset("css_set", &["subsys"], Expect::Any, CGROUP);
    l.css_set_dfl_cgrp = f.offset("css_set", &["dfl_cgrp"], ptr, CGROUP);
    l.css_cgroup = f.offset("cgroup_subsys_state", &["cgroup"], ptr, CGROUP);
    l.cgroup_kn = f.offset("cgroup", &["kn"], ptr, CGROUP);
    l.kn_name = f.offset("kernfs_node", &["name"], ptr, "cgroup.path");
    l.kn_parent = f.offset("kernfs_node", &["__parent", "parent"], ptr, "cgroup.path");
    // Before 5.5 `id` was a union of ino and generation; only the plain u64 is trusted.
    l.kn_id = f.offset("kernfs_node", &["id"], Expect::Bytes(8), "cgroup.id");
    l.memory_cgrp_id = match btf.enum_value("cgroup_subsys_id", "memory_cgrp_id") {
        Some(v) if (0..64).contains(&v) => v as u32,
        _ => f.lack(
            "enum cgroup_subsys_id.memory_cgrp_id".into(),
            "not in BTF",
            CGROUP,
        ),
    };
    // subsys[] is read on either hierarchy: it is where the task's memory controller state is.
    if l.css_set_subsys != ABSENT && l.memory_cgrp_id != ABSENT {
        let in_bounds = f
            .struct_id("css_set")
            .and_then(|id| f.member_type(id, "subsys"))
            .and_then(|t| btf.array(t))
            .is_some_and(|(elem, count)| btf.is_pointer(elem) && l.memory_cgrp_id < count);
        if !in_bounds {
            l.css_set_subsys = f.lack(
                "css_set.subsys[memory_cgrp_id]".into(),
                "is not an array of pointers that holds the memory controller",
                CGROUP,
            );
        }
    }
    memcg_layout(&mut f, &mut l, cgroups);
    if cgroups == CgroupMode::None {
        f.lack(
            "a memory cgroup hierarchy".into(),
            "is not mounted (no memory controller in /proc/self/cgroup)",
            CGROUP,
        );
    }

    Discovery {
        layout: l,
        missing: f.missing,
    }
}

/// What the handler reads of each memory cgroup from the victim's up: its parent, its charge
/// and limit (`page_counter`s), memory+swap on v1, `memory.oom.group` on v2.
fn memcg_layout(f: &mut Finder<'_>, l: &mut KernelLayout, cgroups: CgroupMode) {
    const LIMIT: &str = "oom.memcg, oom.memcg_limit_bytes, oom.memcg_usage_bytes";
    const GROUP: &str = "oom.id of memory.oom.group kills";
    let ptr = Expect::Pointer;
    l.css_parent = f.offset("cgroup_subsys_state", &["parent"], ptr, LIMIT);
    // The handler takes the css pointer for the mem_cgroup one, which holds only if the css
    // comes first.
    match f.offset("mem_cgroup", &["css"], Expect::Any, LIMIT) {
        0 | ABSENT => {}
        _ => l.css_parent = f.lack("mem_cgroup.css".into(), "is not its first member", LIMIT),
    }
    l.memcg_memory = f.offset("mem_cgroup", &["memory"], Expect::Any, LIMIT);
    l.page_counter_max = f.offset("page_counter", &["max", "limit"], Expect::Bytes(8), LIMIT);
    l.page_counter_usage = atomic_counter_offset(f, "page_counter", "usage", LIMIT);
    if cgroups == CgroupMode::V1 {
        l.memcg_memsw = f.offset("mem_cgroup", &["memsw"], Expect::Any, LIMIT);
    }
    if cgroups == CgroupMode::V2 {
        l.memcg_oom_group = f.offset("mem_cgroup", &["oom_group"], Expect::Bytes(1), GROUP);
    }
}

/// The offset of the counter inside an `atomic_long_t` member: `{ s64 counter; }`.
fn atomic_counter_offset(
    f: &mut Finder<'_>,
    strukt: &'static str,
    member: &'static str,
    affects: &'static str,
) -> u32 {
    let outer = f.offset(strukt, &[member], Expect::Bytes(8), affects);
    if outer == ABSENT {
        return ABSENT;
    }
    let counter = f
        .struct_id(strukt)
        .and_then(|id| f.member_type(id, member))
        .and_then(|atomic| f.btf.member(atomic, "counter"))
        .and_then(|m| m.byte_offset());
    match counter {
        Some(counter) => outer + counter,
        None => f.lack(format!("{strukt}.{member}.counter"), "not in BTF", affects),
    }
}

/// `cred.uid` is a `kuid_t`, a struct wrapping `uid_t val`.
fn kuid_offset(f: &mut Finder<'_>) -> u32 {
    let uid = f.offset("cred", &["uid"], Expect::Bytes(4), "victim.uid");
    if uid == ABSENT {
        return ABSENT;
    }
    let val = f
        .struct_id("cred")
        .and_then(|cred| f.member_type(cred, "uid"))
        .and_then(|kuid| f.btf.member(kuid, "val"))
        .and_then(|m| m.byte_offset());
    match val {
        Some(val) => uid + val,
        None => f.lack("kuid_t.val".into(), "not in BTF", "victim.uid"),
    }
}

/// Where counter `i` of `mm->rss_stat` lives: `(base, stride, value offset)`. From 6.2 it is
/// `struct percpu_counter rss_stat[NR_MM_COUNTERS]`; before, `struct mm_rss_stat { atomic_long_t
/// count[NR_MM_COUNTERS]; }`.
fn rss_layout(f: &mut Finder<'_>) -> (u32, u32, u32) {
    const RSS: &str = "victim.rss_*_bytes, victim.swap_bytes";
    let base = f.offset("mm_struct", &["rss_stat"], Expect::Any, RSS);
    if base == ABSENT {
        return (ABSENT, ABSENT, ABSENT);
    }
    let btf = f.btf;
    let Some(rss_type) = f
        .struct_id("mm_struct")
        .and_then(|mm| f.member_type(mm, "rss_stat"))
    else {
        return (ABSENT, ABSENT, ABSENT);
    };
    // Both layouts end in an array of at least four s64 counters.
    let counters = |array: TypeId, extra: u32| -> Option<(u32, u32, u32)> {
        let (elem, count) = btf.array(array)?;
        if count < 4 {
            return None;
        }
        let stride = btf.size(elem)?;
        let value = ["count", "counter"]
            .iter()
            .find_map(|name| btf.member(elem, name))
            .filter(|m| btf.size(m.type_id) == Some(8))?
            .byte_offset()?;
        Some((base + extra, stride, value))
    };
    let found = if btf.array(rss_type).is_some() {
        counters(rss_type, 0)
    } else {
        btf.member(rss_type, "count")
            .and_then(|m| counters(m.type_id, m.byte_offset()?))
    };
    match found {
        Some(found) => found,
        None => {
            let what = "mm_struct.rss_stat".to_string();
            let _ = f.lack(what, "has neither known counter layout", RSS);
            (ABSENT, ABSENT, ABSENT)
        }
    }
}

/// Where `signal/signal_generate`'s record keeps the signal, its code and the target's thread
/// id, from its tracefs format. Something missing leaves `oom.kind` null in tracepoint mode.
pub fn from_signal_format(format: &Format, layout: &mut KernelLayout) -> Vec<Missing> {
    let mut missing = Vec::new();
    let mut take = |name: &'static str| -> u32 {
        match format.field(name) {
            Some(field) if field.size == 4 => field.offset,
            found => {
                missing.push(Missing {
                    what: format!("signal_generate record field {name}"),
                    why: if found.is_some() {
                        "has an unexpected size"
                    } else {
                        "is missing"
                    },
                    affects: "oom.kind in tracepoint mode",
                });
                ABSENT
            }
        }
    };
    layout.tp_signal_sig = take("sig");
    layout.tp_signal_code = take("code");
    layout.tp_signal_pid = take("pid");
    missing
}

/// What the classic tracepoint's record offers, from its tracefs format: fills the `tp_*`
/// offsets, checking each field's size, and says which prototype the kernel has.
pub fn from_tracepoint_format(format: &Format, layout: &mut KernelLayout) -> (u32, Vec<Missing>) {
    let mut missing = Vec::new();
    let mut take = |name: &'static str, size: u32, affects: &'static str| -> u32 {
        match format.field(name) {
            Some(field) if field.size == size => field.offset,
            Some(_) => {
                missing.push(Missing {
                    what: format!("mark_victim record field {name}"),
                    why: "has an unexpected size",
                    affects,
                });
                ABSENT
            }
            None => ABSENT,
        }
    };
    layout.tp_pid = take("pid", 4, "victim.tid");
    layout.tp_comm_loc = take("comm", 4, "victim.thread_comm");
    layout.tp_total_vm = take("total_vm", 8, "victim.total_vm_bytes");
    layout.tp_anon_rss = take("anon_rss", 8, "victim.rss_anon_bytes");
    layout.tp_file_rss = take("file_rss", 8, "victim.rss_file_bytes");
    layout.tp_shmem_rss = take("shmem_rss", 8, "victim.rss_shmem_bytes");
    layout.tp_uid = take("uid", 4, "victim.uid");
    layout.tp_pgtables = take("pgtables", 8, "victim.pgtables_bytes");
    layout.tp_oom_score_adj = take("oom_score_adj", 2, "victim.oom_score_adj");
    let args = if format.field("comm").is_some() {
        tp_args::TASK
    } else if format.field("pid").is_some() {
        tp_args::PID_ONLY
    } else {
        tp_args::UNKNOWN
    };
    (args, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::btf::VMLINUX_BTF;

    #[test]
    fn reads_tracepoint_offsets_for_both_prototypes() {
        let rich = oomtrace_core::kernel::tracefs::parse_format(include_str!(
            "../../../oomtrace-core/tests/fixtures/mark_victim-format-6.18.txt"
        ))
        .unwrap();
        let mut layout = KernelLayout::UNKNOWN;
        let (args, missing) = from_tracepoint_format(&rich, &mut layout);
        assert_eq!(args, tp_args::TASK);
        assert!(missing.is_empty());
        assert_eq!(
            (
                layout.tp_pid,
                layout.tp_comm_loc,
                layout.tp_uid,
                layout.tp_pgtables
            ),
            (8, 12, 48, 56)
        );
        assert_eq!(layout.tp_oom_score_adj, 64);

        let old = oomtrace_core::kernel::tracefs::parse_format(include_str!(
            "../../../oomtrace-core/tests/fixtures/mark_victim-format-pid-only-reconstructed.txt"
        ))
        .unwrap();
        let mut layout = KernelLayout::UNKNOWN;
        let (args, missing) = from_tracepoint_format(&old, &mut layout);
        assert_eq!(args, tp_args::PID_ONLY);
        assert!(missing.is_empty());
        assert_eq!(layout.tp_pid, 8);
        assert_eq!(layout.tp_comm_loc, ABSENT);
        assert_eq!(layout.tp_oom_score_adj, ABSENT);
    }

    #[test]
    fn a_field_of_the_wrong_size_is_missing_not_guessed() {
        let text = "name: mark_victim\nID: 1\n\tfield:int oom_score_adj;\toffset:64;\tsize:4;\tsigned:1;\n\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n";
        let format = oomtrace_core::kernel::tracefs::parse_format(text).unwrap();
        let mut layout = KernelLayout::UNKNOWN;
        let (_, missing) = from_tracepoint_format(&format, &mut layout);
        assert_eq!(layout.tp_oom_score_adj, ABSENT);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].what.contains("oom_score_adj"));
    }

    /// Every offset oomtrace needs must be in this host's BTF. CI runs on the project's
    /// machines, which have BTF; elsewhere a kernel without it is reported and skipped.
    #[test]
    fn host_btf_has_every_needed_field() {
        let btf = match Btf::from_sys_fs() {
            Ok(btf) => btf,
            Err(err) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("skipped: {VMLINUX_BTF} unusable here ({err})");
                return;
            }
            Err(err) => panic!("{VMLINUX_BTF} is required in CI: {err}"),
        };
        for mode in [CgroupMode::V1, CgroupMode::V2] {
            let discovery = from_btf(&btf, mode, 12);
            if let Some(m) = discovery.missing.first() {
                panic!(
                    "host BTF lacks {} ({}), so {} would be null",
                    m.what, m.why, m.affects
                );
            }
            let l = discovery.layout;
            assert_eq!(
                l.tp_args,
                tp_args::TASK,
                "this host has the 6.9+ mark_victim"
            );
            for (name, value) in [
                ("css_parent", l.css_parent),
                ("memcg_memory", l.memcg_memory),
                ("page_counter_usage", l.page_counter_usage),
                ("page_counter_max", l.page_counter_max),
                ("task_pid", l.task_pid),
                ("task_tgid", l.task_tgid),
                ("task_comm", l.task_comm),
                ("cred_uid", l.cred_uid),
                ("mm_rss_stride", l.mm_rss_stride),
                ("upid_size", l.upid_size),
                ("kn_parent", l.kn_parent),
                ("memory_cgrp_id", l.memory_cgrp_id),
            ] {
                assert_ne!(value, ABSENT, "{name}");
            }
            // tgid follows pid directly in every kernel's task_struct.
            assert_eq!(l.task_tgid, l.task_pid + 4);
            // upid is { int nr; struct pid_namespace *ns; }.
            assert_eq!((l.upid_nr, l.upid_size), (0, 16));
            // memsw exists only on v1, oom_group only means something on v2.
            assert_eq!(l.memcg_memsw != ABSENT, mode == CgroupMode::V1);
            assert_eq!(l.memcg_oom_group != ABSENT, mode == CgroupMode::V2);
        }
    }

    #[test]
    fn reads_signal_generate_offsets() {
        let format = oomtrace_core::kernel::tracefs::parse_format(include_str!(
            "../../../oomtrace-core/tests/fixtures/signal_generate-format-6.18.txt"
        ))
        .unwrap();
        let mut layout = KernelLayout::UNKNOWN;
        assert!(from_signal_format(&format, &mut layout).is_empty());
        assert_eq!(
            (
                layout.tp_signal_sig,
                layout.tp_signal_code,
                layout.tp_signal_pid
            ),
            (8, 16, 36)
        );
        let short = oomtrace_core::kernel::tracefs::parse_format(
            "name: signal_generate\nID: 1\n\tfield:int sig;\toffset:8;\tsize:4;\tsigned:1;\n",
        )
        .unwrap();
        let mut layout = KernelLayout::UNKNOWN;
        let missing = from_signal_format(&short, &mut layout);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert_eq!(layout.tp_signal_pid, ABSENT);
    }
}
