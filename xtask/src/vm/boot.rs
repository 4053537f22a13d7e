//! One QEMU boot per kernel and cgroup mode, judged only by what the guest prints on the serial
//! console: QEMU exits 0 after a panic as after a power-off.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Cgroup, Kernel, selftests};
use oomtrace_test_skips::{Skip, SkipKind, parse_skip};

use crate::cmd::{self, TestCount, progress};

/// A passing boot takes about 8 s under TCG. A failing one takes longer, as the tests wait out
/// their own timeouts (a 6.1 verifier rejecting a program after 17 s of emulated work made one
/// take 190 s); a boot that hangs (a lost console, a stuck test) must not hold CI beyond this.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// The guest's init prints exactly one line starting with this: `pass`, or `fail <why>`.
const MARKER: &str = "OOMTRACE-VM-RESULT: ";
/// Init prints this, then the kernel log's end, between failed tests and the result line.
const KERNEL_LOG_HEADER: &str = "oomtrace-vm: last kernel messages:";
/// Lines of a failed boot's serial log worth showing: the failing test and the result line.
const TAIL_LINES: usize = 40;
/// The attach modes the end-to-end tests name: `<mode>_reports_a_memcg_kill`.
const ATTACH_MODES: [&str; 3] = ["tp_btf", "raw_tp", "tracepoint"];

/// What a boot gives its guest besides the kernel and the root.
pub(super) struct Machine {
    pub memory: &'static str,
    /// The kernel command line past `console=ttyS0 panic=-1 oomtrace.cgroup=MODE`.
    pub append: &'static str,
}

/// The busybox guests: the tests size their hogs and earlyoom's limits from this memory.
pub(super) const BUSYBOX: Machine = Machine {
    memory: "512M",
    append: "",
};

/// The systemd guest: its root alone takes about 110 MiB of RAM, and zram's swap is 512 MiB.
pub(super) const SYSTEMD: Machine = Machine {
    memory: "1024M",
    append: super::systemd::APPEND,
};

/// How one boot ended, read from its serial log.
pub(super) struct Boot<'k> {
    kernel: &'k Kernel,
    mode: Cgroup,
    /// `None` for a pass, else why it failed.
    pub(super) failure: Option<String>,
    /// Each `test NAME ... STATUS` line, in order.
    pub(super) tests: Vec<(String, String)>,
    /// The tests' records of returning without testing, which init prints after the run.
    skips: Vec<(SkipKind, Skip)>,
    time: Duration,
    log: PathBuf,
}

pub(super) fn boot<'k>(
    qemu: &Path,
    kernel: &'k Kernel,
    mode: Cgroup,
    initramfs: &Path,
    logs: &Path,
    machine: &Machine,
) -> Result<Boot<'k>> {
    let what = format!("{}, cgroup {}", kernel.label, mode.name());
    let log = logs.join(format!("{}-{}.log", kernel.file_stem, mode.name()));
    let _ = fs::remove_file(&log);
    let mut cmd = Command::new(qemu);
    // KVM is present on the project's machines, but stock kernels do not boot under it: TCG.
    cmd.args(["-accel", "tcg", "-m", machine.memory, "-smp", "1"])
        // No default NIC, VGA or monitor: nothing to probe, and the serial port is the console.
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        // panic=-1 reboots at once on a panic, and -no-reboot turns the reboot into an exit.
        .arg(format!(
            "console=ttyS0 panic=-1 oomtrace.cgroup={} {}",
            mode.name(),
            machine.append
        ))
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    progress(format_args!(
        "booting {what} (timeout {} s, serial log {})",
        BOOT_TIMEOUT.as_secs(),
        log.display()
    ));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", cmd::display(&cmd)))?;
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(200));
    };
    let time = started.elapsed();
    let serial = fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let Serial {
        verdict,
        tests,
        skips,
    } = parse_serial(&serial);
    // Only the guest's own line says pass: QEMU exits 0 after a panic as after a power-off.
    let failure = match (verdict, exit) {
        (Some(verdict), _) => verdict.err(),
        (None, None) => Some("timeout".into()),
        (None, Some(status)) => Some(format!(
            "no result line (QEMU ended with {})",
            cmd::describe(status)
        )),
    };
    match &failure {
        None => progress(format_args!("{what}: pass in {} s", time.as_secs())),
        Some(why) => {
            progress(format_args!(
                "{what}: FAILED ({why}) after {} s; last lines of {}:",
                time.as_secs(),
                log.display()
            ));
            for line in failure_tail(&serial) {
                eprintln!("    {line}");
            }
        }
    }
    Ok(Boot {
        kernel,
        mode,
        failure,
        tests,
        skips,
        time,
        log,
    })
}

impl Boot<'_> {
    /// The boot's tests, counted as the host's are: libtest's `ok` includes the tests that
    /// returned as skipped or not applicable, which are counted apart, named with the boot. A
    /// boot that failed before or outside its tests counts as one failure.
    pub(super) fn count(&self) -> TestCount {
        let mut count = TestCount::default();
        for (_, status) in &self.tests {
            if status == "ok" {
                count.ok += 1;
            } else {
                count.failed += 1;
            }
        }
        if self.failure.is_some() && self.tests.iter().all(|(_, s)| s == "ok") {
            count.failed += 1;
        }
        for (kind, skip) in &self.skips {
            count.add_skip(
                *kind,
                Skip {
                    test: format!(
                        "{} on {}, cgroup {}",
                        skip.test,
                        self.kernel.label,
                        self.mode.name()
                    ),
                    why: skip.why.clone(),
                },
            );
        }
        count
    }

    /// A test's status for the matrix: `n/a` or `skipped` where it recorded so, else libtest's.
    fn status<'a>(&'a self, name: &str, status: &'a str) -> &'a str {
        match self.skips.iter().find(|(_, skip)| skip.test == name) {
            Some((SkipKind::NotApplicable, _)) if status == "ok" => "n/a",
            Some((SkipKind::Skipped, _)) if status == "ok" => "skipped",
            _ => status,
        }
    }
}

/// What explains a failure: the last lines before the kernel log init appends after failed
/// tests (the harness's failure report), then the result line. Without that header (a panic,
/// a hang) the plain end of the log, where the kernel's last words are.
fn failure_tail(serial: &str) -> Vec<&str> {
    let lines: Vec<&str> = serial.lines().map(str::trim_end).collect();
    let (report, rest) = match lines.iter().position(|l| *l == KERNEL_LOG_HEADER) {
        Some(at) => lines.split_at(at),
        None => (&lines[..], &[][..]),
    };
    let mut tail = report[report.len().saturating_sub(TAIL_LINES)..].to_vec();
    tail.extend(rest.iter().filter(|l| l.starts_with(MARKER)));
    tail
}

/// What a boot's serial log says.
#[derive(Debug, Default, PartialEq)]
struct Serial {
    /// The result line: `Ok` for pass, `Err(why)` for fail.
    verdict: Option<Result<(), String>>,
    /// The test harness's per-test lines: name, status.
    tests: Vec<(String, String)>,
    /// The skip and not-applicable records init copies to the console after the tests, in the
    /// host's format.
    skips: Vec<(SkipKind, Skip)>,
}

fn parse_serial(serial: &str) -> Serial {
    let mut verdict = None;
    let mut tests = Vec::new();
    let mut skips = Vec::new();
    for line in serial.lines() {
        // The console's line discipline ends lines with \r\n.
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(record) = parse_skip(line) {
            skips.push(record);
            continue;
        }
        let line = line.trim_end();
        if let Some(result) = line.strip_prefix(MARKER) {
            verdict = Some(match result {
                "pass" => Ok(()),
                fail => {
                    let why = fail.strip_prefix("fail").unwrap_or(fail).trim();
                    Err(match why.parse::<i32>() {
                        Ok(code) => format!("tests exited with {code}"),
                        Err(_) => why.to_string(),
                    })
                }
            });
        } else if let Some((name, status)) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.split_once(" ... "))
        {
            if !name.contains(' ') && !status.is_empty() {
                tests.push((name.to_string(), status.to_string()));
            }
        }
    }
    Serial {
        verdict,
        tests,
        skips,
    }
}

/// kernel × cgroup mode × attach mode, on stdout: the answer `vm-test` exists for.
pub(super) fn print_matrix(boots: &[Boot]) {
    let mut rows = vec![
        [
            "kernel",
            "cgroup",
            "tp_btf",
            "raw_tp",
            "tracepoint",
            "kernel selftests",
            "other tests",
            "result",
            "time",
        ]
        .map(String::from),
    ];
    for boot in boots {
        let attach = ATTACH_MODES.map(|mode| {
            boot.tests
                .iter()
                .find(|(name, _)| name.strip_prefix(mode).is_some_and(|r| r.starts_with('_')))
                .map_or_else(
                    || "-".to_string(),
                    |(name, status)| boot.status(name, status).to_string(),
                )
        });
        // The kernel's memcg OOM selftests, run as one test of the guest's (selftests.rs).
        let selftests = boot
            .tests
            .iter()
            .find(|(name, _)| name == selftests::TEST)
            .map_or_else(
                || "-".to_string(),
                |(name, status)| boot.status(name, status).to_string(),
            );
        let others: Vec<&str> = boot
            .tests
            .iter()
            .filter(|(name, _)| {
                name != selftests::TEST
                    && !ATTACH_MODES
                        .iter()
                        .any(|m| name.strip_prefix(m).is_some_and(|r| r.starts_with('_')))
            })
            .map(|(name, status)| boot.status(name, status))
            .collect();
        let ok = others.iter().filter(|status| **status == "ok").count();
        let returned_early = others
            .iter()
            .filter(|status| matches!(**status, "n/a" | "skipped"))
            .count();
        let mut other_tests = format!("{ok}/{} ok", others.len() - returned_early);
        for label in ["n/a", "skipped"] {
            let n = others.iter().filter(|status| **status == label).count();
            if n > 0 {
                other_tests.push_str(&format!(", {n} {label}"));
            }
        }
        let [tp_btf, raw_tp, tracepoint] = attach;
        rows.push([
            boot.kernel.label.clone(),
            boot.mode.name().to_string(),
            tp_btf,
            raw_tp,
            tracepoint,
            selftests,
            other_tests,
            boot.failure
                .as_ref()
                .map_or_else(|| "pass".into(), |why| format!("FAIL: {why}")),
            format!("{} s", boot.time.as_secs()),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|col| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    for boot in boots.iter().filter(|b| b.failure.is_some()) {
        let failed: Vec<&str> = boot
            .tests
            .iter()
            .filter(|(_, status)| status != "ok" && !status.starts_with("ignored"))
            .map(|(name, _)| name.as_str())
            .collect();
        let failed = if failed.is_empty() {
            String::new()
        } else {
            format!("failed {}; ", failed.join(", "))
        };
        println!(
            "\n{}, cgroup {}: {failed}serial log {}",
            boot.kernel.label,
            boot.mode.name(),
            boot.log.display()
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_serial_console() {
        let serial = "[    1.2] Run /init as init process\r\n\
                      test raw_tp_reports_a_memcg_kill ... ok\r\n\
                      test tp_btf_reports_a_memcg_kill ... FAILED\r\n\
                      test result: FAILED. 1 passed; 1 failed\r\n\
                      OOMTRACE-VM-RESULT: fail 101\r\n";
        let Serial {
            verdict,
            tests,
            skips,
        } = parse_serial(serial);
        assert_eq!(verdict, Some(Err("tests exited with 101".into())));
        assert_eq!(
            tests,
            [
                ("raw_tp_reports_a_memcg_kill".into(), "ok".into()),
                ("tp_btf_reports_a_memcg_kill".into(), "FAILED".into())
            ]
        );
        assert!(skips.is_empty());
        assert_eq!(
            parse_serial("OOMTRACE-VM-RESULT: pass\r\n").verdict,
            Some(Ok(()))
        );
        assert_eq!(parse_serial("Kernel panic - not syncing\r\n").verdict, None);
    }

    /// A v2-only test in a v1 boot returns as not applicable: libtest says `ok`, init copies
    /// its record to the console, and the boot counts it apart, not as passed.
    #[test]
    fn counts_a_v2_only_test_in_a_v1_boot_as_not_applicable() {
        let serial = "oomtrace-vm: kernel 6.1.0-44-cloud-amd64, cgroup v1\r\n\
                      test group_kill_reports_every_member ... ok\r\n\
                      test raw_tp_reports_a_memcg_kill ... ok\r\n\
                      test result: ok. 2 passed; 0 failed\r\n\
                      n/a\tgroup_kill_reports_every_member\tmemory.oom.group exists only on cgroup v2; the kernel matrix runs it\r\n\
                      OOMTRACE-VM-RESULT: pass\r\n";
        let parsed = parse_serial(serial);
        assert_eq!(parsed.verdict, Some(Ok(())));
        assert_eq!(parsed.tests.len(), 2);
        assert_eq!(
            parsed.skips,
            [(
                SkipKind::NotApplicable,
                Skip {
                    test: "group_kill_reports_every_member".into(),
                    why: "memory.oom.group exists only on cgroup v2; the kernel matrix runs it"
                        .into()
                }
            )]
        );
        let kernel = Kernel {
            label: "Debian 6.1".into(),
            file_stem: "debian-6.1".into(),
            image: PathBuf::new(),
            modes: vec![Cgroup::V1],
        };
        let boot = Boot {
            kernel: &kernel,
            mode: Cgroup::V1,
            failure: None,
            tests: parsed.tests,
            skips: parsed.skips,
            time: Duration::ZERO,
            log: PathBuf::new(),
        };
        let count = boot.count();
        assert_eq!(count.summary(), "1 passed, 0 failed, 0 skipped");
        assert_eq!(
            count.not_applicable_summary().as_deref(),
            Some(
                "1 not applicable here (group_kill_reports_every_member on Debian 6.1, cgroup v1: \
                 memory.oom.group exists only on cgroup v2; the kernel matrix runs it)"
            )
        );
        assert_eq!(boot.status("group_kill_reports_every_member", "ok"), "n/a");
        assert_eq!(boot.status("raw_tp_reports_a_memcg_kill", "ok"), "ok");
    }

    #[test]
    fn shows_the_failure_report_not_the_kernel_log() {
        let serial = "test a ... FAILED\r\nfailures:\r\n    a\r\n\
                      oomtrace-vm: last kernel messages:\r\n[ 1.0] oom-kill\r\n\
                      OOMTRACE-VM-RESULT: fail 101\r\n[ 1.1] reboot: Power down\r\n";
        assert_eq!(
            failure_tail(serial),
            [
                "test a ... FAILED",
                "failures:",
                "    a",
                "OOMTRACE-VM-RESULT: fail 101"
            ]
        );
        assert_eq!(
            failure_tail("[ 2.0] Kernel panic\r\n"),
            ["[ 2.0] Kernel panic"]
        );
    }
}
