//! `oomtrace check`: can this host be traced, and how? It attaches for real and detaches,
//! so "yes" is proven rather than inferred.

use std::process::ExitCode;

use crate::{cli::KernelArgs, layout::cgroup_mode_name, plan, watch};

pub fn run(kernel: &KernelArgs) -> ExitCode {
    let (plan, attached) = match watch::attach(kernel) {
        Ok(ok) => ok,
        Err(err) => {
            println!("oomtrace check: this host cannot be traced: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mode = attached.mode;
    println!("oomtrace check: this host can be traced.");
    println!("attach mode: {mode}");
    println!("cgroup mode: {}", cgroup_mode_name(plan.cgroup_mode));
    println!(
        "fields:      {}",
        plan::fillable_fields(mode, &plan.layout).join(", ")
    );
    let mut reasons: Vec<String> = plan
        .unavailable
        .iter()
        .filter(|(m, _)| (*m as u8) < (mode as u8))
        .map(|(m, why)| format!("{m}: {why}"))
        .collect();
    reasons.extend(attached.fallbacks.iter().map(|f| f.to_string()));
    reasons.extend(
        plan.missing_for(mode)
            .iter()
            .map(|m| format!("{} {}: {} will be null", m.what, m.why, m.affects)),
    );
    if reasons.is_empty() {
        println!("richer modes: none; this is the richest mode");
    } else {
        println!("not available:");
        for reason in reasons {
            println!("  - {reason}");
        }
    }
    ExitCode::SUCCESS
}
