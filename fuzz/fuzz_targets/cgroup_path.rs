//! Cgroup-path attribution: arbitrary paths must never panic, and any container named must be
//! one the path really spells out, in a shape some runtime creates (the module's "never
//! guess"). Two metamorphic checks cover the nesting rules without restating them: a cgroup
//! made below a container's belongs to it, and an outer container never hides an inner one.
#![no_main]

use oomtrace_core::attribution::cgroup_path::{ContainerRef, QosClass, Runtime, attribute};

/// An outer Docker container to nest the input in.
const OUTER_ID: &str = "28f2911322e9cf8d7eea222431152098e1c7ebcde906d565c5bc446494e64604";

/// Cgroups a container's own init or runtime makes below it; none names a container.
const BELOW: [&str; 4] = [
    "oomtrace-fuzz",
    "payload",
    "container",
    "system.slice/sshd.service",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Sources decode the kernel's bytes this way before attributing.
    let path = String::from_utf8_lossy(data);
    let got = attribute(&path);
    if let Some(container) = &got {
        spelled_out(&path, container);
    }

    // `lxc/<name>` makes the child a container of its own: the one place a child decides.
    let last = path.rsplit('/').next();
    if !matches!(last, Some("lxc" | "lxc.payload")) {
        let below = BELOW[data.len() % BELOW.len()];
        let child = format!("{path}/{below}");
        assert_eq!(attribute(&child), got, "{child:?} against {path:?}");
    }

    if path.starts_with('/') {
        let nested = format!("/docker/{OUTER_ID}{path}");
        let outer = ContainerRef {
            runtime: Runtime::Docker,
            id: OUTER_ID.into(),
            pod: None,
        };
        match attribute(&nested) {
            // An inner answer stands whatever contains it.
            found if got.is_some() => assert_eq!(found, got, "{nested:?}"),
            // Without one, only the outer container may be named.
            found => assert!(
                found.is_none() || found == Some(outer),
                "{nested:?} gave {found:?}"
            ),
        }
    }
});

/// The container is named by one of the path's components, in a shape its runtime creates.
fn spelled_out(path: &str, c: &ContainerRef) {
    // Attribution refuses anything but a leading `/` and non-empty components.
    let parts: Vec<&str> = path[1..].split('/').collect();
    assert!(!parts.iter().any(|p| p.is_empty()), "{path:?}");
    let id = c.id.as_str();
    let parent = |at: usize| at.checked_sub(1).map(|p| parts[p]);
    let any = |shape: &dyn Fn(usize, &str) -> bool| {
        parts.iter().enumerate().any(|(at, part)| shape(at, part))
    };
    let scope =
        |prefix: &str| any(&|_, part| part.strip_prefix(prefix) == Some(&format!("{id}.scope")));
    let named = match c.runtime {
        Runtime::Lxc | Runtime::SystemdNspawn => {
            assert!(!id.is_empty() && !id.contains('/'), "{path:?} gave {c:?}");
            if c.runtime == Runtime::Lxc {
                any(&|at, part| {
                    (part == id && matches!(parent(at), Some("lxc" | "lxc.payload")))
                        || part.strip_prefix("lxc.payload.") == Some(id)
                })
            } else {
                assert!(!id.chars().any(char::is_control), "{path:?} gave {c:?}");
                // libvirt's qemu domains are VMs, not containers.
                assert!(!id.starts_with("qemu-"), "{path:?} gave {c:?}");
                any(&|_, part| {
                    let stem = part
                        .strip_prefix("machine-")
                        .and_then(|rest| rest.strip_suffix(".scope"))
                        .or_else(|| {
                            part.strip_prefix("systemd-nspawn@")
                                .and_then(|rest| rest.strip_suffix(".service"))
                        });
                    stem.is_some_and(|stem| unit_unescape(stem) == id.as_bytes())
                })
            }
        }
        runtime => {
            assert!(is_hex64(id), "{path:?} gave {c:?}");
            match runtime {
                Runtime::Docker => {
                    scope("docker-") || any(&|at, part| part == id && parent(at) == Some("docker"))
                }
                Runtime::Containerd => scope("cri-containerd-"),
                Runtime::CriO => {
                    scope("crio-") || any(&|_, part| part.strip_prefix("crio-") == Some(id))
                }
                Runtime::Podman => {
                    scope("libpod-")
                        || any(&|_, part| part.strip_prefix("libpod-payload-") == Some(id))
                }
                Runtime::Nerdctl => scope("nerdctl-"),
                _ => {
                    any(&|at, part| part == id && parent(at).is_some_and(|p| p.starts_with("pod")))
                }
            }
        }
    };
    assert!(named, "{path:?} gave {c:?}, which no component spells");

    if let Some(pod) = &c.pod {
        let uid = pod.uid.as_str();
        let dashed = uid.len() == 36
            && uid.char_indices().all(|(at, ch)| match at {
                8 | 13 | 18 | 23 => ch == '-',
                _ => is_lower_hex(ch),
            });
        let static_pod = uid.len() == 32 && uid.chars().all(is_lower_hex);
        assert!(dashed || static_pod, "{path:?} gave pod uid {uid:?}");
        assert!(
            path.contains(uid) || path.contains(&uid.replace('-', "_")),
            "{path:?} gave pod uid {uid:?}"
        );
        let class = match pod.qos {
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
            QosClass::Guaranteed => "kubepods",
        };
        assert!(path.contains(class), "{path:?} gave {:?}", pod.qos);
    }
}

fn is_lower_hex(c: char) -> bool {
    matches!(c, '0'..='9' | 'a'..='f')
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.chars().all(is_lower_hex)
}

/// systemd's unit-name escapes undone leniently: `\xNN` (either case) is the byte, anything
/// else stands for itself. On every name attribution accepts this agrees with its stricter
/// reading.
fn unit_unescape(stem: &str) -> Vec<u8> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes.get(at..at + 4) {
            Some([b'\\', b'x', high, low])
                if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() =>
            {
                let digit = |d: u8| (d as char).to_digit(16).expect("a hex digit") as u8;
                out.push((digit(*high) << 4) | digit(*low));
                at += 4;
            }
            _ => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    out
}
