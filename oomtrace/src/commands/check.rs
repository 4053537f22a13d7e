//! `oomtrace check`: can this host be traced, and how? It answers two questions, each by
//! doing it: whether the mode forced with `--attach` works here, and what plain `oomtrace`
//! would use. It attaches for real and detaches, so "yes" is proven rather than inferred.
//! Then whether Docker and containerd answer, and whether the kernel log can be read (the fallback, and
//! `history`).

use std::{fmt::Write as _, io::Write as _, path::Path, process::ExitCode, time::Duration};

use crate::{
    attribution::{containerd, docker},
    cli::Args,
    kernel::{
        attach::{AttachFailure, AttachOptions, attach},
        loader::Attached,
        plan::{self, Plan},
        symbols::Kallsyms,
    },
    source::kmsg::device as kmsg_device,
};

pub fn run(args: &Args) -> ExitCode {
    let mut out = String::new();
    let code = describe(args, &mut out);
    // `oomtrace check | head -1` is a fine way to ask: a closed pipe is not an error.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    code
}

fn describe(args: &Args, out: &mut String) -> ExitCode {
    let kernel = args.kernel();
    let kmsg = kmsg_device::open().map(drop);
    let mut traced = true;
    // The forced mode first: the question that was asked.
    if let Some(forced) = kernel.attach {
        match attach(&kernel) {
            Ok((plan, attached)) => {
                let _ = writeln!(out, "--attach {forced} works here");
                fields(out, &plan, &attached);
            }
            Err(AttachFailure::NoMode(why)) => {
                traced = false;
                let _ = writeln!(out, "{why}");
            }
            Err(err) => {
                traced = false;
                let _ = writeln!(out, "--attach {forced} does not work here: {err}");
            }
        }
    }
    // Then what plain oomtrace would do on this host.
    let plain = AttachOptions {
        btf: kernel.btf.clone(),
        ..AttachOptions::default()
    };
    match attach(&plain) {
        Ok((plan, attached)) => {
            let _ = writeln!(
                out,
                "plain oomtrace here: {} ({})",
                attached.mode,
                plan.cgroup_mode.describe()
            );
            if kernel.attach.is_none() {
                fields(out, &plan, &attached);
            }
            not_available(out, &plan, &attached);
        }
        Err(err) => plain_fallback(out, &err, &kmsg, &mut traced, kernel.attach.is_none()),
    }
    symbols_line(out);
    docker_line(out, args);
    containerd_line(out, args);
    match &kmsg {
        Ok(()) => {
            let _ = writeln!(
                out,
                "kernel log: {} can be read (the fallback, and history)",
                kmsg_device::DEV_KMSG
            );
        }
        Err(why) => {
            let _ = writeln!(out, "kernel log: cannot be read: {why}");
        }
    }
    if traced {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Plain oomtrace cannot attach: does the kernel log stand in?
fn plain_fallback(
    out: &mut String,
    err: &AttachFailure,
    kmsg: &Result<(), String>,
    traced: &mut bool,
    plain_was_asked: bool,
) {
    match kmsg {
        Ok(()) if err.kernel_log_stands_in() => {
            let _ = writeln!(
                out,
                "plain oomtrace here: the kernel log ({}), because eBPF cannot be used: {err}",
                kmsg_device::DEV_KMSG
            );
            let _ = writeln!(
                out,
                "fields:      what the kernel log prints: victim.pid, victim.comm, victim.uid, victim.oom_score_adj, victim.rss_*_bytes, cgroup.path and the oom context when its report was not rate-limited"
            );
        }
        _ => {
            if plain_was_asked {
                *traced = false;
            }
            let _ = writeln!(out, "plain oomtrace here: cannot trace: {err}");
        }
    }
}

/// The fields the mode fills, and what stays null and why.
fn fields(out: &mut String, plan: &Plan, attached: &Attached) {
    let mode = attached.mode;
    let _ = writeln!(
        out,
        "fields:      {}",
        plan::fillable_fields(mode, &plan.layout).join(", ")
    );
    match &attached.signal_failure {
        None => {
            let _ = writeln!(
                out,
                "oom.kind:    known (signal_generate is attached beside mark_victim)"
            );
        }
        Some(why) => {
            let _ = writeln!(
                out,
                "oom.kind:    null, signal_generate cannot be used: {why}"
            );
        }
    }
    let null: Vec<String> = plan
        .missing_for(mode)
        .iter()
        .map(|m| format!("{} {}: {} will be null", m.what, m.why, m.affects))
        .collect();
    for line in null {
        let _ = writeln!(out, "  - {line}");
    }
}

/// Why the modes richer than the one plain oomtrace uses are not used.
fn not_available(out: &mut String, plan: &Plan, attached: &Attached) {
    let mut reasons: Vec<String> = plan
        .unavailable_above(attached.mode)
        .map(|(m, why)| format!("{m}: {why}"))
        .collect();
    reasons.extend(attached.fallbacks.iter().map(|f| f.to_string()));
    if reasons.is_empty() {
        let _ = writeln!(out, "richer modes: none; {} is the richest", attached.mode);
    } else {
        let _ = writeln!(out, "richer modes not available here:");
        for reason in reasons {
            let _ = writeln!(out, "  - {reason}");
        }
    }
}

/// Whether the kernel stack can be read: which OOM it was, and a group kill's members.
fn symbols_line(out: &mut String) {
    if Kallsyms::load().is_some() {
        let _ = writeln!(
            out,
            "kernel symbols: /proc/kallsyms names the OOM killer's functions: oom.global and the oom.id of memory.oom.group kills come from the kernel stack"
        );
    } else {
        let _ = writeln!(
            out,
            "kernel symbols: /proc/kallsyms hides its addresses (kptr_restrict, or no CAP_SYSLOG): without the kernel log's report, oom.global and the oom.id of memory.oom.group kills are null"
        );
    }
}

/// Whether the Docker Engine answers, and if not, why, in words.
fn docker_line(out: &mut String, args: &Args) {
    if args.no_enrich {
        let _ = writeln!(out, "Docker: not asked (--no-enrich)");
        return;
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let socket = match docker::socket_path(args.docker_socket.as_deref(), docker_host.as_deref()) {
        Ok(socket) => socket,
        Err(why) => {
            let _ = writeln!(out, "Docker: not asked: {why}");
            return;
        }
    };
    match ask_docker(&socket) {
        Ok(version) => {
            let _ = writeln!(
                out,
                "Docker: answers at {} (Engine {version}): containers are named",
                socket.display()
            );
        }
        Err(why) => {
            let _ = writeln!(
                out,
                "Docker: does not answer: {why}; reports carry container ids without names"
            );
        }
    }
}

/// Whether containerd answers, and if not, why, in words.
fn containerd_line(out: &mut String, args: &Args) {
    if args.no_enrich {
        let _ = writeln!(out, "containerd: not asked (--no-enrich)");
        return;
    }
    let address = std::env::var(containerd::ADDRESS_ENV).ok();
    let socket = containerd::socket_path(args.containerd_socket.as_deref(), address.as_deref());
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an event loop: {e}"))
        .and_then(|runtime| runtime.block_on(containerd::version(&socket, Duration::from_secs(3))));
    match answer {
        Ok(version) => {
            let _ = writeln!(
                out,
                "containerd: answers at {} ({version}): Kubernetes containers are named",
                socket.display()
            );
        }
        Err(why) => {
            let _ = writeln!(
                out,
                "containerd: does not answer: {why}; Kubernetes containers are reported by id and pod uid"
            );
        }
    }
}

fn ask_docker(socket: &Path) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an event loop: {e}"))?;
    runtime.block_on(async {
        match tokio::time::timeout(Duration::from_secs(3), docker::version(socket)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("{} did not answer within 3 s", socket.display())),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use clap::Parser as _;

    use super::*;
    use oomtrace_core::testing::skips;

    use crate::cli::Cli;

    const TEST: &str = "commands::check::tests::check_closes_every_descriptor_it_opens";
    /// Set in the process the test runs itself in.
    const ALONE: &str = "OOMTRACE_TEST_FDS_ALONE";

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// check attaches twice, the forced mode and plain oomtrace's, and detaches: a descriptor
    /// left open would hold a program attached, or its maps, for as long as the process runs.
    #[test]
    fn check_closes_every_descriptor_it_opens() {
        if !skips::as_root(
            "check_closes_every_descriptor_it_opens",
            "it needs root to load eBPF",
        ) {
            return;
        }
        if std::env::var_os(ALONE).is_some() {
            // --no-enrich: Docker is not this test's business.
            let cli =
                Cli::try_parse_from(["oomtrace", "check", "--no-enrich", "--attach", "raw_tp"])
                    .unwrap();
            let before = open_fds();
            let mut out = String::new();
            describe(&cli.args, &mut out);
            let after = open_fds();
            assert!(out.contains("--attach raw_tp works here"), "{out}");
            assert!(out.contains("plain oomtrace here: "), "{out}");
            assert_eq!(
                after, before,
                "descriptors open before and after check:\n{out}"
            );
            println!("{before} descriptors open before check and after");
            return;
        }
        // The other tests of this binary open files on other threads: the count is only
        // meaningful in a process that runs this test alone.
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--test-threads=1", "--nocapture"])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{text}");
        assert!(
            text.contains("descriptors open before check and after"),
            "{text}"
        );
    }
}
