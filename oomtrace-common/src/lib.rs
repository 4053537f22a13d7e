//! The one definition of what crosses the kernel/user boundary.
//!
//! The kernel program writes [`OomEvent`] into a ring buffer; user space reads the same bytes.
//! User space fills [`KernelLayout`] from the running kernel's BTF and tracefs and passes it to
//! the kernel program as a frozen global, because Rust eBPF has no CO-RE.
#![no_std]

/// `TASK_COMM_LEN` in the kernel.
pub const TASK_COMM_LEN: usize = 16;
/// Bytes kept of one kernfs name, NUL included. A name that fills its slot may have been
/// cut, so the path it belongs to is not trusted: container runtimes' names (at most
/// `cri-containerd-<64 hex>.scope`, 86 bytes) fit with room to spare.
pub const CGROUP_NAME_LEN: usize = 128;
/// Most cgroup levels below the hierarchy's root the handler records.
pub const CGROUP_MAX_DEPTH: usize = 16;
/// `MAX_PID_NS_LEVEL` in the kernel.
pub const MAX_PID_NS_LEVEL: u32 = 32;
/// Memory cgroups the handler reads, from the victim's own up (the root excluded).
pub const MEMCG_MAX_DEPTH: usize = 16;
/// Kernel stack frames recorded with each victim, from the tracepoint outwards.
pub const STACK_DEPTH: usize = 16;

/// A [`KernelLayout`] offset that the running kernel does not have.
pub const ABSENT: u32 = u32::MAX;

/// Name of the global that carries [`KernelLayout`] into the kernel program.
pub const LAYOUT_GLOBAL: &str = "LAYOUT";
/// Name of the ring buffer map that carries [`OomEvent`]s.
pub const EVENTS_MAP: &str = "EVENTS";
/// The ring buffer's size. Its pages are mapped into oomtrace twice (the kernel's ring buffer
/// layout) and all count toward its RSS from the start, so the size is the steady RSS's
/// largest part: 256 KiB hold about 75 records at once, and a full buffer is counted as
/// dropped, never lost silently. A burst larger than that only comes from a
/// `memory.oom.group` kill of more tasks than that, all marked within microseconds.
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Name of the per-CPU array (one slot) counting events the ring buffer had no room for.
pub const DROPPED_MAP: &str = "DROPPED";
/// Name of the hash map from a task (thread id) to the last SIGKILL the kernel sent on its
/// behalf ([`SigkillSent`]), which tells a killed victim from one only marked.
pub const SIGKILLS_MAP: &str = "SIGKILLS";

/// Name of the ring buffer map that carries [`SignalSent`]s, apart from the kills so that a
/// burst of signals can never take a kill's room.
pub const SIGNALS_MAP: &str = "SIGNALS";
/// The signal ring buffer's size: about 140 records at once (464 bytes and an 8-byte header
/// each). Only the signals that can end a
/// container's main process, or that a userspace OOM killer sends, are written.
pub const SIGNALS_BYTES: u32 = 64 * 1024;
/// Name of the per-CPU array (one slot) counting signals the ring buffer had no room for.
pub const SIGNALS_DROPPED_MAP: &str = "SIGNALS_DROPPED";
/// Return addresses kept with a signal the kernel sent on a task's behalf (`SEND_SIG_NOINFO`):
/// enough to see `cgroup_kill_write` under `send_sig`.
pub const SIGNAL_STACK_DEPTH: usize = 8;

/// The signals whose default action ends a process and that are sent to end one: `SIGHUP`,
/// `SIGINT`, `SIGQUIT`, `SIGABRT`, `SIGKILL` and `SIGTERM`, as a bit per signal number.
/// `SIGUSR1`, `SIGUSR2`, `SIGALRM` and `SIGPIPE` end a process by default too, but programs
/// trade them as messages by the million, so they are not kept; a death by one of them has
/// no `killed_by` sender.
pub const FATAL_SIGNALS: u64 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9) | (1 << 15);

/// The names (`comm`) of the userspace OOM killers whose signals are kept whatever their
/// target.
pub const USERSPACE_OOM_KILLERS: [&str; 3] = ["earlyoom", "systemd-oomd", "oomd"];

/// [`USERSPACE_OOM_KILLERS`] as the kernel program compares them: each comm NUL-padded to
/// [`TASK_COMM_LEN`] bytes and read as two little-endian words.
pub const USERSPACE_OOM_KILLER_WORDS: [[u64; 2]; 3] = [
    comm_words(USERSPACE_OOM_KILLERS[0]),
    comm_words(USERSPACE_OOM_KILLERS[1]),
    comm_words(USERSPACE_OOM_KILLERS[2]),
];

/// A comm of at most 15 bytes as the two words its NUL-padded 16 bytes make.
pub const fn comm_words(name: &str) -> [u64; 2] {
    let bytes = name.as_bytes();
    let mut words = [0u64; 2];
    let mut i = 0;
    while i < bytes.len() && i < TASK_COMM_LEN - 1 {
        words[i / 8] |= (bytes[i] as u64) << ((i % 8) * 8);
        i += 1;
    }
    words
}

/// How the kernel was asked to send a signal, as [`SignalSent::origin`].
pub mod signal_origin {
    /// With a `siginfo` the sender filled: `kill(2)`, `tgkill(2)`, `pidfd_send_signal(2)`.
    pub const SIGINFO: u32 = 1;
    /// `SEND_SIG_NOINFO`: the kernel on the current task's behalf, as a write to
    /// `cgroup.kill` does.
    pub const NOINFO: u32 = 2;
    /// `SEND_SIG_PRIV`: the kernel's own, as the OOM killer's SIGKILL.
    pub const PRIV: u32 = 3;
}

/// Bits of [`SignalSent::fields`]: which fields the handler read. A clear bit means `null`.
pub mod signal_field {
    pub const TARGET_TGID: u32 = 1 << 0;
    pub const TARGET_COMM: u32 = 1 << 1;
    /// `target_ns_pid` and `target_pid_level`.
    pub const TARGET_NS: u32 = 1 << 2;
    pub const SENDER_UID: u32 = 1 << 3;
    pub const SENDER_PID_LEVEL: u32 = 1 << 4;
    pub const SENDER_CGROUP_ID: u32 = 1 << 5;
    /// `sender_cgroup_name` holds the whole name of the sender's memory cgroup.
    pub const SENDER_CGROUP_NAME: u32 = 1 << 6;
    /// `sender_parent_tgid` and `sender_parent_comm`.
    pub const SENDER_PARENT: u32 = 1 << 7;
    /// `code`: the `si_code` the sender's `siginfo` carries.
    pub const CODE: u32 = 1 << 8;
    /// `stack` holds `stack_bytes / 8` return addresses.
    pub const STACK: u32 = 1 << 9;
    pub const TARGET_CGROUP_ID: u32 = 1 << 10;
    /// `target_cgroup_name` holds the whole name of the target's memory cgroup.
    pub const TARGET_CGROUP_NAME: u32 = 1 << 11;
}

/// `signal_generate`'s `result`: what became of the signal.
pub mod signal_result {
    pub const DELIVERED: u32 = 0;
    /// Ignored: among others, a container's PID 1 ignores a signal it has no handler for
    /// (SIGTERM to a `sleep`), unless the kernel forces it.
    pub const IGNORED: u32 = 1;
    pub const ALREADY_PENDING: u32 = 2;
    pub const OVERFLOW_FAIL: u32 = 3;
    pub const LOSE_INFO: u32 = 4;
}

/// One signal that can end a process, sent to a container's PID 1 (a task at `ns_pid` 1 in a
/// pid namespace below the host's) or sent by a userspace OOM killer: who sent it, and to
/// whom. Every byte range that `fields` does not vouch for is garbage.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SignalSent {
    /// `CLOCK_BOOTTIME` when the signal was generated.
    pub boot_ns: u64,
    pub sender_cgroup_id: u64,
    pub target_cgroup_id: u64,
    /// [`signal_field`] bits.
    pub fields: u32,
    pub sig: u32,
    /// [`signal_origin`].
    pub origin: u32,
    pub code: i32,
    /// [`signal_result`].
    pub result: u32,
    pub target_tid: u32,
    pub target_tgid: u32,
    pub target_ns_pid: u32,
    pub target_pid_level: u32,
    pub sender_tid: u32,
    pub sender_tgid: u32,
    pub sender_uid: u32,
    pub sender_pid_level: u32,
    pub sender_parent_tgid: u32,
    pub stack_bytes: u32,
    pub _pad: u32,
    pub target_comm: [u8; TASK_COMM_LEN],
    pub sender_comm: [u8; TASK_COMM_LEN],
    pub sender_parent_comm: [u8; TASK_COMM_LEN],
    /// The kernfs names of the sender's and the target's memory cgroups (a container's id is
    /// in them), NUL-ended.
    pub sender_cgroup_name: [u8; CGROUP_NAME_LEN],
    pub target_cgroup_name: [u8; CGROUP_NAME_LEN],
    pub stack: [u64; SIGNAL_STACK_DEPTH],
}

/// Kernel program names, one per attach mode.
pub mod program {
    pub const TP_BTF: &str = "mark_victim_btf";
    pub const RAW_TP: &str = "mark_victim_raw";
    pub const TRACEPOINT: &str = "mark_victim_tp";
    /// `signal_generate`, attached in the same mode as `mark_victim`.
    pub const SIGNAL_TP_BTF: &str = "signal_generate_btf";
    pub const SIGNAL_RAW_TP: &str = "signal_generate_raw";
    pub const SIGNAL_TRACEPOINT: &str = "signal_generate_tp";
}

/// How the handler was attached; recorded in every event as [`OomEvent::attach_mode`].
pub mod attach_mode {
    pub const TP_BTF: u32 = 1;
    pub const RAW_TP: u32 = 2;
    pub const TRACEPOINT: u32 = 3;
}

/// What `mark_victim` hands the handler, read from the kernel, never from its version.
pub mod tp_args {
    /// Unknown: the handler records nothing but the time and the trigger.
    pub const UNKNOWN: u32 = 0;
    /// `(struct task_struct *task, uid_t uid)`, from 6.9 and its stable backports.
    pub const TASK: u32 = 1;
    /// `(int pid)`: a thread id only.
    pub const PID_ONLY: u32 = 2;
}

/// Which cgroup hierarchy holds the memory controller.
pub mod cgroup_mode {
    pub const NONE: u32 = 0;
    pub const V1: u32 = 1;
    pub const V2: u32 = 2;
}

/// Bits of [`OomEvent::fields`]: which fields the handler read. A clear bit means `null`.
pub mod field {
    pub const TID: u32 = 1 << 0;
    pub const TGID: u32 = 1 << 1;
    pub const NS_PID: u32 = 1 << 2;
    pub const THREAD_COMM: u32 = 1 << 3;
    pub const PROCESS_COMM: u32 = 1 << 4;
    pub const UID: u32 = 1 << 5;
    pub const OOM_SCORE_ADJ: u32 = 1 << 6;
    pub const RSS: u32 = 1 << 7;
    pub const SWAP: u32 = 1 << 8;
    pub const TOTAL_VM: u32 = 1 << 9;
    pub const PGTABLES: u32 = 1 << 10;
    pub const CGROUP_ID: u32 = 1 << 11;
    pub const CGROUP_PATH: u32 = 1 << 12;
    /// A name filled its slot or the cgroup is deeper than the walk: do not trust the path.
    pub const CGROUP_PATH_TRUNCATED: u32 = 1 << 13;
    pub const TRIGGER_CGROUP_ID: u32 = 1 << 14;
    /// `memcgs` holds `memcg_levels` levels read whole.
    pub const MEMCGS: u32 = 1 << 15;
    /// The victim's memory cgroups go on above the last level read: a limit above them is
    /// not seen.
    pub const MEMCGS_TRUNCATED: u32 = 1 << 16;
    /// `trigger_memcg_ids` holds `trigger_memcg_levels` ids read whole.
    pub const TRIGGER_MEMCGS: u32 = 1 << 17;
    /// `kind` says whether the kernel sent the victim SIGKILL.
    pub const KIND: u32 = 1 << 18;
    /// `stack` holds `stack_bytes / 8` return addresses.
    pub const STACK: u32 = 1 << 19;
    /// `parent_tgid`: the process that started the victim's (`real_parent`).
    pub const PARENT: u32 = 1 << 20;
    /// `victim_pid_level` and `parent_pid_level`: how deep each one's pid namespace is.
    pub const PID_LEVELS: u32 = 1 << 21;
}

/// What the kernel did to the victim, as [`OomEvent::kind`].
pub mod kind {
    /// It sent SIGKILL and counted an OOM kill, then marked the victim.
    pub const KILLED: u32 = 1;
    /// It only marked the victim, which was already exiting: no signal, no count, no log line.
    pub const MARKED: u32 = 2;
}

/// Bits of [`MemcgLevel::flags`].
pub mod memcg_flag {
    pub const ID: u32 = 1 << 0;
    /// `usage_pages` and `max_pages` were read.
    pub const MEMORY: u32 = 1 << 1;
    /// `memsw_usage_pages` and `memsw_max_pages` were read (cgroup v1 with swap accounting).
    pub const MEMSW: u32 = 1 << 2;
    /// `memory.oom.group` is set (cgroup v2).
    pub const OOM_GROUP: u32 = 1 << 3;
    /// Whether `memory.oom.group` could be read at all.
    pub const OOM_GROUP_READ: u32 = 1 << 4;
}

/// One memory cgroup on the way from the victim's to the root, as the kernel counted it at
/// the kill.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcgLevel {
    /// The cgroup's id: its directory's inode number.
    pub id: u64,
    /// `memcg->memory`: pages charged, and the limit (`PAGE_COUNTER_MAX` for none).
    pub usage_pages: u64,
    pub max_pages: u64,
    /// `memcg->memsw` on cgroup v1: memory plus swap.
    pub memsw_usage_pages: u64,
    pub memsw_max_pages: u64,
    /// [`memcg_flag`] bits.
    pub flags: u32,
    pub _pad: u32,
}

/// The last SIGKILL a task sent through the kernel's own path (`SEND_SIG_PRIV`), keyed by the
/// sender's thread id in [`SIGKILLS_MAP`]. The OOM killer sends it right before it marks the
/// victim, from the same task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigkillSent {
    /// Thread id of the task signalled.
    pub target_tid: u32,
    pub _pad: u32,
}

/// One record per OOM victim. Every byte range that `fields` does not vouch for is garbage.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OomEvent {
    /// `CLOCK_BOOTTIME` when the kernel marked the victim.
    pub boot_ns: u64,
    /// [`field`] bits.
    pub fields: u32,
    /// [`attach_mode`].
    pub attach_mode: u32,
    pub victim_tid: u32,
    pub victim_tgid: u32,
    pub victim_ns_pid: u32,
    pub victim_uid: u32,
    pub oom_score_adj: i32,
    /// Filled slots of `cgroup_names`: the cgroup's depth below the hierarchy's root.
    pub cgroup_depth: u32,
    pub trigger_tid: u32,
    pub trigger_tgid: u32,
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
    pub rss_shmem_bytes: u64,
    pub swap_bytes: u64,
    pub total_vm_bytes: u64,
    pub pgtables_bytes: u64,
    pub cgroup_id: u64,
    pub trigger_cgroup_id: u64,
    pub victim_thread_comm: [u8; TASK_COMM_LEN],
    pub victim_process_comm: [u8; TASK_COMM_LEN],
    pub trigger_comm: [u8; TASK_COMM_LEN],
    /// The kernfs names from the victim's cgroup up to (not including) the root, leaf first,
    /// each NUL-terminated. Captured in the handler because a container's cgroup is removed as
    /// soon as it dies; user space joins them into a path.
    pub cgroup_names: [[u8; CGROUP_NAME_LEN]; CGROUP_MAX_DEPTH],
    /// The ids of the cgroups named in `cgroup_names`, slot for slot, so a memory cgroup in
    /// `memcgs` can be named by its path.
    pub cgroup_ids: [u64; CGROUP_MAX_DEPTH],
    /// The victim's parent process (`real_parent->tgid`), host pid.
    pub parent_tgid: u32,
    /// The depth of the victim's and of its parent's pid namespace: a parent one level up
    /// lives outside the victim's container (the runtime's shim, `docker exec`).
    pub victim_pid_level: u32,
    pub parent_pid_level: u32,
    /// [`kind`].
    pub kind: u32,
    /// Filled levels of `memcgs` and of `trigger_memcg_ids`.
    pub memcg_levels: u32,
    pub trigger_memcg_levels: u32,
    /// What `bpf_get_stack` copied into `stack`.
    pub stack_bytes: u32,
    /// The victim's memory cgroup (its memory controller's, on either hierarchy) and its
    /// ancestors, victim's first, the root excluded: which limit was hit is read off these.
    pub memcgs: [MemcgLevel; MEMCG_MAX_DEPTH],
    /// The ids of the trigger's memory cgroup and its ancestors, trigger's first.
    pub trigger_memcg_ids: [u64; MEMCG_MAX_DEPTH],
    /// The kernel stack at the tracepoint: whether the OOM was a cgroup's or the machine's,
    /// and whether the victim was killed as a member of a `memory.oom.group` kill.
    pub stack: [u64; STACK_DEPTH],
}

/// Offsets (bytes) into kernel structs and the tracepoint record, from the running kernel.
/// [`ABSENT`] marks one the kernel does not have; the handler then leaves its field `null`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// [`tp_args`] for `tp_btf` / `raw_tp`.
    pub tp_args: u32,
    /// [`cgroup_mode`].
    pub cgroup_mode: u32,
    pub page_shift: u32,
    /// `memory_cgrp_id` from `enum cgroup_subsys_id`.
    pub memory_cgrp_id: u32,

    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_group_leader: u32,
    pub task_real_cred: u32,
    pub task_signal: u32,
    pub task_mm: u32,
    pub task_thread_pid: u32,
    pub task_cgroups: u32,
    pub task_real_parent: u32,

    /// `cred.uid.val`.
    pub cred_uid: u32,
    pub signal_oom_score_adj: u32,

    /// Start of `mm->rss_stat`; counter `i` is at `mm_rss_stat + i * mm_rss_stride +
    /// mm_rss_value`, an `s64` page count (percpu_counter from 6.2, atomic_long_t before).
    pub mm_rss_stat: u32,
    pub mm_rss_stride: u32,
    pub mm_rss_value: u32,
    pub mm_total_vm: u32,
    pub mm_pgtables_bytes: u32,

    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,

    pub css_set_subsys: u32,
    pub css_set_dfl_cgrp: u32,
    pub css_cgroup: u32,
    pub cgroup_kn: u32,
    pub kn_name: u32,
    /// `parent`, or `__parent` from 6.15.
    pub kn_parent: u32,
    /// A `u64` from 5.5.
    pub kn_id: u32,

    /// `cgroup_subsys_state.parent`.
    pub css_parent: u32,
    /// `mem_cgroup.memory` and `.memsw` (v1 only; [`ABSENT`] on v2), `page_counter`s.
    pub memcg_memory: u32,
    pub memcg_memsw: u32,
    /// `mem_cgroup.oom_group` (v2), a bool.
    pub memcg_oom_group: u32,
    /// `page_counter.usage` (an `atomic_long_t`'s counter) and `.max`.
    pub page_counter_usage: u32,
    pub page_counter_max: u32,

    /// Offsets in the classic tracepoint's record, from its tracefs `format` file.
    pub tp_pid: u32,
    pub tp_comm_loc: u32,
    pub tp_total_vm: u32,
    pub tp_anon_rss: u32,
    pub tp_file_rss: u32,
    pub tp_shmem_rss: u32,
    pub tp_uid: u32,
    pub tp_pgtables: u32,
    pub tp_oom_score_adj: u32,
    /// Offsets in `signal/signal_generate`'s record.
    pub tp_signal_sig: u32,
    pub tp_signal_code: u32,
    pub tp_signal_pid: u32,
}

impl KernelLayout {
    /// A layout that knows nothing; user space fills in what the kernel has.
    pub const UNKNOWN: Self = Self {
        tp_args: tp_args::UNKNOWN,
        cgroup_mode: cgroup_mode::NONE,
        page_shift: 12,
        memory_cgrp_id: ABSENT,
        task_pid: ABSENT,
        task_tgid: ABSENT,
        task_comm: ABSENT,
        task_group_leader: ABSENT,
        task_real_cred: ABSENT,
        task_signal: ABSENT,
        task_mm: ABSENT,
        task_thread_pid: ABSENT,
        task_cgroups: ABSENT,
        task_real_parent: ABSENT,
        cred_uid: ABSENT,
        signal_oom_score_adj: ABSENT,
        mm_rss_stat: ABSENT,
        mm_rss_stride: ABSENT,
        mm_rss_value: ABSENT,
        mm_total_vm: ABSENT,
        mm_pgtables_bytes: ABSENT,
        pid_level: ABSENT,
        pid_numbers: ABSENT,
        upid_size: ABSENT,
        upid_nr: ABSENT,
        css_set_subsys: ABSENT,
        css_set_dfl_cgrp: ABSENT,
        css_cgroup: ABSENT,
        cgroup_kn: ABSENT,
        kn_name: ABSENT,
        kn_parent: ABSENT,
        kn_id: ABSENT,
        css_parent: ABSENT,
        memcg_memory: ABSENT,
        memcg_memsw: ABSENT,
        memcg_oom_group: ABSENT,
        page_counter_usage: ABSENT,
        page_counter_max: ABSENT,
        tp_pid: ABSENT,
        tp_comm_loc: ABSENT,
        tp_total_vm: ABSENT,
        tp_anon_rss: ABSENT,
        tp_file_rss: ABSENT,
        tp_shmem_rss: ABSENT,
        tp_uid: ABSENT,
        tp_pgtables: ABSENT,
        tp_oom_score_adj: ABSENT,
        tp_signal_sig: ABSENT,
        tp_signal_code: ABSENT,
        tp_signal_pid: ABSENT,
    };
}

/// Index of each counter in `mm->rss_stat` (`MM_FILEPAGES` ... `MM_SHMEMPAGES`).
pub mod rss_index {
    pub const FILE: u32 = 0;
    pub const ANON: u32 = 1;
    pub const SWAP: u32 = 2;
    pub const SHMEM: u32 = 3;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are plain `repr(C)` integers and byte arrays, valid for any bit pattern.
    unsafe impl aya::Pod for super::OomEvent {}
    unsafe impl aya::Pod for super::KernelLayout {}
    unsafe impl aya::Pod for super::SigkillSent {}
    unsafe impl aya::Pod for super::SignalSent {}
}
