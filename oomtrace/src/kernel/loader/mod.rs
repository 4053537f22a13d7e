//! Loading and attaching: loads the kernel program with the discovered layout and attaches
//! the richest `mark_victim` entry point the kernel accepts, falling back in order.
//!
//! aya-obj reads the object: its maps, its `.rodata` global, and the map and call relocations
//! of its programs. The `bpf(2)` calls that make the maps and load the programs are this
//! module's own (sys.rs), not aya's `EbpfLoader`: aya 0.14's loader parses the kernel's whole
//! BTF into owned types even with `.btf(None)`, and twice for tp_btf, 17–35 ms and about
//! 18 MiB each as measured here (<https://github.com/aya-rs/aya/issues/1172>), for an object
//! that needs no BTF relocation, since its offsets come in as a frozen global. aya 0.15 parses
//! it lazily but needs a newer rustc than this toolchain, and no aya version loads tp_btf by a
//! BTF id found elsewhere: the id of the tracepoint's `btf_trace_*` typedef comes from the plan,
//! which took it from the project's own BTF reader. aya still reads the ring buffer and the
//! drop counter, from the map descriptors made here.

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsRawFd as _, OwnedFd, RawFd},
};

use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use aya_obj::{EbpfSectionKind, Object, generated::bpf_insn};
use oomtrace_common::{
    DROPPED_MAP, EVENTS_MAP, KernelLayout, LAYOUT_GLOBAL, SIGNALS_DROPPED_MAP, SIGNALS_MAP,
};

use oomtrace_core::kernel::attach_mode::AttachMode;

use crate::kernel::plan::{BtfTargets, TracepointIds};

/// The kernel program, built by build.rs.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/oomtrace"));

/// `bpf_prog_type` and `bpf_attach_type` of a mode's programs.
fn prog_type(mode: AttachMode) -> (u32, u32) {
    match mode {
        AttachMode::TpBtf => (sys::PROG_TYPE_TRACING, sys::TRACE_RAW_TP),
        AttachMode::RawTp => (sys::PROG_TYPE_RAW_TRACEPOINT, 0),
        AttachMode::Tracepoint => (sys::PROG_TYPE_TRACEPOINT, 0),
    }
}

/// The attached program and the maps user space reads. Dropping it detaches everything.
pub struct Attached {
    pub mode: AttachMode,
    /// Modes tried before `mode`, and why each failed.
    pub fallbacks: Vec<AttachError>,
    /// Why `signal_generate` could not be attached, if it could not: then whether a victim
    /// was killed or only marked is unknown.
    pub signal_failure: Option<ProgramError>,
    /// Links and perf events: closing them detaches the programs. Declared first, so they are
    /// dropped first.
    _links: Vec<OwnedFd>,
    _programs: Vec<OwnedFd>,
    events: Option<OwnedFd>,
    dropped: Option<OwnedFd>,
    signals: Option<OwnedFd>,
    signals_dropped: Option<OwnedFd>,
    /// The other maps, held for as long as the programs are.
    _maps: Vec<OwnedFd>,
}

impl Attached {
    /// Whether the kernel program records signals with their targets.
    pub fn records_signals(&self) -> bool {
        self.signal_failure.is_none() && self.mode != AttachMode::Tracepoint
    }

    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, String> {
        take_map(&mut self.events, EVENTS_MAP)
    }

    pub fn take_dropped(&mut self) -> Result<PerCpuArray<MapData, u64>, String> {
        take_map(&mut self.dropped, DROPPED_MAP)
    }

    /// The ring buffer of signals that can end a container, once `signal_generate` is
    /// attached; `None` when it is not, or where the kernel program cannot tell its targets
    /// (the classic tracepoint has no task to read).
    pub fn take_signals(&mut self) -> Option<Result<SignalMaps, String>> {
        if !self.records_signals() {
            return None;
        }
        Some(take_map(&mut self.signals, SIGNALS_MAP).and_then(|ring| {
            Ok(SignalMaps {
                ring,
                dropped: take_map(&mut self.signals_dropped, SIGNALS_DROPPED_MAP)?,
            })
        }))
    }
}

/// The signals' ring buffer and the count of records it had no room for.
pub struct SignalMaps {
    pub ring: RingBuf<MapData>,
    pub dropped: PerCpuArray<MapData, u64>,
}

/// A map the loader created, as aya's typed view of it.
fn take_map<T>(slot: &mut Option<OwnedFd>, name: &str) -> Result<T, String>
where
    T: TryFrom<Map>,
    T::Error: std::fmt::Display,
{
    let fd = slot
        .take()
        .ok_or_else(|| format!("the kernel program has no {name} map"))?;
    let map = MapData::from_fd(fd)
        .and_then(Map::from_map_data)
        .map_err(|e| format!("{name}: {e}"))?;
    T::try_from(map).map_err(|e| format!("{name}: {e}"))
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
    let mut object = parse(PROGRAM).map_err(LoadError::Object)?;
    set_layout(&mut object, layout).map_err(LoadError::Object)?;
    let mut maps = Maps::create(&mut object).map_err(LoadError::Object)?;
    relocate(&mut object, maps.for_relocation()).map_err(LoadError::Object)?;

    let mut fallbacks = Vec::new();
    for &mode in modes {
        match attach(&object, mode, &MARK_VICTIM, targets) {
            Ok((program, link)) => {
                let mut programs = vec![program];
                let mut links = vec![link];
                let signal_failure = match signal_layout_known(layout, mode)
                    .and_then(|()| attach(&object, mode, &SIGNAL_GENERATE, targets))
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
                    signals: maps.take(SIGNALS_MAP),
                    signals_dropped: maps.take(SIGNALS_DROPPED_MAP),
                    _maps: maps.into_fds(),
                });
            }
            Err(error) => fallbacks.push(AttachError { mode, error }),
        }
    }
    Err(LoadError::NoMode(fallbacks))
}

/// `e_machine` of a BPF object.
const EM_BPF: u16 = 247;

/// Reads the object with aya-obj, and refuses one this loader would load wrong.
fn parse(data: &[u8]) -> Result<Object, ObjectError> {
    // aya-obj reads any ELF file; only the header says whether it is one for BPF. The object
    // is built for bpfel, whose instructions only a little-endian kernel runs.
    let is_bpf = data.get(..4) == Some(b"\x7fELF")
        && data.get(4..6) == Some(&[2, 1])
        && data.get(0x12..0x14) == Some(&EM_BPF.to_le_bytes());
    if !is_bpf {
        return Err(ObjectError::NotBpf);
    }
    let object = Object::parse(data).map_err(ObjectError::Parse)?;
    // Loaded without them, its field accesses would read wherever the compiler's headers put
    // the fields, not where this kernel has them.
    if object.has_btf_relocations() {
        return Err(ObjectError::NeedsBtfRelocations);
    }
    Ok(object)
}

/// Writes `layout` into the object's copy of the `.rodata` global the programs read it from.
fn set_layout(object: &mut Object, layout: &KernelLayout) -> Result<(), ObjectError> {
    let globals = HashMap::from([(LAYOUT_GLOBAL, (layout_bytes(layout), true))]);
    object.patch_map_data(globals).map_err(ObjectError::Layout)
}

/// Resolves every program's map references against `maps` (name, descriptor, definition) and
/// appends the functions each calls.
fn relocate<'a>(
    object: &mut Object,
    maps: impl Iterator<Item = (&'a str, RawFd, &'a aya_obj::Map)>,
) -> Result<(), ObjectError> {
    let text_sections: HashSet<usize> = object
        .functions
        .keys()
        .map(|&(section, _)| section)
        .collect();
    object
        .relocate_maps(maps, &text_sections)
        .map_err(ObjectError::Relocation)?;
    object
        .relocate_calls(&text_sections)
        .map_err(ObjectError::Relocation)
}

/// The relocated instructions of the program `name`, as the kernel reads them, or `None` if
/// the object has no such program.
fn instructions(object: &Object, name: &str) -> Option<Vec<u8>> {
    let program = object.programs.get(name)?;
    let function = object.functions.get(&program.function_key())?;
    Some(function.instructions.iter().flat_map(insn_bytes).collect())
}

/// One instruction in the kernel's `struct bpf_insn` layout on a little-endian host, the only
/// kind a bpfel object loads on: `dst_reg` in the low nibble.
fn insn_bytes(insn: &bpf_insn) -> [u8; 8] {
    let [o0, o1] = insn.off.to_le_bytes();
    let [i0, i1, i2, i3] = insn.imm.to_le_bytes();
    [
        insn.code,
        insn.dst_reg() | (insn.src_reg() << 4),
        o0,
        o1,
        i0,
        i1,
        i2,
        i3,
    ]
}

/// The signal program compares thread ids: without the offsets it reads them at, it would
/// see no SIGKILL and call every victim only marked.
fn signal_layout_known(layout: &KernelLayout, mode: AttachMode) -> Result<(), ProgramError> {
    let needed: &[u32] = match mode {
        AttachMode::TpBtf | AttachMode::RawTp => &[layout.task_pid],
        AttachMode::Tracepoint => &[
            layout.tp_signal_sig,
            layout.tp_signal_code,
            layout.tp_signal_pid,
        ],
    };
    if needed.contains(&oomtrace_common::ABSENT) {
        return Err(ProgramError {
            program: mode.signal_program(),
            why: ProgramFailure::LayoutLacks,
        });
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

/// Loads `tracepoint`'s program for `mode` from the relocated `object` and attaches it: the
/// program and what holds it attached.
fn attach(
    object: &Object,
    mode: AttachMode,
    tracepoint: &Tracepoint,
    targets: &Targets,
) -> Result<(OwnedFd, OwnedFd), ProgramError> {
    let program = (tracepoint.program)(mode);
    let fail = |why| ProgramError { program, why };
    let attach_btf_id = match mode {
        AttachMode::TpBtf => (tracepoint.btf_id)(&targets.btf).ok_or_else(|| {
            fail(ProgramFailure::NoBtfTarget {
                tracepoint: tracepoint.name,
            })
        })?,
        AttachMode::RawTp => 0,
        AttachMode::Tracepoint => {
            if !targets.tracepoint_available {
                return Err(fail(ProgramFailure::NoTracefs));
            }
            0
        }
    };
    let insns = instructions(object, program).ok_or_else(|| fail(ProgramFailure::Missing))?;
    let fd = load(
        program,
        mode,
        &insns,
        object.license.as_bytes_with_nul(),
        attach_btf_id,
    )?;
    let link = match mode {
        AttachMode::TpBtf => sys::raw_tracepoint_open(None, fd.as_raw_fd()),
        AttachMode::RawTp => sys::raw_tracepoint_open(Some(tracepoint.name), fd.as_raw_fd()),
        AttachMode::Tracepoint => {
            let id = (tracepoint.tracefs_id)(&targets.tracepoints).ok_or_else(|| {
                fail(ProgramFailure::NoTracefsId {
                    category: tracepoint.category,
                    tracepoint: tracepoint.name,
                })
            })?;
            sys::perf_tracepoint_attach(id, fd.as_raw_fd())
        }
    }
    .map_err(|err| fail(ProgramFailure::Attach(err)))?;
    Ok((fd, link))
}

/// Loads `insns` as `program`, of `mode`'s program type. `license` ends in its NUL.
fn load(
    program: &'static str,
    mode: AttachMode,
    insns: &[u8],
    license: &[u8],
    attach_btf_id: u32,
) -> Result<OwnedFd, ProgramError> {
    let (prog_type, expected_attach_type) = prog_type(mode);
    sys::prog_load(&sys::ProgLoad {
        prog_type,
        expected_attach_type,
        insns,
        license,
        name: program,
        attach_btf_id,
    })
    .map_err(|failure| ProgramError {
        program,
        why: ProgramFailure::Load(failure),
    })
}

/// The object's maps, made in the kernel, with the definitions aya-obj read them from.
struct Maps {
    made: Vec<(String, OwnedFd, aya_obj::Map)>,
}

impl Maps {
    /// Makes every map of `object` in the kernel, taking their definitions out of it: the
    /// legacy `maps` definitions by symbol name, and the global data sections (`.rodata` with
    /// the layout in it) by section name.
    fn create(object: &mut Object) -> Result<Self, ObjectError> {
        let mut made = Vec::with_capacity(object.maps.len());
        for (name, def) in object.maps.drain() {
            let fail = |error| ObjectError::Map {
                map: name.clone(),
                error,
            };
            let fd = sys::map_create(&sys::MapCreate {
                map_type: def.map_type(),
                key_size: def.key_size(),
                value_size: def.value_size(),
                max_entries: def.max_entries(),
                map_flags: def.map_flags(),
                name: &name,
            })
            .map_err(fail)?;
            let kind = def.section_kind();
            // `.bss` starts as zeroes, as a new array map does; the others carry their bytes.
            if matches!(kind, EbpfSectionKind::Data | EbpfSectionKind::Rodata) {
                // The kernel copies value_size bytes from the pointer it is given.
                if u32::try_from(def.data().len()).ok() != Some(def.value_size()) {
                    return Err(ObjectError::DataSize { map: name });
                }
                sys::map_update(fd.as_raw_fd(), &0u32.to_ne_bytes(), def.data()).map_err(fail)?;
                if kind == EbpfSectionKind::Rodata {
                    sys::map_freeze(fd.as_raw_fd()).map_err(fail)?;
                }
            }
            made.push((name, fd, def));
        }
        Ok(Self { made })
    }

    fn for_relocation(&self) -> impl Iterator<Item = (&str, RawFd, &aya_obj::Map)> {
        self.made
            .iter()
            .map(|(name, fd, def)| (name.as_str(), fd.as_raw_fd(), def))
    }

    fn take(&mut self, name: &str) -> Option<OwnedFd> {
        let at = self.made.iter().position(|(n, _, _)| n == name)?;
        Some(self.made.remove(at).1)
    }

    fn into_fds(self) -> Vec<OwnedFd> {
        self.made.into_iter().map(|(_, fd, _)| fd).collect()
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

mod error;
mod sys;

pub use error::{AttachError, LoadError, ObjectError, ProgramError, ProgramFailure};

pub use sys::LoadFailure;

#[cfg(test)]
mod tests {
    use oomtrace_common::program;

    use super::*;
    use crate::kernel::{
        btf::{Btf, Kind},
        plan, preflight,
    };
    use oomtrace_core::testing::skips;

    /// `BPF_PSEUDO_MAP_FD` and `BPF_PSEUDO_MAP_VALUE`: a 64-bit load of a map, or of an
    /// address in a global data map.
    const PSEUDO_MAP: [u8; 2] = [1, 2];
    const LD_IMM64: u8 = 0x18;
    const CALL: u8 = 0x85;
    const PSEUDO_CALL: u8 = 1;

    /// Every program of the embedded object relocates: map references and calls resolve, so
    /// a change to the kernel program that needs more of a loader fails here, not at start-up.
    #[test]
    fn the_embedded_object_relocates_every_program() {
        let mut object = parse(PROGRAM).unwrap();
        assert_eq!(object.license.as_bytes_with_nul().last(), Some(&0));
        let mut names: Vec<&str> = object.maps.keys().map(String::as_str).collect();
        names.sort_unstable();
        for map in [EVENTS_MAP, DROPPED_MAP, oomtrace_common::SIGKILLS_MAP] {
            assert!(names.contains(&map), "{map} missing from {names:?}");
        }
        // The maps are made as the object declares them: its ring buffer is the size whose
        // pages count toward oomtrace's RSS.
        assert_eq!(
            object.maps[EVENTS_MAP].max_entries(),
            oomtrace_common::EVENTS_BYTES
        );
        let data: Vec<&str> = object
            .maps
            .iter()
            .filter(|(_, m)| m.symbol_index().is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(data, [".rodata"]);

        // The layout lands in .rodata's bytes, where the programs read it.
        let layout = KernelLayout {
            task_pid: 0x5a5a_1234,
            ..KernelLayout::UNKNOWN
        };
        set_layout(&mut object, &layout).unwrap();
        let rodata = object.maps[".rodata"].data();
        assert!(
            rodata
                .windows(size_of::<KernelLayout>())
                .any(|w| w == layout_bytes(&layout)),
            "the layout is not in .rodata"
        );

        // Fake descriptors stand in for the maps: relocation only copies them.
        let defs: Vec<(String, aya_obj::Map)> = object.maps.drain().collect();
        let fds: Vec<RawFd> = (0..defs.len()).map(|i| 1000 + i as RawFd).collect();
        relocate(
            &mut object,
            defs.iter()
                .zip(&fds)
                .map(|((name, def), &fd)| (name.as_str(), fd, def)),
        )
        .unwrap();
        for mode in AttachMode::ALL {
            for name in [mode.program(), mode.signal_program()] {
                let insns = instructions(&object, name).unwrap();
                assert!(!insns.is_empty() && insns.len().is_multiple_of(8), "{name}");
                let count = (insns.len() / 8) as i64;
                let mut i = 0;
                while i < insns.len() {
                    let imm = i32::from_le_bytes(insns[i + 4..i + 8].try_into().unwrap());
                    let src = insns[i + 1] >> 4;
                    if insns[i] == LD_IMM64 {
                        // Every 64-bit immediate load of a map now names one of those made.
                        if PSEUDO_MAP.contains(&src) {
                            assert!(fds.contains(&imm), "{name}: insn {} imm {imm}", i / 8);
                        } else {
                            assert_eq!(src, 0, "{name}: insn {}", i / 8);
                        }
                        i += 16;
                        continue;
                    }
                    // Every BPF-to-BPF call lands inside the program: the callee came along.
                    if insns[i] == CALL && src == PSEUDO_CALL {
                        let target = (i / 8) as i64 + 1 + i64::from(imm);
                        assert!((0..count).contains(&target), "{name}: insn {}", i / 8);
                    }
                    i += 8;
                }
            }
        }
        assert!(instructions(&object, "no_such_program").is_none());
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
        let host_elf = std::fs::read("/proc/self/exe").unwrap();
        for data in [&b"not an elf"[..], &[], &host_elf[..64]] {
            let err = parse(data).unwrap_err();
            assert!(matches!(err, ObjectError::NotBpf), "{err:?}");
            let text = LoadError::Object(err).to_string();
            assert_eq!(
                text,
                "cannot load oomtrace's kernel program: it is not a 64-bit little-endian BPF ELF object"
            );
        }
    }

    /// A BPF ELF object with `.BTF` and a `.BTF.ext` holding `core_relos` CO-RE records, one
    /// for `tracepoint`'s first instruction; without records when `core_relos` is 0.
    fn object_with_core_relocations(core_relos: u32) -> Vec<u8> {
        let strings = b"\0int\0tracepoint\x000\0";
        let mut btf = Vec::new();
        // btf_header: magic, version, flags, hdr_len; types at 0, one INT; strings after.
        btf.extend(0xeb9f_u16.to_le_bytes());
        btf.extend([1, 0]);
        for word in [24u32, 0, 16, 16, strings.len() as u32] {
            btf.extend(word.to_le_bytes());
        }
        for word in [1u32, 1 << 24, 4, 32] {
            btf.extend(word.to_le_bytes());
        }
        btf.extend(strings);
        let mut ext = Vec::new();
        let relos_len = if core_relos == 0 {
            0
        } else {
            4 + 8 + 16 * core_relos
        };
        // btf_ext_header: magic, version, flags, hdr_len, func_info, line_info, core_relo.
        ext.extend(0xeb9f_u16.to_le_bytes());
        ext.extend([1, 0]);
        for word in [32u32, 0, 0, 0, 0, 0, relos_len] {
            ext.extend(word.to_le_bytes());
        }
        if core_relos > 0 {
            // rec_size; section "tracepoint" (string 5) and its count; each record: insn_off,
            // type_id (the INT), access string "0" (string 16), BPF_CORE_FIELD_BYTE_OFFSET.
            for word in [16u32, 5, core_relos] {
                ext.extend(word.to_le_bytes());
            }
            for _ in 0..core_relos {
                for word in [0u32, 1, 16, 0] {
                    ext.extend(word.to_le_bytes());
                }
            }
        }
        let names = b"\0.shstrtab\0.BTF\0.BTF.ext\0";
        // (name, type, contents): the null section, then SHT_STRTAB and two SHT_PROGBITS.
        let sections: [(u32, u32, &[u8]); 4] =
            [(0, 0, &[]), (1, 3, names), (11, 1, &btf), (16, 1, &ext)];
        let mut elf = vec![0u8; 64];
        let mut placed = Vec::new();
        for (_, _, contents) in &sections {
            placed.push(elf.len() as u64);
            elf.extend(*contents);
            elf.resize(elf.len().next_multiple_of(8), 0);
        }
        let shoff = elf.len() as u64;
        for ((name, kind, contents), offset) in sections.iter().zip(placed) {
            elf.extend(name.to_le_bytes());
            elf.extend(kind.to_le_bytes());
            elf.extend([0u8; 16]); // flags, address
            elf.extend(offset.to_le_bytes());
            elf.extend((contents.len() as u64).to_le_bytes());
            elf.extend([0u8; 8]); // link, info
            elf.extend(1u64.to_le_bytes()); // alignment
            elf.extend([0u8; 8]); // entry size
        }
        // ELF64, little-endian, version 1; ET_REL for EM_BPF.
        elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        elf[0x10..0x14].copy_from_slice(&[1, 0, 247, 0]);
        elf[0x14] = 1;
        elf[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        elf[0x34] = 64; // header size
        elf[0x3a] = 64; // section header size
        elf[0x3c] = sections.len() as u8;
        elf[0x3e] = 1; // .shstrtab
        elf
    }

    /// aya-obj reads ELF structures in place, so they must be as aligned as in a file mapped
    /// or embedded with `include_bytes_aligned!`.
    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut padded = [0u8; 8];
            padded[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(padded);
        }
        words
    }

    fn as_bytes(words: &[u64]) -> &[u8] {
        // SAFETY: any u64 is eight initialised bytes, and u8 has no alignment to keep.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
    }

    /// Loaded without its CO-RE relocations applied, a program would read fields where the
    /// compiler's headers put them, not where this kernel has them: refused in one sentence.
    #[test]
    fn an_object_that_needs_btf_relocations_is_refused() {
        let plain = aligned(&object_with_core_relocations(0));
        let object = parse(as_bytes(&plain)).unwrap();
        assert!(object.btf_ext.is_some() && !object.has_btf_relocations());

        let core = aligned(&object_with_core_relocations(1));
        let err = parse(as_bytes(&core)).unwrap_err();
        assert!(matches!(err, ObjectError::NeedsBtfRelocations), "{err:?}");
        let text = LoadError::Object(err).to_string();
        assert!(
            text.starts_with(
                "cannot load oomtrace's kernel program: it needs BTF (CO-RE) relocations"
            ) && !text.contains('\n'),
            "{text}"
        );

        assert!(!parse(PROGRAM).unwrap().has_btf_relocations());
    }

    /// `r0 = r2; exit`: r2 is never written, which the verifier refuses on every kernel.
    const READS_R2: [u8; 16] = [0xbf, 0x20, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    /// `r0 = 0`, as many times as asked, then [`READS_R2`]: a log of about 14 bytes an
    /// instruction, the verifier's reason last.
    fn long_then_reads_r2(count: usize) -> Vec<u8> {
        let mut insns = [0xb7, 0, 0, 0, 0, 0, 0, 0].repeat(count);
        insns.extend(READS_R2);
        insns
    }

    fn refused(insns: &[u8]) -> ProgramError {
        preflight::raise_memlock_limit();
        load("reads_r2", AttachMode::RawTp, insns, b"GPL\0", 0)
            .expect_err("the verifier accepted a read of an uninitialised register")
    }

    fn load_failure(err: &ProgramError) -> &LoadFailure {
        match &err.why {
            ProgramFailure::Load(failure) => failure,
            _ => panic!("not refused by the kernel: {err}"),
        }
    }

    #[test]
    fn a_program_the_verifier_rejects_is_named_with_the_verifiers_last_line() {
        if !skips::as_root(
            "a_program_the_verifier_rejects_is_named_with_the_verifiers_last_line",
            "it needs root to load eBPF",
        ) {
            return;
        }
        let err = refused(&READS_R2);
        let failure = load_failure(&err);
        assert_eq!(err.program, "reads_r2");
        assert_eq!(failure.error.raw_os_error(), Some(libc::EACCES), "{err}");
        assert!(failure.log.contains("R2 !read_ok"), "{}", failure.log);
        let last = failure.last_line().unwrap();
        let text = err.to_string();
        assert!(
            text.starts_with("reads_r2: the verifier rejected it (") && text.ends_with(last),
            "{text}"
        );
    }

    /// Before Linux 6.4 a log too small for the verifier keeps its start, and the reason at
    /// its end is lost: the log grows until it fits.
    #[test]
    fn a_verifier_log_too_long_for_the_first_buffer_is_grown_and_keeps_its_end() {
        if !skips::as_root(
            "a_verifier_log_too_long_for_the_first_buffer_is_grown_and_keeps_its_end",
            "it needs root to load eBPF",
        ) {
            return;
        }
        // About 2 MiB of log, twice the first buffer.
        let err = refused(&long_then_reads_r2(150_000));
        let failure = load_failure(&err);
        assert!(
            failure.log.len() > sys::LOG_BYTES,
            "{} bytes",
            failure.log.len()
        );
        assert!(!failure.log_cut);
        assert!(
            failure.log.contains("R2 !read_ok"),
            "the log ends: {:?}",
            &failure.log[failure.log.len() - 300..]
        );
        // The message shows the end of the log, not megabytes of it.
        let text = err.to_string();
        assert!(text.lines().count() < 50, "{} lines", text.lines().count());
        assert!(text.ends_with(failure.last_line().unwrap()), "{text}");
        assert!(
            text.contains("earlier lines of the verifier's log left out"),
            "{text}"
        );
    }

    /// tp_btf is given the BTF id of a struct rather than of the tracepoint's typedef: the
    /// kernel refuses the load for real, and raw_tp, next in line, is attached instead.
    #[test]
    fn a_tp_btf_load_the_kernel_refuses_falls_back_to_raw_tp() {
        if !skips::as_root(
            "a_tp_btf_load_the_kernel_refuses_falls_back_to_raw_tp",
            "it needs root to load eBPF",
        ) {
            return;
        }
        let plan = plan::build(None, None, false);
        assert_eq!(
            plan.modes[..2],
            [AttachMode::TpBtf, AttachMode::RawTp],
            "this host has BTF: {:?}",
            plan.unavailable
        );
        let btf = Btf::from_sys_fs().unwrap();
        let not_a_typedef = btf.find(Kind::Struct, "task_struct").unwrap();
        let targets = Targets {
            btf: BtfTargets {
                mark_victim: Some(not_a_typedef),
                ..plan.btf_targets
            },
            tracepoints: plan.tracepoint_ids,
            tracepoint_available: plan.tracepoint_available,
        };
        preflight::raise_memlock_limit();
        let attached = match load_and_attach(&plan.layout, &plan.modes, &targets) {
            Ok(attached) => attached,
            Err(err) => panic!("{err}"),
        };
        assert_eq!(attached.mode, AttachMode::RawTp);
        assert!(attached.signal_failure.is_none());
        let [fallback] = &attached.fallbacks[..] else {
            panic!("fallbacks: {:?}", attached.fallbacks);
        };
        assert_eq!(fallback.mode, AttachMode::TpBtf);
        assert_eq!(fallback.error.program, program::TP_BTF);
        let failure = load_failure(&fallback.error);
        assert_eq!(
            failure.error.raw_os_error(),
            Some(libc::EINVAL),
            "{fallback}"
        );
        assert!(
            failure.log.contains(&format!("{not_a_typedef}")),
            "{fallback}"
        );
        assert!(
            fallback
                .to_string()
                .starts_with("tp_btf (mark_victim_btf): the verifier rejected it"),
            "{fallback}"
        );
    }
}
