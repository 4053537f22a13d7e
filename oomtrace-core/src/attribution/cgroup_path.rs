//! Which container, if any, owns the cgroup an OOM victim was in.
//!
//! The kernel gives us the victim's memory cgroup path and nothing else about containers. By
//! the time anyone reads the report the container may be gone and its runtime may have
//! forgotten it, so the attribution is made from the path alone: no runtime sockets, no
//! `/proc` lookups, no state. Every runtime names its cgroups in a recognisable way, and that
//! naming is all this module relies on.
//!
//! The rule is **never guess**. An operator acts on the container we name (restarts it, raises
//! its limit, blames its owner), so a wrong name is worse than none. A path is attributed only
//! when one of its components has a shape some runtime is known to create, with the id
//! validated (64 lowercase hex for the hex-id runtimes, a well-formed pod uid for Kubernetes);
//! anything else, host processes included, is `None`.
//!
//! The **innermost** component that names a container decides, because containers nest
//! (docker-in-docker, kind, a systemd or podman inside a container) and the innermost one is
//! the container the process really runs in. Cgroups a container creates below its own (its
//! init's `system.slice`, podman's `/container`, nspawn's `/payload`) belong to it. A runtime's
//! helper that lives beside the workload (conmon, the LXC monitor, the nspawn supervisor) is
//! not the workload, so it is not reported as the container; if that helper itself runs inside
//! an outer container, the outer container is the answer, because that is where it runs.
//!
//! Recognised, by the component that names the container:
//!
//! | runtime | cgroupfs driver | systemd driver |
//! |---|---|---|
//! | Docker | `/docker/<id>` | `docker-<id>.scope` |
//! | Kubernetes | `/kubepods[/burstable\|/besteffort]/pod<uid>/<id>` | `kubepods[-<qos>]-pod<uid>.slice/{cri-containerd,crio,docker}-<id>.scope` |
//! | CRI-O | `crio-<id>` (conmon: `crio-conmon-<id>`) | `crio-<id>.scope` (conmon: `crio-conmon-<id>.scope`) |
//! | Podman | not recognised | `libpod-<id>.scope[/container]`, quadlet `<unit>.service/libpod-payload-<id>` (conmon: `libpod-conmon-<id>.scope`, `runtime`) |
//! | nerdctl | not recognised (`/<namespace>/<id>` names no runtime) | `nerdctl-<id>.scope` |
//! | LXC | `/lxc/<name>`, `/lxc.payload/<name>` (3.x), `lxc.payload.<name>` (4.0+) | same |
//! | systemd-nspawn | | `machine-<name>.scope`, `systemd-nspawn@<name>.service` (supervisor: `/supervisor`) |
//!
//! Known limits, all of which err towards `None` or are stated here:
//! - The Kubernetes cgroupfs driver names a container by its bare id, which does not say which
//!   runtime made it: that is [`Runtime::Kubernetes`]. CRI-O's cgroupfs manager prefixes
//!   `crio-` and is reported as [`Runtime::CriO`].
//! - A pod's sandbox ("pause") container has a cgroup of its own under containerd and docker
//!   and is reported like any container of the pod; the path cannot tell it apart.
//! - systemd-machined also registers VMs as `machine-<name>.scope`. libvirt's names
//!   (`qemu-<n>-<vm>`, `lxc-<n>-<name>`) are refused; a VM started by `systemd-vmspawn`
//!   cannot be told from an nspawn container and is reported as one.
//! - LXC appends `-<n>` to the cgroup name when the plain one is taken; the name is reported
//!   as the cgroup spells it.
//! - On cgroup v1 the nspawn supervisor shares the container's memory cgroup and is reported as
//!   the container.

use serde::Serialize;

/// The container runtime, as far as the cgroup path tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    Nerdctl,
    Lxc,
    SystemdNspawn,
    /// A Kubernetes container whose runtime the path does not say: the kubelet's cgroupfs
    /// driver names the container cgroup by the bare id whichever runtime created it.
    Kubernetes,
}

impl Runtime {
    /// The name the report uses; the same string serde writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Nerdctl => "nerdctl",
            Runtime::Lxc => "lxc",
            Runtime::SystemdNspawn => "systemd-nspawn",
            Runtime::Kubernetes => "kubernetes",
        }
    }
}

/// The pod's Kubernetes QoS class, read from the kubelet's cgroup layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The Kubernetes pod a container belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// The pod uid in its canonical dashed form, 8-4-4-4-12 lowercase hex (the systemd driver's
    /// underscores are turned back into dashes). A static pod's uid is the kubelet's 32-hex
    /// config hash instead, kept as is: it is what the kubelet names the cgroup by and what the
    /// mirror pod carries in its `kubernetes.io/config.mirror` annotation (the mirror pod's own
    /// API uid is a different one).
    pub uid: String,
    pub qos: QosClass,
}

/// The container that owns a cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// Full id as the runtime names it: 64 lowercase hex for docker/containerd/cri-o/podman/nerdctl/kubernetes; the name for lxc and systemd-nspawn.
    pub id: String,
    /// Set only when the container's cgroup sits directly in a pod's cgroup. A container nested
    /// inside a pod's container (docker-in-docker in a pod) is not that pod's container, so it
    /// has no pod.
    pub pod: Option<PodRef>,
}

/// Maps the cgroup path captured in the kernel (relative to the hierarchy root, starting with '/') to the container that owns it. None for host processes and for any shape it does not recognise: never guess.
///
/// The innermost container wins, so docker-in-docker (`/docker/<outer>/docker/<inner>`) gives
/// the inner container, the one the process runs in; the outer id is not reported.
///
/// The path must be as the kernel spells it: a leading `/`, no empty components. Anything else
/// is not a path we know and gives `None`.
pub fn attribute(cgroup_path: &str) -> Option<ContainerRef> {
    locate(cgroup_path).map(|found| found.container)
}

/// The container [`attribute`] names, and where in the path its own cgroup is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub container: ContainerRef,
    /// How many components of the path name the container's own cgroup: the victim may live
    /// in a cgroup below it (`/container`, an init's `system.slice`). A pod's container sits
    /// directly in its pod's cgroup, which is one component less.
    pub depth: usize,
}

/// [`attribute`], with where the container's own cgroup ends; see [`cgroup_prefix`].
pub fn locate(cgroup_path: &str) -> Option<Located> {
    let parts = components(cgroup_path)?;
    // Deepest first, so the outer containers' ids are never even built.
    (0..parts.len())
        .rev()
        .find_map(|at| match classify(&parts, at) {
            Level::Container(container) => Some(Located {
                container,
                depth: at + 1,
            }),
            Level::Pod | Level::Helper | Level::Other => None,
        })
}

/// The components of a path as the kernel spells it; `None` for the root (host processes)
/// and for anything that is not such a path.
fn components(cgroup_path: &str) -> Option<Vec<&str>> {
    let below_root = cgroup_path.strip_prefix('/')?;
    if below_root.is_empty() {
        return None;
    }
    let parts: Vec<&str> = below_root.split('/').collect();
    (!parts.iter().any(|part| part.is_empty())).then_some(parts)
}

/// The cgroup made of the first `depth` components of `path` (exact bytes, which need not be
/// UTF-8): with [`Located::depth`], the container's own cgroup or its pod's. The string
/// [`locate`] read and the exact bytes have the same components, because U+FFFD never
/// stands for a `/`. `None` when the path has fewer components, or for depth 0 (the root).
pub fn cgroup_prefix(path: &[u8], depth: usize) -> Option<&[u8]> {
    if depth == 0 || path.first() != Some(&b'/') {
        return None;
    }
    let mut slashes = path.iter().enumerate().filter(|(_, b)| **b == b'/');
    match slashes.nth(depth) {
        Some((end, _)) => Some(&path[..end]),
        // Exactly `depth` components: the whole path.
        None if path.iter().filter(|b| **b == b'/').count() == depth => Some(path),
        None => None,
    }
}

/// The ids of the containers among a pod cgroup's child directories: `children` are the
/// names in `pod_cgroup`, a pod's cgroup as the kernel spells it (the parent of a pod's
/// container, see [`Located`]). A child counts when the same rules [`attribute`] uses make it
/// a container of this pod (a bare id under the cgroupfs driver, CRI-O's cgroupfs
/// `crio-<id>`, a runtime's `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope`, ... under the systemd driver); runtime helpers (conmon) and anything
/// else do not. The pod's sandbox ("pause") container, where the runtime
/// gives it a cgroup, is among them: the path cannot tell it apart. `None` when `pod_cgroup`
/// is not a pod's cgroup.
pub fn pod_container_ids<S: AsRef<str>>(pod_cgroup: &str, children: &[S]) -> Option<Vec<String>> {
    let mut parts = components(pod_cgroup)?;
    if classify(&parts, parts.len() - 1) != Level::Pod {
        return None;
    }
    let at = parts.len();
    let mut ids = Vec::new();
    for child in children {
        let child = child.as_ref();
        if child.is_empty() || child.contains('/') {
            continue;
        }
        parts.push(child);
        if let Level::Container(ContainerRef {
            id, pod: Some(_), ..
        }) = classify(&parts, at)
        {
            ids.push(id);
        }
        parts.pop();
    }
    Some(ids)
}

/// A 64-hex id that no runtime's shape claims: the deepest such component of a path
/// [`attribute`] gives nothing for. Docker's `--cgroup-parent` (compose's `cgroup_parent`)
/// puts a container at `/<any parent>/<id>` under the cgroupfs driver, where the path alone
/// cannot say whose id it is. The caller names a container from it only if Docker confirms
/// it knows that id.
pub fn unclaimed_id(cgroup_path: &str) -> Option<&str> {
    if attribute(cgroup_path).is_some() {
        return None;
    }
    let parts = components(cgroup_path)?;
    let at = (0..parts.len()).rev().find(|&at| is_hex64(parts[at]))?;
    // Inside a pod, a bare id is the kubelet's, and one the pod shape did not accept is not
    // Docker's either.
    let in_pod =
        (0..at).any(|p| cgroupfs_pod(&parts, p).is_some() || systemd_pod(&parts, p).is_some());
    (!in_pod).then_some(parts[at])
}

/// What one path component is, read with its neighbours (a pod needs its parents to be a pod,
/// a bare id needs its parent to say whose it is, nspawn's scope needs its child).
#[derive(Debug, PartialEq, Eq)]
enum Level {
    /// A container's own cgroup.
    Container(ContainerRef),
    /// A Kubernetes pod's cgroup. It holds the pod's containers but is not one: a process
    /// directly in it (or the sandbox, under runtimes that put it there) belongs to no
    /// container, so the path below it decides, and without one the answer is `None`.
    Pod,
    /// A runtime's own process beside the workload: conmon, the LXC monitor, the nspawn
    /// supervisor. Not the container, so it names none.
    Helper,
    /// Nothing a runtime is known to create.
    Other,
}

fn classify(parts: &[&str], at: usize) -> Level {
    let name = parts[at];
    let parent = at.checked_sub(1).map(|p| parts[p]);
    let child = parts.get(at + 1).copied();

    if cgroupfs_pod(parts, at).is_some() || systemd_pod(parts, at).is_some() {
        return Level::Pod;
    }

    if let Some(stem) = name.strip_suffix(".scope") {
        if stem.starts_with("crio-conmon-") || stem.starts_with("libpod-conmon-") {
            return Level::Helper;
        }
        const SCOPES: [(&str, Runtime); 5] = [
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::CriO),
            ("docker-", Runtime::Docker),
            ("libpod-", Runtime::Podman),
            ("nerdctl-", Runtime::Nerdctl),
        ];
        for (prefix, runtime) in SCOPES {
            if let Some(id) = stem.strip_prefix(prefix) {
                let pod = || at.checked_sub(1).and_then(|p| systemd_pod(parts, p));
                return hex_container(runtime, id, pod);
            }
        }
        if let Some(escaped) = stem.strip_prefix("machine-") {
            return nspawn(escaped, child);
        }
        return Level::Other;
    }

    // `machinectl start` runs the container as this template service (`--keep-unit`).
    if let Some(escaped) = name
        .strip_prefix("systemd-nspawn@")
        .and_then(|rest| rest.strip_suffix(".service"))
    {
        return nspawn(escaped, child);
    }

    // Quadlet's default `--cgroups=split`: the unit's cgroup holds the payload and a `runtime`
    // sibling for conmon.
    if let Some(id) = name.strip_prefix("libpod-payload-") {
        return hex_container(Runtime::Podman, id, || None);
    }

    // CRI-O's cgroupfs manager: `<parent>/crio-<id>`, conmon in `<parent>/crio-conmon-<id>`.
    if name.starts_with("crio-conmon-") {
        return Level::Helper;
    }
    if let Some(id) = name.strip_prefix("crio-") {
        let pod = || at.checked_sub(1).and_then(|p| cgroupfs_pod(parts, p));
        return hex_container(Runtime::CriO, id, pod);
    }

    // LXC: `lxc/<name>` up to 3.0, `lxc.payload/<name>` in 3.1 and 3.2 (monitor in
    // `lxc.monitor/<name>`), `lxc.payload.<name>` from 4.0 (monitor in `lxc.monitor.<name>`,
    // and `lxc.pivot` while it moves).
    match parent {
        Some("lxc" | "lxc.payload") => return lxc(name),
        Some("lxc.monitor") => return Level::Helper,
        _ => {}
    }
    if let Some(lxc_name) = name.strip_prefix("lxc.payload.") {
        return lxc(lxc_name);
    }
    if name.starts_with("lxc.monitor.") || name == "lxc.pivot" {
        return Level::Helper;
    }

    // A bare id says whose it is only through its parent.
    if is_hex64(name) {
        if parent == Some("docker") {
            return hex_container(Runtime::Docker, name, || None);
        }
        if let Some(pod) = at.checked_sub(1).and_then(|p| cgroupfs_pod(parts, p)) {
            return hex_container(Runtime::Kubernetes, name, || Some(pod));
        }
    }

    Level::Other
}

/// A container whose id must be the runtime's 64 lowercase hex; anything else in that place
/// (`docker-foo.scope`) is some other unit that only looks similar.
fn hex_container(runtime: Runtime, id: &str, pod: impl FnOnce() -> Option<PodRef>) -> Level {
    if !is_hex64(id) {
        return Level::Other;
    }
    Level::Container(ContainerRef {
        runtime,
        id: id.to_owned(),
        pod: pod(),
    })
}

fn lxc(name: &str) -> Level {
    if name.is_empty() {
        return Level::Other;
    }
    Level::Container(ContainerRef {
        runtime: Runtime::Lxc,
        id: name.to_owned(),
        pod: None,
    })
}

/// nspawn puts the container in `<unit>/payload` and, when it keeps the unit (the template
/// service), itself in `<unit>/supervisor`: the supervisor is not the container.
fn nspawn(escaped: &str, child: Option<&str>) -> Level {
    if child == Some("supervisor") {
        return Level::Helper;
    }
    match unescape_unit_name(escaped) {
        Some(name) if !is_libvirt_machine(&name) => Level::Container(ContainerRef {
            runtime: Runtime::SystemdNspawn,
            id: name,
            pod: None,
        }),
        _ => Level::Other,
    }
}

/// libvirt registers its domains with systemd-machined as `<driver>-<n>-<name>`: a qemu VM is
/// no container, and libvirt-lxc is not the LXC this module reports.
fn is_libvirt_machine(name: &str) -> bool {
    if name.starts_with("qemu-") {
        return true;
    }
    name.strip_prefix("lxc-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Undoes systemd's unit-name escaping of the machine name. systemd writes every byte outside
/// `[A-Za-z0-9:_.]` as `\xNN` (a `-` included, because `-` means "/" in a unit name), so a raw
/// byte outside that set means the unit was not made that way and the name is refused.
fn unescape_unit_name(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => {
                if bytes.get(at + 1) != Some(&b'x') {
                    return None;
                }
                let high = char::from(*bytes.get(at + 2)?).to_digit(16)?;
                let low = char::from(*bytes.get(at + 3)?).to_digit(16)?;
                name.push(u8::try_from((high << 4) | low).ok()?);
                at += 4;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => {
                name.push(b);
                at += 1;
            }
            _ => return None,
        }
    }
    let name = String::from_utf8(name).ok()?;
    let usable = !name.is_empty() && !name.contains('/') && !name.chars().any(char::is_control);
    usable.then_some(name)
}

fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

/// The kubelet's cgroupfs driver: `kubepods/pod<uid>` (guaranteed) or
/// `kubepods/{burstable,besteffort}/pod<uid>`, uid dashed.
fn cgroupfs_pod(parts: &[&str], at: usize) -> Option<PodRef> {
    let uid = pod_uid(parts[at].strip_prefix("pod")?, b'-')?;
    let parent = parts[at.checked_sub(1)?];
    let grandparent = at.checked_sub(2).map(|g| parts[g]);
    let qos = match (parent, grandparent) {
        ("kubepods", _) => QosClass::Guaranteed,
        ("burstable", Some("kubepods")) => QosClass::Burstable,
        ("besteffort", Some("kubepods")) => QosClass::BestEffort,
        _ => return None,
    };
    Some(PodRef { uid, qos })
}

/// The kubelet's systemd driver: `<parent>-pod<uid>.slice` inside `<parent>.slice`, uid with
/// underscores because systemd reads a `-` as a level. The slice's own name must agree with
/// the slice it is in, which is how systemd nests slices, and `<parent>` names the QoS class:
/// `kubepods`, `kubepods-burstable`, `kubepods-besteffort`, each possibly under a kubelet
/// `--cgroup-root` (kind's `kubelet-kubepods...`).
fn systemd_pod(parts: &[&str], at: usize) -> Option<PodRef> {
    let stem = parts[at].strip_suffix(".slice")?;
    let (prefix, uid) = stem.rsplit_once("-pod")?;
    let uid = pod_uid(uid, b'_')?;
    if parts[at.checked_sub(1)?].strip_suffix(".slice") != Some(prefix) {
        return None;
    }
    let is_kubepods = |s: &str| s == "kubepods" || s.ends_with("-kubepods");
    let qos = if is_kubepods(prefix) {
        QosClass::Guaranteed
    } else if prefix.strip_suffix("-burstable").is_some_and(is_kubepods) {
        QosClass::Burstable
    } else if prefix.strip_suffix("-besteffort").is_some_and(is_kubepods) {
        QosClass::BestEffort
    } else {
        return None;
    };
    Some(PodRef { uid, qos })
}

/// A uuid (8-4-4-4-12 lowercase hex, groups joined by `separator`) in dashed form, or a
/// static pod's 32-hex config hash as is.
fn pod_uid(raw: &str, separator: u8) -> Option<String> {
    let bytes = raw.as_bytes();
    if bytes.len() == 32 && bytes.iter().all(|&b| is_lower_hex(b)) {
        return Some(raw.to_owned());
    }
    if bytes.len() != 36 {
        return None;
    }
    let well_formed = bytes.iter().enumerate().all(|(at, &b)| match at {
        8 | 13 | 18 | 23 => b == separator,
        _ => is_lower_hex(b),
    });
    well_formed.then(|| raw.replace(char::from(separator), "-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    // Docker ids from the kernel log in fixtures/kernel/kmsg-host-6.18-cgroup-v1-docker.txt.
    const DOCKER_A: &str = "28f2911322e9cf8d7eea222431152098e1c7ebcde906d565c5bc446494e64604";
    const DOCKER_B: &str = "a1568a0834f3bccc3acdc361a22ef5c8c5d482028fbd6210dc7a88f7e0baabea";
    // A quadlet payload id from a published `systemctl status` of a podman quadlet.
    const QUADLET: &str = "9687bac58d5c4d1606aa46af33d1a21c1d1652e0ac9fb3fc0fc86e3495f42869";
    // Ids for runtimes the fixtures do not cover.
    const ID1: &str = "14ee10eb9e4c160434bca9d4c8519d350d4b9158f9d7a291758c2e7811ec968a";
    const ID2: &str = "1fefeb9f7b5bf91f2b4b6787211709af754196303a291f5cf9a3fc31f1c848ec";
    const ID3: &str = "7f77abbf6492f8de1c32ef251254a034372395e743667796648f64720857f78d";
    const POD: &str = "b67e5888-667c-48fb-824e-7c2b4da2cb28";
    const POD_: &str = "b67e5888_667c_48fb_824e_7c2b4da2cb28";
    const STATIC_POD: &str = "16616ddb1416a13af5c43dd3d8070f4e";

    fn container(runtime: Runtime, id: &str) -> Option<ContainerRef> {
        Some(ContainerRef {
            runtime,
            id: id.to_owned(),
            pod: None,
        })
    }

    fn in_pod(runtime: Runtime, id: &str, uid: &str, qos: QosClass) -> Option<ContainerRef> {
        Some(ContainerRef {
            runtime,
            id: id.to_owned(),
            pod: Some(PodRef {
                uid: uid.to_owned(),
                qos,
            }),
        })
    }

    /// One case a line: a cgroup path as the kernel spells it, ` => `, and the container
    /// [`attribute`] must find there as [`described`] writes it. `{NAME}` stands for the id
    /// constant NAME; `#` starts a comment. Text rather than Rust tuples: rustfmt spread each
    /// long path's tuple over four lines, and the cases read as blocks of code written again.
    const RUNTIMES_AND_DRIVERS: &str = r"
        # Docker.
        /docker/{DOCKER_A} => docker {DOCKER_A}
        /docker/{DOCKER_B} => docker {DOCKER_B}
        /system.slice/docker-{DOCKER_A}.scope => docker {DOCKER_A}
        /system.slice/docker-{DOCKER_A}.scope/init.scope => docker {DOCKER_A}
        # Docker-in-docker: the inner container, whatever driver the outer one used.
        /docker/{DOCKER_A}/docker/{DOCKER_B} => docker {DOCKER_B}
        /system.slice/docker-{DOCKER_A}.scope/docker/{DOCKER_B} => docker {DOCKER_B}
        # Kubernetes, cgroupfs driver.
        /kubepods/burstable/pod{POD}/{ID1} => kubernetes {ID1} in pod {POD} burstable
        /kubepods/besteffort/pod{POD}/{ID1} => kubernetes {ID1} in pod {POD} besteffort
        /kubepods/pod{POD}/{ID1} => kubernetes {ID1} in pod {POD} guaranteed
        # kind: kubelet --cgroup-root=/kubelet, inside a docker container on a v1 host.
        /docker/{DOCKER_A}/kubelet/kubepods/burstable/pod{POD}/{ID1} => kubernetes {ID1} in pod {POD} burstable
        # Kubernetes, systemd driver.
        /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/cri-containerd-{ID1}.scope => containerd {ID1} in pod {POD} burstable
        /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice/crio-{ID2}.scope => cri-o {ID2} in pod {POD} besteffort
        /kubepods.slice/kubepods-pod{POD_}.slice/docker-{ID3}.scope => docker {ID3} in pod {POD} guaranteed
        /kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{POD_}.slice/cri-containerd-{ID1}.scope => containerd {ID1} in pod {POD} besteffort
        # A static pod: the kubelet's config hash is the uid.
        /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_POD}.slice/cri-containerd-{ID1}.scope => containerd {ID1} in pod {STATIC_POD} burstable
        /kubepods/burstable/pod{STATIC_POD}/{ID1} => kubernetes {ID1} in pod {STATIC_POD} burstable
        # A container inside a pod's container is not the pod's.
        /kubepods/burstable/pod{POD}/{ID1}/docker/{ID2} => docker {ID2}
        # CRI-O.
        /system.slice/crio-conmon-{ID2}.scope => none
        /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/crio-conmon-{ID2}.scope => none
        /kubepods/burstable/pod{POD}/crio-{ID2} => cri-o {ID2} in pod {POD} burstable
        /kubepods/burstable/pod{POD}/crio-conmon-{ID2} => none
        /crio/crio-{ID2} => cri-o {ID2}
        # Podman.
        /machine.slice/libpod-{ID3}.scope => podman {ID3}
        /machine.slice/libpod-{ID3}.scope/container => podman {ID3}
        /machine.slice/libpod-conmon-{ID3}.scope => none
        /user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID3}.scope/container => podman {ID3}
        /machine.slice/machine-libpod_pod_{ID1}.slice/libpod-{ID3}.scope/container => podman {ID3}
        /system.slice/nginx.service/libpod-payload-{QUADLET} => podman {QUADLET}
        /system.slice/nginx.service/runtime => none
        # conmon running inside a docker container runs in that container.
        /docker/{DOCKER_A}/machine.slice/libpod-conmon-{ID3}.scope => docker {DOCKER_A}
        # nerdctl.
        /system.slice/nerdctl-{ID1}.scope => nerdctl {ID1}
        # LXC.
        /lxc/web => lxc web
        /lxc/web/init.scope => lxc web
        /lxc.payload/web => lxc web
        /lxc.payload.web => lxc web
        /lxc.payload.web/system.slice/sshd.service => lxc web
        /lxc.payload.web/lxc.payload.inner => lxc inner
        /lxc.monitor.web => none
        /lxc.monitor/web => none
        /lxc.pivot => none
        /lxc.payload. => none
        # systemd-nspawn.
        /machine.slice/machine-my\x2dcontainer.scope => systemd-nspawn my-container
        /machine.slice/machine-my\x2dcontainer.scope/payload => systemd-nspawn my-container
        /machine.slice/machine-my\x2dcontainer.scope/payload/system.slice/sshd.service => systemd-nspawn my-container
        /machine.slice/machine-my\x2dcontainer.scope/supervisor => none
        /machine.slice/systemd-nspawn@my\x2dcontainer.service/payload => systemd-nspawn my-container
        /machine.slice/systemd-nspawn@my\x2dcontainer.service/supervisor => none
        /machine.slice/machine-debian.scope => systemd-nspawn debian
        # libvirt domains registered with machined are not nspawn containers.
        /machine.slice/machine-qemu\x2d1\x2dvm1.scope => none
        /machine.slice/machine-lxc\x2d4711\x2dweb.scope => none
        # Not how systemd escapes a machine name.
        /machine.slice/machine-my-container.scope => none
        /machine.slice/machine-my\x2.scope => none
        /machine.slice/machine-my\u2d.scope => none
        /machine.slice/machine-\xff.scope => none
        /machine.slice/machine-a\x2fb.scope => none
        /machine.slice/machine-a\x0ab.scope => none
        /machine.slice/machine-.scope => none
        /machine.slice/machine-café.scope => none
";

    /// `text` with each `{NAME}` replaced by the id constant it stands for.
    fn with_ids(text: &str) -> String {
        let ids = [
            ("{DOCKER_A}", DOCKER_A),
            ("{DOCKER_B}", DOCKER_B),
            ("{QUADLET}", QUADLET),
            ("{ID1}", ID1),
            ("{ID2}", ID2),
            ("{ID3}", ID3),
            ("{POD}", POD),
            ("{POD_}", POD_),
            ("{STATIC_POD}", STATIC_POD),
        ];
        ids.iter()
            .fold(text.to_owned(), |text, (name, id)| text.replace(name, id))
    }

    /// What [`attribute`] found, as [`RUNTIMES_AND_DRIVERS`] writes it: `none`, or the runtime's
    /// name and the id, then `in pod UID QOS` for a pod's container. Every field is in it, so
    /// two answers that read alike are the same answer.
    fn described(found: Option<ContainerRef>) -> String {
        let Some(ContainerRef { runtime, id, pod }) = found else {
            return "none".to_owned();
        };
        let container = format!("{} {id}", runtime.as_str());
        match pod {
            None => container,
            Some(PodRef { uid, qos }) => format!("{container} in pod {uid} {}", Serialised(qos)),
        }
    }

    #[test]
    fn attributes_each_runtime_and_driver() {
        let cases = with_ids(RUNTIMES_AND_DRIVERS);
        let lines = cases.lines().map(str::trim_start);
        for line in lines.filter(|l| !l.is_empty() && !l.starts_with('#')) {
            assert!(
                !line.contains('{'),
                "no constant stands for a name in {line:?}"
            );
            let (path, want) = line
                .split_once(" => ")
                .unwrap_or_else(|| panic!("no ` => ` in {line:?}"));
            assert_eq!(described(attribute(path)), want, "{path}");
        }
    }

    #[test]
    fn every_qos_class_with_every_systemd_runtime() {
        let runtimes = [
            ("cri-containerd", Runtime::Containerd),
            ("crio", Runtime::CriO),
            ("docker", Runtime::Docker),
        ];
        let classes = [
            ("kubepods.slice/kubepods-pod", QosClass::Guaranteed),
            (
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod",
                QosClass::Burstable,
            ),
            (
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod",
                QosClass::BestEffort,
            ),
        ];
        for (pod_prefix, qos) in classes {
            for (scope, runtime) in runtimes {
                let path = format!("/{pod_prefix}{POD_}.slice/{scope}-{ID1}.scope");
                assert_eq!(attribute(&path), in_pod(runtime, ID1, POD, qos), "{path}");
            }
        }
    }

    #[test]
    fn host_and_unknown_shapes_are_none() {
        let long_host = "/a".repeat(500);
        let cases = [
            // The kernel fixtures' own non-container cgroups.
            "/",
            "/vsbt-27694",
            "/group",
            "/parent",
            "/parent/child",
            "/plain",
            // Host.
            "/init.scope",
            "/system.slice/sshd.service",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/system.slice/crio.service",
            "/user.slice/user-1000.slice/session-2.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
            "/oomtrace-test-123",
            "/machine.slice",
            long_host.as_str(),
            // Not as the kernel spells a path.
            "",
            "docker",
            "//",
            "/docker",
            "/docker/",
            // Container-like but not valid.
            "/system.slice/docker-abc.scope",
            "/system.slice/docker-.scope",
            "/system.slice/docker.scope",
            "/system.slice/cri-containerd-xyz.scope",
            "/system.slice/libpod-abc.scope/container",
            "/system.slice/nginx.service/libpod-payload-abc",
            "/crio/crio-abc",
        ];
        for path in cases {
            assert_eq!(attribute(path), None, "{path:?}");
        }
        let near_misses = [
            format!("/docker/{}", &DOCKER_A[..63]),
            format!("/docker/{DOCKER_A}0"),
            format!("/docker/{}", DOCKER_A.to_uppercase()),
            format!("/system.slice/docker-{}.scope", DOCKER_A.to_uppercase()),
            format!("/docker/{DOCKER_A}/"),
            format!("//docker/{DOCKER_A}"),
            format!("docker/{DOCKER_A}"),
            format!("/docker//{DOCKER_A}"),
            format!("/dockers/{DOCKER_A}"),
            format!("/{DOCKER_A}"),
            format!("/system.slice/{DOCKER_A}"),
            // A bare id names nothing without a pod above it.
            format!("/kubepods/{ID1}"),
            format!("/kubepods/burstable/{ID1}"),
            format!("/kubepods/burstable/pod{POD_}/{ID1}"),
            format!("/kubepods/burstable/pod{}/{ID1}", POD.to_uppercase()),
            format!("/kubepods/burstable/pod{}/{ID1}", &POD[..35]),
            format!("/kubepods/guaranteed/pod{POD}/{ID1}"),
            format!("/other/burstable/pod{POD}/{ID1}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/{ID1}"
            ),
        ];
        for path in &near_misses {
            assert_eq!(attribute(path), None, "{path}");
        }
    }

    #[test]
    fn unclaimed_ids_are_offered_only_where_no_shape_claims_them() {
        let cases: [(String, Option<&str>); 10] = [
            // `docker run --cgroup-parent` under cgroupfs, at any depth.
            (format!("/oomtrace-shared/{DOCKER_A}"), Some(DOCKER_A)),
            (format!("/a/b/c/{DOCKER_A}"), Some(DOCKER_A)),
            (format!("/{DOCKER_A}"), Some(DOCKER_A)),
            // The deepest id is the one the process lives in.
            (format!("/p/{ID1}/{DOCKER_A}"), Some(DOCKER_A)),
            (format!("/p/{DOCKER_A}/worker"), Some(DOCKER_A)),
            // Shapes attribute() knows are not offered again.
            (format!("/docker/{DOCKER_A}"), None),
            (format!("/system.slice/docker-{DOCKER_A}.scope"), None),
            // Below a pod, an id the pod shape refused is nobody's.
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/{ID1}"
                ),
                None,
            ),
            // Near misses and malformed paths.
            (format!("/p/{}", &DOCKER_A[..63]), None),
            (format!("/p//{DOCKER_A}"), None),
        ];
        for (path, want) in &cases {
            assert_eq!(unclaimed_id(path), *want, "{path}");
        }
        assert_eq!(unclaimed_id("/"), None);
        assert_eq!(unclaimed_id("/system.slice/sshd.service"), None);
    }

    #[test]
    fn pod_cgroups_are_pods_not_containers() {
        let pods = [
            format!("/kubepods/pod{POD}"),
            format!("/kubepods/burstable/pod{POD}"),
            format!("/kubepods/besteffort/pod{POD}"),
            format!("/kubepods.slice/kubepods-pod{POD_}.slice"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice"),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice"
            ),
        ];
        for path in &pods {
            let parts: Vec<&str> = path[1..].split('/').collect();
            assert_eq!(classify(&parts, parts.len() - 1), Level::Pod, "{path}");
            assert_eq!(attribute(path), None, "{path}");
        }
        for path in [
            "/kubepods",
            "/kubepods/burstable",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-burstable.slice",
        ] {
            assert_eq!(attribute(path), None, "{path}");
        }
    }

    #[test]
    fn a_pod_slice_that_is_not_the_kubelets_is_no_pod() {
        // The scope still names a containerd container; only the pod is refused.
        let scope = format!("cri-containerd-{ID1}.scope");
        for path in [
            // In a QoS slice other than its own.
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{POD_}.slice/{scope}"
            ),
            // Outside kubepods.
            format!("/system.slice/kubepods-burstable-pod{POD_}.slice/{scope}"),
            // A QoS class Kubernetes does not have.
            format!(
                "/kubepods.slice/kubepods-guaranteed.slice/kubepods-guaranteed-pod{POD_}.slice/{scope}"
            ),
            // A dashed uid, which the systemd driver never writes.
            format!("/kubepods.slice/kubepods-pod{POD}.slice/{scope}"),
        ] {
            assert_eq!(
                attribute(&path),
                container(Runtime::Containerd, ID1),
                "{path}"
            );
        }
    }

    /// Where the container's own cgroup ends, and its pod's: a path, then the cgroup of its
    /// container and of that container's pod (`-` for none), `{NAME}` as in
    /// [`RUNTIMES_AND_DRIVERS`].
    const OWN_AND_POD_CGROUPS: &str = r"
        /docker/{DOCKER_A} /docker/{DOCKER_A} -
        /system.slice/docker-{DOCKER_A}.scope/init.scope /system.slice/docker-{DOCKER_A}.scope -
        /docker/{DOCKER_A}/docker/{DOCKER_B} /docker/{DOCKER_A}/docker/{DOCKER_B} -
        /kubepods/burstable/pod{POD}/{ID1} /kubepods/burstable/pod{POD}/{ID1} /kubepods/burstable/pod{POD}
        /kubepods/pod{POD}/{ID1}/sub /kubepods/pod{POD}/{ID1} /kubepods/pod{POD}
        /kubepods.slice/kubepods-pod{POD_}.slice/crio-{ID2}.scope /kubepods.slice/kubepods-pod{POD_}.slice/crio-{ID2}.scope /kubepods.slice/kubepods-pod{POD_}.slice
        /kubepods/burstable/pod{POD}/{ID1}/docker/{ID2} /kubepods/burstable/pod{POD}/{ID1}/docker/{ID2} -
        /machine.slice/libpod-{ID3}.scope/container /machine.slice/libpod-{ID3}.scope -
        /lxc.payload.web/system.slice/sshd.service /lxc.payload.web -
";

    #[test]
    fn the_container_s_own_cgroup_and_its_pod_s_are_prefixes_of_the_path() {
        for line in with_ids(OWN_AND_POD_CGROUPS).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [path, own, pod] = words[..] else {
                assert!(words.is_empty(), "{line:?}");
                continue;
            };
            let found = locate(path).unwrap_or_else(|| panic!("{path}: no container"));
            let cut = |depth| cgroup_prefix(path.as_bytes(), depth);
            assert_eq!(cut(found.depth), Some(own.as_bytes()), "{path}");
            let pod_cgroup = found
                .container
                .pod
                .as_ref()
                .and_then(|_| cut(found.depth - 1));
            assert_eq!(pod_cgroup, (pod != "-").then_some(pod.as_bytes()), "{path}");
        }
        assert_eq!(locate("/system.slice/sshd.service"), None);
    }

    #[test]
    fn a_cgroup_prefix_is_whole_components_of_the_exact_bytes() {
        // (path, depth, the cgroup of its first `depth` components)
        type Case<'a> = (&'a [u8], usize, Option<&'a [u8]>);
        let cases: [Case; 8] = [
            (b"/a/b/c", 1, Some(b"/a")),
            (b"/a/b/c", 2, Some(b"/a/b")),
            (b"/a/b/c", 3, Some(b"/a/b/c")),
            (b"/a/b/c", 4, None),
            (b"/a/b/c", 0, None),
            (b"/a\xff/b\xfe", 1, Some(b"/a\xff")),
            (b"/a\xff/b\xfe", 2, Some(b"/a\xff/b\xfe")),
            (b"a/b", 1, None),
        ];
        for (path, depth, want) in cases {
            assert_eq!(cgroup_prefix(path, depth), want, "{path:?} {depth}");
        }
    }

    #[test]
    fn a_pod_s_containers_are_the_children_attribute_names_as_its_own() {
        let cgroupfs = format!("/kubepods/burstable/pod{POD}");
        let systemd =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice");
        let container = format!("{cgroupfs}/{ID1}");
        // (the pod's cgroup, its children, the ids among them)
        type Case<'a> = (&'a str, Vec<String>, Option<Vec<&'a str>>);
        let cases: Vec<Case> = vec![
            (
                &cgroupfs,
                vec![
                    ID1.into(),
                    ID2.into(),
                    // Not containers: cut ids, other names, a nested path, an empty name.
                    ID3[..63].into(),
                    ID3.to_uppercase(),
                    "cgroup.procs".into(),
                    format!("{ID3}/sub"),
                    String::new(),
                ],
                Some(vec![ID1, ID2]),
            ),
            (
                // CRI-O's cgroupfs manager: the container, not its conmon.
                &cgroupfs,
                vec![format!("crio-{ID2}"), format!("crio-conmon-{ID2}")],
                Some(vec![ID2]),
            ),
            (
                &systemd,
                vec![
                    format!("cri-containerd-{ID1}.scope"),
                    format!("crio-{ID2}.scope"),
                    format!("docker-{ID3}.scope"),
                    format!("crio-conmon-{ID2}.scope"),
                    // Any runtime's scope in a pod's slice is the pod's, as attribute() has it.
                    format!("nerdctl-{DOCKER_A}.scope"),
                    // A bare id is the cgroupfs driver's, never the systemd driver's.
                    DOCKER_B.into(),
                    format!("docker-{DOCKER_B}.service"),
                ],
                Some(vec![ID1, ID2, ID3, DOCKER_A]),
            ),
            (&systemd, Vec::new(), Some(Vec::new())),
            // Not a pod's cgroup: no answer, rather than a count of something else.
            ("/kubepods/burstable", vec![format!("pod{POD}")], None),
            (&container, vec![ID2.into()], None),
            ("/docker", vec![DOCKER_A.into()], None),
            ("/", vec![ID1.into()], None),
            ("", vec![ID1.into()], None),
        ];
        for (pod, children, want) in cases {
            let want = want.map(|ids| ids.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(
                pod_container_ids(pod, &children),
                want,
                "{pod} {children:?}"
            );
        }
        // Each id found is what attribute() says of the child's own path.
        for child in [ID1.to_owned(), format!("crio-{ID2}")] {
            let path = format!("{cgroupfs}/{child}");
            let named = attribute(&path).map(|c| c.id);
            let found = pod_container_ids(&cgroupfs, &[&child]).unwrap();
            assert_eq!(found.first(), named.as_ref(), "{path}");
        }
    }

    #[test]
    fn helpers_are_helpers() {
        for path in [
            format!("/system.slice/crio-conmon-{ID2}.scope"),
            format!("/machine.slice/libpod-conmon-{ID3}.scope"),
            format!("/kubepods/burstable/pod{POD}/crio-conmon-{ID2}"),
            "/lxc.monitor.web".to_owned(),
            "/lxc.monitor/web".to_owned(),
            "/lxc.pivot".to_owned(),
            r"/machine.slice/machine-web.scope/supervisor".to_owned(),
        ] {
            let parts: Vec<&str> = path[1..].split('/').collect();
            let helper_at = if path.ends_with("/supervisor") {
                parts.len() - 2
            } else {
                parts.len() - 1
            };
            assert_eq!(classify(&parts, helper_at), Level::Helper, "{path}");
        }
    }

    /// Serialises through serde's `Formatter` serializer, which writes a unit variant's
    /// serialised name, so the test needs no JSON crate.
    struct Serialised<T>(T);

    impl<T: Serialize> fmt::Display for Serialised<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.serialize(f)
        }
    }

    #[test]
    fn names_as_serialised() {
        use Runtime::*;
        let runtimes = [
            (Docker, "docker"),
            (Containerd, "containerd"),
            (CriO, "cri-o"),
            (Podman, "podman"),
            (Nerdctl, "nerdctl"),
            (Lxc, "lxc"),
            (SystemdNspawn, "systemd-nspawn"),
            (Kubernetes, "kubernetes"),
        ];
        for (runtime, name) in runtimes {
            assert_eq!(runtime.as_str(), name);
            assert_eq!(Serialised(runtime).to_string(), name);
        }
        let classes = [
            (QosClass::Guaranteed, "guaranteed"),
            (QosClass::Burstable, "burstable"),
            (QosClass::BestEffort, "besteffort"),
        ];
        for (qos, name) in classes {
            assert_eq!(Serialised(qos).to_string(), name);
        }
    }

    /// What any answer must satisfy, whatever the input.
    fn check(path: &str) -> Option<ContainerRef> {
        let got = attribute(path);
        if let Some(c) = &got {
            assert!(!c.id.is_empty(), "{path:?}");
            match c.runtime {
                Runtime::Lxc | Runtime::SystemdNspawn => {
                    assert!(!c.id.contains('/'), "{path:?}");
                }
                _ => assert!(is_hex64(&c.id), "{path:?} gave {c:?}"),
            }
            if let Some(pod) = &c.pod {
                let dashed = pod_uid(&pod.uid, b'-');
                assert_eq!(dashed.as_deref(), Some(pod.uid.as_str()), "{path:?}");
            }
        }
        got
    }

    /// xorshift64*: enough randomness to vary the inputs, reproducible, and no crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    #[test]
    fn garbage_never_panics_and_host_shapes_stay_none() {
        let tokens = [
            "/",
            "/",
            "/",
            "-",
            "_",
            ".",
            "@",
            "\\",
            "\\x",
            "\\x2d",
            "\\xzz",
            "x",
            "docker",
            "docker-",
            ".scope",
            ".slice",
            ".service",
            "kubepods",
            "kubepods-",
            "burstable",
            "besteffort",
            "pod",
            "-pod",
            "crio",
            "crio-",
            "cri-containerd-",
            "conmon-",
            "libpod-",
            "libpod-payload-",
            "nerdctl-",
            "machine-",
            "systemd-nspawn@",
            "supervisor",
            "payload",
            "container",
            "lxc",
            "lxc.payload.",
            "lxc.monitor.",
            "lxc.pivot",
            "qemu",
            "0",
            "9",
            "a",
            "f",
            "g",
            "A",
            " ",
            "\n",
            "\t",
            "\0",
            "é",
            "\u{1F600}",
            "\u{FFFD}",
            "\u{202E}",
            DOCKER_A,
            ID1,
            POD,
            POD_,
            STATIC_POD,
            "b67e5888",
        ];
        let host_names = [
            "user.slice",
            "user-1000.slice",
            "user@1000.service",
            "session-4.scope",
            "app.slice",
            "system.slice",
            "sshd.service",
            "docker.service",
            "containerd.service",
            "crio.service",
            "init.scope",
            "oomtrace-test-123",
            "vsbt-27694",
            "machine.slice",
            "kubepods.slice",
            "kubepods",
            "burstable",
            "besteffort",
            "docker",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..600 {
            let mut garbage = String::new();
            for _ in 0..rng.below(24) {
                garbage.push_str(rng.pick(&tokens));
            }
            check(&garbage);
            check(&format!("/{garbage}"));

            let mut host = String::new();
            for _ in 0..1 + rng.below(6) {
                host.push('/');
                host.push_str(rng.pick(&host_names));
            }
            assert_eq!(check(&host), None, "{host}");
        }
    }

    #[test]
    fn damaged_container_paths_never_panic() {
        let paths = [
            format!("/docker/{DOCKER_A}/docker/{DOCKER_B}"),
            format!("/kubepods/burstable/pod{POD}/{ID1}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/cri-containerd-{ID1}.scope"
            ),
            format!("/machine.slice/libpod-{ID3}.scope/container"),
            r"/machine.slice/machine-my\x2dcontainer.scope/payload".to_owned(),
            "/lxc.payload.wéb/x".to_owned(),
        ];
        let mut tried = 0;
        for path in &paths {
            for (at, ch) in path.char_indices() {
                // Cut short at every character, and with every character replaced.
                check(&path[..at]);
                let rest = &path[at + ch.len_utf8()..];
                for with in ["", "X", "/", "\u{FFFD}", "\\"] {
                    check(&format!("{}{with}{rest}", &path[..at]));
                }
                tried += 6;
            }
        }
        assert!(tried > 300);
        // A path cut inside the id names no container.
        assert_eq!(attribute(&format!("/docker/{}", &DOCKER_A[..40])), None);
    }
}
