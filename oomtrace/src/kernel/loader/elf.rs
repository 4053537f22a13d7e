//! Just enough ELF for a BPF object: sections, symbols, `REL` relocations.

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
                    (Some(map_type), Some(key_size), Some(value_size), Some(max), Some(flags)) => {
                        Ok(MapDefinition {
                            name: s.name,
                            map_type,
                            key_size,
                            value_size,
                            max_entries: max,
                            map_flags: flags,
                        })
                    }
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
            .ok_or_else(|| format!("a call lands at .text instruction {callee}, in no function"))?;
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
