//! Turns what the host offers into a plan: the layout to pass in, and the attach modes to try
//! in order, each unavailable one with its reason.

use std::path::Path;

use oomtrace_common::{ABSENT, KernelLayout, cgroup_mode, tp_args};

use oomtrace_core::kernel::{attach_mode::AttachMode, cgroups::CgroupMode, tracefs};

use crate::kernel::{
    btf::{Btf, Kind, TypeId, VMLINUX_BTF},
    layout::{self, Missing},
};

pub struct Plan {
    pub layout: KernelLayout,
    pub cgroup_mode: CgroupMode,
    /// Modes to try, richest first.
    pub modes: Vec<AttachMode>,
    /// Modes ruled out before trying, and why.
    pub unavailable: Vec<(AttachMode, String)>,
    /// Offsets the kernel lacks, for the tp_btf and raw_tp modes.
    pub missing_btf: Vec<Missing>,
    /// Record fields the classic tracepoint lacks or has in an unexpected form.
    pub missing_tracepoint: Vec<Missing>,
    pub tracepoint_available: bool,
    /// What tp_btf attaches to: the BTF ids of the tracepoints' `btf_trace_*` typedefs.
    pub btf_targets: BtfTargets,
    /// What the classic tracepoint mode attaches to: the tracepoints' ids in tracefs.
    pub tracepoint_ids: TracepointIds,
}

/// The tracefs ids (`ID:` of each `format`) of the two tracepoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointIds {
    pub mark_victim: Option<u32>,
    pub signal_generate: Option<u32>,
}

/// The kernel BTF type ids `tp_btf` programs name as their attach target, looked up while the
/// BTF is open so nothing else has to parse it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfTargets {
    pub mark_victim: Option<TypeId>,
    pub signal_generate: Option<TypeId>,
}

impl BtfTargets {
    fn of(btf: &Btf) -> Self {
        Self {
            mark_victim: btf.find(Kind::Typedef, "btf_trace_mark_victim"),
            signal_generate: btf.find(Kind::Typedef, "btf_trace_signal_generate"),
        }
    }
}

pub fn page_shift() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        (page as u64).trailing_zeros()
    } else {
        12
    }
}

/// Builds the plan. `only` restricts it to one mode; `btf_path` overrides the BTF location;
/// `pid_only` makes the classic tracepoint read nothing but the thread id.
pub fn build(only: Option<AttachMode>, btf_path: Option<&Path>, pid_only: bool) -> Plan {
    let cgroup_mode = CgroupMode::of_host();
    let mut unavailable = Vec::new();

    let btf = match btf_path {
        Some(path) => Btf::from_file(path),
        None => Btf::from_sys_fs(),
    };
    let (mut layout, missing_btf, btf_reason) = match &btf {
        Ok(btf) => {
            let discovery = layout::from_btf(btf, cgroup_mode, page_shift());
            let reason = (discovery.layout.tp_args == tp_args::UNKNOWN)
                .then(|| "the kernel's BTF does not describe mark_victim's arguments".to_string());
            (discovery.layout, discovery.missing, reason)
        }
        Err(err) => {
            let path = btf_path.map_or(VMLINUX_BTF.into(), |p| p.display().to_string());
            let why = format!(
                "no usable kernel BTF at {path} ({err}); the kernel needs CONFIG_DEBUG_INFO_BTF"
            );
            let layout = KernelLayout {
                cgroup_mode: cgroup_mode.as_raw(),
                page_shift: page_shift(),
                ..KernelLayout::UNKNOWN
            };
            (layout, Vec::new(), Some(why))
        }
    };

    let mut missing_tracepoint = Vec::new();
    let mut tracepoint_ids = TracepointIds::default();
    let tracepoint_reason = match tracefs::root() {
        None => Some(tracefs::NOT_MOUNTED.to_string()),
        Some(root) => {
            let path = tracefs::mark_victim_format_path(&root);
            match std::fs::read_to_string(&path) {
                Err(err) => Some(format!("cannot read {}: {err}", path.display())),
                Ok(text) => match tracefs::parse_format(&text) {
                    Err(err) => Some(format!("{} is malformed: {err}", path.display())),
                    Ok(format) => {
                        tracepoint_ids.mark_victim = Some(format.id);
                        let (args, missing) = layout::from_tracepoint_format(&format, &mut layout);
                        missing_tracepoint = missing;
                        let (signal_id, signal_missing) = signal_layout(&root, &mut layout);
                        tracepoint_ids.signal_generate = signal_id;
                        missing_tracepoint.extend(signal_missing);
                        if pid_only {
                            forget_all_but_pid(&mut layout);
                        }
                        (args == tp_args::UNKNOWN || layout.tp_pid == ABSENT)
                            .then(|| format!("{} has no pid field", path.display()))
                    }
                },
            }
        }
    };

    let mut modes = Vec::new();
    for mode in AttachMode::ALL {
        if only.is_some_and(|only| only != mode) {
            continue;
        }
        let reason = match mode {
            AttachMode::TpBtf | AttachMode::RawTp => btf_reason.clone(),
            AttachMode::Tracepoint => tracepoint_reason.clone(),
        };
        match reason {
            Some(reason) => unavailable.push((mode, reason)),
            None => modes.push(mode),
        }
    }

    let btf_targets = btf.as_ref().map(BtfTargets::of).unwrap_or_default();
    // The BTF is unmapped (or freed) here: nothing after start-up needs it.
    drop(btf);

    Plan {
        layout,
        cgroup_mode,
        modes,
        unavailable,
        missing_btf,
        missing_tracepoint,
        tracepoint_available: tracepoint_reason.is_none(),
        btf_targets,
        tracepoint_ids,
    }
}

/// Offsets in `signal_generate`'s record, which tells killed victims from marked ones in
/// tracepoint mode, and the tracepoint's id.
fn signal_layout(root: &Path, layout: &mut KernelLayout) -> (Option<u32>, Vec<Missing>) {
    let path = tracefs::signal_generate_format_path(root);
    let missing = |why: &'static str| {
        vec![Missing {
            what: path.display().to_string(),
            why,
            affects: "oom.kind in tracepoint mode",
        }]
    };
    match std::fs::read_to_string(&path) {
        Err(_) => (None, missing("cannot be read")),
        Ok(text) => match tracefs::parse_format(&text) {
            Err(_) => (None, missing("is malformed")),
            Ok(format) => (Some(format.id), layout::from_signal_format(&format, layout)),
        },
    }
}

/// The pre-6.9 record: `pid` at the same offset, nothing else.
fn forget_all_but_pid(layout: &mut KernelLayout) {
    for offset in [
        &mut layout.tp_comm_loc,
        &mut layout.tp_total_vm,
        &mut layout.tp_anon_rss,
        &mut layout.tp_file_rss,
        &mut layout.tp_shmem_rss,
        &mut layout.tp_uid,
        &mut layout.tp_pgtables,
        &mut layout.tp_oom_score_adj,
    ] {
        *offset = ABSENT;
    }
}

impl Plan {
    /// The modes richer than `mode` that were ruled out before trying, and why.
    pub fn unavailable_above(
        &self,
        mode: AttachMode,
    ) -> impl Iterator<Item = &(AttachMode, String)> {
        let rank = |m: AttachMode| AttachMode::ALL.iter().position(|&a| a == m);
        self.unavailable
            .iter()
            .filter(move |(m, _)| rank(*m) < rank(mode))
    }

    /// Whether `mode` reads the victim's process id and cgroup in the kernel, so nothing needs
    /// completing from `/proc`.
    pub fn victim_is_complete(&self, mode: AttachMode) -> bool {
        match mode {
            AttachMode::TpBtf | AttachMode::RawTp => self.layout.tp_args == tp_args::TASK,
            AttachMode::Tracepoint => false,
        }
    }

    pub fn missing_for(&self, mode: AttachMode) -> &[Missing] {
        match mode {
            AttachMode::TpBtf | AttachMode::RawTp => &self.missing_btf,
            AttachMode::Tracepoint => &self.missing_tracepoint,
        }
    }
}

/// The report fields `mode` fills on this kernel, in README order.
pub fn fillable_fields(mode: AttachMode, l: &KernelLayout) -> Vec<&'static str> {
    let known = |offsets: &[u32]| offsets.iter().all(|&o| o != ABSENT);
    let mut fields = Vec::new();
    let mut add = |name, ok| {
        if ok {
            fields.push(name)
        }
    };
    match mode {
        AttachMode::TpBtf | AttachMode::RawTp => {
            if l.tp_args == tp_args::PID_ONLY {
                add("victim.tid", true);
            } else if l.tp_args == tp_args::TASK {
                add("victim.pid", known(&[l.task_tgid]));
                add("victim.tid", known(&[l.task_pid]));
                add(
                    "victim.ns_pid",
                    known(&[
                        l.task_thread_pid,
                        l.pid_level,
                        l.pid_numbers,
                        l.upid_size,
                        l.upid_nr,
                    ]),
                );
                add("victim.comm", known(&[l.task_group_leader, l.task_comm]));
                add("victim.thread_comm", known(&[l.task_comm]));
                add("victim.uid", known(&[l.task_real_cred, l.cred_uid]));
                add(
                    "victim.oom_score_adj",
                    known(&[l.task_signal, l.signal_oom_score_adj]),
                );
                let rss = known(&[l.task_mm, l.mm_rss_stat, l.mm_rss_stride, l.mm_rss_value]);
                add("victim.rss_*_bytes", rss);
                add("victim.swap_bytes", rss);
                add("victim.total_vm_bytes", known(&[l.task_mm, l.mm_total_vm]));
                add(
                    "victim.pgtables_bytes",
                    known(&[l.task_mm, l.mm_pgtables_bytes]),
                );
                let memcg = match l.cgroup_mode {
                    cgroup_mode::V1 => known(&[
                        l.task_cgroups,
                        l.css_set_subsys,
                        l.memory_cgrp_id,
                        l.css_cgroup,
                        l.cgroup_kn,
                    ]),
                    cgroup_mode::V2 => known(&[l.task_cgroups, l.css_set_dfl_cgrp, l.cgroup_kn]),
                    _ => false,
                };
                add("cgroup.id", memcg && l.kn_id != ABSENT);
                add("cgroup.path", memcg && known(&[l.kn_name, l.kn_parent]));
                add("trigger.cgroup_id", memcg && l.kn_id != ABSENT);
                add("victim.ppid", known(&[l.task_real_parent, l.task_tgid]));
                add(
                    "victim.parent_in_container",
                    known(&[l.task_real_parent, l.task_thread_pid, l.pid_level]),
                );
                let chain = known(&[
                    l.task_cgroups,
                    l.css_set_subsys,
                    l.memory_cgrp_id,
                    l.css_parent,
                    l.memcg_memory,
                    l.page_counter_usage,
                    l.page_counter_max,
                ]);
                add("oom.memcg (without the kernel log's report)", chain);
                add("oom.memcg_limit_bytes, oom.memcg_usage_bytes", chain);
            }
        }
        AttachMode::Tracepoint => {
            add("victim.tid", known(&[l.tp_pid]));
            add("victim.thread_comm", known(&[l.tp_comm_loc]));
            add("victim.uid", known(&[l.tp_uid]));
            add("victim.oom_score_adj", known(&[l.tp_oom_score_adj]));
            add(
                "victim.rss_*_bytes",
                known(&[l.tp_anon_rss, l.tp_file_rss, l.tp_shmem_rss]),
            );
            add("victim.total_vm_bytes", known(&[l.tp_total_vm]));
            add("victim.pgtables_bytes", known(&[l.tp_pgtables]));
        }
    }
    add("trigger.pid", true);
    add("trigger.tid", true);
    add("trigger.comm", true);
    fields
}
