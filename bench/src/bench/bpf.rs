//! The BPF programs and maps a tool holds, found among its file descriptors, and what the bench
//! reads of them without disturbing the tool: a program's run counts, a ring buffer's
//! positions, a per-CPU counter. Maps are opened by id with the bench's own descriptor, which
//! keeps a map alive after its owner exits, so what the owner did last can still be read.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::sys::{self, ProgStats};
use crate::console::stdout_within;

/// bpftool answers in well under a second; this bounds a machine in trouble.
const BPFTOOL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prog,
    Map,
}

impl Kind {
    fn of_link(target: &std::ffi::OsStr) -> Option<Self> {
        match target.to_str()? {
            "anon_inode:bpf-prog" => Some(Self::Prog),
            "anon_inode:bpf-map" => Some(Self::Map),
            _ => None,
        }
    }

    /// fdinfo's line for the object's id, and bpftool's word for the kind.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::Prog => ("prog_id:", "prog"),
            Self::Map => ("map_id:", "map"),
        }
    }
}

/// A BPF program or map a process holds.
#[derive(Clone, Debug)]
pub struct Held {
    pub kind: Kind,
    pub id: u32,
    /// Its descriptor in the holder.
    pub fd: u32,
    /// As bpftool shows it: the kernel keeps 15 bytes of a name, bpftool the whole name where
    /// the object's BTF has it.
    pub name: String,
}

/// Every BPF program and map `pid` holds, named by bpftool (fdinfo has ids, not names).
pub fn held_by(pid: u32) -> Result<Vec<Held>> {
    let dir = format!("/proc/{pid}/fd");
    let mut held = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("could not list {dir}"))? {
        let entry = entry?;
        let Some(kind) = std::fs::read_link(entry.path())
            .ok()
            .and_then(|target| Kind::of_link(target.as_os_str()))
        else {
            continue;
        };
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let (id_line, word) = kind.words();
        // The descriptor may have been closed since the listing: skip it, as one not held.
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix(id_line))
            .and_then(|id| id.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let shown = stdout_within(
            Command::new("bpftool").args(["--json", word, "show", "id", &id.to_string()]),
            BPFTOOL_TIMEOUT,
        )?;
        let name = serde_json::from_str::<serde_json::Value>(&shown)
            .ok()
            .and_then(|shown| shown["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        held.push(Held { kind, id, fd, name });
    }
    Ok(held)
}

/// The first of `held` of `kind` whose name starts with `prefix`: a program's name as the
/// kernel keeps it is cut to 15 bytes, and bpftool shows the whole one where BTF has it.
pub fn find<'a>(held: &'a [Held], kind: Kind, prefix: &str) -> Option<&'a Held> {
    held.iter()
        .find(|h| h.kind == kind && h.name.starts_with(prefix))
}

/// The map of `held` named `name` exactly: one map's name may begin another's (`SIGNALS`,
/// `SIGNALS_DROPPED`).
pub fn find_map<'a>(held: &'a [Held], name: &str) -> Option<&'a Held> {
    held.iter().find(|h| h.kind == Kind::Map && h.name == name)
}

/// A program's run counts so far, read from its holder's fdinfo.
pub fn prog_stats(pid: u32, prog: &Held) -> Result<ProgStats> {
    sys::prog_stats(pid, prog.fd)
}

/// The names of every BPF program loaded on the machine, whoever holds it.
pub fn loaded_programs() -> Result<Vec<String>> {
    let shown = stdout_within(
        Command::new("bpftool").args(["--json", "prog", "show"]),
        BPFTOOL_TIMEOUT,
    )?;
    let shown: serde_json::Value =
        serde_json::from_str(&shown).context("bpftool prog show printed no JSON")?;
    Ok(shown
        .as_array()
        .map(|progs| {
            progs
                .iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

// bpf(2) commands and the parts of `union bpf_attr` they read (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;

#[repr(C)]
struct GetFdById {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
struct LookupElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised prefix of `union bpf_attr` for `cmd`, and its size
    // is passed; the kernel zero-fills the rest.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A map opened by id.
pub struct Map {
    fd: OwnedFd,
    id: u32,
}

impl Map {
    pub fn open(id: u32) -> Result<Self> {
        let mut attr = GetFdById {
            id,
            next_id: 0,
            open_flags: 0,
        };
        let fd = bpf(BPF_MAP_GET_FD_BY_ID, &mut attr)
            .with_context(|| format!("could not open BPF map {id}"))?;
        // SAFETY: the kernel just made this descriptor for us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Self { fd, id })
    }

    /// The sum over every possible CPU of slot 0 of a per-CPU array of `u64`: a counter each
    /// CPU adds to without locking.
    pub fn per_cpu_sum(&self) -> Result<u64> {
        let mut values = vec![0u64; possible_cpus()?];
        let key = 0u32;
        let mut attr = LookupElem {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: std::ptr::from_ref(&key) as u64,
            value: values.as_mut_ptr() as u64,
            flags: 0,
        };
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)
            .with_context(|| format!("could not read slot 0 of BPF map {}", self.id))?;
        Ok(values.iter().sum())
    }

    /// How far a ring buffer's writers and its reader have gone, in bytes since it was made.
    pub fn ring_positions(&self) -> Result<RingPositions> {
        let ring = RingView::map(self, 0)?;
        Ok(RingPositions {
            consumer: ring.word(0),
            producer: ring.word(ring.page),
        })
    }

    /// The records a ring buffer's writers committed between positions `from` and `to`, each
    /// record's bytes; discarded ones are left out. `None` if more than the ring holds was
    /// written since `from`: the first of them have been written over by then.
    pub fn ring_records(&self, from: u64, to: u64) -> Result<Option<Vec<Vec<u8>>>> {
        let size = self.max_entries()?;
        if to.saturating_sub(from) > size {
            return Ok(None);
        }
        let ring = RingView::map(self, size)?;
        // Each record: a 32-bit length whose top two bits say busy (not yet committed) and
        // discarded, 32 bits of page offset, then the bytes, the whole rounded up to 8.
        const BUSY: u32 = 1 << 31;
        const DISCARD: u32 = 1 << 30;
        let mut records = Vec::new();
        let mut at = from;
        while at < to {
            let header = ring.data((at % size) as usize, 4);
            let word = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
            if word & BUSY != 0 {
                break;
            }
            let len = (word & !(BUSY | DISCARD)) as usize;
            if word & DISCARD == 0 {
                records.push(ring.data((at % size) as usize + 8, len).to_vec());
            }
            at += ring_record_bytes(len);
        }
        Ok(Some(records))
    }

    /// A ring buffer's size in bytes, or any map's `max_entries`, from the bench's own fdinfo.
    fn max_entries(&self) -> Result<u64> {
        let path = format!("/proc/self/fdinfo/{}", self.fd.as_raw_fd());
        let info =
            std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
        info.lines()
            .find_map(|l| l.strip_prefix("max_entries:"))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("{path} has no max_entries"))
    }
}

/// A ring buffer mapped read-only, as the kernel lays it out for any holder: the reader's
/// position, the writers' position, a page each, then the data pages twice over, so that a
/// record that wraps around the end reads on without a break. Unmapped when dropped.
struct RingView {
    base: *mut libc::c_void,
    len: usize,
    page: usize,
}

impl RingView {
    /// The two position pages, and `data_bytes` of data (twice over) when asked for.
    fn map(map: &Map, data_bytes: u64) -> Result<Self> {
        // SAFETY: sysconf has no memory preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = 2 * page + 2 * data_bytes as usize;
        // SAFETY: a fresh read-only shared mapping of the ring; the kernel refuses only
        // writable ones of anything but the reader's position.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("could not map ring buffer {}", map.id));
        }
        Ok(Self { base, len, page })
    }

    /// The position word at `offset`, which its owner moves atomically.
    fn word(&self, offset: usize) -> u64 {
        // SAFETY: both positions are 8-byte aligned words inside the mapping.
        unsafe { (*self.base.cast::<u8>().add(offset).cast::<AtomicU64>()).load(Ordering::Acquire) }
    }

    /// `len` bytes of data from `offset` into the ring's data.
    fn data(&self, offset: usize, len: usize) -> &[u8] {
        let start = (2 * self.page + offset).min(self.len);
        let len = len.min(self.len - start);
        // SAFETY: the range is clamped to the mapping, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(start), len) }
    }
}

impl Drop for RingView {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer borrowed.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// A ring buffer's positions: bytes written by the kernel program and bytes read by the tool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingPositions {
    pub consumer: u64,
    pub producer: u64,
}

/// Bytes a ring buffer record of `size` takes: an 8-byte header, rounded up to 8.
pub const fn ring_record_bytes(size: usize) -> u64 {
    ((size + 8).div_ceil(8) * 8) as u64
}

/// How many CPUs the kernel sizes per-CPU maps for.
fn possible_cpus() -> Result<usize> {
    const POSSIBLE: &str = "/sys/devices/system/cpu/possible";
    let text =
        std::fs::read_to_string(POSSIBLE).with_context(|| format!("could not read {POSSIBLE}"))?;
    match count_cpus(&text) {
        Some(n) if n > 0 => Ok(n),
        _ => bail!("{POSSIBLE} is not a CPU list: {text:?}"),
    }
}

/// The CPUs in a list such as `0-3,5`: the kernel gives a per-CPU map one value for each.
fn count_cpus(list: &str) -> Option<usize> {
    let mut count = 0;
    for range in list.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last) = (
            first.trim().parse::<usize>().ok()?,
            last.trim().parse::<usize>().ok()?,
        );
        count += last.checked_sub(first)? + 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_possible_cpus() {
        assert_eq!(count_cpus("0-1\n"), Some(2));
        assert_eq!(count_cpus("0\n"), Some(1));
        assert_eq!(count_cpus("0-3,5"), Some(5));
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn a_ring_record_has_a_header_and_is_8_aligned() {
        assert_eq!(ring_record_bytes(1), 16);
        assert_eq!(ring_record_bytes(8), 16);
        assert_eq!(ring_record_bytes(320), 328);
        assert_eq!(ring_record_bytes(321), 336);
    }
}
