//! `oomtrace check` answers two questions, each by doing it on this host's real kernel: does
//! the mode forced with `--attach` work here, and what would plain `oomtrace` use. A failure
//! of the first must never be reported as the host being untraceable.

use std::{os::unix::process::CommandExt as _, process::Command, time::Duration};

use oomtrace_tests::{oomtrace_bin, privileged, run_within, serial};

/// Loading and verifying the programs takes well under a second on the host, far longer under
/// the kernel matrix's TCG emulation.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// CAP_SYSLOG, the one capability the kernel-log fallback needs with `dmesg_restrict` set.
const CAP_SYSLOG: libc::c_ulong = 34;
/// The highest capability number any kernel has had a name for is 40; the bounding set has 64.
const CAP_LAST: libc::c_ulong = 63;

/// `oomtrace check ARGS`: exit code and stdout, within [`RUN_TIMEOUT`].
fn check(command: &mut Command) -> (Option<i32>, String) {
    let output = run_within(command, RUN_TIMEOUT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn oomtrace_check(args: &[&str]) -> Command {
    let mut command = Command::new(oomtrace_bin());
    command.arg("check").args(args);
    command
}

/// The mode plain oomtrace uses here, from its own line.
fn plain_mode(out: &str) -> &str {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("plain oomtrace here: "))
        .unwrap_or_else(|| panic!("no `plain oomtrace here:` line in {out}"));
    line.split_whitespace().next().unwrap_or_default()
}

#[test]
fn plain_check_names_the_mode_its_fields_docker_and_the_kernel_log() {
    if !privileged("plain_check_names_the_mode_its_fields_docker_and_the_kernel_log") {
        return;
    }
    let _serial = serial();
    let (code, out) = check(&mut oomtrace_check(&[]));
    assert_eq!(code, Some(0), "{out}");
    let (mode, _) = oomtrace_tests::memory_hierarchy();
    let cgroups = format!("({})", mode.describe());
    assert!(out.contains(&cgroups), "{cgroups} in {out}");
    assert!(
        ["tp_btf", "raw_tp", "tracepoint"].contains(&plain_mode(&out)),
        "{out}"
    );
    for line in [
        "fields:",
        "victim.pid",
        "oom.kind:",
        "Docker: ",
        "kernel log: /dev/kmsg can be read",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
}

/// `check --attach raw_tp` said "this is the richest mode" although tp_btf works.
#[test]
fn a_forced_mode_is_judged_apart_from_what_plain_oomtrace_uses() {
    if !privileged("a_forced_mode_is_judged_apart_from_what_plain_oomtrace_uses") {
        return;
    }
    let _serial = serial();
    let (_, plain) = check(&mut oomtrace_check(&[]));
    let richest = plain_mode(&plain).to_owned();
    let (code, out) = check(&mut oomtrace_check(&["--attach", "raw_tp"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("--attach raw_tp works here"), "{out}");
    assert_eq!(plain_mode(&out), richest, "{out}");
    if richest != "raw_tp" {
        assert!(!out.contains("raw_tp is the richest"), "{out}");
    }

    let (code, out) = check(&mut oomtrace_check(&[
        "--attach",
        "raw_tp",
        "--btf",
        "/nonexistent",
    ]));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("--attach raw_tp does not work here") && out.contains("no usable kernel BTF"),
        "{out}"
    );
}

/// Without tracefs the classic tracepoint cannot attach, but tp_btf needs no tracefs: "this
/// host cannot be traced" was false.
#[test]
fn without_tracefs_only_the_classic_tracepoint_fails() {
    if !privileged("without_tracefs_only_the_classic_tracepoint_fails") {
        return;
    }
    let _serial = serial();
    let (_, plain) = check(&mut oomtrace_check(&[]));
    let richest = plain_mode(&plain).to_owned();
    let script = format!(
        "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; exec {} check --attach tracepoint",
        oomtrace_bin().display()
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let (code, out) = check(&mut command);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("--attach tracepoint does not work here") && out.contains("tracefs"),
        "{out}"
    );
    if richest != "tracepoint" {
        assert_eq!(plain_mode(&out), richest, "{out}");
        assert!(!out.contains("cannot trace"), "{out}");
    }
}

/// A user holding only CAP_SYSLOG cannot load eBPF, but plain oomtrace works for them through
/// the kernel log: check must say so, and succeed.
#[test]
fn cap_syslog_alone_is_told_about_the_kernel_log() {
    if !privileged("cap_syslog_alone_is_told_about_the_kernel_log") {
        return;
    }
    let _serial = serial();
    let mut command = oomtrace_check(&[]);
    // SAFETY: only async-signal-safe prctl(2) calls between fork and exec. Root's permitted set
    // after exec is its bounding set: this leaves it CAP_SYSLOG alone.
    unsafe {
        command.pre_exec(|| {
            for cap in 0..=CAP_LAST {
                if cap != CAP_SYSLOG {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
                }
            }
            Ok(())
        });
    }
    let (code, out) = check(&mut command);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "plain oomtrace here: the kernel log (/dev/kmsg), because eBPF cannot be used"
        ),
        "{out}"
    );
    assert!(out.contains("kernel log: /dev/kmsg can be read"), "{out}");
}
