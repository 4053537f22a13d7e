//! The deployment files in deploy/ and the container image, checked as an operator would use
//! them: the systemd unit passes `systemd-analyze verify`, the DaemonSet parses, names the
//! image `cargo xtask image` builds and reaches each runtime's socket, where the node has one,
//! through a read-only mount that works for a socket; the alerting rules pass promtool's check
//! and their unit tests; and the `docker run` command of the operator's guide, run as written,
//! reports a kill in another container with that container's name, its host pid, and no
//! confusion from oomtrace's own namespaces.
//!
//! The image test needs the image: `cargo xtask image` builds it (no registry can be reached,
//! so this test cannot pull one, and it does not build one itself: that takes the eBPF toolchain
//! and a static build, which the xtask owns).

use std::{
    collections::BTreeSet,
    fs::OpenOptions,
    io::Write as _,
    os::unix::{fs::PermissionsExt as _, prelude::OsStrExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use oomtrace_tests::{
    CAP_SYS_RESOURCE, PipeLines, Started, capabilities,
    docker::{Containers, DD_SH, IMAGE, KILLED, docker, try_docker},
    privileged,
    prometheus::promtool,
    run_within, serial, skip, spawn_until_ready, temp_dir,
};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The benchmark budget (BENCHMARKS.md) for oomtrace's peak RSS, in a storm; steady, 4 MiB.
const PEAK_RSS_BUDGET: u64 = 12 << 20;
/// The metrics port the DaemonSet serves and annotates.
const METRICS_PORT: i64 = 9633;
/// Marks the operator guide's `docker run` command: the next fenced block is it.
const DOCKER_RUN_MARKER: &str = "<!-- oomtrace:docker-run";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = workspace().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The image's tag, from its one source of truth: `pub const TAG` in xtask/src/image.rs.
fn image_tag() -> String {
    let source = read("xtask/src/image.rs");
    let line = source
        .lines()
        .find(|l| l.trim_start().starts_with("pub const TAG: &str = \""))
        .expect("xtask/src/image.rs defines `pub const TAG: &str = \"...\";`");
    let tag = line
        .split('"')
        .nth(1)
        .expect("TAG is one string literal")
        .to_owned();
    assert!(
        tag.contains(':') && !tag.contains(char::is_whitespace),
        "{tag:?} is no image reference"
    );
    tag
}

/// The `docker run` command of the operator's guide, as words: the fenced block after
/// [`DOCKER_RUN_MARKER`], its continuation lines joined. The guide is deploy/README.md, and
/// wherever the main README carries it too; every copy must be the same command.
fn documented_docker_run() -> Vec<String> {
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    for file in ["deploy/README.md", "README.md"] {
        let Ok(text) = std::fs::read_to_string(workspace().join(file)) else {
            continue;
        };
        let mut lines = text.lines().skip_while(|l| !l.contains(DOCKER_RUN_MARKER));
        if lines.next().is_none() {
            continue;
        }
        let mut lines = lines.skip_while(|l| !l.trim_start().starts_with("```"));
        assert!(
            lines.next().is_some(),
            "{file}: no code block after the marker"
        );
        let block: Vec<&str> = lines
            .take_while(|l| !l.trim_start().starts_with("```"))
            .collect();
        let joined = block
            .iter()
            .map(|l| l.trim_end().trim_end_matches('\\'))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            !joined.contains(['"', '\'', '$', '`', '#']),
            "{file}: the command must be plain words, no quoting or expansion: {joined}"
        );
        let words = joined.split_whitespace().map(str::to_owned).collect();
        found.push((file.to_owned(), words));
    }
    let (first_file, first) = found
        .first()
        .cloned()
        .expect("deploy/README.md marks its docker run command with <!-- oomtrace:docker-run");
    for (file, words) in &found[1..] {
        assert_eq!(
            words, &first,
            "{file} and {first_file} document different docker run commands"
        );
    }
    first
}

/// The value following `flag` in `words`, for every time `flag` appears.
fn values_of<'a>(words: &'a [String], flag: &str) -> Vec<&'a str> {
    words
        .windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn docker_run_command_is_complete_and_names_the_image() {
    let words = documented_docker_run();
    assert_eq!(words[..2], ["docker", "run"], "{words:?}");
    // The image last: no arguments, so the image's default `--json` applies.
    assert_eq!(words.last(), Some(&image_tag()), "{words:?}");
    for (flag, value) in [
        ("--pid", "host"),
        ("--cgroupns", "host"),
        // The host's hostname is the node's name in every report (`host.name`).
        ("--uts", "host"),
        ("--cap-drop", "ALL"),
        ("--device", "/dev/kmsg:/dev/kmsg:r"),
    ] {
        assert!(
            values_of(&words, flag).contains(&value),
            "no `{flag} {value}`: {words:?}"
        );
    }
    assert!(
        !words.iter().any(|w| w == "--privileged"
            || w.starts_with("--privileged=")
            || w.contains("unconfined")),
        "{words:?}"
    );
    let caps: BTreeSet<&str> = values_of(&words, "--cap-add").into_iter().collect();
    assert_eq!(
        caps,
        BTreeSet::from(["SYS_ADMIN", "SYSLOG"]),
        "Docker 20.10 knows no CAP_BPF: SYS_ADMIN loads the program, SYSLOG reads the log"
    );
    let volumes = values_of(&words, "--volume");
    for path in [
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/sys/fs/cgroup",
        "/var/run/docker.sock",
    ] {
        let mount = format!("{path}:{path}:ro");
        assert!(volumes.contains(&mount.as_str()), "no `--volume {mount}`");
    }
    assert!(
        volumes.contains(&"/var/lib/oomtrace:/var/lib/oomtrace"),
        "the journal's volume: {volumes:?}"
    );
}

/// `metadata.annotations` and the like: `node[key]` for each key in `path` (dot-separated).
fn at<'a>(node: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(node, |node, key| {
        let next = match key.parse::<usize>() {
            Ok(i) => &node[i],
            Err(_) => &node[key],
        };
        assert!(!next.is_badvalue(), "the DaemonSet has no {path}");
        next
    })
}

fn text<'a>(node: &'a Yaml, path: &str) -> &'a str {
    at(node, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is no string: {:?}", at(node, path)))
}

fn list<'a>(node: &'a Yaml, path: &str) -> &'a [Yaml] {
    at(node, path)
        .as_vec()
        .unwrap_or_else(|| panic!("{path} is no list"))
}

/// A Kubernetes memory quantity with a binary suffix (`16Mi`), in bytes.
fn mebibytes(quantity: &str) -> u64 {
    let n = quantity
        .strip_suffix("Mi")
        .unwrap_or_else(|| panic!("{quantity} is not in Mi"));
    n.parse::<u64>().expect("a whole number of Mi") << 20
}

/// The DaemonSet's own arguments on a node that has neither socket where the manifest mounts
/// them (this host has no /host/run): oomtrace starts, says once for each runtime that it
/// cannot be asked, watches, and exits 0. Only the metrics address is moved to a free
/// loopback port and the journal left out (the tracer's own `--no-journal`), so that the test
/// takes nothing of the host's.
#[test]
fn daemonset_args_run_where_neither_socket_exists() {
    let test = "daemonset_args_run_where_neither_socket_exists";
    if !privileged(test) {
        return;
    }
    let docs = YamlLoader::load_from_str(&read("deploy/daemonset.yaml"))
        .unwrap_or_else(|e| panic!("deploy/daemonset.yaml is not YAML: {e}"));
    let container = &list(at(&docs[0], "spec.template.spec"), "containers")[0];
    let args: Vec<String> = list(container, "args")
        .iter()
        .filter_map(Yaml::as_str)
        // The tracer gives --json and --no-journal itself.
        .filter(|a| *a != "--json")
        .map(|a| match a {
            "0.0.0.0:9633" => "127.0.0.1:0".to_owned(),
            a => a.to_owned(),
        })
        .collect();
    for socket in [
        values_of(&args, "--docker-socket"),
        values_of(&args, "--containerd-socket"),
    ] {
        assert!(
            socket.iter().all(|s| !Path::new(s).exists()),
            "{socket:?} exists here, so this test proves nothing"
        );
    }
    let _serial = serial();
    let tracer =
        oomtrace_tests::Tracer::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for runtime in ["Docker", "containerd"] {
        tracer.wait_for_stderr(
            &format!("{runtime} enrichment is unavailable"),
            Duration::from_secs(10),
        );
    }
    let stopped = tracer.stop();
    stopped.assert_success();
    for runtime in ["Docker", "containerd"] {
        let said = stopped
            .stderr
            .iter()
            .filter(|l| l.contains(&format!("{runtime} enrichment is unavailable")))
            .count();
        assert_eq!(said, 1, "said once: {:?}", stopped.stderr);
    }
}

#[test]
fn daemonset_parses_and_names_the_image() {
    let docs = YamlLoader::load_from_str(&read("deploy/daemonset.yaml"))
        .unwrap_or_else(|e| panic!("deploy/daemonset.yaml is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "one object");
    let ds = &docs[0];
    assert_eq!(text(ds, "apiVersion"), "apps/v1");
    assert_eq!(text(ds, "kind"), "DaemonSet");
    let labels = at(ds, "spec.selector.matchLabels");
    assert_eq!(labels, at(ds, "spec.template.metadata.labels"));
    let pod = at(ds, "spec.template.spec");

    let containers = list(pod, "containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        text(c, "image"),
        image_tag(),
        "the image `cargo xtask image` builds"
    );
    assert_eq!(
        text(c, "imagePullPolicy"),
        "IfNotPresent",
        "no registry has it"
    );

    // JSON lines on stdout, metrics on every address of the pod, annotated for scraping.
    let args: Vec<&str> = list(c, "args").iter().filter_map(Yaml::as_str).collect();
    assert!(args.contains(&"--json"), "{args:?}");
    let addr = values_of(
        &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "--metrics-addr",
    )
    .concat();
    assert_eq!(addr, format!("0.0.0.0:{METRICS_PORT}"), "{args:?}");
    assert_eq!(
        at(c, "ports.0.containerPort").as_i64(),
        Some(METRICS_PORT),
        "the container port"
    );
    // The node's name from the downward API: the pod's hostname is the pod's own.
    let node_name = list(c, "env")
        .iter()
        .find(|e| text(e, "name") == "OOMTRACE_NODE_NAME")
        .expect("an OOMTRACE_NODE_NAME variable");
    assert_eq!(
        text(node_name, "valueFrom.fieldRef.fieldPath"),
        "spec.nodeName"
    );
    // Keys with dots: indexed directly, not through `at`.
    let annotations = at(ds, "spec.template.metadata.annotations");
    let annotation = |key: &str| annotations[key].as_str().unwrap_or_default().to_owned();
    assert_eq!(annotation("prometheus.io/scrape"), "true");
    assert_eq!(annotation("prometheus.io/port"), METRICS_PORT.to_string());
    assert_eq!(annotation("prometheus.io/path"), "/metrics");

    // Requests cover the peak budget; the limit is far above it, so only a leak reaches it.
    let request = mebibytes(text(c, "resources.requests.memory"));
    let limit = mebibytes(text(c, "resources.limits.memory"));
    assert!(request >= PEAK_RSS_BUDGET, "request {request}");
    assert!(limit >= 4 * PEAK_RSS_BUDGET, "limit {limit}");
    assert!(text(c, "resources.requests.cpu").ends_with('m'));
    assert!(
        c["resources"]["limits"]["cpu"].is_badvalue(),
        "no CPU limit: throttling would delay reports in a storm"
    );

    // Every node, last to be evicted, in the host's pid namespace.
    assert_eq!(text(pod, "priorityClassName"), "system-node-critical");
    assert!(
        list(pod, "tolerations")
            .iter()
            .any(|t| text(t, "operator") == "Exists" && t["key"].is_badvalue()),
        "a toleration for every taint"
    );
    assert_eq!(at(pod, "hostPID").as_bool(), Some(true));

    // The capabilities, and nothing that would make them moot.
    let security = at(c, "securityContext");
    assert_eq!(at(security, "privileged").as_bool(), Some(false));
    assert_eq!(
        at(security, "allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert_eq!(at(security, "readOnlyRootFilesystem").as_bool(), Some(true));
    let caps = |which: &str| -> BTreeSet<&str> {
        list(security, &format!("capabilities.{which}"))
            .iter()
            .filter_map(Yaml::as_str)
            .collect()
    };
    assert_eq!(caps("drop"), BTreeSet::from(["ALL"]));
    assert_eq!(caps("add"), BTreeSet::from(["BPF", "PERFMON", "SYSLOG"]));

    // The host mounts of the documented `docker run`, read-only, plus the journal; but Docker's
    // socket, which the DaemonSet reaches through the host's /run (below).
    let volumes = list(pod, "volumes");
    let mounts = host_mounts(c, volumes);
    let docker_run = documented_docker_run();
    let documented: Vec<&str> = values_of(&docker_run, "--volume")
        .into_iter()
        .filter(|v| !v.starts_with(&format!("{DOCKER_SOCKET}:")))
        .collect();
    for volume in &documented {
        let parts: Vec<&str> = volume.split(':').collect();
        let (source, target, read_only) = (parts[0], parts[1], parts.get(2) == Some(&"ro"));
        assert!(
            mounts.contains(&(source.to_owned(), target.to_owned(), read_only)),
            "the DaemonSet lacks the documented `--volume {volume}`: {mounts:?}"
        );
    }
    assert_eq!(mounts.len(), documented.len() + 1, "{mounts:?}");
    runtime_sockets_are_optional(c, volumes, &args);
}

/// Docker's socket as the documented `docker run` mounts it; `/var/run` links to `/run`.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Where each runtime's socket is on a node, for the flag that names it to oomtrace: the
/// daemons' defaults.
const RUNTIME_SOCKETS: [(&str, &str); 2] = [
    ("--docker-socket", "/run/docker.sock"),
    ("--containerd-socket", "/run/containerd/containerd.sock"),
];

/// The container's mounts of host paths: (host path, mount path, read-only).
fn host_mounts(container: &Yaml, volumes: &[Yaml]) -> Vec<(String, String, bool)> {
    let host_path = |name: &str| {
        let volume = volumes
            .iter()
            .find(|v| text(v, "name") == name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        text(volume, "hostPath.path").to_owned()
    };
    list(container, "volumeMounts")
        .iter()
        .map(|m| {
            (
                host_path(text(m, "name")),
                text(m, "mountPath").to_owned(),
                m["readOnly"].as_bool() == Some(true),
            )
        })
        .collect()
}

/// Each runtime's socket is optional: a node may have Docker's, containerd's, both or neither,
/// and the pod must start on every one. So no volume is of type `Socket` (a missing socket
/// keeps the pod from starting) or of no type (the runtime may create a directory where the
/// socket belongs); the sockets are reached through a directory every node has, mounted
/// read-only, and the flags name them there.
fn runtime_sockets_are_optional(container: &Yaml, volumes: &[Yaml], args: &[&str]) {
    for volume in volumes {
        let name = text(volume, "name");
        let kind = volume["hostPath"]["type"].as_str().unwrap_or_default();
        let path = text(volume, "hostPath.path");
        assert!(
            kind == "Directory" || (kind == "DirectoryOrCreate" && path == "/var/lib/oomtrace"),
            "volume {name}: hostPath {path} of type {kind:?}: a path that must be of a kind keeps the pod from starting where it is not, and one of no type may be created; only the journal's should be"
        );
    }
    let mounts = host_mounts(container, volumes);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for (flag, on_the_node) in RUNTIME_SOCKETS {
        let given = values_of(&args, flag);
        assert_eq!(given.len(), 1, "one {flag}: {args:?}");
        let (host, mount_path, read_only) = mounts
            .iter()
            .find(|(_, mount_path, _)| Path::new(given[0]).starts_with(mount_path))
            .unwrap_or_else(|| panic!("{flag} {} is in no mount: {mounts:?}", given[0]));
        let inside = Path::new(given[0])
            .strip_prefix(mount_path)
            .expect("under the mount");
        assert_eq!(
            Path::new(host).join(inside),
            Path::new(on_the_node),
            "{flag} {} is not the node's {on_the_node}",
            given[0]
        );
        assert!(read_only, "{flag}: {host} is mounted writable");
        assert_ne!(
            Path::new(host),
            Path::new(on_the_node),
            "{flag}: the socket itself is mounted, which fails where it is missing"
        );
    }
}

/// `systemd-analyze`, installed with apt if it is missing and this runs as root.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    let find = || {
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join("systemd-analyze"))
            .find(|p| p.is_file())
    };
    if let Some(path) = find() {
        return Some(path);
    }
    if !privileged(test) {
        return None;
    }
    eprintln!("{test}: systemd-analyze is missing: installing Debian's systemd package with apt");
    let install = |cmd: &mut Command| {
        let out = run_within(
            cmd.env("DEBIAN_FRONTEND", "noninteractive"),
            Duration::from_secs(600),
        );
        out.status.success()
    };
    let apt = || {
        let mut apt = Command::new("apt-get");
        apt.args(["install", "-y", "--no-install-recommends", "systemd"]);
        apt
    };
    if !install(&mut apt()) {
        // Stale package lists are the usual cause: refresh once and retry.
        assert!(
            install(Command::new("apt-get").arg("update")),
            "apt-get update failed"
        );
        assert!(install(&mut apt()), "apt-get install systemd failed");
    }
    Some(find().expect("systemd-analyze after installing systemd"))
}

/// `Key=value` lines of a unit file: every value of `key`, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
        .collect()
}

#[test]
fn systemd_unit_verifies() {
    let test = "systemd_unit_verifies";
    let unit = read("deploy/oomtrace.service");

    // What the operator's guide promises, and what must never creep in (see the unit's end).
    let one = |key: &str| -> &str {
        let values = unit_values(&unit, key);
        assert_eq!(values.len(), 1, "{key}= must be set once: {values:?}");
        values[0]
    };
    let exec = one("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/oomtrace ")
            && exec.split_whitespace().any(|w| w == "--json"),
        "{exec}"
    );
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("StandardOutput"), "journal");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(
        one("StateDirectory"),
        "oomtrace",
        "the journal's directory, writable"
    );
    assert_eq!(one("OOMScoreAdjust"), "-1000");
    let caps = |key: &str| -> BTreeSet<&str> { one(key).split_whitespace().collect() };
    let needed = BTreeSet::from(["CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG"]);
    assert_eq!(caps("CapabilityBoundingSet"), needed);
    assert_eq!(caps("AmbientCapabilities"), needed);
    assert_eq!(one("DeviceAllow"), "/dev/kmsg rw");
    let filter: BTreeSet<&str> = one("SystemCallFilter").split_whitespace().collect();
    assert_eq!(
        filter,
        BTreeSet::from(["@system-service", "bpf", "perf_event_open"])
    );
    for breaks in [
        "ProtectKernelLogs",
        "ProtectKernelTunables",
        "ProtectProc",
        "ProcSubset",
        "PrivateDevices",
        "PrivateNetwork",
        "PrivatePIDs",
        "PrivateUsers",
        "MemoryMax",
    ] {
        assert!(
            unit_values(&unit, breaks).is_empty(),
            "{breaks}= breaks oomtrace (see the end of the unit)"
        );
    }

    let Some(analyze) = systemd_analyze(test) else {
        return;
    };
    // verify wants ExecStart's program to exist: the same unit, pointing at an executable that
    // does (this test itself; verify only checks that it is one).
    let dir = temp_dir("unit", 0o755);
    let copy = dir.path().join("oomtrace.service");
    let me = std::env::current_exe().expect("current_exe");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/oomtrace ",
            &format!("ExecStart={} ", me.display()),
        ),
    )
    .expect("write the unit's copy");
    let out = run_within(
        Command::new(&analyze).arg("verify").arg(&copy),
        Duration::from_secs(60),
    );
    // verify exits 0 even for unknown keys and values it cannot parse: it only says so.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify deploy/oomtrace.service ({:?}):\n{said}",
        out.status
    );
}

/// promtool loads the rules as Prometheus would, then runs their unit tests: each alert made
/// to fire, and not to fire, from series as oomtrace exposes them.
#[test]
fn prometheus_rules_pass_promtool_and_their_unit_tests() {
    let test = "prometheus_rules_pass_promtool_and_their_unit_tests";
    let Some(promtool) = promtool(test) else {
        return;
    };
    let deploy = workspace().join("deploy");
    for (args, said) in [
        (
            ["check", "rules", "prometheus-rules.yaml"],
            "SUCCESS: 4 rules found",
        ),
        (["test", "rules", "prometheus-rules.test.yaml"], "SUCCESS"),
    ] {
        let out = run_within(
            Command::new(&promtool).args(args).current_dir(&deploy),
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(said),
            "promtool {} ({:?}):\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn docker_succeeds(args: &[&str]) -> bool {
    try_docker(args).is_ok_and(|o| o.status.success())
}

/// Whether this host's root may lower an oom_score_adj: CAP_SYS_RESOURCE (bit 24) in the
/// bounding set, which the Docker daemon shares. Some VMs withhold it even from root.
fn root_has_sys_resource() -> bool {
    capabilities("CapBnd") & (1 << CAP_SYS_RESOURCE) != 0
}

/// The documented command, run as written but for what a test must own: the container's name,
/// and the journal's host directory (a fresh one, not the host's own journal). Where this
/// host's root cannot lower an oom_score_adj, `--oom-score-adj` is left out: Docker could not
/// start the container with it (see the guide).
fn test_docker_run(name: &str, journal_dir: &Path) -> Vec<String> {
    let mut words = documented_docker_run();
    let name_at = words
        .iter()
        .position(|w| w == "--name")
        .expect("the documented command names its container");
    words[name_at + 1] = name.to_owned();
    let journal = words
        .iter_mut()
        .find(|w| w.ends_with(":/var/lib/oomtrace"))
        .expect("a volume for /var/lib/oomtrace");
    *journal = format!("{}:/var/lib/oomtrace", journal_dir.display());
    if !root_has_sys_resource()
        && let Some(at) = words.iter().position(|w| w == "--oom-score-adj")
    {
        eprintln!(
            "this host's root has no CAP_SYS_RESOURCE: running without `--oom-score-adj {}`",
            words[at + 1]
        );
        words.drain(at..at + 2);
    }
    words
}

/// The documented oomtrace container watches while another container's PID 1 is OOM-killed:
/// it reports that kill once, naming the container, with the victim's host pid and
/// is_container_init true, and says nothing about its own namespaces.
#[test]
fn image_run_as_documented_reports_a_kill_in_another_container() {
    let test = "image_run_as_documented_reports_a_kill_in_another_container";
    if !privileged(test) {
        return;
    }
    if !docker_succeeds(&["version"]) {
        skip(
            test,
            "no Docker daemon answers (`cargo xtask setup` starts one)",
        );
        return;
    }
    let tag = image_tag();
    assert!(
        docker_succeeds(&["image", "inspect", &tag]),
        "{test} needs the image {tag}: build it with `cargo xtask image`"
    );
    assert!(
        docker_succeeds(&["image", "inspect", IMAGE]),
        "{test} needs the image {IMAGE}: build it with `cargo xtask setup`"
    );
    let _serial = serial();
    let mut containers = Containers::default();
    let scratch = temp_dir("deploy", 0o755);
    let journal_dir = scratch.path().join("journal");
    let gate_dir = scratch.path().join("gate");
    std::fs::create_dir_all(&gate_dir).expect("create the gate's directory");

    // oomtrace, exactly as the guide runs it.
    let tracer = containers.name("deploy-oomtrace");
    let run = test_docker_run(&tracer, &journal_dir);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    docker(&run[1..]);
    // Its output, as an operator reads it: stdout and stderr apart.
    let mut logs = Command::new("docker");
    logs.args(["logs", "--follow", &tracer]);
    let Started {
        child: logs,
        stdout,
        stderr,
    } = spawn_until_ready(logs);
    let reports = PipeLines::spawn("the oomtrace container's stdout", stdout, |line| {
        serde_json::from_slice::<Value>(&line).map_err(|e| {
            format!(
                "a line that is not JSON ({e}): {}",
                String::from_utf8_lossy(&line)
            )
        })
    });

    // The victim: PID 1 of another container, held at a FIFO so that its host pid is known
    // (docker inspect) before it becomes dd (exec keeps the pid) and is killed.
    let fifo = gate_dir.join("go");
    let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    // Open for reading and writing: the container's open never waits for a writer.
    let mut go = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open the FIFO");
    let victim = containers.name("deploy-victim");
    let volume = format!("{}:/go", gate_dir.display());
    let script = format!("read go </go/go; exec {DD_SH}");
    let id = docker(&[
        "run",
        "--detach",
        "--memory=32m",
        "--name",
        &victim,
        "--volume",
        &volume,
        IMAGE,
        "sh",
        "-c",
        &script,
    ]);
    let pid: u64 = docker(&["inspect", "--format", "{{.State.Pid}}", &victim])
        .parse()
        .expect("State.Pid");
    assert!(pid > 0, "{victim} is not running");
    go.write_all(b"go\n").expect("write to the FIFO");
    assert_eq!(
        docker(&["wait", &victim]),
        KILLED.to_string(),
        "dd in {victim} must be OOM-killed"
    );

    let about = |r: &Value| r["event"] == "oom_kill" && r["container"]["id"] == id.as_str();
    let deadline = Instant::now() + Duration::from_secs(10);
    reports.wait_until(deadline, |lines| lines.iter().any(about));
    docker(&["stop", "--time", "10", &tracer]);
    let reports = reports.finish_after_exit();
    let stderr = stderr.finish_after_exit();
    drop(logs);
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.ExitCode}}", &tracer]),
        "0",
        "oomtrace's exit; stderr: {stderr:#?}"
    );

    // No confusion from its own namespaces, Docker answered, and it ended with its summary.
    for wrong in [
        "pid namespace of its own",
        "cgroup namespace of its own",
        "/proc is not this pid namespace's procfs",
        "Docker enrichment is unavailable",
        "the kernel log cannot be followed",
        "eBPF cannot be used",
        "the node's name is unknown",
    ] {
        assert!(
            !stderr.iter().any(|l| l.contains(wrong)),
            "oomtrace said `{wrong}`: {stderr:#?}"
        );
    }
    assert!(
        stderr.iter().any(|l| l.starts_with("oomtrace: ")
            && l.contains(" reported, ")
            && l.contains("the kernel counted")),
        "no summary: {stderr:#?}"
    );

    let ours: Vec<&Value> = reports.iter().filter(|r| about(r)).collect();
    assert_eq!(ours.len(), 1, "one report for {victim}: {reports:#?}");
    let report = ours[0];
    let field = |path: &str| path.split('.').fold(report, |v, key| &v[key]).clone();
    assert_eq!(field("container.name"), victim.as_str(), "{report}");
    assert_eq!(field("container.image"), IMAGE, "{report}");
    assert_eq!(
        field("victim.pid"),
        pid,
        "the host pid, as docker inspect says: {report}"
    );
    assert_eq!(field("victim.ns_pid"), 1, "{report}");
    assert_eq!(field("victim.is_container_init"), true, "{report}");
    assert_eq!(field("victim.comm"), "dd", "{report}");
    let main_pid = field("container.main_pid");
    assert!(main_pid.is_null() || main_pid == pid, "{report}");
    // The node, as the host itself names it, and the boot, as the kernel numbers it.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(field("host.name"), hostname.trim(), "{report}");
    assert_eq!(field("host.name_from"), "uts", "{report}");
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot_id");
    assert_eq!(field("host.boot_id"), boot_id.trim(), "{report}");
    let cgroup = field("cgroup.path");
    assert!(
        cgroup.as_str().is_some_and(|p| p.contains(id.as_str())),
        "the container's own cgroup: {report}"
    );

    // The journal, on the documented volume: written, and private.
    let journal = journal_dir.join("journal.jsonl");
    let mode = std::fs::metadata(&journal)
        .unwrap_or_else(|e| panic!("{}: {e}", journal.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", journal.display());
    let kept = std::fs::read_to_string(&journal).expect("read the journal");
    assert!(
        kept.lines().any(|l| l.contains(id.as_str())),
        "the journal holds the kill in {victim}"
    );
}

/// The DaemonSet reaches the runtimes' sockets through the host's /run mounted read-only, as
/// kubelet mounts a `readOnly` hostPath: bound, then remounted read-only. A socket is connected
/// to, not written, so the mount does not stand in the way; files there cannot be made.
#[test]
fn a_socket_under_a_read_only_mount_can_be_connected_to() {
    use std::{
        io::{ErrorKind, Read as _},
        os::unix::net::{UnixListener, UnixStream},
    };
    let test = "a_socket_under_a_read_only_mount_can_be_connected_to";
    if !privileged(test) {
        return;
    }
    let scratch = temp_dir("ro-socket", 0o700);
    let host_run = scratch.path().join("run");
    let socket_dir = host_run.join("containerd");
    std::fs::create_dir_all(&socket_dir).expect("create the socket's directory");
    let listener = UnixListener::bind(socket_dir.join("containerd.sock")).expect("bind");
    let mount_point = scratch.path().join("host-run");
    std::fs::create_dir(&mount_point).expect("create the mount point");

    // A thread of its own in a mount namespace of its own: the mounts are gone with it, and
    // the host's namespace never sees them.
    let seen = mount_point.clone();
    let connected = std::thread::spawn(move || {
        let path = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL");
        let (source, target) = (path(&host_run), path(&seen));
        let check = |what: &str, rc: libc::c_int| {
            assert_eq!(rc, 0, "{what}: {}", std::io::Error::last_os_error());
        };
        // SAFETY: plain system calls on NUL-terminated paths that outlive them. unshare gives
        // only this thread a new mount namespace (CLONE_NEWNS implies CLONE_FS, which copies
        // this thread's view alone).
        unsafe {
            check("unshare", libc::unshare(libc::CLONE_NEWNS));
            let root = c"/";
            check(
                "make the mounts private",
                libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ),
            );
            check(
                "bind",
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ),
            );
            check(
                "remount read-only",
                libc::mount(
                    std::ptr::null(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    std::ptr::null(),
                ),
            );
        }
        let refused = std::fs::File::create(seen.join("containerd/new-file"))
            .expect_err("the mount is read-only");
        assert_eq!(refused.kind(), ErrorKind::ReadOnlyFilesystem, "{refused}");
        let mut stream = UnixStream::connect(seen.join("containerd/containerd.sock"))
            .unwrap_or_else(|e| panic!("connect through the read-only mount: {e}"));
        stream.write_all(b"ping").expect("write to the socket");
    });
    connected.join().expect("the connection through the mount");
    // Queued by the kernel when the thread connected: accept does not wait.
    listener.set_nonblocking(true).expect("nonblocking");
    let (mut stream, _) = listener.accept().expect("the connection is queued");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = String::new();
    stream.read_to_string(&mut got).expect("read what was sent");
    assert_eq!(got, "ping");
}
