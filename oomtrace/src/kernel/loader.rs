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
    .map_err(|err| err.describe())?;
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

/// Just enough ELF for a BPF object: sections, symbols, `REL` relocations.
mod elf {
    use super::Maps;

    const EM_BPF: u16 = 247;
    const SHT_SYMTAB: u32 = 2;
    const SHT_NOBITS: u32 = 8;
    const SHT_REL: u32 = 9;
    const STT_OBJECT: u8 = 1;
    const STT_FUNC: u8 = 2;
    /// `R_BPF_64_64`: a 64-bit immediate load of a map or global's address.
    const R_BPF_64_64: u32 = 1;
    /// `R_BPF_64_32`: a call to a function in another section.
    const R_BPF_64_32: u32 = 10;
    /// `R_BPF_64_ABS64` / `R_BPF_64_ABS32`: data relocations in debug sections, never in code.
    const INSN_SIZE: usize = 8;
    const LD_IMM64: u8 = 0x18;
    const CALL: u8 = 0x85;
    const PSEUDO_MAP_FD: u8 = 1;
    const PSEUDO_MAP_VALUE: u8 = 2;
    const PSEUDO_CALL: u8 = 1;

    pub struct Section<'a> {
        pub index: usize,
        pub name: &'a str,
        kind: u32,
        pub data: &'a [u8],
        info: u32,
    }

    #[derive(Clone, Copy)]
    pub struct Symbol<'a> {
        pub name: &'a str,
        pub value: u64,
        pub size: u64,
        section: usize,
        kind: u8,
    }

    pub struct Object<'a> {
        sections: Vec<Section<'a>>,
        symbols: Vec<Symbol<'a>>,
    }

    /// A legacy `maps` section entry (aya-ebpf's `bpf_map_def`).
    pub struct MapDefinition<'a> {
        pub name: &'a str,
        pub map_type: u32,
        pub key_size: u32,
        pub value_size: u32,
        pub max_entries: u32,
        pub map_flags: u32,
    }

    fn u16_at(data: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(data: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
    }

    fn u64_at(data: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
    }

    fn c_str(data: &[u8], at: usize) -> Option<&str> {
        let rest = data.get(at..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..len]).ok()
    }

    impl<'a> Object<'a> {
        pub fn parse(data: &'a [u8]) -> Result<Self, String> {
            Self::try_parse(data).ok_or_else(|| "the object is not a BPF ELF file".to_string())
        }

        fn try_parse(data: &'a [u8]) -> Option<Self> {
            // 64-bit, little-endian, EM_BPF.
            if data.get(..4)? != b"\x7fELF" || *data.get(4)? != 2 || *data.get(5)? != 1 {
                return None;
            }
            if u16_at(data, 0x12)? != EM_BPF {
                return None;
            }
            let shoff = usize::try_from(u64_at(data, 0x28)?).ok()?;
            let shentsize = usize::from(u16_at(data, 0x3a)?);
            let shnum = usize::from(u16_at(data, 0x3c)?);
            let shstrndx = usize::from(u16_at(data, 0x3e)?);
            let header = |i: usize| -> Option<(u32, u32, &'a [u8], u32, u32)> {
                let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
                let kind = u32_at(data, at + 4)?;
                let offset = usize::try_from(u64_at(data, at + 24)?).ok()?;
                let size = usize::try_from(u64_at(data, at + 32)?).ok()?;
                let bytes = if kind == SHT_NOBITS {
                    &[][..]
                } else {
                    data.get(offset..offset.checked_add(size)?)?
                };
                Some((
                    u32_at(data, at)?,
                    kind,
                    bytes,
                    u32_at(data, at + 40)?,
                    u32_at(data, at + 44)?,
                ))
            };
            let names = header(shstrndx)?.2;
            let mut sections = Vec::with_capacity(shnum);
            let mut symtab = None;
            for index in 0..shnum {
                let (name, kind, bytes, link, info) = header(index)?;
                if kind == SHT_SYMTAB {
                    symtab = Some((bytes, link));
                }
                sections.push(Section {
                    index,
                    name: c_str(names, name as usize)?,
                    kind,
                    data: bytes,
                    info,
                });
            }
            let (symtab, strtab_index) = symtab?;
            let strtab = sections.get(strtab_index as usize)?.data;
            let symbols = symtab
                .chunks_exact(24)
                .map(|sym| {
                    Some(Symbol {
                        name: c_str(strtab, u32_at(sym, 0)? as usize)?,
                        kind: sym[4] & 0xf,
                        section: usize::from(u16_at(sym, 6)?),
                        value: u64_at(sym, 8)?,
                        size: u64_at(sym, 16)?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Self { sections, symbols })
        }

        fn section(&self, name: &str) -> Option<&Section<'a>> {
            self.sections.iter().find(|s| s.name == name)
        }

        pub fn license(&self) -> Result<&'a [u8], String> {
            let data = self
                .section("license")
                .map(|s| s.data)
                .ok_or("the object has no license section")?;
            // The kernel reads it as a C string: it must hold its NUL.
            data.iter()
                .position(|&b| b == 0)
                .map(|end| &data[..=end])
                .ok_or_else(|| "the object's license is not NUL-terminated".to_string())
        }

        pub fn symbol_in(&self, section: usize, name: &str) -> Option<Symbol<'a>> {
            self.symbols
                .iter()
                .find(|s| s.section == section && s.name == name)
                .copied()
        }

        pub fn map_definitions(&self) -> Result<Vec<MapDefinition<'a>>, String> {
            let Some(maps) = self.section("maps") else {
                return Ok(Vec::new());
            };
            self.symbols
                .iter()
                .filter(|s| s.section == maps.index && s.kind == STT_OBJECT)
                .map(|s| {
                    let at = usize::try_from(s.value).unwrap_or(usize::MAX);
                    let word = |i: usize| u32_at(maps.data, at + 4 * i);
                    match (word(0), word(1), word(2), word(3), word(4)) {
                        (
                            Some(map_type),
                            Some(key_size),
                            Some(value_size),
                            Some(max),
                            Some(flags),
                        ) => Ok(MapDefinition {
                            name: s.name,
                            map_type,
                            key_size,
                            value_size,
                            max_entries: max,
                            map_flags: flags,
                        }),
                        _ => Err(format!("the map definition {} is cut short", s.name)),
                    }
                })
                .collect()
        }

        /// Global data: `.rodata`, `.data`, `.bss` and their suffixed kin.
        pub fn data_sections(&self) -> impl Iterator<Item = &Section<'a>> {
            self.sections.iter().filter(|s| {
                [".rodata", ".data", ".bss"].iter().any(|prefix| {
                    s.name == *prefix
                        || s.name
                            .strip_prefix(prefix)
                            .is_some_and(|rest| rest.starts_with('.'))
                })
            })
        }

        fn relocations(&self, section: usize) -> impl Iterator<Item = (u64, usize, u32)> + '_ {
            self.sections
                .iter()
                .filter(move |s| s.kind == SHT_REL && s.info as usize == section)
                .flat_map(|s| s.data.chunks_exact(16))
                .filter_map(|rel| {
                    let offset = u64_at(rel, 0)?;
                    let info = u64_at(rel, 8)?;
                    Some((offset, (info >> 32) as usize, info as u32))
                })
        }

        /// The instructions of the program `name`, ready to load: map references hold the
        /// maps' descriptors, and the functions it calls in `.text` follow it.
        pub fn relocated_program(&self, name: &str, maps: &Maps) -> Result<Vec<u8>, String> {
            let symbol = self
                .symbols
                .iter()
                .find(|s| s.kind == STT_FUNC && s.name == name)
                .ok_or_else(|| "missing from the kernel program object".to_string())?;
            let section = self
                .sections
                .get(symbol.section)
                .ok_or("names a section the object lacks")?;
            let start = usize::try_from(symbol.value).map_err(|_| "a bad symbol")?;
            let end = start
                .checked_add(usize::try_from(symbol.size).map_err(|_| "a bad symbol")?)
                .filter(|&end| end <= section.data.len() && (end - start) % INSN_SIZE == 0)
                .ok_or("its symbol runs past its section")?;
            let mut insns = section.data[start..end].to_vec();
            let text = self.section(".text");
            let mut callees = Callees::default();
            for (offset, sym, kind) in self.relocations(section.index) {
                let Some(offset) = usize::try_from(offset)
                    .ok()
                    .filter(|o| (start..end).contains(o))
                else {
                    continue;
                };
                let at = offset - start;
                if at % INSN_SIZE != 0 {
                    return Err(format!("a relocation at {offset} is not on an instruction"));
                }
                let target = self
                    .symbols
                    .get(sym)
                    .ok_or_else(|| format!("a relocation names symbol {sym}, which is missing"))?;
                let code = insns[at];
                match kind {
                    R_BPF_64_64 if code == LD_IMM64 && at + 2 * INSN_SIZE <= insns.len() => {
                        let (fd, src, value) = if let Some(fd) = maps.named_fd(target.name) {
                            (fd, PSEUDO_MAP_FD, None)
                        } else if let Some(fd) = maps.data_fd(target.section) {
                            let addend = i64::from(imm(&insns, at));
                            let value = i64::try_from(target.value)
                                .ok()
                                .and_then(|v| v.checked_add(addend))
                                .and_then(|v| i32::try_from(v).ok())
                                .ok_or("a global's offset is out of range")?;
                            (fd, PSEUDO_MAP_VALUE, Some(value))
                        } else {
                            return Err(format!(
                                "it refers to {}, which is no map this loader made",
                                target.name
                            ));
                        };
                        insns[at + 1] = (insns[at + 1] & 0x0f) | (src << 4);
                        set_imm(&mut insns, at, fd);
                        set_imm(&mut insns, at + INSN_SIZE, value.unwrap_or(0));
                    }
                    R_BPF_64_32 if code == CALL && insns[at + 1] >> 4 == PSEUDO_CALL => {
                        let text = text
                            .filter(|t| t.index == target.section)
                            .ok_or_else(|| format!("it calls {} outside .text", target.name))?;
                        if self.relocations(text.index).next().is_some() {
                            return Err(".text needs relocations of its own".into());
                        }
                        // LLVM leaves imm = -1 against a function symbol, or the offset in
                        // instructions minus one against a section symbol.
                        let callee = i64::try_from(target.value / INSN_SIZE as u64)
                            .map_err(|_| "a bad call target")?
                            + i64::from(imm(&insns, at))
                            + 1;
                        let landing = self.bring(text, callee, &mut insns, &mut callees)?;
                        set_imm(&mut insns, at, relative(at / INSN_SIZE, landing)?);
                    }
                    _ => {
                        return Err(format!(
                            "relocation type {kind} at {offset} is not one this loader handles"
                        ));
                    }
                }
            }
            check_calls(&insns)?;
            Ok(insns)
        }

        /// Appends the `.text` function holding instruction `callee` (an index into `.text`)
        /// to `insns`, with whatever it calls in turn, once each: the kernel refuses a
        /// program with an instruction nothing reaches, so only what is called comes along.
        /// Returns where `callee` now is in `insns`, in instructions.
        fn bring(
            &self,
            text: &Section<'a>,
            callee: i64,
            insns: &mut Vec<u8>,
            callees: &mut Callees,
        ) -> Result<usize, String> {
            let function = self
                .symbols
                .iter()
                .filter(|s| s.section == text.index && s.kind == STT_FUNC)
                .map(|s| (s.value as usize / INSN_SIZE, s.size as usize / INSN_SIZE))
                .find(|&(first, len)| (first as i64..(first + len) as i64).contains(&callee))
                .ok_or_else(|| {
                    format!("a call lands at .text instruction {callee}, in no function")
                })?;
            let (first, len) = function;
            if let Some(&(_, base)) = callees.placed.iter().find(|(f, _)| *f == first) {
                return Ok(base + (callee as usize - first));
            }
            let base = insns.len() / INSN_SIZE;
            let body = text
                .data
                .get(first * INSN_SIZE..(first + len) * INSN_SIZE)
                .ok_or("a .text function runs past its section")?;
            insns.extend_from_slice(body);
            callees.placed.push((first, base));
            // Calls inside .text are relative and carry no relocation: follow them too.
            for i in 0..len {
                let at = (base + i) * INSN_SIZE;
                if insns[at] == CALL && insns[at + 1] >> 4 == PSEUDO_CALL {
                    let target = (first + i) as i64 + 1 + i64::from(imm(insns, at));
                    let landing = self.bring(text, target, insns, callees)?;
                    set_imm(insns, at, relative(base + i, landing)?);
                }
            }
            Ok(base + (callee as usize - first))
        }
    }

    /// `.text` functions already appended to a program: (first instruction in `.text`, where
    /// it starts in the program).
    #[derive(Default)]
    struct Callees {
        placed: Vec<(usize, usize)>,
    }

    /// The `imm` of a call at instruction `from` that lands on instruction `to`.
    fn relative(from: usize, to: usize) -> Result<i32, String> {
        i32::try_from(to as i64 - from as i64 - 1).map_err(|_| "a call out of range".to_string())
    }

    fn imm(insns: &[u8], at: usize) -> i32 {
        i32::from_le_bytes(insns[at + 4..at + 8].try_into().unwrap())
    }

    fn set_imm(insns: &mut [u8], at: usize, value: i32) {
        insns[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Every BPF-to-BPF call lands inside the program: one that did not would mean a callee
    /// this loader failed to bring along.
    fn check_calls(insns: &[u8]) -> Result<(), String> {
        let count = (insns.len() / INSN_SIZE) as i64;
        for (i, insn) in insns.chunks_exact(INSN_SIZE).enumerate() {
            if insn[0] == CALL && insn[1] >> 4 == PSEUDO_CALL {
                let target = i as i64 + 1 + i64::from(imm(insn, 0));
                if !(0..count).contains(&target) {
                    return Err(format!("instruction {i} calls outside the program"));
                }
            }
        }
        Ok(())
    }
}

/// The bpf(2) and perf_event_open(2) calls the loader makes.
mod sys {
    use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

    pub const PROG_TYPE_TRACEPOINT: u32 = 5;
    pub const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
    pub const PROG_TYPE_TRACING: u32 = 26;
    pub const TRACE_RAW_TP: u32 = 23;
    pub const MAP_TYPE_ARRAY: u32 = 2;
    pub const F_RDONLY_PROG: u32 = 1 << 7;

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
    /// The verifier log kept when a program is refused.
    const LOG_BYTES: usize = 1 << 20;

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

    /// A refused load: the error, and the verifier's log if it gave one.
    pub struct LoadFailure {
        error: std::io::Error,
        log: String,
    }

    impl LoadFailure {
        /// One sentence for the common failures; the verifier's log in full for a rejection.
        pub fn describe(&self) -> String {
            if self.log.trim().is_empty() {
                format!(
                    "the kernel refused to load it ({}) and gave no verifier log",
                    self.error
                )
            } else {
                format!(
                    "the verifier rejected it ({}):\n{}",
                    self.error,
                    self.log.trim_end()
                )
            }
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
        attempt(&mut []).or_else(|error| {
            let mut log = vec![0u8; LOG_BYTES];
            match attempt(&mut log) {
                Ok(fd) => Ok(fd),
                Err(_) => {
                    let len = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    Err(LoadFailure {
                        error,
                        log: String::from_utf8_lossy(&log[..len]).into_owned(),
                    })
                }
            }
        })
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
}

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
