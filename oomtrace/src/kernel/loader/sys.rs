//! The bpf(2) and perf_event_open(2) calls the loader makes.

use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

pub const PROG_TYPE_TRACEPOINT: u32 = 5;
pub const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
pub const PROG_TYPE_TRACING: u32 = 26;
pub const TRACE_RAW_TP: u32 = 23;

const MAP_CREATE: u32 = 0;
const MAP_UPDATE_ELEM: u32 = 2;
const PROG_LOAD: u32 = 5;
const RAW_TRACEPOINT_OPEN: u32 = 17;
const MAP_FREEZE: u32 = 22;
const OBJ_NAME_LEN: usize = 16;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
/// The verifier log first asked for when a program is refused.
pub const LOG_BYTES: usize = 1 << 20;
/// The largest log asked for, grown fourfold from [`LOG_BYTES`] while the kernel says it
/// is too small: kernels before 5.2 refuse a `log_size` over `u32::MAX >> 8`, as aya knows.
const LOG_BYTES_MAX: usize = (u32::MAX >> 8) as usize;

fn bpf<T>(cmd: u32, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a repr(C) bpf_attr prefix of the size passed; the kernel reads
    // (and for some commands writes) only that much.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            size_of::<T>() as u32,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn object_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut out = [0u8; OBJ_NAME_LEN];
    for (slot, b) in out
        .iter_mut()
        .zip(
            name.bytes()
                .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.')),
        )
        .take(OBJ_NAME_LEN - 1)
    {
        *slot = b;
    }
    out
}

pub struct MapCreate<'a> {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: &'a str,
}

#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; OBJ_NAME_LEN],
}

pub fn map_create(m: &MapCreate<'_>) -> std::io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: m.map_type,
        key_size: m.key_size,
        value_size: m.value_size,
        max_entries: m.max_entries,
        map_flags: m.map_flags,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: object_name(m.name),
    };
    bpf(MAP_CREATE, &mut attr).map(owned)
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

pub fn map_update(fd: RawFd, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: fd as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags: 0,
    };
    bpf(MAP_UPDATE_ELEM, &mut attr).map(drop)
}

#[repr(C)]
struct MapFdAttr {
    map_fd: u32,
}

pub fn map_freeze(fd: RawFd) -> std::io::Result<()> {
    bpf(MAP_FREEZE, &mut MapFdAttr { map_fd: fd as u32 }).map(drop)
}

pub struct ProgLoad<'a> {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub insns: &'a [u8],
    /// NUL-terminated.
    pub license: &'a [u8],
    pub name: &'a str,
    pub attach_btf_id: u32,
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
}

/// A refused load: the kernel's error, and the verifier's log if it gave one.
#[derive(Debug)]
pub struct LoadFailure {
    pub error: std::io::Error,
    /// The verifier's log, empty when it wrote none (or was not asked, after EPERM).
    pub log: String,
    /// The log filled [`LOG_BYTES_MAX`]: before Linux 6.4 the kernel keeps the start of the
    /// log, so its end, where the verifier says why it refused, is what is missing.
    pub log_cut: bool,
}

/// How many of the log's last lines an error shows: the verifier's reason is at the end, and
/// a log of megabytes does not belong in one message.
const LOG_TAIL_LINES: usize = 40;

impl LoadFailure {
    /// The verifier's last line, where it says why it refused.
    #[cfg(test)]
    pub fn last_line(&self) -> Option<&str> {
        self.log.lines().rev().find(|l| !l.trim().is_empty())
    }
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.log.trim_end();
        if self.error.raw_os_error() == Some(libc::EPERM) {
            return write!(
                f,
                "the kernel refused to load it ({}): loading eBPF needs CAP_BPF and CAP_PERFMON, and no lockdown or security module forbidding it",
                self.error
            );
        }
        if log.trim().is_empty() {
            return write!(
                f,
                "the kernel refused to load it ({}) and gave no verifier log",
                self.error
            );
        }
        write!(f, "the verifier rejected it ({})", self.error)?;
        if self.log_cut {
            write!(
                f,
                " and its log outgrew {} MiB, so its end may be missing",
                LOG_BYTES_MAX >> 20
            )?;
        }
        let lines: Vec<&str> = log.lines().collect();
        let skipped = lines.len().saturating_sub(LOG_TAIL_LINES);
        f.write_str(":")?;
        if skipped > 0 {
            write!(
                f,
                "\n[{skipped} earlier lines of the verifier's log left out]"
            )?;
        }
        for line in &lines[skipped..] {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

pub fn prog_load(p: &ProgLoad<'_>) -> Result<OwnedFd, LoadFailure> {
    let attempt = |log: &mut [u8]| {
        let mut attr = ProgLoadAttr {
            prog_type: p.prog_type,
            insn_cnt: (p.insns.len() / 8) as u32,
            insns: p.insns.as_ptr() as u64,
            license: p.license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            kern_version: 0,
            prog_flags: 0,
            prog_name: object_name(p.name),
            prog_ifindex: 0,
            expected_attach_type: p.expected_attach_type,
            prog_btf_fd: 0,
            func_info_rec_size: 0,
            func_info: 0,
            func_info_cnt: 0,
            line_info_rec_size: 0,
            line_info: 0,
            line_info_cnt: 0,
            attach_btf_id: p.attach_btf_id,
        };
        bpf(PROG_LOAD, &mut attr).map(owned)
    };
    // Without a log first: the verifier is faster when it writes none, and the program
    // loads on every kernel oomtrace supports. Refused, it is loaded again for the log.
    let error = match attempt(&mut []) {
        Ok(fd) => return Ok(fd),
        Err(error) => error,
    };
    // EPERM is a matter of privilege, decided before the verifier runs: it writes no log,
    // and asking again cannot change the answer.
    if error.raw_os_error() == Some(libc::EPERM) {
        return Err(LoadFailure {
            error,
            log: String::new(),
            log_cut: false,
        });
    }
    let mut log = vec![0u8; LOG_BYTES];
    loop {
        match attempt(&mut log) {
            Ok(fd) => return Ok(fd),
            // ENOSPC: the log did not fit. The kernel says so whatever else went wrong, so
            // `error`, from the load without a log, stays the one reported.
            Err(again)
                if again.raw_os_error() == Some(libc::ENOSPC) && log.len() < LOG_BYTES_MAX =>
            {
                let grown = (log.len() * 4).min(LOG_BYTES_MAX);
                log = vec![0u8; grown];
            }
            Err(again) => {
                let log_cut = again.raw_os_error() == Some(libc::ENOSPC);
                let len = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                return Err(LoadFailure {
                    error,
                    log: String::from_utf8_lossy(&log[..len]).into_owned(),
                    log_cut,
                });
            }
        }
    }
}

#[repr(C)]
struct RawTracepointAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// Attaches a raw tracepoint program to `name`, or a tp_btf program to the target it was
/// loaded for (`None`). Closing the returned link detaches it.
pub fn raw_tracepoint_open(name: Option<&str>, prog_fd: RawFd) -> std::io::Result<OwnedFd> {
    let name = name
        .map(|n| std::ffi::CString::new(n).map_err(std::io::Error::other))
        .transpose()?;
    let mut attr = RawTracepointAttr {
        name: name.as_ref().map_or(0, |n| n.as_ptr() as u64),
        prog_fd: prog_fd as u32,
        _pad: 0,
    };
    bpf(RAW_TRACEPOINT_OPEN, &mut attr).map(owned)
}

/// The start of `perf_event_attr`, then zeroes to the size given.
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    rest: [u64; 8],
}

/// Opens the classic tracepoint `id` as a perf event on every CPU and runs `prog_fd` on it.
/// Closing the returned event detaches it.
pub fn perf_tracepoint_attach(id: u32, prog_fd: RawFd) -> std::io::Result<OwnedFd> {
    let mut attr = PerfEventAttr {
        kind: PERF_TYPE_TRACEPOINT,
        size: size_of::<PerfEventAttr>() as u32,
        config: u64::from(id),
        sample_period: 1,
        sample_type: 0,
        read_format: 0,
        flags: 0,
        wakeup_events: 1,
        bp_type: 0,
        rest: [0; 8],
    };
    // SAFETY: `attr` is a zero-padded perf_event_attr of the size it states.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &mut attr as *mut PerfEventAttr,
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let event = owned(fd);
    for (request, arg) in [
        (PERF_EVENT_IOC_SET_BPF, prog_fd),
        (PERF_EVENT_IOC_ENABLE, 0),
    ] {
        // SAFETY: both ioctls take an int argument on a perf event descriptor we own.
        if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&event), request, arg) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(event)
}
