//! Loading and attaching: loads the kernel program with the discovered layout and attaches
//! the richest `mark_victim` entry point the kernel accepts, falling back in order.

use std::fmt;

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, ProgramError, RawTracePoint, TracePoint},
};
use oomtrace_common::{DROPPED_MAP, EVENTS_MAP, KernelLayout, LAYOUT_GLOBAL, attach_mode, program};

/// The kernel program, built by build.rs.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/oomtrace"));

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
    Object(EbpfError),
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

/// The attached program and the maps user space reads.
pub struct Attached {
    // Dropping the Ebpf detaches and unloads everything.
    pub ebpf: Ebpf,
    pub mode: AttachMode,
    /// Modes tried before `mode`, and why each failed.
    pub fallbacks: Vec<AttachError>,
    /// Why `signal_generate` could not be attached, if it could not: then whether a victim
    /// was killed or only marked is unknown.
    pub signal_failure: Option<String>,
}

impl Attached {
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, String> {
        let map = self
            .ebpf
            .take_map(EVENTS_MAP)
            .ok_or_else(|| format!("the kernel program has no {EVENTS_MAP} map"))?;
        RingBuf::try_from(map).map_err(|e| format!("{EVENTS_MAP}: {e}"))
    }

    pub fn take_dropped(&mut self) -> Result<PerCpuArray<MapData, u64>, String> {
        let map = self
            .ebpf
            .take_map(DROPPED_MAP)
            .ok_or_else(|| format!("the kernel program has no {DROPPED_MAP} map"))?;
        PerCpuArray::try_from(map).map_err(|e| format!("{DROPPED_MAP}: {e}"))
    }
}

/// What an attach needs beyond the layout.
pub struct Targets<'a> {
    /// aya's view of the kernel's BTF, which `tp_btf` needs to find the tracepoint.
    pub aya_btf: Option<&'a aya::Btf>,
    /// The classic tracepoint exists in tracefs.
    pub tracepoint_available: bool,
}

/// Loads the program with `layout` and attaches the first of `modes` that works.
pub fn load_and_attach(
    layout: &KernelLayout,
    modes: &[AttachMode],
    targets: &Targets<'_>,
) -> Result<Attached, LoadError> {
    let mut loader = EbpfLoader::new();
    // Our own BTF reader supplies the offsets; aya's only matters for tp_btf attach, so the
    // loader is not made to parse the kernel's BTF a second time.
    loader
        .btf(None)
        .override_global(LAYOUT_GLOBAL, layout, true);
    let mut ebpf = loader.load(PROGRAM).map_err(LoadError::Object)?;

    let mut fallbacks = Vec::new();
    for &mode in modes {
        match attach(&mut ebpf, mode, mode.program(), MARK_VICTIM, targets) {
            Ok(()) => {
                let signal_failure = signal_layout_known(layout, mode)
                    .and_then(|()| {
                        attach(
                            &mut ebpf,
                            mode,
                            mode.signal_program(),
                            SIGNAL_GENERATE,
                            targets,
                        )
                    })
                    .err();
                return Ok(Attached {
                    ebpf,
                    mode,
                    fallbacks,
                    signal_failure,
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

/// A tracepoint by its BTF name and its tracefs category.
struct Tracepoint {
    name: &'static str,
    category: &'static str,
}

const MARK_VICTIM: Tracepoint = Tracepoint {
    name: "mark_victim",
    category: "oom",
};
const SIGNAL_GENERATE: Tracepoint = Tracepoint {
    name: "signal_generate",
    category: "signal",
};

fn attach(
    ebpf: &mut Ebpf,
    mode: AttachMode,
    name: &str,
    tracepoint: Tracepoint,
    targets: &Targets<'_>,
) -> Result<(), String> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| "missing from the kernel program object".to_string())?;
    match mode {
        AttachMode::TpBtf => {
            let btf = targets
                .aya_btf
                .ok_or_else(|| "needs the kernel's BTF, which is unavailable".to_string())?;
            let program: &mut BtfTracePoint = program.try_into().map_err(describe)?;
            program.load(tracepoint.name, btf).map_err(describe)?;
            program.attach().map_err(describe)?;
        }
        AttachMode::RawTp => {
            let program: &mut RawTracePoint = program.try_into().map_err(describe)?;
            program.load().map_err(describe)?;
            program.attach(tracepoint.name).map_err(describe)?;
        }
        AttachMode::Tracepoint => {
            if !targets.tracepoint_available {
                return Err(
                    "tracefs is not mounted: mount it with `mount -t tracefs tracefs /sys/kernel/tracing`"
                        .into(),
                );
            }
            let program: &mut TracePoint = program.try_into().map_err(describe)?;
            program.load().map_err(describe)?;
            program
                .attach(tracepoint.category, tracepoint.name)
                .map_err(describe)?;
        }
    }
    Ok(())
}

/// One sentence for the common failures; the verifier's log in full for a rejection.
fn describe(err: ProgramError) -> String {
    match &err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if log.trim().is_empty() {
                format!("the kernel refused to load it ({io_error}) and gave no verifier log")
            } else {
                format!("the verifier rejected it ({io_error}):\n{log}")
            }
        }
        _ => err.to_string(),
    }
}
