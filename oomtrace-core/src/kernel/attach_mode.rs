//! The three ways the kernel program attaches to `mark_victim`, richest first. A record names
//! the one it came from; the loader, the plan and `--attach` name them the same way.

use std::fmt;

use oomtrace_common::{attach_mode, program};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// BTF-typed tracepoint: the victim's task_struct, checked by the verifier.
    TpBtf,
    /// Raw tracepoint: the same arguments, untyped.
    RawTp,
    /// Classic tracepoint: only the fields in its tracefs record.
    Tracepoint,
}

impl AttachMode {
    /// Richest first: the order oomtrace tries them in.
    pub const ALL: [Self; 3] = [Self::TpBtf, Self::RawTp, Self::Tracepoint];

    /// The mode `--attach` names: `tp_btf`, `raw_tp` or `tracepoint`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.name() == name)
    }

    /// What its programs read, for `--attach`'s help.
    pub fn reads(self) -> &'static str {
        match self {
            Self::TpBtf => {
                "BTF-typed tracepoint: the victim's task_struct, checked by the verifier"
            }
            Self::RawTp => "Raw tracepoint: the same arguments, untyped",
            Self::Tracepoint => "Classic tracepoint: only the fields in its tracefs record",
        }
    }

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
