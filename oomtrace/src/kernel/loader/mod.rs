//! Loading and attaching: loads the kernel program with the discovered layout and attaches
//! the richest `mark_victim` entry point the kernel accepts, falling back in order.
//!
//! The object is loaded here on bare `bpf(2)` calls rather than through aya's `EbpfLoader`.
//! aya 0.14 parses the kernel's whole BTF into owned types whenever a loader is made, and
//! tp_btf attach wants that parse again: about 75 ms and 30 MB at start-up (the profile in
//! BENCHMARKS.md), for a program that needs no BTF relocation at all, since its offsets come
//! in as a frozen global. What the load needs is small: the legacy map definitions, the
//! `.rodata` global, map and call relocations, and for tp_btf the id of the tracepoint's
//! `btf_trace_*` typedef, which the plan already took from the project's own BTF reader.
//! aya still reads the ring buffer and the drop counter, from the map descriptors made here.

use std::{
    fmt,
    os::fd::{AsRawFd as _, OwnedFd, RawFd},
};

use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use oomtrace_common::{DROPPED_MAP, EVENTS_MAP, KernelLayout, LAYOUT_GLOBAL, attach_mode, program};

use crate::kernel::plan::{BtfTargets, TracepointIds};

/// The kernel program, built by build.rs.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/oomtrace"));

/// The ring buffer's size, whatever the object declares. Its pages are mapped into oomtrace
/// twice (the kernel's ring buffer layout) and all count toward its RSS from the start, so the
/// size is the steady RSS's largest part: 256 KiB hold about 75 records at once, and a full
/// buffer is counted as dropped, never lost silently. A burst larger than that only comes from
/// a `memory.oom.group` kill of more tasks than that, all marked within microseconds.
pub const RING_BYTES: u32 = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// BTF-typed tracepoint: the victim's task_struct, checked by the verifier.
    #[value(name = "tp_btf")]
    TpBtf,
    /// Raw tracepoint: the same arguments, untyped.
    #[value(name = "raw_tp")]
    RawTp,
    /// Classic tracepoint: only the fields in its tracefs record.
    #[value(name = "tracepoint")]
    Tracepoint,
}

impl AttachMode {
    /// Richest first: the order oomtrace tries them in.
    pub const ALL: [Self; 3] = [Self::TpBtf, Self::RawTp, Self::Tracepoint];

    pub fn name(self) -> &'static str {
        match self {
            Self::TpBtf => "tp_btf",
            Self::RawTp => "raw_tp",
            Self::Tracepoint => "tracepoint",
        }
    }

    /// The mode a record names ([`oomtrace_common::attach_mode`]).
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            attach_mode::TP_BTF => Some(Self::TpBtf),
            attach_mode::RAW_TP => Some(Self::RawTp),
            attach_mode::TRACEPOINT => Some(Self::Tracepoint),
            _ => None,
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            Self::TpBtf => program::TP_BTF,
            Self::RawTp => program::RAW_TP,
            Self::Tracepoint => program::TRACEPOINT,
        }
    }

    /// The `signal_generate` program attached beside [`Self::program`].
    pub fn signal_program(self) -> &'static str {
        match self {
            Self::TpBtf => program::SIGNAL_TP_BTF,
            Self::RawTp => program::SIGNAL_RAW_TP,
            Self::Tracepoint => program::SIGNAL_TRACEPOINT,
        }
    }

    /// `bpf_prog_type` and `bpf_attach_type` of its programs.
    fn prog_type(self) -> (u32, u32) {
        match self {
            Self::TpBtf => (sys::PROG_TYPE_TRACING, sys::TRACE_RAW_TP),
            Self::RawTp => (sys::PROG_TYPE_RAW_TRACEPOINT, 0),
            Self::Tracepoint => (sys::PROG_TYPE_TRACEPOINT, 0),
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why one attach mode could not be used. Carries the program's name, and for a verifier
/// rejection the verifier's log.
#[derive(Debug)]
pub struct AttachError {
    pub mode: AttachMode,
    pub reason: String,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.mode,
            self.mode.program(),
            self.reason
        )
    }
}

impl std::error::Error for AttachError {}

#[derive(Debug)]
pub enum LoadError {
    /// The object (maps, globals) did not load.
    Object(String),
    /// No mode in the list attached; each says why.
    NoMode(Vec<AttachError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Object(err) => write!(f, "cannot load oomtrace's kernel program: {err}"),
            Self::NoMode(errors) => {
                f.write_str("no attach mode works on this kernel")?;
                for err in errors {
                    write!(f, "; {err}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// The attached program and the maps user space reads. Dropping it detaches everything.
pub struct Attached {
    pub mode: AttachMode,
    /// Modes tried before `mode`, and why each failed.
    pub fallbacks: Vec<AttachError>,
    /// Why `signal_generate` could not be attached, if it could not: then whether a victim
    /// was killed or only marked is unknown.
    pub signal_failure: Option<String>,
    /// Links and perf events: closing them detaches the programs. Declared first, so they are
    /// dropped first.
    _links: Vec<OwnedFd>,
    _programs: Vec<OwnedFd>,
    events: Option<OwnedFd>,
    dropped: Option<OwnedFd>,
    /// The other maps, held for as long as the programs are.
    _maps: Vec<OwnedFd>,
}

impl Attached {
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, String> {
        let fd = self
            .events
            .take()
            .ok_or_else(|| format!("the kernel program has no {EVENTS_MAP} map"))?;
        let map = MapData::from_fd(fd)
            .and_then(Map::from_map_data)
            .map_err(|e| format!("{EVENTS_MAP}: {e}"))?;
        RingBuf::try_from(map).map_err(|e| format!("{EVENTS_MAP}: {e}"))
    }

    pub fn take_dropped(&mut self) -> Result<PerCpuArray<MapData, u64>, String> {
        let fd = self
            .dropped
            .take()
            .ok_or_else(|| format!("the kernel program has no {DROPPED_MAP} map"))?;
        let map = MapData::from_fd(fd)
            .and_then(Map::from_map_data)
            .map_err(|e| format!("{DROPPED_MAP}: {e}"))?;
        PerCpuArray::try_from(map).map_err(|e| format!("{DROPPED_MAP}: {e}"))
    }
}

/// What an attach needs beyond the layout.
pub struct Targets {
    /// The `btf_trace_*` typedef ids tp_btf attaches to.
    pub btf: BtfTargets,
    /// The classic tracepoints' tracefs ids.
    pub tracepoints: TracepointIds,
    /// The classic tracepoint exists in tracefs.
    pub tracepoint_available: bool,
}

/// Loads the program with `layout` and attaches the first of `modes` that works.
pub fn load_and_attach(
    layout: &KernelLayout,
    modes: &[AttachMode],
    targets: &Targets,
) -> Result<Attached, LoadError> {
    let object = elf::Object::parse(PROGRAM).map_err(LoadError::Object)?;
    let mut maps = Maps::create(&object, layout).map_err(LoadError::Object)?;

    let mut fallbacks = Vec::new();
    for &mode in modes {
        match attach(&object, &maps, mode, &MARK_VICTIM, targets) {
            Ok((program, link)) => {
                let mut programs = vec![program];
                let mut links = vec![link];
                let signal_failure = match signal_layout_known(layout, mode)
                    .and_then(|()| attach(&object, &maps, mode, &SIGNAL_GENERATE, targets))
                {
                    Ok((program, link)) => {
                        programs.push(program);
                        links.push(link);
                        None
                    }
                    Err(why) => Some(why),
                };
                return Ok(Attached {
                    mode,
                    fallbacks,
                    signal_failure,
                    _links: links,
                    _programs: programs,
                    events: maps.take(EVENTS_MAP),
                    dropped: maps.take(DROPPED_MAP),
                    _maps: maps.into_fds(),
                });
            }
            Err(reason) => fallbacks.push(AttachError { mode, reason }),
        }
    }
    Err(LoadError::NoMode(fallbacks))
}

/// The signal program compares thread ids: without the offsets it reads them at, it would
/// see no SIGKILL and call every victim only marked.
fn signal_layout_known(layout: &KernelLayout, mode: AttachMode) -> Result<(), String> {
    let needed: &[u32] = match mode {
        AttachMode::TpBtf | AttachMode::RawTp => &[layout.task_pid],
        AttachMode::Tracepoint => &[
            layout.tp_signal_sig,
            layout.tp_signal_code,
            layout.tp_signal_pid,
        ],
    };
    if needed.contains(&oomtrace_common::ABSENT) {
        return Err("the kernel layout lacks what it reads (see the missing fields)".into());
    }
    Ok(())
}

/// A tracepoint by its name and its tracefs category, and which program of a mode it gets.
struct Tracepoint {
    name: &'static str,
    category: &'static str,
    program: fn(AttachMode) -> &'static str,
    btf_id: fn(&BtfTargets) -> Option<u32>,
    tracefs_id: fn(&TracepointIds) -> Option<u32>,
}

const MARK_VICTIM: Tracepoint = Tracepoint {
    name: "mark_victim",
    category: "oom",
    program: AttachMode::program,
    btf_id: |t| t.mark_victim,
    tracefs_id: |t| t.mark_victim,
};
const SIGNAL_GENERATE: Tracepoint = Tracepoint {
    name: "signal_generate",
    category: "signal",
    program: AttachMode::signal_program,
    btf_id: |t| t.signal_generate,
    tracefs_id: |t| t.signal_generate,
};

/// Loads `tracepoint`'s program for `mode` and attaches it: the program and what holds it
/// attached.
fn attach(
    object: &elf::Object<'_>,
    maps: &Maps,
    mode: AttachMode,
    tracepoint: &Tracepoint,
    targets: &Targets,
) -> Result<(OwnedFd, OwnedFd), String> {
    let name = (tracepoint.program)(mode);
    let attach_btf_id = match mode {
        AttachMode::TpBtf => Some((tracepoint.btf_id)(&targets.btf).ok_or_else(|| {
            format!(
                "needs the kernel's BTF to name btf_trace_{}, which is unavailable",
                tracepoint.name
            )
        })?),
        AttachMode::RawTp => None,
        AttachMode::Tracepoint => {
            if !targets.tracepoint_available {
                return Err(crate::kernel::tracefs::NOT_MOUNTED.into());
            }
            None
        }
    };
    let insns = object.relocated_program(name, maps)?;
    let (prog_type, expected_attach_type) = mode.prog_type();
    let program = sys::prog_load(&sys::ProgLoad {
        prog_type,
        expected_attach_type,
        insns: &insns,
        license: object.license()?,
        name,
        attach_btf_id: attach_btf_id.unwrap_or(0),
    })
    .map_err(|err| err.to_string())?;
    let link = match mode {
        AttachMode::TpBtf => sys::raw_tracepoint_open(None, program.as_raw_fd()),
        AttachMode::RawTp => sys::raw_tracepoint_open(Some(tracepoint.name), program.as_raw_fd()),
        AttachMode::Tracepoint => {
            let id = (tracepoint.tracefs_id)(&targets.tracepoints).ok_or_else(|| {
                format!(
                    "tracefs has no id for {}/{}",
                    tracepoint.category, tracepoint.name
                )
            })?;
            sys::perf_tracepoint_attach(id, program.as_raw_fd())
        }
    }
    .map_err(|err| format!("the kernel refused to attach it: {err}"))?;
    Ok((program, link))
}

/// The maps of the object, created in the kernel.
struct Maps {
    /// Legacy `maps` definitions by symbol name.
    named: Vec<(String, OwnedFd)>,
    /// Global data sections (`.rodata`) by section index.
    data: Vec<(usize, OwnedFd)>,
}

impl Maps {
    fn create(object: &elf::Object<'_>, layout: &KernelLayout) -> Result<Self, String> {
        let mut named = Vec::new();
        for def in object.map_definitions()? {
            let max_entries = if def.name == EVENTS_MAP {
                RING_BYTES
            } else {
                def.max_entries
            };
            let fd = sys::map_create(&sys::MapCreate {
                map_type: def.map_type,
                key_size: def.key_size,
                value_size: def.value_size,
                max_entries,
                map_flags: def.map_flags,
                name: def.name,
            })
            .map_err(|e| format!("cannot create the map {}: {e}", def.name))?;
            named.push((def.name.to_string(), fd));
        }
        let mut data = Vec::new();
        for section in object.data_sections() {
            let mut value = section.data.to_vec();
            let read_only = section.name.starts_with(".rodata");
            if let Some(symbol) = object.symbol_in(section.index, LAYOUT_GLOBAL) {
                let start = usize::try_from(symbol.value).unwrap_or(usize::MAX);
                let bytes = layout_bytes(layout);
                let slot = start
                    .checked_add(bytes.len())
                    .and_then(|end| value.get_mut(start..end))
                    .filter(|_| symbol.size == bytes.len() as u64)
                    .ok_or_else(|| {
                        format!(
                            "{LAYOUT_GLOBAL} in {} is not a KernelLayout ({} bytes at {start})",
                            section.name, symbol.size
                        )
                    })?;
                slot.copy_from_slice(bytes);
            }
            let fd = sys::map_create(&sys::MapCreate {
                map_type: sys::MAP_TYPE_ARRAY,
                key_size: 4,
                value_size: u32::try_from(value.len()).map_err(|_| "a huge data section")?,
                max_entries: 1,
                map_flags: if read_only { sys::F_RDONLY_PROG } else { 0 },
                name: section.name,
            })
            .and_then(|fd| {
                sys::map_update(fd.as_raw_fd(), &0u32.to_ne_bytes(), &value)?;
                if read_only {
                    sys::map_freeze(fd.as_raw_fd())?;
                }
                Ok(fd)
            })
            .map_err(|e| format!("cannot create the map for {}: {e}", section.name))?;
            data.push((section.index, fd));
        }
        Ok(Self { named, data })
    }

    fn named_fd(&self, name: &str) -> Option<RawFd> {
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, fd)| fd.as_raw_fd())
    }

    fn data_fd(&self, section: usize) -> Option<RawFd> {
        self.data
            .iter()
            .find(|(s, _)| *s == section)
            .map(|(_, fd)| fd.as_raw_fd())
    }

    fn take(&mut self, name: &str) -> Option<OwnedFd> {
        let at = self.named.iter().position(|(n, _)| n == name)?;
        Some(self.named.remove(at).1)
    }

    fn into_fds(self) -> Vec<OwnedFd> {
        self.named
            .into_iter()
            .map(|(_, fd)| fd)
            .chain(self.data.into_iter().map(|(_, fd)| fd))
            .collect()
    }
}

fn layout_bytes(layout: &KernelLayout) -> &[u8] {
    // SAFETY: KernelLayout is repr(C) and all u32, so it has no padding: every byte is
    // initialised.
    unsafe {
        std::slice::from_raw_parts(
            (layout as *const KernelLayout).cast::<u8>(),
            size_of::<KernelLayout>(),
        )
    }
}

mod elf;
mod sys;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd as _;

    /// Every program of the embedded object relocates: map references and calls resolve, so
    /// a change to the kernel program that needs more of a loader fails here, not at start-up.
    #[test]
    fn the_embedded_object_relocates_every_program() {
        let object = elf::Object::parse(PROGRAM).unwrap();
        assert!(object.license().unwrap().ends_with(b"\0"));
        let defs = object.map_definitions().unwrap();
        let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
        for map in [EVENTS_MAP, DROPPED_MAP, oomtrace_common::SIGKILLS_MAP] {
            assert!(names.contains(&map), "{map} missing from {names:?}");
        }
        let rodata: Vec<&str> = object.data_sections().map(|s| s.name).collect();
        assert_eq!(rodata, [".rodata"]);
        let rodata_index = object.data_sections().next().unwrap().index;
        let layout = object.symbol_in(rodata_index, LAYOUT_GLOBAL).unwrap();
        assert_eq!(layout.size as usize, size_of::<KernelLayout>());

        // Fake descriptors stand in for the maps: relocation only copies them.
        let fake = |n: i32| {
            // SAFETY: these fds are never used as descriptors, only copied into instructions;
            // `forget` below keeps them from being closed.
            unsafe { OwnedFd::from_raw_fd(1000 + n) }
        };
        let maps = Maps {
            named: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), fake(i as i32)))
                .collect(),
            data: vec![(rodata_index, fake(99))],
        };
        for mode in AttachMode::ALL {
            for name in [mode.program(), mode.signal_program()] {
                let insns = object.relocated_program(name, &maps).unwrap();
                assert!(!insns.is_empty() && insns.len().is_multiple_of(8), "{name}");
                // Every 64-bit immediate load now names one of the maps made.
                let mut i = 0;
                while i < insns.len() {
                    if insns[i] == 0x18 {
                        let src = insns[i + 1] >> 4;
                        let imm = i32::from_le_bytes(insns[i + 4..i + 8].try_into().unwrap());
                        if src != 0 {
                            assert!(
                                (1000..1000 + names.len() as i32).contains(&imm) || imm == 1099,
                                "{name}: insn {} imm {imm}",
                                i / 8
                            );
                        }
                        i += 16;
                    } else {
                        i += 8;
                    }
                }
            }
        }
        assert!(object.relocated_program("no_such_program", &maps).is_err());
        let Maps { named, data } = maps;
        named.into_iter().for_each(|(_, fd)| std::mem::forget(fd));
        data.into_iter().for_each(|(_, fd)| std::mem::forget(fd));
    }

    #[test]
    fn object_names_fit_the_kernel() {
        assert_eq!(&sys_name("signal_generate_btf")[..15], b"signal_generate");
        assert_eq!(sys_name(".rodata")[..8], *b".rodata\0");
    }

    fn sys_name(name: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (slot, b) in out.iter_mut().zip(name.bytes()).take(15) {
            *slot = b;
        }
        out
    }

    #[test]
    fn refuses_what_is_not_a_bpf_object() {
        assert!(elf::Object::parse(b"not an elf").is_err());
        assert!(elf::Object::parse(&[]).is_err());
    }
}
