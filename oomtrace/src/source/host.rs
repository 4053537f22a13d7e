//! Which machine, and which boot of it, an event happened on: a fleet's log pipeline needs it
//! to tell nodes apart, and the journal needs it to tell one kill from another (a kill's
//! `boot_ns` and tid are unique only within one boot).
//!
//! The boot id is the kernel's own (`/proc/sys/kernel/random/boot_id`), the same in every
//! container on the host. The name is harder: in a container the hostname is the container's,
//! not the node's. So it is taken, in this order, from `OOMTRACE_NODE_NAME` (the DaemonSet sets
//! it from the downward API's `spec.nodeName`), else from the hostname, but only when this
//! process is in the initial UTS namespace, the host's own; else it is `null`, never the
//! container's name.

pub use oomtrace_core::report::Host;

/// The variable that names the node, as Kubernetes' downward API sets it in the DaemonSet.
pub const NODE_NAME_ENV: &str = "OOMTRACE_NODE_NAME";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// The initial UTS namespace, by its fixed inode number (`PROC_UTS_INIT_INO`, kernel ABI).
/// Compared by number, not with `/proc/1`'s: a sandbox's init may refuse to show its own.
const INIT_UTS_NS: &str = "uts:[4026531838]";

/// Why the node's name is unknown, for one line at start-up.
pub const NAME_UNKNOWN: &str = "the node's name is unknown: this process has a UTS namespace of its own, whose hostname is not the node's; set OOMTRACE_NODE_NAME (the DaemonSet sets it from spec.nodeName), or run with the host's UTS namespace (docker run --uts=host); host.name stays null";

/// This host and boot, as the process sees them now.
pub fn current() -> Host {
    let env = std::env::var(NODE_NAME_ENV).ok();
    let hostname = hostname();
    let host_uts =
        std::fs::read_link("/proc/self/ns/uts").is_ok_and(|ns| ns.as_os_str() == INIT_UTS_NS);
    let boot_id = std::fs::read_to_string(BOOT_ID).ok();
    from_parts(
        env.as_deref(),
        hostname.as_deref(),
        host_uts,
        boot_id.as_deref(),
    )
}

/// The rule above, on what was read.
pub fn from_parts(
    env: Option<&str>,
    hostname: Option<&str>,
    host_uts: bool,
    boot_id: Option<&str>,
) -> Host {
    let env = env.map(str::trim).filter(|n| !n.is_empty());
    let (name, name_from) = match (env, hostname.filter(|_| host_uts)) {
        (Some(name), _) => (Some(name.to_owned()), Some("env")),
        (None, Some(name)) if !name.is_empty() => (Some(name.to_owned()), Some("uts")),
        _ => (None, None),
    };
    let boot_id = boot_id
        .map(str::trim)
        .filter(|id| is_boot_id(id))
        .map(str::to_owned);
    Host {
        name,
        name_from,
        boot_id,
    }
}

/// A boot id as the kernel writes it: a UUID, 36 characters of hex and dashes.
fn is_boot_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        })
}

/// The hostname of this process's UTS namespace, from uname(2).
fn hostname() -> Option<String> {
    // SAFETY: uname fills the struct it is given.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = name
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "5b4c8e3a-1f2d-4c6b-9a7e-0d1c2b3a4f5e";

    #[test]
    fn the_name_comes_from_the_environment_then_the_host_s_own_hostname_else_null() {
        let cases = [
            // (env, hostname, host's UTS namespace, name, from)
            (
                Some("node-7"),
                Some("abc123"),
                false,
                Some("node-7"),
                Some("env"),
            ),
            (
                Some("node-7"),
                Some("web-1"),
                true,
                Some("node-7"),
                Some("env"),
            ),
            (Some("  "), Some("web-1"), true, Some("web-1"), Some("uts")),
            (None, Some("web-1"), true, Some("web-1"), Some("uts")),
            // A container's hostname is not the node's.
            (None, Some("4f2c5e6a7b8c"), false, None, None),
            (None, None, true, None, None),
        ];
        for (env, hostname, host_uts, name, from) in cases {
            let host = from_parts(env, hostname, host_uts, Some(BOOT));
            assert_eq!(
                host.name.as_deref(),
                name,
                "{env:?} {hostname:?} {host_uts}"
            );
            assert_eq!(host.name_from, from, "{env:?} {hostname:?} {host_uts}");
            assert_eq!(host.boot_id.as_deref(), Some(BOOT));
        }
    }

    #[test]
    fn only_a_boot_id_in_the_kernel_s_form_is_kept() {
        for (read, kept) in [
            (format!("{BOOT}\n"), Some(BOOT)),
            ("".to_owned(), None),
            ("5b4c8e3a1f2d4c6b9a7e0d1c2b3a4f5e----".to_owned(), None),
            ("zb4c8e3a-1f2d-4c6b-9a7e-0d1c2b3a4f5e".to_owned(), None),
        ] {
            let host = from_parts(None, None, false, Some(&read));
            assert_eq!(host.boot_id.as_deref(), kept, "{read:?}");
        }
    }

    #[test]
    fn this_machine_has_a_boot_id() {
        assert!(current().boot_id.is_some());
    }
}
