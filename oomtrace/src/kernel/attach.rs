//! From command-line flags to an attached kernel program: privileges, lockdown, the plan,
//! then load and attach. Shared by `oomtrace` and `oomtrace check`.

use anyhow::{anyhow, bail};

use crate::{
    cli::{KernelArgs, TracepointLayout},
    kernel::{
        loader::{self, Attached, Targets},
        plan::{self, Plan},
        preflight,
    },
};

/// Checks privileges, plans, loads and attaches.
pub fn attach(kernel: &KernelArgs) -> anyhow::Result<(Plan, Attached)> {
    let pid_only = kernel.tracepoint_layout == TracepointLayout::PidOnly;
    preflight::check_privileges().map_err(|problem| anyhow!(problem))?;
    if let Some(problem) = preflight::lockdown_problem() {
        bail!(problem);
    }
    let plan = plan::build(kernel.attach, kernel.btf.as_deref(), pid_only);
    if plan.modes.is_empty() {
        let reasons: Vec<String> = plan
            .unavailable
            .iter()
            .map(|(mode, why)| format!("{mode}: {why}"))
            .collect();
        bail!(
            "cannot trace OOM kills on this host: {}",
            reasons.join("; ")
        );
    }
    let mut plan = plan;
    // aya needs its own parse of the kernel's BTF only to find tp_btf's attach target.
    let aya_btf = plan
        .btf_bytes
        .take()
        .and_then(|bytes| aya::Btf::parse(&bytes, aya::Endianness::default()).ok());
    preflight::raise_memlock_limit();
    let targets = Targets {
        aya_btf: aya_btf.as_ref(),
        tracepoint_available: plan.tracepoint_available,
    };
    let attached = loader::load_and_attach(&plan.layout, &plan.modes, &targets)?;
    drop(aya_btf);
    // Parsing the kernel's BTF (ours and aya's) leaves tens of megabytes of freed heap
    // behind; hand it back, so the steady state is only what watching needs.
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    Ok((plan, attached))
}
