//! Why the kernel program could not be made ready, loaded or attached: each error names the
//! program it is about, and a verifier rejection carries the verifier's log.

use std::fmt;

use aya_obj::relocation::EbpfRelocationError;
use oomtrace_common::LAYOUT_GLOBAL;
use oomtrace_core::kernel::attach_mode::AttachMode;

use super::sys::LoadFailure;

/// Why one attach mode could not be used.
#[derive(Debug)]
pub struct AttachError {
    pub mode: AttachMode,
    pub error: ProgramError,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.mode, self.error.program, self.error.why
        )
    }
}

impl std::error::Error for AttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Why one program could not be loaded or attached.
#[derive(Debug)]
pub struct ProgramError {
    pub program: &'static str,
    pub why: ProgramFailure,
}

#[derive(Debug)]
pub enum ProgramFailure {
    /// The object has no program of that name.
    Missing,
    /// tp_btf names its tracepoint by the BTF id of its `btf_trace_*` typedef.
    NoBtfTarget { tracepoint: &'static str },
    /// The classic tracepoint is attached through tracefs.
    NoTracefs,
    NoTracefsId {
        category: &'static str,
        tracepoint: &'static str,
    },
    /// The signal program reads thread ids at offsets the layout lacks.
    LayoutLacks,
    /// The kernel refused to load it; a verifier rejection carries the log.
    Load(LoadFailure),
    /// The kernel loaded it and refused to attach it.
    Attach(std::io::Error),
}

impl fmt::Display for ProgramFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("missing from the kernel program object"),
            Self::NoBtfTarget { tracepoint } => write!(
                f,
                "needs the kernel's BTF to name btf_trace_{tracepoint}, which is unavailable"
            ),
            Self::NoTracefs => f.write_str(oomtrace_core::kernel::tracefs::NOT_MOUNTED),
            Self::NoTracefsId {
                category,
                tracepoint,
            } => write!(f, "tracefs has no id for {category}/{tracepoint}"),
            Self::LayoutLacks => {
                f.write_str("the kernel layout lacks what it reads (see the missing fields)")
            }
            Self::Load(failure) => failure.fmt(f),
            Self::Attach(err) => write!(f, "the kernel refused to attach it: {err}"),
        }
    }
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.program, self.why)
    }
}

impl std::error::Error for ProgramError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.why {
            ProgramFailure::Load(failure) => Some(failure),
            ProgramFailure::Attach(err) => Some(err),
            _ => None,
        }
    }
}

/// Why the kernel program object could not be made ready to load: nothing of it is attached.
#[derive(Debug)]
pub enum ObjectError {
    /// Not a 64-bit little-endian ELF file for BPF.
    NotBpf,
    /// aya-obj could not read it.
    Parse(aya_obj::ParseError),
    /// It asks for BTF (CO-RE) relocations, which this loader does not apply.
    NeedsBtfRelocations,
    /// It has no `LAYOUT_GLOBAL` the size of a `KernelLayout`.
    Layout(aya_obj::ParseError),
    /// A data section's bytes do not fill the map made for it.
    DataSize { map: String },
    /// The kernel would not create, fill or freeze a map.
    Map { map: String, error: std::io::Error },
    /// A map reference or a call could not be resolved.
    Relocation(EbpfRelocationError),
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBpf => f.write_str("it is not a 64-bit little-endian BPF ELF object"),
            // ParseError's own message leaves out the ELF reader's reason.
            Self::Parse(aya_obj::ParseError::ElfError(err)) => {
                write!(f, "it is not an ELF file aya-obj can read: {err}")
            }
            Self::Parse(err) => write!(f, "aya-obj cannot read it: {}", chain(err)),
            Self::NeedsBtfRelocations => write!(
                f,
                "it needs BTF (CO-RE) relocations, which oomtrace's loader does not apply: kernel offsets must come in through {LAYOUT_GLOBAL}"
            ),
            Self::Layout(err) => write!(
                f,
                "{LAYOUT_GLOBAL} cannot take the kernel layout: {}",
                chain(err)
            ),
            Self::DataSize { map } => {
                write!(f, "the data of {map} does not fill the map made for it")
            }
            Self::Map { map, error } => {
                write!(f, "the kernel would not make the map {map}: {error}")
            }
            Self::Relocation(err) => f.write_str(&chain(err)),
        }
    }
}

impl std::error::Error for ObjectError {}

/// An error and its sources on one line: aya-obj puts the reason in the sources.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug)]
pub enum LoadError {
    /// The object (maps, globals) did not load.
    Object(ObjectError),
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
