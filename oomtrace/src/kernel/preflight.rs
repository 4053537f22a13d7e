//! What the host allows, checked before anything is loaded, so that each obstacle is one
//! sentence that says what to do instead of a syscall error.

const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capabilities from the `CapEff:` line of `/proc/self/status`.
pub fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// `None` when the capabilities suffice to load and attach tracing programs.
pub fn privilege_problem(euid: u32, caps: Option<u64>) -> Option<String> {
    let has = |cap: u32| caps.is_some_and(|c| c & (1 << cap) != 0);
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return None;
    }
    Some(if euid != 0 {
        "loading the eBPF program needs root: run oomtrace with sudo, or give it CAP_BPF and CAP_PERFMON"
            .into()
    } else {
        "root without CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) cannot load the eBPF program: run oomtrace in a privileged container, or give it those capabilities"
            .into()
    })
}

/// Why opening `/dev/kmsg` was refused, in words that say what to do: the capability when it
/// is missing, else the device controller of the container oomtrace runs in.
pub fn kmsg_refusal(euid: u32, caps: Option<u64>, dmesg_restrict: bool) -> String {
    let has_syslog = caps.is_some_and(|c| c & (1 << CAP_SYSLOG) != 0);
    if dmesg_restrict && !has_syslog {
        return if euid == 0 {
            "reading /dev/kmsg needs CAP_SYSLOG, which this root lacks: give it to oomtrace (docker run --cap-add SYSLOG)".into()
        } else {
            "reading /dev/kmsg needs root or CAP_SYSLOG: run oomtrace with sudo".into()
        };
    }
    "opening /dev/kmsg was refused although oomtrace may read the kernel log: a container's device controller refuses it; pass it in with docker run --device /dev/kmsg:/dev/kmsg:r (in Kubernetes, a privileged container)".into()
}

/// [`kmsg_refusal`] for this process.
pub fn kmsg_refusal_here() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let restrict = std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict")
        .map_or(true, |text| text.trim() != "0");
    // SAFETY: geteuid has no failure mode.
    let euid = unsafe { libc::geteuid() };
    kmsg_refusal(euid, effective_caps(&status), restrict)
}

pub fn check_privileges() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // SAFETY: geteuid has no failure mode.
    let euid = unsafe { libc::geteuid() };
    match privilege_problem(euid, effective_caps(&status)) {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// The active lockdown level from `/sys/kernel/security/lockdown` (`none [integrity]
/// confidentiality`), if securityfs shows it.
pub fn lockdown_level(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(&text[start..end])
}

/// Confidentiality lockdown forbids `bpf_probe_read_kernel`, which every attach mode needs.
pub fn lockdown_problem() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    (lockdown_level(&text)? == "confidentiality").then(|| {
        "kernel lockdown is in confidentiality mode, which forbids eBPF programs from reading kernel memory: boot with lockdown=integrity or none"
            .to_string()
    })
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so the ring buffer fits.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads one rlimit; failure only matters on old kernels and surfaces as
    // a map-creation error there.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_kernel_log_says_what_is_missing() {
        let all = Some(0x1ff_ffff_ffff);
        let without_syslog = all.map(|c: u64| c & !(1 << CAP_SYSLOG));
        let cases = [
            (1000, Some(0), true, "needs root or CAP_SYSLOG"),
            (0, without_syslog, true, "this root lacks"),
            (0, all, true, "--device /dev/kmsg"),
            // Anyone may read the log: only a device controller refuses.
            (1000, Some(0), false, "--device /dev/kmsg"),
        ];
        for (euid, caps, restrict, want) in cases {
            let said = kmsg_refusal(euid, caps, restrict);
            assert!(said.contains(want), "{euid} {caps:?} {restrict}: {said}");
        }
    }

    #[test]
    fn capabilities_decide_not_the_uid() {
        let root_caps = Some(0x0000_01ff_ffff_ffff);
        let bpf_perfmon = Some((1 << CAP_BPF) | (1 << CAP_PERFMON));
        let cases = [
            (0, root_caps, false),
            (1000, bpf_perfmon, false),
            (1000, Some(1 << CAP_SYS_ADMIN), false),
            (1000, Some(0), true),
            (1000, Some(1 << CAP_BPF), true),
            (0, Some(0), true),
            (0, None, true),
        ];
        for (euid, caps, refused) in cases {
            assert_eq!(
                privilege_problem(euid, caps).is_some(),
                refused,
                "{euid} {caps:?}"
            );
        }
        assert!(privilege_problem(1000, Some(0)).unwrap().contains("sudo"));
        assert!(
            privilege_problem(0, Some(0))
                .unwrap()
                .contains("privileged container")
        );
    }

    #[test]
    fn reads_capeff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_caps("Name: x\n"), None);
    }

    #[test]
    fn reads_the_lockdown_level() {
        assert_eq!(
            lockdown_level("none [integrity] confidentiality\n"),
            Some("integrity")
        );
        assert_eq!(
            lockdown_level("[none] integrity confidentiality"),
            Some("none")
        );
        assert_eq!(
            lockdown_level("none integrity [confidentiality]"),
            Some("confidentiality")
        );
        assert_eq!(lockdown_level("garbage"), None);
    }
}
