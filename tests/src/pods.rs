//! Pods as kubelet lays them out with the cgroupfs driver, run by the tests' own containerd:
//! the pod's cgroup under its QoS class's, its memory limit set before any container starts,
//! and containers with the labels kubelet and containerd's CRI plugin leave on them, each in
//! a cgroup of its own inside the pod's. The pod's cgroups go when it is dropped.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    fs::{self, File},
    io::{BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::ExitStatus,
    sync::Mutex,
    time::Duration,
};

use crate::{
    cgroups::{CgroupMode, memory_hierarchy, remove, set_memory_limit},
    containerd::{Containerd, TaskSpec},
    pipes::read_line_within,
    scratch::{TempDir, temp_dir},
};

/// kubelet's QoS classes, each with its place under the cgroupfs driver's `/kubepods`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub const ALL: [Self; 3] = [Self::Guaranteed, Self::Burstable, Self::BestEffort];

    /// As oomtrace's JSON and Kubernetes' `status.qosClass`, lowercased, name it.
    pub fn json_name(self) -> &'static str {
        match self {
            Self::Guaranteed => "guaranteed",
            Self::Burstable => "burstable",
            Self::BestEffort => "besteffort",
        }
    }

    /// The cgroup pods of this class live in: guaranteed pods right under `/kubepods`.
    pub fn parent(self) -> &'static str {
        match self {
            Self::Guaranteed => "/kubepods",
            Self::Burstable => "/kubepods/burstable",
            Self::BestEffort => "/kubepods/besteffort",
        }
    }
}

/// A task the tests started in a pod.
#[derive(Clone, Debug)]
pub struct Task {
    /// 64 hex digits, as containerd's CRI plugin makes them.
    pub id: String,
    /// The task's main process, on the host.
    pub pid: u32,
    /// Its cgroup: `<pod's cgroup>/<id>`.
    pub cgroup: String,
}

/// How a pod is to be made; [`Self::create`] makes it.
pub struct PodBuilder {
    qos: Qos,
    namespace: String,
    name: String,
    memory_limit: Option<u64>,
}

impl PodBuilder {
    /// The pod cgroup's own limit, which all its containers share: kubelet sets one for
    /// guaranteed pods, and for burstable pods whose every container has a limit.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// A fresh uid, and the pod's memory cgroup made with its limit, as kubelet makes it before
    /// it asks for any container.
    pub fn create(self, containerd: &Containerd) -> Pod<'_> {
        let uid = uuid();
        let cgroup = format!("{}/pod{uid}", self.qos.parent());
        let (mode, root) = memory_hierarchy();
        for parent in ancestors(&cgroup) {
            let dir = root.join(&parent[1..]);
            if mode == CgroupMode::V2 {
                enable_memory_below(dir.parent().expect("below the root"));
            }
            match fs::create_dir(&dir) {
                Ok(()) => made_parents().insert(parent),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => panic!("create {}: {e}", dir.display()),
            };
        }
        let dir = root.join(&cgroup[1..]);
        if mode == CgroupMode::V2 {
            enable_memory_below(dir.parent().expect("below the root"));
        }
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        if mode == CgroupMode::V2 {
            enable_memory_below(&dir);
        }
        if let Some(limit) = self.memory_limit {
            set_memory_limit(mode, &dir, limit);
        }
        Pod {
            containerd,
            uid,
            qos: self.qos,
            namespace: self.namespace,
            name: self.name,
            cgroup,
            containers: RefCell::new(Vec::new()),
        }
    }
}

/// A pod: its cgroups, and the containers the test ran in it, deleted with it.
pub struct Pod<'c> {
    containerd: &'c Containerd,
    /// Lowercase 8-4-4-4-12 hex, as the API server makes them.
    pub uid: String,
    pub qos: Qos,
    pub namespace: String,
    pub name: String,
    /// `/kubepods[/<qos>]/pod<uid>`, relative to each hierarchy's root.
    pub cgroup: String,
    /// The ids of its containers not deleted yet.
    containers: RefCell<Vec<String>>,
}

impl<'c> Pod<'c> {
    /// A pod of the class `qos` named `namespace/name`, without a limit of its own.
    pub fn build(qos: Qos, namespace: &str, name: &str) -> PodBuilder {
        PodBuilder {
            qos,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            memory_limit: None,
        }
    }

    /// `namespace/name`, as kubectl and oomtrace's human view name a pod.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// A workload container named `name` (its `io.kubernetes.container.name`) whose main
    /// process is `sh -c SCRIPT`, with the OCI memory limit `memory_limit`; started, not awaited.
    pub fn run_container(&self, name: &str, memory_limit: Option<u64>, script: &str) -> Task {
        self.run_container_with(name, memory_limit, &[], script)
    }

    /// [`Self::run_container`] with host directories bind-mounted: `(host, container)`.
    pub fn run_container_with(
        &self,
        name: &str,
        memory_limit: Option<u64>,
        binds: &[(&Path, &str)],
        script: &str,
    ) -> Task {
        let id = random_hex(32);
        let cgroup = format!("{}/{id}", self.cgroup);
        let labels = self.labels(Some(name));
        let pid = self.containerd.run_detached(&TaskSpec {
            id: &id,
            cgroup: &cgroup,
            memory_limit,
            labels: &labels,
            binds,
            command: &["sh", "-c", script],
        });
        self.containers.borrow_mut().push(id.clone());
        Task { id, pid, cgroup }
    }

    /// [`Self::run_container`] run to its end with `ctr run --rm`, which deletes it as soon as
    /// its main process ends: the task it was, and how it ended.
    pub fn run_container_removed(
        &self,
        name: &str,
        memory_limit: Option<u64>,
        script: &str,
    ) -> (Task, ExitStatus) {
        let id = random_hex(32);
        let cgroup = format!("{}/{id}", self.cgroup);
        let labels = self.labels(Some(name));
        let (status, pid) = self.containerd.run_removed(&TaskSpec {
            id: &id,
            cgroup: &cgroup,
            memory_limit,
            labels: &labels,
            binds: &[],
            command: &["sh", "-c", script],
        });
        (Task { id, pid, cgroup }, status)
    }

    /// The pod's sandbox, as containerd's CRI plugin runs it: a container of its own cgroup in
    /// the pod's, labelled as the sandbox, without a container name, whose only process (pause,
    /// here busybox's `sleep`) sleeps forever.
    pub fn run_sandbox(&self) -> Task {
        let id = random_hex(32);
        let cgroup = format!("{}/{id}", self.cgroup);
        let labels = self.labels(None);
        let pid = self.containerd.run_detached(&TaskSpec {
            id: &id,
            cgroup: &cgroup,
            memory_limit: None,
            labels: &labels,
            binds: &[],
            command: &["sleep", "inf"],
        });
        self.containers.borrow_mut().push(id.clone());
        Task { id, pid, cgroup }
    }

    /// A workload container whose main process takes shell lines from the test while it runs,
    /// with or without containerd; see [`Commanded`].
    pub fn run_commanded(&self, name: &str, memory_limit: Option<u64>) -> Commanded {
        Commanded::start(self, name, memory_limit)
    }

    /// `sh -c SCRIPT` in `task` through `ctr task exec`: its exit status.
    pub fn exec(&self, task: &Task, script: &str) -> ExitStatus {
        self.containerd.exec(&task.id, script)
    }

    /// Deletes `task`'s container at once: task killed and removed, container removed.
    pub fn delete(&self, task: &Task) {
        self.containerd.delete(&task.id);
        self.containers.borrow_mut().retain(|id| *id != task.id);
    }

    /// The labels a container of this pod carries: a workload container's with its `name`,
    /// the sandbox's without.
    fn labels<'a>(&'a self, container: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
        let mut labels = vec![
            ("io.kubernetes.pod.name", self.name.as_str()),
            ("io.kubernetes.pod.namespace", self.namespace.as_str()),
            ("io.kubernetes.pod.uid", self.uid.as_str()),
        ];
        match container {
            Some(name) => labels.extend([
                ("io.kubernetes.container.name", name),
                ("io.cri-containerd.kind", "container"),
            ]),
            None => labels.push(("io.cri-containerd.kind", "sandbox")),
        }
        labels
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        for id in self.containers.take() {
            if let Err(e) = self.containerd.try_delete(&id) {
                eprintln!("could not delete container {id} of pod {}: {e}", self.uid);
            }
        }
        // runc made the pod's cgroup in every hierarchy, not only the memory one kubelet
        // (here the test) made.
        let hierarchies = cgroup_hierarchies();
        for root in &hierarchies {
            if let Err(e) = remove(&root.join(&self.cgroup[1..])) {
                eprintln!(
                    "could not remove pod {}'s cgroup in {}: {e}",
                    self.uid,
                    root.display()
                );
            }
        }
        // The QoS cgroups and /kubepods this test process made, once no pod is left in them.
        let mut made = made_parents();
        for parent in made.clone().iter().rev() {
            let emptied = hierarchies
                .iter()
                .map(|root| fs::remove_dir(root.join(&parent[1..])))
                .all(|removed| match removed {
                    Ok(()) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::NotFound,
                });
            if emptied {
                made.remove(parent);
            }
        }
    }
}

/// The `/kubepods` parents of pod cgroups this test process made: removed when their last pod
/// goes, and only those, so a real node's are never touched.
fn made_parents() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    static MADE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `/kubepods/burstable/pod<uid>` → `/kubepods`, `/kubepods/burstable`.
fn ancestors(cgroup: &str) -> Vec<String> {
    let parts: Vec<&str> = cgroup[1..].split('/').collect();
    (1..parts.len())
        .map(|n| format!("/{}", parts[..n].join("/")))
        .collect()
}

/// On cgroup v2, a cgroup's children get a memory controller only once it delegates one.
fn enable_memory_below(dir: &Path) {
    let file = dir.join("cgroup.subtree_control");
    fs::write(&file, "+memory")
        .unwrap_or_else(|e| panic!("write +memory to {}: {e}", file.display()));
}

/// Where every cgroup hierarchy is mounted: v1's one per controller, and v2's.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ').skip(1);
            let (point, kind) = (fields.next()?, fields.next()?);
            matches!(kind, "cgroup" | "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// `bytes` random bytes from the kernel, in lowercase hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random (version 4) UUID, as the API server gives every pod.
fn uuid() -> String {
    let hex = random_hex(16);
    let variant = ["8", "9", "a", "b"][usize::from_str_radix(&hex[16..17], 16).expect("hex") % 4];
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// How long a command sent to a [`Commanded`] container may take: an OOM kill about a second.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A workload container whose main process (`sh`) runs the shell lines the test writes into
/// one FIFO, one at a time as its own children, and writes each one's exit status into
/// another. Both FIFOs are bind-mounted from a directory of the test's, so a command reaches a
/// running container, and its status comes back, while containerd is stopped or not answering.
pub struct Commanded {
    pub task: Task,
    commands: File,
    statuses: BufReader<File>,
    /// Holds the FIFOs; removed on drop.
    _dir: TempDir,
}

impl Commanded {
    /// PID 1 reads a line, runs it with its output discarded, answers with `$?`; at the end of
    /// its input (the test dropped the FIFOs) it exits 0.
    const MAIN: &'static str = r#"while read line; do eval "$line" >/dev/null 2>&1; echo $?; done </go/commands >/go/statuses"#;

    fn start(pod: &Pod, name: &str, memory_limit: Option<u64>) -> Self {
        let dir = temp_dir("commands", 0o700);
        // Each opened for reading and writing: neither the test's open nor the container's
        // waits for the other side, and a line written before the container reads waits in
        // the pipe.
        let open = |name: &str| {
            let fifo = dir.path().join(name);
            let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
                .expect("no NUL in a path");
            // SAFETY: a NUL-terminated path.
            if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } != 0 {
                panic!(
                    "mkfifo {}: {}",
                    fifo.display(),
                    std::io::Error::last_os_error()
                );
            }
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&fifo)
                .unwrap_or_else(|e| panic!("open {}: {e}", fifo.display()))
        };
        let commands = open("commands");
        let statuses = BufReader::new(open("statuses"));
        let task = pod.run_container_with(name, memory_limit, &[(dir.path(), "/go")], Self::MAIN);
        Self {
            task,
            commands,
            statuses,
            _dir: dir,
        }
    }

    /// Has the main process run `line` (`dd ...`) as its child, and returns its exit status
    /// (137 when the OOM killer took it) once it has ended.
    pub fn run(&mut self, line: &str) -> i32 {
        assert!(!line.contains('\n'), "one line: {line:?}");
        self.commands
            .write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("send {line:?} to {}: {e}", self.task.id));
        let what = format!("the exit status of {line:?} in {}", self.task.id);
        let status = read_line_within(&mut self.statuses, COMMAND_TIMEOUT, &what)
            .unwrap_or_else(|| panic!("{what}: the FIFO ended"));
        status
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{what}: {status:?} ({e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_have_the_api_servers_shape() {
        let uid = uuid();
        let groups: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uid}");
        assert!(
            uid.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || b.is_ascii_lowercase()),
            "{uid}"
        );
        assert_eq!(&uid[14..15], "4", "version 4: {uid}");
        assert_ne!(uuid(), uid, "fresh each time");
    }

    #[test]
    fn a_pods_parents_are_its_qos_chain() {
        assert_eq!(
            ancestors("/kubepods/burstable/pod1"),
            ["/kubepods", "/kubepods/burstable"]
        );
        assert_eq!(ancestors("/kubepods/pod1"), ["/kubepods"]);
    }
}
