//! oomtrace's kernel program: one record per OOM victim, taken at `oom/mark_victim`.
//!
//! Three entry points share one body; user space loads and attaches exactly one of them,
//! the richest the running kernel accepts. Struct offsets come from [`LAYOUT`], which user
//! space fills from the kernel's BTF, so every read is a `bpf_probe_read_kernel` at an offset
//! checked at start-up; an [`ABSENT`] offset, or a read that fails, leaves its field `null`.
#![no_std]
#![no_main]

use core::{
    ffi::c_void,
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{
            bpf_get_current_task, bpf_get_stack, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
            bpf_probe_read_kernel_str,
        },
    },
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use oomtrace_common::{
    ABSENT, CGROUP_MAX_DEPTH, CGROUP_NAME_LEN, EVENTS_BYTES, FATAL_SIGNALS, KernelLayout,
    MAX_PID_NS_LEVEL, MEMCG_MAX_DEPTH, OomEvent, SIGNAL_STACK_DEPTH, SIGNALS_BYTES, STACK_DEPTH,
    SigkillSent, SignalSent, TASK_COMM_LEN, USERSPACE_OOM_KILLER_WORDS, attach_mode, cgroup_mode,
    field, kind, memcg_flag, rss_index, signal_field, signal_origin, tp_args,
};

/// Filled by user space at load time (`LAYOUT_GLOBAL`); frozen in `.rodata`.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::UNKNOWN;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
static SIGNALS: RingBuf = RingBuf::with_byte_size(SIGNALS_BYTES, 0);

#[map]
static SIGNALS_DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The last kernel-sent SIGKILL of each task, by the sender's thread id: the OOM killer sends
/// one to its victim right before it marks it. LRU, so senders that never mark anyone age out.
#[map]
static SIGKILLS: LruHashMap<u32, SigkillSent> = LruHashMap::with_max_entries(4096, 0);

/// `SIGKILL`, and `SI_KERNEL`, the code `SEND_SIG_PRIV` carries in the classic tracepoint.
const SIGKILL: u64 = 9;
const SI_KERNEL: u32 = 0x80;
/// `SEND_SIG_NOINFO` and `SEND_SIG_PRIV`, the `siginfo` pointers that are not pointers: the
/// kernel sending on the current task's behalf, and the kernel's own signals (the OOM
/// killer's among them).
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;
/// `si_code` in `struct kernel_siginfo`, after `si_signo` and `si_errno` (uapi, fixed).
const SIGINFO_CODE: u32 = 8;

macro_rules! layout {
    ($field:ident) => {
        load_layout(&raw const LAYOUT.$field)
    };
}

/// Volatile, so the compiler cannot fold the placeholder that user space overrides at load
/// time into a constant.
#[inline(always)]
fn load_layout(field: *const u32) -> u32 {
    // SAFETY: `field` points into LAYOUT, which is plain, always-initialised data.
    unsafe { read_volatile(field) }
}

#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim_btf(ctx: BtfTracePointContext) -> i32 {
    let first_arg: u64 = ctx.arg(0);
    emit(attach_mode::TP_BTF, ctx.as_ptr(), |event| {
        fill_from_first_arg(event, first_arg)
    });
    0
}

#[raw_tracepoint(tracepoint = "mark_victim")]
pub fn mark_victim_raw(ctx: RawTracePointContext) -> i32 {
    let first_arg: u64 = ctx.arg(0);
    emit(attach_mode::RAW_TP, ctx.as_ptr(), |event| {
        fill_from_first_arg(event, first_arg)
    });
    0
}

#[tracepoint]
pub fn mark_victim_tp(ctx: TracePointContext) -> i32 {
    let record = ctx.as_ptr() as u64;
    emit(attach_mode::TRACEPOINT, ctx.as_ptr(), |event| {
        fill_from_record(event, record)
    });
    0
}

/// `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
/// int group, int result)`.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate_btf(ctx: BtfTracePointContext) -> i32 {
    on_signal_generate(ctx.as_ptr(), ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(4));
    0
}

#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate_raw(ctx: RawTracePointContext) -> i32 {
    on_signal_generate(ctx.as_ptr(), ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(4));
    0
}

#[tracepoint]
pub fn signal_generate_tp(ctx: TracePointContext) -> i32 {
    let record = ctx.as_ptr() as u64;
    let sig = load::<u32>(record, layout!(tp_signal_sig));
    let code = load::<u32>(record, layout!(tp_signal_code));
    if sig as u64 == SIGKILL && code == SI_KERNEL {
        note_sigkill(load::<u32>(record, layout!(tp_signal_pid)));
    }
    0
}

/// `signal_generate`'s arguments as tp_btf and raw_tp give them. A signal that cannot end a
/// process returns at the first test: this runs for every signal the machine sends.
#[inline(always)]
fn on_signal_generate(ctx: *mut c_void, sig: u64, info: u64, task: u64, result: u64) {
    let sig = sig as u32 as u64;
    if sig >= 64 || (FATAL_SIGNALS >> sig) & 1 == 0 {
        return;
    }
    if sig == SIGKILL && info == SEND_SIG_PRIV {
        note_sigkill(load(task, layout!(task_pid)));
    }
    let comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    if is_container_init(task) || is_userspace_oom_killer(&comm) {
        record_signal(ctx, sig as u32, info, task, result as u32, comm);
    }
}

/// Whether `task` is a pid namespace's PID 1 below the host's: a container's main process,
/// whose death ends the container.
#[inline(always)]
fn is_container_init(task: u64) -> bool {
    let (numbers, upid_size, upid_nr) =
        (layout!(pid_numbers), layout!(upid_size), layout!(upid_nr));
    if numbers == ABSENT || upid_size == ABSENT || upid_nr == ABSENT {
        return false;
    }
    let pid = load::<u64>(task, layout!(task_thread_pid));
    let level = load::<u32>(pid, layout!(pid_level));
    if level == 0 || level >= MAX_PID_NS_LEVEL {
        return false;
    }
    load::<u32>(pid, numbers + level * upid_size + upid_nr) == 1
}

#[inline(always)]
fn is_userspace_oom_killer(comm: &[u8; TASK_COMM_LEN]) -> bool {
    // SAFETY: 16 bytes read as two unaligned words.
    let words: [u64; 2] = unsafe { core::ptr::read_unaligned(comm.as_ptr().cast()) };
    let mut found = false;
    for killer in USERSPACE_OOM_KILLER_WORDS {
        found |= words[0] == killer[0] && words[1] == killer[1];
    }
    found
}

/// Writes who sent `sig` to `task` into [`SIGNALS`]; a full buffer is counted in
/// [`SIGNALS_DROPPED`], never lost silently.
#[inline(always)]
fn record_signal(
    ctx: *mut c_void,
    sig: u32,
    info: u64,
    task: u64,
    result: u32,
    comm: [u8; TASK_COMM_LEN],
) {
    let Some(mut entry) = SIGNALS.reserve::<SignalSent>(0) else {
        if let Some(count) = SIGNALS_DROPPED.get_ptr_mut(0) {
            // SAFETY: a per-CPU slot, so no other program writes it concurrently.
            unsafe { *count += 1 };
        }
        return;
    };
    let record = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY (whole block): the helper has no preconditions; every destination is inside the
    // reserved record.
    unsafe {
        let current = bpf_get_current_task();
        (*record).boot_ns = bpf_ktime_get_boot_ns();
        (*record).sig = sig;
        (*record).result = result;
        (*record).sender_tid = pid_tgid as u32;
        (*record).sender_tgid = (pid_tgid >> 32) as u32;
        (*record).sender_comm = comm;
        (*record)._pad = 0;
        (*record).origin = match info {
            SEND_SIG_NOINFO => signal_origin::NOINFO,
            SEND_SIG_PRIV => signal_origin::PRIV,
            _ => signal_origin::SIGINFO,
        };
        let mut fields = 0;
        if info > SEND_SIG_PRIV {
            fields |= bit_if(
                copy(&raw mut (*record).code, info, SIGINFO_CODE),
                signal_field::CODE,
            );
        } else {
            (*record).code = 0;
        }
        (*record).target_tid = load(task, layout!(task_pid));
        fields |= bit_if(
            copy(&raw mut (*record).target_tgid, task, layout!(task_tgid)),
            signal_field::TARGET_TGID,
        );
        fields |= bit_if(
            copy(&raw mut (*record).target_comm, task, layout!(task_comm)),
            signal_field::TARGET_COMM,
        );
        fields |= fill_target_ns(record, task);
        fields |= fill_cgroup(
            memory_cgroup_kn(task),
            &raw mut (*record).target_cgroup_id,
            (&raw mut (*record).target_cgroup_name).cast(),
        ) & (signal_field::TARGET_CGROUP_ID | signal_field::TARGET_CGROUP_NAME);
        fields |= fill_sender(record, current);
        fields |= if info == SEND_SIG_NOINFO {
            let copied = bpf_get_stack(
                ctx,
                (&raw mut (*record).stack).cast(),
                (SIGNAL_STACK_DEPTH * 8) as u32,
                0,
            );
            let ok = ok_bit(copied);
            (*record).stack_bytes = (copied & (ok as i64).wrapping_neg()) as u32;
            bit_if(ok, signal_field::STACK)
        } else {
            (*record).stack_bytes = 0;
            0
        };
        (*record).fields = fields;
    }
    entry.submit(0);
}

/// A memory cgroup's id and kernfs name into a record's slots: the `TARGET_CGROUP_*` bits for
/// what was read whole.
#[inline(always)]
fn fill_cgroup(kn: u64, id: *mut u64, name: *mut u8) -> u32 {
    let mut fields = bit_if(copy(id, kn, layout!(kn_id)), signal_field::TARGET_CGROUP_ID);
    let name_offset = layout!(kn_name);
    if name_offset != ABSENT {
        // SAFETY: `name` is a CGROUP_NAME_LEN slot of the reserved record.
        let copied = unsafe {
            bpf_probe_read_kernel_str(
                name.cast(),
                CGROUP_NAME_LEN as u32,
                load::<u64>(kn, name_offset) as *const c_void,
            )
        };
        // 1..=127 bytes with the NUL is a whole name; 128 may have been cut.
        let whole = non_zero(copied as u64) & (1 ^ non_zero((copied as u64) >> 7));
        fields |= bit_if(whole, signal_field::TARGET_CGROUP_NAME);
    }
    fields
}

/// The target's pid in its own namespace and that namespace's depth.
#[inline(always)]
fn fill_target_ns(record: *mut SignalSent, task: u64) -> u32 {
    let (numbers, upid_size, upid_nr) =
        (layout!(pid_numbers), layout!(upid_size), layout!(upid_nr));
    if numbers == ABSENT || upid_size == ABSENT || upid_nr == ABSENT {
        return 0;
    }
    let pid = load(task, layout!(task_thread_pid));
    // SAFETY (whole block): every destination is inside the reserved record.
    unsafe {
        let level_ok = copy(&raw mut (*record).target_pid_level, pid, layout!(pid_level));
        let level = (*record).target_pid_level % MAX_PID_NS_LEVEL;
        let read = copy(
            &raw mut (*record).target_ns_pid,
            pid,
            numbers + level * upid_size + upid_nr,
        );
        bit_if(level_ok & read, signal_field::TARGET_NS)
    }
}

/// The sending task: its uid, how deep its pid namespace is, its memory cgroup's id and name,
/// and its parent.
#[inline(always)]
fn fill_sender(record: *mut SignalSent, current: u64) -> u32 {
    // SAFETY (whole block): every destination is inside the reserved record.
    unsafe {
        let cred = load(current, layout!(task_real_cred));
        let mut fields = bit_if(
            copy(&raw mut (*record).sender_uid, cred, layout!(cred_uid)),
            signal_field::SENDER_UID,
        );
        fields |= bit_if(
            copy(
                &raw mut (*record).sender_pid_level,
                load(current, layout!(task_thread_pid)),
                layout!(pid_level),
            ),
            signal_field::SENDER_PID_LEVEL,
        );
        let parent = load(current, layout!(task_real_parent));
        let tgid = copy(
            &raw mut (*record).sender_parent_tgid,
            parent,
            layout!(task_tgid),
        );
        let comm = copy(
            &raw mut (*record).sender_parent_comm,
            parent,
            layout!(task_comm),
        );
        fields |= bit_if(tgid & comm, signal_field::SENDER_PARENT);
        let cgroup = fill_cgroup(
            memory_cgroup_kn(current),
            &raw mut (*record).sender_cgroup_id,
            (&raw mut (*record).sender_cgroup_name).cast(),
        );
        fields |= bit_if(
            non_zero((cgroup & signal_field::TARGET_CGROUP_ID) as u64),
            signal_field::SENDER_CGROUP_ID,
        );
        fields |= bit_if(
            non_zero((cgroup & signal_field::TARGET_CGROUP_NAME) as u64),
            signal_field::SENDER_CGROUP_NAME,
        );
        fields
    }
}

/// Remembers that the current task just had the kernel send SIGKILL to `target_tid`.
#[inline(always)]
fn note_sigkill(target_tid: u32) {
    let sender = bpf_get_current_pid_tgid() as u32;
    let sent = SigkillSent {
        target_tid,
        _pad: 0,
    };
    let _ = SIGKILLS.insert(&sender, &sent, 0);
}

/// Killed or only marked: the OOM killer sends SIGKILL from the same task right before it
/// marks a victim it kills, and sends none to one it only marks. The entry is taken, so a
/// later mark of the same task is judged afresh.
#[inline(always)]
fn fill_kind(event: *mut OomEvent) -> u32 {
    let current = bpf_get_current_pid_tgid() as u32;
    // SAFETY: reads and writes inside the reserved record; the map value is a plain struct.
    unsafe {
        let victim = (*event).victim_tid;
        let killed = match SIGKILLS.get(&current) {
            Some(sent) => sent.target_tid == victim,
            None => false,
        };
        if killed {
            let _ = SIGKILLS.remove(&current);
        }
        (*event).kind = if killed { kind::KILLED } else { kind::MARKED };
        // The thread id is what is compared: without it nothing is known.
        bit_if(non_zero(victim as u64), field::KIND)
    }
}

/// The kernel stack at the tracepoint, for user space to read the OOM's path off.
#[inline(always)]
fn fill_stack(ctx: *mut c_void, event: *mut OomEvent) -> u32 {
    // SAFETY: bpf_get_stack writes at most the size given into the record's stack slots.
    let copied = unsafe {
        bpf_get_stack(
            ctx,
            (&raw mut (*event).stack).cast(),
            (STACK_DEPTH * 8) as u32,
            0,
        )
    };
    let ok = ok_bit(copied);
    // SAFETY: inside the reserved record.
    unsafe { (*event).stack_bytes = (copied & (ok as i64).wrapping_neg()) as u32 };
    bit_if(ok, field::STACK)
}

/// Reserves a record, lets `fill` write the victim's fields, adds the trigger, whether it was
/// killed and the kernel stack, and submits. A full ring buffer is counted in [`DROPPED`],
/// never lost silently.
#[inline(always)]
fn emit(attach_mode: u32, ctx: *mut c_void, fill: impl FnOnce(*mut OomEvent) -> u32) {
    let Some(mut entry) = EVENTS.reserve::<OomEvent>(0) else {
        if let Some(count) = DROPPED.get_ptr_mut(0) {
            // SAFETY: a per-CPU slot, so no other program writes it concurrently.
            unsafe { *count += 1 };
        }
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at reserved ring buffer memory large enough for an OomEvent.
    unsafe {
        (*event).boot_ns = bpf_ktime_get_boot_ns();
        (*event).attach_mode = attach_mode;
        (*event).cgroup_depth = 0;
        (*event).memcg_levels = 0;
        (*event).trigger_memcg_levels = 0;
        let fields = fill(event) | fill_trigger(event);
        let fields = fields | fill_kind(event) | fill_stack(ctx, event);
        (*event).fields = fields;
    }
    entry.submit(0);
}

#[inline(always)]
fn fill_from_first_arg(event: *mut OomEvent, first_arg: u64) -> u32 {
    match layout!(tp_args) {
        tp_args::TASK => fill_from_task(event, first_arg),
        tp_args::PID_ONLY => {
            // SAFETY: writes inside the reserved record.
            unsafe { (*event).victim_tid = first_arg as u32 };
            field::TID
        }
        _ => 0,
    }
}

// Every kernel read below is branch-free in what it finds: a failed read (a null or stale
// pointer included) leaves zeroes, the next read through that zero fails the same way, and
// success is carried as a 0/1 bit. Branching on each outcome made the verifier walk every
// combination of outcomes, which exceeded 6.1's million-instruction budget. The only
// branches left test LAYOUT, which the verifier knows as constants (frozen .rodata).

/// `x`, with where it came from hidden from LLVM. Knowing a value is 0 or 1, LLVM turns the
/// arithmetic below into a compare and a branch (BPF has no conditional move), and each such
/// branch doubles the paths the verifier walks through a loop: 6.1's gave up at a million
/// instructions. A volatile round trip through the stack keeps it arithmetic.
#[inline(always)]
fn opaque(x: u64) -> u64 {
    let mut slot = 0u64;
    // SAFETY: a local the function owns.
    unsafe {
        write_volatile(&raw mut slot, x);
        read_volatile(&raw const slot)
    }
}

/// 1 when a `bpf_probe_read_kernel*` return value says it succeeded, else 0.
#[inline(always)]
fn ok_bit(ret: i64) -> u64 {
    // The sign, as all ones or zero, plus one.
    opaque((ret >> 63) as u64).wrapping_add(1)
}

/// `bit` when `ok` is 1, else 0.
#[inline(always)]
fn bit_if(ok: u64, bit: u32) -> u32 {
    (ok as u32).wrapping_neg() & bit
}

/// 1 when `x` is non-zero, else 0.
#[inline(always)]
fn non_zero(x: u64) -> u64 {
    opaque(x | x.wrapping_neg()) >> 63
}

/// Copies the `T` at `base + offset` into `dst`: 1 if it was read, 0 (and `dst` zeroed) if
/// not, including when the kernel has no such offset.
#[inline(always)]
fn copy<T>(dst: *mut T, base: u64, offset: u32) -> u64 {
    if offset == ABSENT {
        // SAFETY: `dst` is inside the reserved record or on the stack.
        unsafe { core::ptr::write_bytes(dst, 0, 1) };
        return 0;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address; a bad one fails and zeroes `dst`.
    let ret = unsafe {
        bpf_probe_read_kernel(
            dst.cast(),
            size_of::<T>() as u32,
            base.wrapping_add(offset as u64) as *const c_void,
        )
    };
    ok_bit(ret)
}

/// [`copy`] of a count the classic tracepoint's record gives in kB, stored in bytes.
#[inline(always)]
fn copy_kb(dst: *mut u64, record: u64, offset: u32) -> u64 {
    let read = copy(dst, record, offset);
    // SAFETY: `dst` is inside the reserved record, and was just written (or zeroed).
    unsafe { *dst <<= 10 };
    read
}

/// The `T` (usually a `u64` pointer) at `base + offset`, 0 if it cannot be read.
#[inline(always)]
fn load<T: Default>(base: u64, offset: u32) -> T {
    let mut value = T::default();
    copy(&raw mut value, base, offset);
    value
}

/// The offset of a member (`inner`) of a member (`outer`); [`ABSENT`] if either is.
#[inline(always)]
fn within(outer: u32, inner: u32) -> u32 {
    if outer == ABSENT || inner == ABSENT {
        ABSENT
    } else {
        outer + inner
    }
}

/// The victim's thread id, at `base + offset`: a task's `pid` or the classic record's.
#[inline(always)]
fn fill_tid(event: *mut OomEvent, base: u64, offset: u32) -> u32 {
    // SAFETY: inside the reserved record.
    let read = copy(unsafe { &raw mut (*event).victim_tid }, base, offset);
    bit_if(read, field::TID)
}

/// The victim's `oom_score_adj`, a `short` at `base + offset` (in its `signal_struct`, or in
/// the classic record), widened into the record.
#[inline(always)]
fn fill_oom_score_adj(event: *mut OomEvent, base: u64, offset: u32) -> u32 {
    let mut adj = 0i16;
    let read = copy(&raw mut adj, base, offset);
    // SAFETY: inside the reserved record.
    unsafe { (*event).oom_score_adj = adj as i32 };
    bit_if(read, field::OOM_SCORE_ADJ)
}

#[inline(always)]
fn fill_from_task(event: *mut OomEvent, task: u64) -> u32 {
    let mut fields = fill_tid(event, task, layout!(task_pid));
    // SAFETY (whole block): every destination is inside the reserved record.
    unsafe {
        fields |= bit_if(
            copy(&raw mut (*event).victim_tgid, task, layout!(task_tgid)),
            field::TGID,
        );
        let comm = layout!(task_comm);
        fields |= bit_if(
            copy(&raw mut (*event).victim_thread_comm, task, comm),
            field::THREAD_COMM,
        );
        let leader = load(task, layout!(task_group_leader));
        fields |= bit_if(
            copy(&raw mut (*event).victim_process_comm, leader, comm),
            field::PROCESS_COMM,
        );
        let cred = load(task, layout!(task_real_cred));
        fields |= bit_if(
            copy(&raw mut (*event).victim_uid, cred, layout!(cred_uid)),
            field::UID,
        );

        let signal = load(task, layout!(task_signal));
        fields |= fill_oom_score_adj(event, signal, layout!(signal_oom_score_adj));

        fields |= fill_namespaced_pid(event, task);
        fields |= fill_parent(event, task);
        fields |= fill_from_mm(event, load(task, layout!(task_mm)));

        let kn = memory_cgroup_kn(task);
        fields |= bit_if(
            copy(&raw mut (*event).cgroup_id, kn, layout!(kn_id)),
            field::CGROUP_ID,
        );
        fields | fill_cgroup_path(event, kn) | fill_memcgs(event, task)
    }
}

/// The task's memory controller state: `task->cgroups->subsys[memory_cgrp_id]`, which on
/// either hierarchy is the `mem_cgroup` itself (its `css` comes first; checked at start-up).
#[inline(always)]
fn memcg_of(task: u64) -> u64 {
    let (subsys, index) = (layout!(css_set_subsys), layout!(memory_cgrp_id));
    if subsys == ABSENT || index == ABSENT {
        return 0;
    }
    load(load(task, layout!(task_cgroups)), subsys + index * 8)
}

/// A walk up the memory cgroups from a task's to the last one below the root, a level a step.
/// Always MEMCG_MAX_DEPTH steps, branch-free like the path walk: past the root every read
/// fails harmlessly, and `below_root` stops the counting at the root, which has no parent.
/// Plain inline functions rather than a walker taking a closure: LLVM outlined the closure,
/// and the code the verifier walks changed with it.
struct MemcgWalk {
    /// `css.parent`, `css.cgroup`, `cgroup.kn` and `kernfs_node.id`.
    parent_offset: u32,
    cgroup_offset: u32,
    kn_offset: u32,
    id_offset: u32,
    /// The memcg the next step reads.
    memcg: u64,
    /// 1 while the last memcg stepped over was below the root.
    below_root: u64,
    /// How many memcgs stepped over were below the root.
    depth: u64,
}

impl MemcgWalk {
    /// At `task`'s memcg; `None` where the kernel has no `css.parent` to walk up by.
    #[inline(always)]
    fn from_task(task: u64) -> Option<Self> {
        let parent_offset = layout!(css_parent);
        if parent_offset == ABSENT {
            return None;
        }
        let memcg = memcg_of(task);
        Some(Self {
            parent_offset,
            cgroup_offset: layout!(css_cgroup),
            kn_offset: layout!(cgroup_kn),
            id_offset: layout!(kn_id),
            memcg,
            below_root: non_zero(memcg),
            depth: 0,
        })
    }

    /// Steps up a level: the memcg it leaves, and 1 if that one is below the root.
    #[inline(always)]
    fn step(&mut self) -> (u64, u64) {
        let memcg = self.memcg;
        self.memcg = load(memcg, self.parent_offset);
        self.below_root &= non_zero(self.memcg);
        self.depth += self.below_root;
        (memcg, self.below_root)
    }

    /// Copies the id of `memcg`'s cgroup (its kernfs node's) into `dst`: 1 if it was read.
    #[inline(always)]
    fn copy_id(&self, dst: *mut u64, memcg: u64) -> u64 {
        let kn = load(load(memcg, self.cgroup_offset), self.kn_offset);
        copy(dst, kn, self.id_offset)
    }

    /// After the last step: writes the number of levels below the root to `levels`, and
    /// returns 1 if there are more than the walk took.
    #[inline(always)]
    fn end(&self, levels: *mut u32) -> u64 {
        // SAFETY: callers pass a field of the reserved record.
        unsafe { *levels = self.depth as u32 };
        self.below_root & non_zero(load(self.memcg, self.parent_offset))
    }
}

/// Reads the victim's memory cgroup and each ancestor below the root: id, charge and limit,
/// memory+swap on v1, and `memory.oom.group` on v2.
#[inline(always)]
fn fill_memcgs(event: *mut OomEvent, task: u64) -> u32 {
    let (memory, usage, max) = (
        layout!(memcg_memory),
        layout!(page_counter_usage),
        layout!(page_counter_max),
    );
    if memory == ABSENT || usage == ABSENT || max == ABSENT {
        return 0;
    }
    let Some(mut walk) = MemcgWalk::from_task(task) else {
        return 0;
    };
    let (memsw, oom_group) = (layout!(memcg_memsw), layout!(memcg_oom_group));
    let mut whole = 1u64;
    for level in 0..MEMCG_MAX_DEPTH {
        let (memcg, below_root) = walk.step();
        // SAFETY: slot `level` (< MEMCG_MAX_DEPTH) of the reserved record.
        let slot = unsafe { &raw mut (*event).memcgs[level] };
        unsafe {
            let id = walk.copy_id(&raw mut (*slot).id, memcg);
            let used = copy(&raw mut (*slot).usage_pages, memcg, memory + usage);
            let limit = copy(&raw mut (*slot).max_pages, memcg, memory + max);
            let swapped = copy(
                &raw mut (*slot).memsw_usage_pages,
                memcg,
                within(memsw, usage),
            );
            let swap_limit = copy(&raw mut (*slot).memsw_max_pages, memcg, within(memsw, max));
            let mut group = 0u8;
            let group_read = copy(&raw mut group, memcg, oom_group);
            let memsw_read = swapped & swap_limit;
            (*slot).flags = bit_if(id, memcg_flag::ID)
                | bit_if(used & limit, memcg_flag::MEMORY)
                | bit_if(memsw_read, memcg_flag::MEMSW)
                | bit_if(group_read & non_zero(group as u64), memcg_flag::OOM_GROUP)
                | bit_if(group_read, memcg_flag::OOM_GROUP_READ);
            (*slot)._pad = 0;
            whole &= (1 ^ below_root) | (id & used & limit);
        }
    }
    // SAFETY: inside the reserved record.
    let truncated = walk.end(unsafe { &raw mut (*event).memcg_levels });
    bit_if(whole, field::MEMCGS) | bit_if(truncated, field::MEMCGS_TRUNCATED)
}

/// `task->thread_pid->numbers[level].nr`: the pid as the victim's own namespace sees it.
#[inline(always)]
fn fill_namespaced_pid(event: *mut OomEvent, task: u64) -> u32 {
    let (numbers, upid_size, upid_nr) =
        (layout!(pid_numbers), layout!(upid_size), layout!(upid_nr));
    if numbers == ABSENT || upid_size == ABSENT || upid_nr == ABSENT {
        return 0;
    }
    let pid = load(task, layout!(task_thread_pid));
    let mut level = 0u32;
    let level_ok = copy(&raw mut level, pid, layout!(pid_level));
    // A level past MAX_PID_NS_LEVEL is not a level: masked into range, and marked not ok.
    let in_range = 1 ^ non_zero((level / MAX_PID_NS_LEVEL) as u64);
    let level = level % MAX_PID_NS_LEVEL;
    let offset = numbers + level * upid_size + upid_nr;
    // SAFETY: inside the reserved record.
    let read = copy(unsafe { &raw mut (*event).victim_ns_pid }, pid, offset);
    bit_if(level_ok & in_range & read, field::NS_PID)
}

/// The victim's parent, and how deep its own and its parent's pid namespaces are.
#[inline(always)]
fn fill_parent(event: *mut OomEvent, task: u64) -> u32 {
    let parent = load(task, layout!(task_real_parent));
    let level = layout!(pid_level);
    let thread_pid = layout!(task_thread_pid);
    // SAFETY (whole block): every destination is inside the reserved record.
    unsafe {
        let tgid = copy(&raw mut (*event).parent_tgid, parent, layout!(task_tgid));
        let own = copy(
            &raw mut (*event).victim_pid_level,
            load(task, thread_pid),
            level,
        );
        let parents = copy(
            &raw mut (*event).parent_pid_level,
            load(parent, thread_pid),
            level,
        );
        bit_if(tgid, field::PARENT) | bit_if(own & parents, field::PID_LEVELS)
    }
}

/// Counter `index` of `mm->rss_stat` in bytes, and whether it was read.
#[inline(always)]
fn rss_bytes(mm: u64, index: u32) -> (u64, u64) {
    let (base, stride, value) = (
        layout!(mm_rss_stat),
        layout!(mm_rss_stride),
        layout!(mm_rss_value),
    );
    if base == ABSENT || stride == ABSENT || value == ABSENT {
        return (0, 0);
    }
    let mut pages = 0i64;
    let ok = copy(&raw mut pages, mm, base + index * stride + value);
    // percpu_counter's shared count lags its per-CPU deltas and can dip below zero; the
    // kernel's own report clamps it the same way (percpu_counter_read_positive).
    let pages = (pages & !(pages >> 63)) as u64;
    (pages << (layout!(page_shift) & 63), ok)
}

#[inline(always)]
fn fill_from_mm(event: *mut OomEvent, mm: u64) -> u32 {
    let (anon, anon_ok) = rss_bytes(mm, rss_index::ANON);
    let (file, file_ok) = rss_bytes(mm, rss_index::FILE);
    let (shmem, shmem_ok) = rss_bytes(mm, rss_index::SHMEM);
    let (swap, swap_ok) = rss_bytes(mm, rss_index::SWAP);
    let page_shift = layout!(page_shift) & 63;
    // SAFETY (whole block): every write lands inside the reserved record.
    unsafe {
        (*event).rss_anon_bytes = anon;
        (*event).rss_file_bytes = file;
        (*event).rss_shmem_bytes = shmem;
        (*event).swap_bytes = swap;
        let mut fields =
            bit_if(anon_ok & file_ok & shmem_ok, field::RSS) | bit_if(swap_ok, field::SWAP);
        let total_vm_ok = copy(&raw mut (*event).total_vm_bytes, mm, layout!(mm_total_vm));
        (*event).total_vm_bytes <<= page_shift;
        fields |= bit_if(total_vm_ok, field::TOTAL_VM);
        let mut pgtables = 0i64;
        let pgtables_ok = copy(&raw mut pgtables, mm, layout!(mm_pgtables_bytes));
        (*event).pgtables_bytes = (pgtables & !(pgtables >> 63)) as u64;
        fields | bit_if(pgtables_ok, field::PGTABLES)
    }
}

/// The kernfs node of the task's memory cgroup (0 if unreadable): the memory controller's
/// cgroup on v1, the default hierarchy's cgroup on v2.
#[inline(always)]
fn memory_cgroup_kn(task: u64) -> u64 {
    let css_set = load(task, layout!(task_cgroups));
    let cgroup = match layout!(cgroup_mode) {
        cgroup_mode::V1 => {
            let (subsys, index) = (layout!(css_set_subsys), layout!(memory_cgrp_id));
            if subsys == ABSENT || index == ABSENT {
                return 0;
            }
            load(load(css_set, subsys + index * 8), layout!(css_cgroup))
        }
        cgroup_mode::V2 => load(css_set, layout!(css_set_dfl_cgrp)),
        _ => return 0,
    };
    load(cgroup, layout!(cgroup_kn))
}

/// Records the kernfs names from the victim's cgroup up to the hierarchy's root, leaf first,
/// one fixed slot per level. Done here, not in user space, because Docker removes a
/// container's cgroup as soon as it dies. The walk always takes CGROUP_MAX_DEPTH steps;
/// past the root every read fails harmlessly, and `below_root` stops the counting.
#[inline(always)]
fn fill_cgroup_path(event: *mut OomEvent, kn: u64) -> u32 {
    let (parent_offset, name_offset) = (layout!(kn_parent), layout!(kn_name));
    if parent_offset == ABSENT || name_offset == ABSENT {
        return 0;
    }
    // SAFETY: `names` is the record's slot array; slot `level` (< CGROUP_MAX_DEPTH) gets at
    // most CGROUP_NAME_LEN bytes.
    let names = unsafe { (&raw mut (*event).cgroup_names) as *mut u8 };
    let mut node = kn;
    let mut depth = 0u64;
    // 1 while `node` is a cgroup below the root; the root is the node without a parent.
    let mut below_root = non_zero(kn);
    let mut bad = 1 ^ below_root;
    let id_offset = layout!(kn_id);
    for level in 0..CGROUP_MAX_DEPTH {
        let parent = load(node, parent_offset);
        below_root &= non_zero(parent);
        // SAFETY: slot `level` (< CGROUP_MAX_DEPTH) of the reserved record; an id that cannot
        // be read is 0, which no cgroup has.
        unsafe { copy(&raw mut (*event).cgroup_ids[level], node, id_offset) };
        let copied = unsafe {
            bpf_probe_read_kernel_str(
                names.add(level * CGROUP_NAME_LEN).cast(),
                CGROUP_NAME_LEN as u32,
                load::<u64>(node, name_offset) as *const c_void,
            )
        };
        // A name that could not be read, or that filled its slot (it may have been cut),
        // makes the path untrusted, if the node is one whose name belongs in the path.
        // `copied` counts the NUL: 1..=127 is a whole name; 0, 128 or an error is not.
        let unusable = non_zero((copied as u64) >> 7) | (1 ^ non_zero(copied as u64));
        bad |= below_root & unusable;
        depth += below_root;
        node = parent;
    }
    // Still below the root after the last step: the cgroup is deeper than the walk.
    bad |= below_root & non_zero(load(node, parent_offset));
    // SAFETY: inside the reserved record.
    unsafe { (*event).cgroup_depth = depth as u32 };
    field::CGROUP_PATH | bit_if(bad, field::CGROUP_PATH_TRUNCATED)
}

/// The task that ran into the limit: `current` when the victim is marked.
#[inline(always)]
fn fill_trigger(event: *mut OomEvent) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY (whole block): every write lands inside the reserved record.
    unsafe {
        (*event).trigger_tid = pid_tgid as u32;
        (*event).trigger_tgid = (pid_tgid >> 32) as u32;
        (*event).trigger_comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
        let current = bpf_get_current_task();
        let kn = memory_cgroup_kn(current);
        let ok = copy(&raw mut (*event).trigger_cgroup_id, kn, layout!(kn_id));
        bit_if(ok, field::TRIGGER_CGROUP_ID) | fill_trigger_memcgs(event, current)
    }
}

/// The ids of the trigger's memory cgroup and its ancestors below the root: the limit hit is
/// on this chain as well as on the victim's.
#[inline(always)]
fn fill_trigger_memcgs(event: *mut OomEvent, task: u64) -> u32 {
    let Some(mut walk) = MemcgWalk::from_task(task) else {
        return 0;
    };
    if walk.cgroup_offset == ABSENT {
        return 0;
    }
    let mut whole = 1u64;
    for level in 0..MEMCG_MAX_DEPTH {
        let (memcg, below_root) = walk.step();
        // SAFETY: slot `level` (< MEMCG_MAX_DEPTH) of the reserved record.
        let read = walk.copy_id(unsafe { &raw mut (*event).trigger_memcg_ids[level] }, memcg);
        whole &= (1 ^ below_root) | read;
    }
    // SAFETY: inside the reserved record.
    let truncated = walk.end(unsafe { &raw mut (*event).trigger_memcg_levels });
    bit_if(whole & (1 ^ truncated), field::TRIGGER_MEMCGS)
}

/// The classic tracepoint: only what the record carries, at offsets from its tracefs format.
#[inline(always)]
fn fill_from_record(event: *mut OomEvent, record: u64) -> u32 {
    let mut fields = fill_tid(event, record, layout!(tp_pid));
    // SAFETY (whole block): every destination is inside the reserved record.
    unsafe {
        // `__data_loc char[] comm`: offset in the low 16 bits, length in the high 16.
        let mut loc = 0u32;
        let loc_ok = copy(&raw mut loc, record, layout!(tp_comm_loc));
        let comm_ok = copy(&raw mut (*event).victim_thread_comm, record, loc & 0xffff);
        fields |= bit_if(loc_ok & comm_ok, field::THREAD_COMM);
        let anon = copy_kb(
            &raw mut (*event).rss_anon_bytes,
            record,
            layout!(tp_anon_rss),
        );
        let file = copy_kb(
            &raw mut (*event).rss_file_bytes,
            record,
            layout!(tp_file_rss),
        );
        let shmem = copy_kb(
            &raw mut (*event).rss_shmem_bytes,
            record,
            layout!(tp_shmem_rss),
        );
        fields |= bit_if(anon & file & shmem, field::RSS);
        let total_vm = copy_kb(
            &raw mut (*event).total_vm_bytes,
            record,
            layout!(tp_total_vm),
        );
        fields |= bit_if(total_vm, field::TOTAL_VM);
        let pgtables = copy_kb(
            &raw mut (*event).pgtables_bytes,
            record,
            layout!(tp_pgtables),
        );
        fields |= bit_if(pgtables, field::PGTABLES);
        fields |= bit_if(
            copy(&raw mut (*event).victim_uid, record, layout!(tp_uid)),
            field::UID,
        );
        fields | fill_oom_score_adj(event, record, layout!(tp_oom_score_adj))
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
