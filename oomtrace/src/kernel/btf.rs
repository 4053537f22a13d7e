//! A small reader for the kernel's BTF: just enough to find struct member offsets, enum
//! values and a function prototype's arity.
//!
//! Parsing every type of the kernel's BTF into owned objects (as general BTF crates do) takes
//! a large share of oomtrace's start-up budget. This reader walks the type section once to
//! index where each type starts and answers lookups from the raw bytes.
//!
//! Where the kernel allows it (6.16+), `/sys/kernel/btf/vmlinux` is mapped rather than read:
//! the mapping shows the kernel's own copy, so nothing is copied, and its pages, mapped by pfn,
//! never count toward oomtrace's RSS. Elsewhere it is read into memory, 4 KiB per `read` as
//! sysfs serves it.

use std::{fmt, path::Path};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

#[derive(Debug)]
pub enum BtfError {
    Read(std::io::Error),
    Malformed(&'static str),
}

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(err) => write!(f, "cannot read the kernel's BTF: {err}"),
            Self::Malformed(what) => write!(f, "the kernel's BTF is malformed: {what}"),
        }
    }
}

impl std::error::Error for BtfError {}

/// BTF kinds (`BTF_KIND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Int,
            2 => Self::Ptr,
            3 => Self::Array,
            4 => Self::Struct,
            5 => Self::Union,
            6 => Self::Enum,
            7 => Self::Fwd,
            8 => Self::Typedef,
            9 => Self::Volatile,
            10 => Self::Const,
            11 => Self::Restrict,
            12 => Self::Func,
            13 => Self::FuncProto,
            14 => Self::Var,
            15 => Self::Datasec,
            16 => Self::Float,
            17 => Self::DeclTag,
            18 => Self::TypeTag,
            19 => Self::Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data that follow the 12-byte common header.
    fn trailer_len(self, vlen: usize) -> usize {
        match self {
            Self::Int | Self::Var | Self::DeclTag => 4,
            Self::Array => 12,
            Self::Struct | Self::Union | Self::Datasec | Self::Enum64 => 12 * vlen,
            Self::Enum | Self::FuncProto => 8 * vlen,
            _ => 0,
        }
    }
}

/// A BTF type id. 0 is `void`.
pub type TypeId = u32;

/// A struct or union member, with its offset in bits from the start of the outermost struct
/// it was looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub bit_offset: u32,
    /// Non-zero for a bitfield.
    pub bitfield_size: u32,
    pub type_id: TypeId,
}

impl Member {
    /// Byte offset, or `None` for a bitfield or a member that does not start on a byte.
    pub fn byte_offset(&self) -> Option<u32> {
        (self.bitfield_size == 0 && self.bit_offset.is_multiple_of(8))
            .then_some(self.bit_offset / 8)
    }
}

/// The raw BTF: mapped from sysfs, or read into memory.
enum Data {
    Owned(Vec<u8>),
    Mapped(Mapping),
}

impl std::ops::Deref for Data {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Owned(bytes) => bytes,
            Self::Mapped(mapping) => mapping.bytes(),
        }
    }
}

/// A read-only private mapping of a whole file, unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn of(file: &std::fs::File) -> Option<Self> {
        use std::os::fd::AsRawFd as _;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh read-only mapping of an open file; nothing else aliases it mutably.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (addr != libc::MAP_FAILED).then_some(Self { addr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.addr.cast::<u8>(), self.len) }
    }
}

// SAFETY: the mapping is read-only and owned: sharing or moving it across threads is as safe
// as for a `Box<[u8]>`.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `of`, which nothing borrows any more.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

pub struct Btf {
    data: Data,
    strings: std::ops::Range<usize>,
    /// Byte offset in `data` of each type, indexed by `TypeId - 1`.
    type_starts: Vec<u32>,
}

impl Btf {
    /// The running kernel's BTF, mapped if the kernel allows it.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::open(Path::new(VMLINUX_BTF), true)
    }

    /// A BTF file read into memory: a file that could be truncated while mapped would turn
    /// every lookup into a SIGBUS, so only sysfs's, which cannot, is mapped.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        Self::open(path, false)
    }

    fn open(path: &Path, map: bool) -> Result<Self, BtfError> {
        use std::io::Read as _;
        let mut file = std::fs::File::open(path).map_err(BtfError::Read)?;
        if let Some(mapping) = map.then(|| Mapping::of(&file)).flatten() {
            return Self::index(Data::Mapped(mapping));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(BtfError::Read)?;
        Self::parse(bytes)
    }

    /// Whether the kernel's BTF is mapped rather than copied (for tests and diagnostics).
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, Data::Mapped(_))
    }

    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        Self::index(Data::Owned(data))
    }

    fn index(data: Data) -> Result<Self, BtfError> {
        if data.len() < HEADER_LEN {
            return Err(BtfError::Malformed("shorter than its header"));
        }
        if u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let header_len = word(4);
        let (type_off, type_len, str_off, str_len) = (word(8), word(12), word(16), word(20));
        let types = header_len + type_off..header_len + type_off + type_len;
        let strings = header_len + str_off..header_len + str_off + str_len;
        if types.end > data.len() || strings.end > data.len() {
            return Err(BtfError::Malformed(
                "a section runs past the end of the data",
            ));
        }

        let mut type_starts = Vec::with_capacity(type_len / 24);
        let mut at = types.start;
        while at < types.end {
            if at + 12 > types.end {
                return Err(BtfError::Malformed("a type header is cut off"));
            }
            let info = word(at + 4) as u32;
            let kind = Kind::from_raw((info >> 24) & 0x1f)
                .ok_or(BtfError::Malformed("unknown type kind"))?;
            type_starts.push(at as u32);
            at += 12 + kind.trailer_len((info & 0xffff) as usize);
        }
        if at != types.end {
            return Err(BtfError::Malformed("the last type runs past its section"));
        }
        Ok(Self {
            data,
            strings,
            type_starts,
        })
    }

    fn word(&self, at: usize) -> u32 {
        self.data
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()))
    }

    fn start(&self, id: TypeId) -> Option<usize> {
        let index = id.checked_sub(1)? as usize;
        self.type_starts.get(index).map(|&s| s as usize)
    }

    fn name_at(&self, offset: u32) -> &[u8] {
        let start = self.strings.start + offset as usize;
        if start >= self.strings.end {
            return b"";
        }
        let rest = &self.data[start..self.strings.end];
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..len]
    }

    pub fn kind(&self, id: TypeId) -> Option<Kind> {
        Kind::from_raw((self.word(self.start(id)? + 4) >> 24) & 0x1f)
    }

    fn vlen(&self, id: TypeId) -> usize {
        self.start(id)
            .map_or(0, |s| (self.word(s + 4) & 0xffff) as usize)
    }

    fn kind_flag(&self, id: TypeId) -> bool {
        self.start(id).is_some_and(|s| self.word(s + 4) >> 31 == 1)
    }

    /// `size` for sized kinds, `type` for referring kinds: the third header word.
    fn size_or_type(&self, id: TypeId) -> u32 {
        self.start(id).map_or(0, |s| self.word(s + 8))
    }

    /// The first type of `kind` called `name`.
    pub fn find(&self, kind: Kind, name: &str) -> Option<TypeId> {
        let name = name.as_bytes();
        (1..=self.type_starts.len() as TypeId).find(|&id| {
            let start = self.type_starts[id as usize - 1] as usize;
            Kind::from_raw((self.word(start + 4) >> 24) & 0x1f) == Some(kind)
                && self.name_at(self.word(start)) == name
        })
    }

    /// Follows typedefs and qualifiers to the type they name.
    pub fn resolve(&self, mut id: TypeId) -> TypeId {
        for _ in 0..32 {
            match self.kind(id) {
                Some(
                    Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag,
                ) => id = self.size_or_type(id),
                _ => break,
            }
        }
        id
    }

    /// Size in bytes of a resolved type, where BTF records one.
    pub fn size(&self, id: TypeId) -> Option<u32> {
        let id = self.resolve(id);
        match self.kind(id)? {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                Some(self.size_or_type(id))
            }
            Kind::Ptr => Some(8),
            Kind::Array => {
                let (elem, count) = self.array(id)?;
                self.size(elem)?.checked_mul(count)
            }
            _ => None,
        }
    }

    /// Element type and length of an array (after resolving `id`).
    pub fn array(&self, id: TypeId) -> Option<(TypeId, u32)> {
        let id = self.resolve(id);
        if self.kind(id)? != Kind::Array {
            return None;
        }
        let at = self.start(id)? + 12;
        Some((self.word(at), self.word(at + 8)))
    }

    pub fn is_pointer(&self, id: TypeId) -> bool {
        self.kind(self.resolve(id)) == Some(Kind::Ptr)
    }

    /// Finds `name` among a struct's or union's members, descending into anonymous structs
    /// and unions (mm_struct keeps nearly all its fields in one).
    pub fn member(&self, id: TypeId, name: &str) -> Option<Member> {
        self.member_in(self.resolve(id), name.as_bytes(), 0, 0)
    }

    fn member_in(&self, id: TypeId, name: &[u8], base_bits: u32, depth: u32) -> Option<Member> {
        if depth > 8 || !matches!(self.kind(id)?, Kind::Struct | Kind::Union) {
            return None;
        }
        let bitfields = self.kind_flag(id);
        let members = self.start(id)? + 12;
        let mut anonymous = Vec::new();
        for i in 0..self.vlen(id) {
            let at = members + 12 * i;
            let (name_off, type_id, raw_offset) =
                (self.word(at), self.word(at + 4), self.word(at + 8));
            let (bit_offset, bitfield_size) = if bitfields {
                (raw_offset & 0x00ff_ffff, raw_offset >> 24)
            } else {
                (raw_offset, 0)
            };
            let member_name = self.name_at(name_off);
            if member_name == name {
                return Some(Member {
                    bit_offset: base_bits + bit_offset,
                    bitfield_size,
                    type_id,
                });
            }
            if member_name.is_empty() {
                anonymous.push((type_id, base_bits + bit_offset));
            }
        }
        anonymous.into_iter().find_map(|(type_id, bits)| {
            self.member_in(self.resolve(type_id), name, bits, depth + 1)
        })
    }

    /// The value of `variant` in the enum called `enum_name`.
    pub fn enum_value(&self, enum_name: &str, variant: &str) -> Option<i64> {
        let id = self
            .find(Kind::Enum, enum_name)
            .or_else(|| self.find(Kind::Enum64, enum_name))?;
        let values = self.start(id)? + 12;
        let signed = self.kind_flag(id);
        let wide = self.kind(id)? == Kind::Enum64;
        (0..self.vlen(id)).find_map(|i| {
            let at = values + if wide { 12 } else { 8 } * i;
            if self.name_at(self.word(at)) != variant.as_bytes() {
                return None;
            }
            let low = self.word(at + 4);
            Some(match (wide, signed) {
                (true, _) => ((self.word(at + 8) as i64) << 32) | low as i64,
                (false, true) => low as i32 as i64,
                (false, false) => low as i64,
            })
        })
    }

    /// Number of parameters of the function prototype that the pointer typedef `name` points
    /// to (`btf_trace_<tracepoint>` typedefs have the tracepoint's arguments plus a `void *`).
    pub fn typedef_proto_arity(&self, name: &str) -> Option<usize> {
        let typedef = self.find(Kind::Typedef, name)?;
        let ptr = self.resolve(typedef);
        if self.kind(ptr)? != Kind::Ptr {
            return None;
        }
        let proto = self.resolve(self.size_or_type(ptr));
        (self.kind(proto)? == Kind::FuncProto).then(|| self.vlen(proto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob from `(name, info, size_or_type, trailer words)` entries.
    fn blob(types: &[(&str, u32, u32, &[u32])], extra_strings: &[&str]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let offset_of = |s: &str, strings: &mut Vec<u8>| -> u32 {
            if s.is_empty() {
                return 0;
            }
            let at = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at
        };
        let mut type_bytes = Vec::new();
        for (name, info, size_or_type, trailer) in types {
            let name_off = offset_of(name, &mut strings);
            for w in [name_off, *info, *size_or_type]
                .iter()
                .chain(trailer.iter())
            {
                type_bytes.extend_from_slice(&w.to_le_bytes());
            }
        }
        for s in extra_strings {
            offset_of(s, &mut strings);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend(type_bytes);
        out.extend(strings);
        out
    }

    /// The running kernel's BTF, mapped where the kernel allows it, answers exactly as the
    /// same file read into memory.
    #[test]
    fn mapped_and_read_btf_agree() {
        let (Ok(mapped), Ok(read)) = (Btf::from_sys_fs(), Btf::from_file(Path::new(VMLINUX_BTF)))
        else {
            eprintln!("skipped: {VMLINUX_BTF} unusable here");
            return;
        };
        assert!(!read.is_mapped(), "only sysfs's BTF is mapped");
        let task = mapped.find(Kind::Struct, "task_struct").unwrap();
        assert_eq!(read.find(Kind::Struct, "task_struct"), Some(task));
        for member in ["pid", "tgid", "comm", "mm", "cgroups"] {
            assert_eq!(
                mapped.member(task, member),
                read.member(task, member),
                "{member}"
            );
        }
        assert_eq!(
            mapped.typedef_proto_arity("btf_trace_mark_victim"),
            read.typedef_proto_arity("btf_trace_mark_victim")
        );
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(matches!(
            Btf::parse(vec![1, 2, 3]),
            Err(BtfError::Malformed(_))
        ));
        assert!(matches!(
            Btf::parse(vec![0; 64]),
            Err(BtfError::Malformed(_))
        ));
    }

    #[test]
    fn finds_members_inside_anonymous_structs() {
        // 1: int, 2: anonymous struct { int inner @ 32 bits }, 3: struct outer { int a; <anon> @ 64 bits }
        // Member names must be in the string table; they are appended after the type names.
        let names = ["a", "inner"];
        let strings_base = {
            // "int\0" "outer\0" come first: offsets 1 and 5; then "a" at 11, "inner" at 13.
            1 + "int".len() as u32 + 1 + "outer".len() as u32 + 1
        };
        let (a, inner) = (strings_base, strings_base + 2);
        let data = blob(
            &[
                ("int", 1 << 24, 4, &[32]),
                ("", (4 << 24) | 1, 8, &[inner, 1, 32]),
                ("outer", (4 << 24) | 2, 16, &[a, 1, 0, 0, 2, 64]),
            ],
            &names,
        );
        let btf = Btf::parse(data).unwrap();
        let outer = btf.find(Kind::Struct, "outer").unwrap();
        assert_eq!(outer, 3);
        assert_eq!(btf.member(outer, "a").unwrap().byte_offset(), Some(0));
        assert_eq!(btf.member(outer, "inner").unwrap().byte_offset(), Some(12));
        assert!(btf.member(outer, "missing").is_none());
        assert_eq!(btf.size(outer), Some(16));
    }
}
