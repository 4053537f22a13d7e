//! `oomtrace check`: can this host be traced, and how? It attaches for real and detaches,
//! so "yes" is proven rather than inferred.

use std::{fmt::Write as _, io::Write as _, process::ExitCode};

use crate::{
    cli::KernelArgs,
    kernel::{attach::attach, plan},
};

pub fn run(kernel: &KernelArgs) -> ExitCode {
    let mut out = String::new();
    let code = describe(kernel, &mut out);
    // `oomtrace check | head -1` is a fine way to ask: a closed pipe is not an error.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    code
}

fn describe(kernel: &KernelArgs, out: &mut String) -> ExitCode {
    let (plan, attached) = match attach(kernel) {
        Ok(ok) => ok,
        Err(err) => {
            let _ = writeln!(out, "oomtrace check: this host cannot be traced: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mode = attached.mode;
    let _ = writeln!(out, "oomtrace check: this host can be traced.");
    let _ = writeln!(out, "attach mode: {mode}");
    let _ = writeln!(out, "cgroup mode: {}", plan.cgroup_mode.describe());
    let _ = writeln!(
        out,
        "fields:      {}",
        plan::fillable_fields(mode, &plan.layout).join(", ")
    );
    let mut reasons: Vec<String> = plan
        .unavailable_above(mode)
        .map(|(m, why)| format!("{m}: {why}"))
        .collect();
    reasons.extend(attached.fallbacks.iter().map(|f| f.to_string()));
    reasons.extend(
        plan.missing_for(mode)
            .iter()
            .map(|m| format!("{} {}: {} will be null", m.what, m.why, m.affects)),
    );
    if reasons.is_empty() {
        let _ = writeln!(out, "richer modes: none; this is the richest mode");
    } else {
        let _ = writeln!(out, "not available:");
        for reason in reasons {
            let _ = writeln!(out, "  - {reason}");
        }
    }
    ExitCode::SUCCESS
}
