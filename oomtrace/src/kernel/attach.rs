//! From command-line flags to an attached kernel program: privileges, lockdown, the plan,
//! then load and attach. Shared by `oomtrace` and `oomtrace check`.

use std::{fmt, path::PathBuf};

use oomtrace_core::kernel::attach_mode::AttachMode;

use crate::kernel::{
    loader::{self, Attached, Targets},
    plan::{self, Plan},
    preflight,
};

/// What is asked of the kernel side (`--attach`, `--tracepoint-layout`, `--btf`).
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// Only this mode; `None`: the richest the kernel accepts.
    pub attach: Option<AttachMode>,
    /// The classic tracepoint's record carries only the thread id, as before Linux 6.9.
    pub pid_only: bool,
    /// The kernel's BTF from this file rather than `/sys/kernel/btf/vmlinux`.
    pub btf: Option<PathBuf>,
}

/// Why the kernel program could not be attached. The first three are the causes the kernel
/// log backend stands in for; anything else is reported, never papered over.
#[derive(Debug)]
pub enum AttachFailure {
    /// Not allowed to load BPF programs.
    Privilege(String),
    /// Confidentiality lockdown forbids what every mode needs.
    Lockdown(String),
    /// No attach mode is possible on this host, or none of them attached; each says why.
    NoMode(String),
    /// The program object itself did not load (a resource limit, a bug).
    Load(String),
}

impl AttachFailure {
    /// Whether `--backend auto` may read the kernel log instead.
    pub fn kernel_log_stands_in(&self) -> bool {
        !matches!(self, Self::Load(_))
    }
}

impl fmt::Display for AttachFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Privilege(why) | Self::Lockdown(why) | Self::NoMode(why) | Self::Load(why) => {
                f.write_str(why)
            }
        }
    }
}

impl std::error::Error for AttachFailure {}

/// Checks privileges, plans, loads and attaches.
pub fn attach(kernel: &AttachOptions) -> Result<(Plan, Attached), AttachFailure> {
    preflight::check_privileges().map_err(AttachFailure::Privilege)?;
    if let Some(problem) = preflight::lockdown_problem() {
        return Err(AttachFailure::Lockdown(problem));
    }
    let plan = plan::build(kernel.attach, kernel.btf.as_deref(), kernel.pid_only);
    if plan.modes.is_empty() {
        let reasons: Vec<String> = plan
            .unavailable
            .iter()
            .map(|(mode, why)| format!("{mode}: {why}"))
            .collect();
        // A forced mode failing says nothing about the others: the host may well be traced.
        return Err(AttachFailure::NoMode(match kernel.attach {
            Some(forced) => {
                let why = plan.unavailable.iter().map(|(_, why)| why.as_str());
                format!(
                    "--attach {forced} does not work here: {}",
                    why.collect::<Vec<_>>().join("; ")
                )
            }
            None => format!(
                "cannot trace OOM kills on this host: {}",
                reasons.join("; ")
            ),
        }));
    }
    preflight::raise_memlock_limit();
    let targets = Targets {
        btf: plan.btf_targets,
        tracepoints: plan.tracepoint_ids,
        tracepoint_available: plan.tracepoint_available,
    };
    let attached =
        loader::load_and_attach(&plan.layout, &plan.modes, &targets).map_err(|err| match err {
            loader::LoadError::NoMode(_) => AttachFailure::NoMode(err.to_string()),
            loader::LoadError::Object(_) => AttachFailure::Load(err.to_string()),
        })?;
    Ok((plan, attached))
}
