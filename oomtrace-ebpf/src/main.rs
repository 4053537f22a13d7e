//! oomtrace's kernel program: one record per OOM victim, taken at `oom/mark_victim`.
//!
//! Three entry points share one body; user space loads and attaches exactly one of them,
//! the richest the running kernel accepts. Struct offsets come from [`LAYOUT`], which user
//! space fills from the kernel's BTF, so every read is a bounded `bpf_probe_read_kernel` at
//! an offset checked at start-up; an [`ABSENT`] offset leaves its field `null`.
#![no_std]
#![no_main]

use core::ptr::read_volatile;

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_current_task, bpf_ktime_get_boot_ns, bpf_probe_read_kernel_str},
    },
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use oomtrace_common::{
    ABSENT, CGROUP_MAX_DEPTH, CGROUP_NAME_LEN, KernelLayout, MAX_PID_NS_LEVEL, OomEvent, Source,
    TASK_COMM_LEN, cgroup_mode, field, rss_index, tp_args,
};

/// Filled by user space at load time (`LAYOUT_GLOBAL`); frozen in `.rodata`.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::UNKNOWN;

/// 1 MiB holds about 450 records: a whole `memory.oom.group` kill of a large pod.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

#[map]
static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

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
    emit(Source::TpBtf, |event| fill_from_first_arg(event, first_arg));
    0
}

#[raw_tracepoint(tracepoint = "mark_victim")]
pub fn mark_victim_raw(ctx: RawTracePointContext) -> i32 {
    let first_arg: u64 = ctx.arg(0);
    emit(Source::RawTp, |event| fill_from_first_arg(event, first_arg));
    0
}

#[tracepoint]
pub fn mark_victim_tp(ctx: TracePointContext) -> i32 {
    let record = ctx.as_ptr() as *const u8;
    emit(Source::Tracepoint, |event| fill_from_record(event, record));
    0
}

/// Reserves a record, lets `fill` write the victim's fields, adds the trigger and submits.
/// A full ring buffer is counted in [`DROPPED`], never lost silently.
#[inline(always)]
fn emit(source: Source, fill: impl FnOnce(*mut OomEvent) -> u32) {
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
        (*event).source = source as u32;
        (*event).cgroup_depth = 0;
        let fields = fill(event) | fill_trigger(event);
        (*event).fields = fields;
    }
    entry.submit(0);
}

#[inline(always)]
fn fill_from_first_arg(event: *mut OomEvent, first_arg: u64) -> u32 {
    match layout!(tp_args) {
        tp_args::TASK => fill_from_task(event, first_arg as *const u8),
        tp_args::PID_ONLY => {
            // SAFETY: writes inside the reserved record.
            unsafe { (*event).victim_tid = first_arg as u32 };
            field::TID
        }
        _ => 0,
    }
}

/// Reads a `T` at `base + offset`, or `None` when the offset is unknown or the read faults.
#[inline(always)]
fn read<T>(base: *const u8, offset: u32) -> Option<T> {
    if offset == ABSENT || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address; a bad one returns an error.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T).ok() }
}

#[inline(always)]
fn read_ptr(base: *const u8, offset: u32) -> Option<*const u8> {
    read::<u64>(base, offset)
        .map(|ptr| ptr as *const u8)
        .filter(|ptr| !ptr.is_null())
}

/// Copies a `comm` into `dst`; false if it could not be read.
#[inline(always)]
fn read_comm(task: *const u8, dst: *mut [u8; TASK_COMM_LEN]) -> bool {
    match read::<[u8; TASK_COMM_LEN]>(task, layout!(task_comm)) {
        Some(comm) => {
            // SAFETY: `dst` lies inside the reserved record.
            unsafe { *dst = comm };
            true
        }
        None => false,
    }
}

#[inline(always)]
fn fill_from_task(event: *mut OomEvent, task: *const u8) -> u32 {
    let mut fields = 0;
    // SAFETY (whole block): every write lands inside the reserved record.
    unsafe {
        if let Some(tid) = read::<u32>(task, layout!(task_pid)) {
            (*event).victim_tid = tid;
            fields |= field::TID;
        }
        if let Some(tgid) = read::<u32>(task, layout!(task_tgid)) {
            (*event).victim_tgid = tgid;
            fields |= field::TGID;
        }
        if read_comm(task, &raw mut (*event).victim_thread_comm) {
            fields |= field::THREAD_COMM;
        }
        if let Some(leader) = read_ptr(task, layout!(task_group_leader))
            && read_comm(leader, &raw mut (*event).victim_process_comm)
        {
            fields |= field::PROCESS_COMM;
        }
        if let Some(cred) = read_ptr(task, layout!(task_real_cred))
            && let Some(uid) = read::<u32>(cred, layout!(cred_uid))
        {
            (*event).victim_uid = uid;
            fields |= field::UID;
        }
        if let Some(signal) = read_ptr(task, layout!(task_signal))
            && let Some(adj) = read::<i16>(signal, layout!(signal_oom_score_adj))
        {
            (*event).oom_score_adj = adj as i32;
            fields |= field::OOM_SCORE_ADJ;
        }
        if let Some(ns_pid) = namespaced_pid(task) {
            (*event).victim_ns_pid = ns_pid;
            fields |= field::NS_PID;
        }
    }
    if let Some(mm) = read_ptr(task, layout!(task_mm)) {
        fields |= fill_from_mm(event, mm);
    }
    if let Some(kn) = memory_cgroup_kn(task) {
        if let Some(id) = read::<u64>(kn, layout!(kn_id)) {
            // SAFETY: inside the reserved record.
            unsafe { (*event).cgroup_id = id };
            fields |= field::CGROUP_ID;
        }
        fields |= fill_cgroup_path(event, kn);
    }
    fields
}

/// `task->thread_pid->numbers[level].nr`: the pid as the victim's own namespace sees it.
#[inline(always)]
fn namespaced_pid(task: *const u8) -> Option<u32> {
    let pid = read_ptr(task, layout!(task_thread_pid))?;
    let level = read::<u32>(pid, layout!(pid_level))?;
    let (numbers, upid_size, upid_nr) =
        (layout!(pid_numbers), layout!(upid_size), layout!(upid_nr));
    if level >= MAX_PID_NS_LEVEL || numbers == ABSENT || upid_size == ABSENT || upid_nr == ABSENT {
        return None;
    }
    read::<u32>(pid, numbers + level * upid_size + upid_nr)
}

#[inline(always)]
fn rss_bytes(mm: *const u8, index: u32) -> Option<u64> {
    let (base, stride, value) = (
        layout!(mm_rss_stat),
        layout!(mm_rss_stride),
        layout!(mm_rss_value),
    );
    if base == ABSENT || stride == ABSENT || value == ABSENT {
        return None;
    }
    // percpu_counter's shared count lags its per-CPU deltas and can dip below zero; the
    // kernel's own report clamps it the same way (percpu_counter_read_positive).
    let pages = read::<i64>(mm, base + index * stride + value)?.max(0) as u64;
    Some(pages << (layout!(page_shift) & 63))
}

#[inline(always)]
fn fill_from_mm(event: *mut OomEvent, mm: *const u8) -> u32 {
    let mut fields = 0;
    // SAFETY (whole block): every write lands inside the reserved record.
    unsafe {
        if let (Some(anon), Some(file), Some(shmem)) = (
            rss_bytes(mm, rss_index::ANON),
            rss_bytes(mm, rss_index::FILE),
            rss_bytes(mm, rss_index::SHMEM),
        ) {
            (*event).rss_anon_bytes = anon;
            (*event).rss_file_bytes = file;
            (*event).rss_shmem_bytes = shmem;
            fields |= field::RSS;
        }
        if let Some(swap) = rss_bytes(mm, rss_index::SWAP) {
            (*event).swap_bytes = swap;
            fields |= field::SWAP;
        }
        if let Some(pages) = read::<u64>(mm, layout!(mm_total_vm)) {
            (*event).total_vm_bytes = pages << (layout!(page_shift) & 63);
            fields |= field::TOTAL_VM;
        }
        if let Some(bytes) = read::<i64>(mm, layout!(mm_pgtables_bytes)) {
            (*event).pgtables_bytes = bytes.max(0) as u64;
            fields |= field::PGTABLES;
        }
    }
    fields
}

/// The kernfs node of the task's memory cgroup: the memory controller's cgroup on v1, the
/// default hierarchy's cgroup on v2.
#[inline(always)]
fn memory_cgroup_kn(task: *const u8) -> Option<*const u8> {
    let css_set = read_ptr(task, layout!(task_cgroups))?;
    let cgroup = match layout!(cgroup_mode) {
        cgroup_mode::V1 => {
            let (subsys, index) = (layout!(css_set_subsys), layout!(memory_cgrp_id));
            if subsys == ABSENT || index == ABSENT {
                return None;
            }
            let css = read_ptr(css_set, subsys + index * 8)?;
            read_ptr(css, layout!(css_cgroup))?
        }
        cgroup_mode::V2 => read_ptr(css_set, layout!(css_set_dfl_cgrp))?,
        _ => return None,
    };
    read_ptr(cgroup, layout!(cgroup_kn))
}

/// Records the kernfs names from the victim's cgroup up to the hierarchy's root, leaf first,
/// one fixed slot per level. Done here, not in user space, because Docker removes a
/// container's cgroup as soon as it dies. One bounded loop with a fixed slot per level keeps
/// every iteration alike, so even 6.1's verifier prunes it (a packed path with a running
/// length exceeded its one-million-instruction budget there).
#[inline(always)]
fn fill_cgroup_path(event: *mut OomEvent, kn: *const u8) -> u32 {
    let (parent_offset, name_offset) = (layout!(kn_parent), layout!(kn_name));
    if parent_offset == ABSENT || name_offset == ABSENT {
        return 0;
    }
    // SAFETY: `names` is the record's slot array; slot `level` is written only while
    // `level < CGROUP_MAX_DEPTH`, each write at most CGROUP_NAME_LEN bytes into its slot.
    let names = unsafe { (&raw mut (*event).cgroup_names) as *mut u8 };
    let mut node = kn;
    let mut depth = 0u32;
    let mut truncated = true;
    for level in 0..=CGROUP_MAX_DEPTH {
        let Some(parent) = read::<u64>(node, parent_offset) else {
            return 0;
        };
        if parent == 0 {
            // `node` is the hierarchy's root, which has no name of its own.
            truncated = false;
            break;
        }
        if level == CGROUP_MAX_DEPTH {
            break;
        }
        let Some(name) = read_ptr(node, name_offset) else {
            return 0;
        };
        let copied = unsafe {
            bpf_probe_read_kernel_str(
                names.add(level * CGROUP_NAME_LEN).cast(),
                CGROUP_NAME_LEN as u32,
                name.cast(),
            )
        };
        if copied <= 0 {
            return 0;
        }
        if copied as usize >= CGROUP_NAME_LEN {
            // The name filled its slot: it may have been cut.
            break;
        }
        depth = level as u32 + 1;
        node = parent as *const u8;
    }
    unsafe { (*event).cgroup_depth = depth };
    if truncated {
        field::CGROUP_PATH | field::CGROUP_PATH_TRUNCATED
    } else {
        field::CGROUP_PATH
    }
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
    }
    let current = unsafe { bpf_get_current_task() } as *const u8;
    if let Some(kn) = memory_cgroup_kn(current)
        && let Some(id) = read::<u64>(kn, layout!(kn_id))
    {
        unsafe { (*event).trigger_cgroup_id = id };
        return field::TRIGGER_CGROUP_ID;
    }
    0
}

/// The classic tracepoint: only what the record carries, at offsets from its tracefs format.
#[inline(always)]
fn fill_from_record(event: *mut OomEvent, record: *const u8) -> u32 {
    let mut fields = 0;
    // SAFETY (whole block): every write lands inside the reserved record.
    unsafe {
        if let Some(tid) = read::<u32>(record, layout!(tp_pid)) {
            (*event).victim_tid = tid;
            fields |= field::TID;
        }
        // `__data_loc char[] comm`: offset in the low 16 bits, length in the high 16.
        if let Some(loc) = read::<u32>(record, layout!(tp_comm_loc))
            && let Some(comm) = read::<[u8; TASK_COMM_LEN]>(record, loc & 0xffff)
        {
            (*event).victim_thread_comm = comm;
            fields |= field::THREAD_COMM;
        }
        if let (Some(anon), Some(file), Some(shmem)) = (
            read::<u64>(record, layout!(tp_anon_rss)),
            read::<u64>(record, layout!(tp_file_rss)),
            read::<u64>(record, layout!(tp_shmem_rss)),
        ) {
            (*event).rss_anon_bytes = anon << 10;
            (*event).rss_file_bytes = file << 10;
            (*event).rss_shmem_bytes = shmem << 10;
            fields |= field::RSS;
        }
        if let Some(total_vm) = read::<u64>(record, layout!(tp_total_vm)) {
            (*event).total_vm_bytes = total_vm << 10;
            fields |= field::TOTAL_VM;
        }
        if let Some(pgtables) = read::<u64>(record, layout!(tp_pgtables)) {
            (*event).pgtables_bytes = pgtables << 10;
            fields |= field::PGTABLES;
        }
        if let Some(uid) = read::<u32>(record, layout!(tp_uid)) {
            (*event).victim_uid = uid;
            fields |= field::UID;
        }
        if let Some(adj) = read::<i16>(record, layout!(tp_oom_score_adj)) {
            (*event).oom_score_adj = adj as i32;
            fields |= field::OOM_SCORE_ADJ;
        }
    }
    fields
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
