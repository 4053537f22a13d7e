//! Docker as its users expect it, against the real Engine: `DOCKER_HOST` and the socket's
//! errors in words, `--container` names that cannot be resolved or match nothing, containers
//! under a `--cgroup-parent` of their own, and `history` naming the containers Docker still
//! knows.

use std::{
    os::unix::{net::UnixListener, process::CommandExt as _},
    process::Command,
    time::{Duration, SystemTime},
};

use oomtrace_tests::{
    Hog, MemCgroup, Staged, Tracer,
    docker::{Containers, DD, IMAGE, KILLED, Scratch, cid, docker_code, docker_ready, inspect},
    field, oomtrace_bin, run_within, serial, temp_dir, wait_out_oom_log_ratelimit,
};
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
const NOBODY: u32 = 65534;

fn hog_path() -> std::path::PathBuf {
    oomtrace_tests::hog_bin(env!("CARGO_BIN_EXE_hog"))
}

/// The `Docker:` line of `oomtrace check` run as `command`.
fn docker_line(command: &mut Command) -> String {
    let output = run_within(command, RUN_TIMEOUT);
    let out = String::from_utf8_lossy(&output.stdout);
    out.lines()
        .find(|l| l.starts_with("Docker: "))
        .unwrap_or_else(|| panic!("no Docker line in {out}"))
        .to_owned()
}

fn check_with(docker_host: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(oomtrace_bin());
    command.arg("check").args(args).env_remove("DOCKER_HOST");
    if let Some(host) = docker_host {
        command.env("DOCKER_HOST", host);
    }
    command
}

/// `DOCKER_HOST` is honoured as the docker CLI honours it, `--docker-socket` overrides it, and
/// a socket that cannot be used is explained in words a person can act on, never in the HTTP
/// client's jargon.
#[test]
fn docker_host_and_socket_errors_in_words() {
    let test = "docker_host_and_socket_errors_in_words";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let dir = temp_dir("docker-host", 0o755);
    // The real socket under another name: only DOCKER_HOST can lead oomtrace there.
    let alias = dir.path().join("alias.sock");
    std::os::unix::fs::symlink("/var/run/docker.sock", &alias).expect("symlink");
    let host = format!("unix://{}", alias.display());
    let line = docker_line(&mut check_with(Some(&host), &[]));
    assert!(
        line.starts_with(&format!("Docker: answers at {}", alias.display())),
        "{line}"
    );

    let missing = dir.path().join("missing.sock");
    let line = docker_line(&mut check_with(
        Some(&format!("unix://{}", missing.display())),
        &[],
    ));
    assert!(
        line.contains(&format!("{} does not exist", missing.display())),
        "{line}"
    );
    // The flag wins over the environment.
    let line = docker_line(&mut check_with(
        Some(&host),
        &["--docker-socket", &missing.to_string_lossy()],
    ));
    assert!(line.contains("does not exist"), "{line}");

    // A socket nobody listens on any more.
    let refused = dir.path().join("refused.sock");
    drop(UnixListener::bind(&refused).expect("bind"));
    let line = docker_line(&mut check_with(
        Some(&format!("unix://{}", refused.display())),
        &[],
    ));
    assert!(line.contains("connection refused"), "{line}");

    // Permission: nobody may not open root's socket.
    let staged = Staged::copy_of(&oomtrace_bin());
    let mut as_nobody = Command::new(staged.path());
    as_nobody
        .args(["check"])
        .env("DOCKER_HOST", &host)
        .uid(NOBODY)
        .gid(NOBODY);
    let line = docker_line(&mut as_nobody);
    assert!(
        line.contains("permission denied") && line.contains("docker"),
        "{line}"
    );

    for jargon in ["hyper", "client error", "Connect)"] {
        assert!(!line.contains(jargon), "{line}");
    }
    // Docker over TCP is not read: said, with what to do instead.
    let line = docker_line(&mut check_with(Some("tcp://127.0.0.1:2375"), &[]));
    assert!(
        line.contains("DOCKER_HOST=tcp://127.0.0.1:2375 is not a unix socket")
            && line.contains("--docker-socket"),
        "{line}"
    );
}

/// `--container NAME` while Docker cannot be reached says once that names cannot be resolved;
/// a name Docker does not know is said to match nothing.
#[test]
fn container_names_that_cannot_match_are_said_once() {
    let test = "container_names_that_cannot_match_are_said_once";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let unreachable = "Docker cannot be reached, so --container cannot match containers by name";
    let tracer = Tracer::start(&[
        "--docker-socket",
        "/nonexistent/docker.sock",
        "--container",
        "web",
    ]);
    tracer.wait_for_stderr(unreachable, REPORT_TIMEOUT);
    let stopped = tracer.stop();
    let said: Vec<&String> = stopped
        .stderr
        .iter()
        .filter(|l| l.contains(unreachable))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", stopped.stderr);

    let nowhere = format!("oomtrace-e2e-nowhere-{}", std::process::id());
    let tracer = Tracer::start(&["--container", &nowhere]);
    let text = format!("--container {nowhere} matches no container Docker knows");
    tracer.wait_for_stderr(&text, REPORT_TIMEOUT);
    let stopped = tracer.stop();
    assert_eq!(
        stopped.stderr.iter().filter(|l| l.contains(&text)).count(),
        1,
        "{:?}",
        stopped.stderr
    );
}

/// `docker run --cgroup-parent` (compose's `cgroup_parent`) puts a container at
/// `/<parent>/<id>`, where the path alone cannot say whose id it is. Docker confirms it, and
/// the kill is named, live and in `history`; an id-shaped cgroup Docker does not know is no
/// container. `history` also names a plain container Docker still knows.
#[test]
fn cgroup_parent_containers_are_named_once_docker_confirms_them() {
    let test = "cgroup_parent_containers_are_named_once_docker_confirms_them";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    wait_out_oom_log_ratelimit();
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .saturating_sub(1);
    let parent = format!("/oomtrace-e2e-shared-{}", std::process::id());
    let cleanup = ParentCgroup(parent.clone());
    let mut containers = Containers::default();
    let scratch = Scratch::create("cgparent");
    let tracer = Tracer::start(&[]);

    let shared = containers.name("shared");
    let cidfile = scratch.path("shared.cid");
    let mut args = vec![
        "run",
        "--memory=32m",
        "--cgroup-parent",
        &parent,
        "--name",
        &shared,
        "--cidfile",
        &cidfile,
        IMAGE,
    ];
    args.extend(DD);
    let (code, stderr) = docker_code(&args);
    assert_eq!(code, Some(KILLED), "dd in {shared}: {stderr}");
    let shared_id = cid(&cidfile);

    let plain = containers.name("plain");
    let cidfile = scratch.path("plain.cid");
    let mut args = vec![
        "run",
        "--memory=32m",
        "--name",
        &plain,
        "--cidfile",
        &cidfile,
        IMAGE,
    ];
    args.extend(DD);
    let (code, stderr) = docker_code(&args);
    assert_eq!(code, Some(KILLED), "dd in {plain}: {stderr}");
    let plain_id = cid(&cidfile);

    // A cgroup that only looks like a container's.
    let lookalike = MemCgroup::create("lookalike", 32);
    let fake_id = "f".repeat(64);
    let inner = lookalike.child(&fake_id);
    let mut hog = Hog::spawn(&hog_path(), &inner, 500, &[]);
    let hog_pid = hog.pid();
    hog.expect_oom_killed();

    let live = tracer.wait_for(3, REPORT_TIMEOUT, |r| {
        r["cgroup"]["path"]
            .as_str()
            .is_some_and(|p| p.contains(&shared_id) || p.contains(&plain_id))
            || r["victim"]["pid"] == hog_pid
    });
    let stopped = tracer.stop();
    assert_eq!(live.len(), 3, "{:?}", stopped.stderr);
    let by_path = |reports: &[Value], id: &str| -> Value {
        let ours: Vec<&Value> = reports
            .iter()
            .filter(|r| r["cgroup"]["path"].as_str().is_some_and(|p| p.contains(id)))
            .collect();
        assert_eq!(ours.len(), 1, "one report in {id}: {reports:#?}");
        ours[0].clone()
    };
    let report = by_path(&live, &shared_id);
    assert_eq!(field(&report, "container.id"), shared_id.as_str());
    assert_eq!(field(&report, "container.name"), shared.as_str());
    assert_eq!(field(&report, "container.runtime"), "docker");
    assert!(
        field(&report, "cgroup.path")
            .as_str()
            .is_some_and(|p| p.starts_with(&parent)),
        "{report}"
    );
    let fake = live
        .iter()
        .find(|r| r["victim"]["pid"] == hog_pid)
        .expect("the lookalike's kill");
    assert_eq!(field(fake, "cgroup.path"), inner.path.as_str());
    assert!(field(fake, "container").is_null(), "{fake}");
    drop(inner);

    // history, from the kernel log alone: Docker names both, as it still knows them.
    let output = run_within(
        Command::new(oomtrace_bin()).args([
            "history",
            "--json",
            "--no-journal",
            "--since",
            &started.to_string(),
        ]),
        RUN_TIMEOUT,
    );
    assert!(output.status.success(), "{output:?}");
    let past: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    for (id, name) in [(&shared_id, &shared), (&plain_id, &plain)] {
        let report = by_path(&past, id);
        assert_eq!(field(&report, "container.name"), name.as_str(), "{report}");
        assert_eq!(field(&report, "container.id"), id.as_str());
    }
    // --container given before the command filters history by the name Docker gives.
    let output = run_within(
        Command::new(oomtrace_bin()).args([
            "--container",
            &plain,
            "--json",
            "history",
            "--no-journal",
            "--since",
            &started.to_string(),
        ]),
        RUN_TIMEOUT,
    );
    let only: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(field(&only[0], "container.name"), plain.as_str());
    assert_eq!(inspect(&plain).id, plain_id);
    drop(containers);
    drop(cleanup);
}

/// Docker leaves a `--cgroup-parent` directory behind in every hierarchy once its containers
/// are gone; the test removes it.
struct ParentCgroup(String);

impl Drop for ParentCgroup {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let mut dirs = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
        dirs.extend(hierarchies.flatten().map(|e| e.path()));
        for dir in dirs {
            let _ = std::fs::remove_dir(dir.join(self.0.trim_start_matches('/')));
        }
    }
}
