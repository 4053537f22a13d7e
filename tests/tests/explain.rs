//! `oomtrace history` and `oomtrace explain` after the fact, with the real Docker Engine and
//! the real kernel: a watch keeps a journal in a scratch directory, the container is removed,
//! and what the two commands say is checked against what Docker and the kernel said at the
//! time. Every assertion is about the test's own container: other OOM tests may run on the
//! host at the same time.
//!
//! Containers run with `--network=none`: they need no network, and a host whose Docker bridge
//! is missing still runs them.

use std::{collections::BTreeSet, path::Path, time::Duration};

use oomtrace_tests::{
    Tracer,
    docker::*,
    field,
    record::{history_of, journal_in, oomtrace},
    serial, temp_dir, wait_out_oom_log_ratelimit,
};
use serde_json::Value;

/// Runs dd 20 times in a row, each OOM-killed (about 1.5 s for all of them, well inside the
/// kernel log's 10-per-5-s limit), then prints how many were killed and exits 0.
const BURST: &str = "n=0; i=0; while [ $i -lt 20 ]; do \
    dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; \
    [ $? -eq 137 ] && n=$((n+1)); i=$((i+1)); done; echo killed $n";

/// The value at a JSON pointer of explain's object, naming the pointer (not the whole object,
/// which holds every kill) when it is not there.
fn at<'a>(object: &'a Value, pointer: &str) -> &'a Value {
    object
        .pointer(pointer)
        .unwrap_or_else(|| panic!("explain's object has no {pointer}"))
}

fn remove_journal(path: &Path) {
    std::fs::remove_file(path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    let _ = std::fs::remove_file(rotated);
}

fn pids(reports: &[Value]) -> BTreeSet<u64> {
    reports
        .iter()
        .map(|r| field(r, "victim.pid").as_u64().expect("victim.pid"))
        .collect()
}

/// More than ten kills in one container within a second or two, so the kernel log names the
/// cgroup of the first ten only; then `docker rm`. `history` must name the container on every
/// kill, each once, with its OOM context, and `explain` must tell them all.
#[test]
fn a_burst_in_a_removed_container_keeps_every_name() {
    let test = "a_burst_in_a_removed_container_keeps_every_name";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("burst");
    let dir = temp_dir("explain-burst", 0o700);
    let (_, journal) = journal_in(&dir);
    let tracer = Tracer::start(&["--journal", &journal]);
    let id = docker(&[
        "run",
        "-d",
        "--network=none",
        "--memory=32m",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        BURST,
    ]);
    assert_eq!(docker(&["wait", &name]), "0", "{name}'s sh must exit 0");
    let logged = docker(&["logs", &name]);
    let killed: usize = logged
        .strip_prefix("killed ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} said {logged:?}"));
    assert!(killed > 10, "only {killed} dd were OOM-killed: not a burst");

    let seen = tracer.wait_for(killed, Duration::from_secs(10), |r| about(r, &id));
    tracer.wait_for_exit(1, Duration::from_secs(10), |e| about(e, &id));
    let stopped = tracer.stop();
    stopped.assert_success();
    assert_eq!(
        seen.len(),
        killed,
        "the watch reported {} of {killed}",
        seen.len()
    );
    docker(&["rm", &name]);

    let (kills, _) = history_of(&["--journal", &journal], "oom_kill", &id);
    assert_eq!(
        pids(&kills),
        pids(&seen),
        "history must list the watch's kills"
    );
    assert_eq!(kills.len(), killed, "each kill exactly once: {kills:#?}");
    let cgroup = docker_cgroup(&id);
    for kill in &kills {
        assert_eq!(field(kill, "container.name"), name.as_str(), "{kill}");
        assert_eq!(field(kill, "container.id"), id.as_str(), "{kill}");
        assert_eq!(field(kill, "victim.comm"), "dd", "{kill}");
        assert_eq!(field(kill, "oom.memcg"), cgroup.as_str(), "{kill}");
        assert_eq!(field(kill, "oom.memcg_limit_bytes"), 32 * MIB, "{kill}");
        let usage = field(kill, "oom.memcg_usage_bytes")
            .as_u64()
            .expect("usage");
        assert!(
            (24 * MIB..=32 * MIB).contains(&usage),
            "usage {usage}: {kill}"
        );
    }

    let explained = oomtrace(&["explain", &name, "--journal", &journal, "--json"]).object();
    assert_eq!(at(&explained, "/docker/state"), "gone");
    assert_eq!(at(&explained, "/container/name"), name.as_str());
    assert_eq!(at(&explained, "/kills").as_array().unwrap().len(), killed);
    assert_eq!(at(&explained, "/exits/0/exit_code"), 0);
    assert_eq!(at(&explained, "/exits/0/runtime_oom_killed"), true);
}

/// Seed 000: PID 1 (sh) survives while a `docker exec` dd is OOM-killed, then `docker stop`:
/// exit code 0 with OOMKilled=true. After `docker rm`, explain says why both hold.
#[test]
fn explain_seed_000_after_the_container_is_gone() {
    let test = "explain_seed_000_after_the_container_is_gone";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("explain-seed0");
    let dir = temp_dir("explain-seed0", 0o700);
    let (_, journal) = journal_in(&dir);
    let id = run_idle(&name, "64m");
    let tracer = Tracer::start(&["--journal", &journal]);
    let mut exec = vec!["exec", name.as_str()];
    exec.extend(DD);
    let (code, stderr) = docker_code(&exec);
    assert_eq!(code, Some(KILLED), "dd must be OOM-killed: {stderr}");
    let seen = tracer.wait_for(1, Duration::from_secs(5), |r| about(r, &id));
    assert_eq!(seen.len(), 1, "no report for {name}");
    let pid = field(&seen[0], "victim.pid").as_u64().expect("victim.pid");
    // explain repeats what the watch recorded: a limit missing here is the watch's, not explain's.
    assert_eq!(
        field(&seen[0], "oom.memcg"),
        docker_cgroup(&id).as_str(),
        "the watch's report must name the limited cgroup: {}",
        seen[0]["oom"]
    );
    docker(&["stop", "--time", "10", &name]);
    let exits = tracer.wait_for_exit(1, Duration::from_secs(10), |e| about(e, &id));
    assert_eq!(exits.len(), 1, "no container_exit for {name}");
    tracer.stop().assert_success();
    docker(&["rm", &name]);

    let told = oomtrace(&["explain", &name, "--journal", &journal]);
    assert_eq!(told.code, Some(0), "stderr: {}", told.stderr);
    told.expect_says(&[
        &format!("{name} (docker container {}", &id[..12]),
        "Docker no longer knows this container: it was removed.",
        "exited 0, OOMKilled=true",
        "What the kernel did: 1 OOM kill",
        &format!("dd (pid {pid}) not the main process, entered from outside (docker exec)"),
        "The container's own memory limit was hit: 64.0 MiB",
        &format!(
            "Exit code 0 and OOMKilled=true hold at once: the OOM killer killed dd (pid {pid}), \
             not the container's main process; the main process (sh) went on and exited 0 by itself."
        ),
        "The service itself is not what gets killed",
    ]);

    let json = oomtrace(&["explain", &name, "--journal", &journal, "--json"]).object();
    assert_eq!(at(&json, "/schema"), 1);
    assert_eq!(at(&json, "/container/id"), id.as_str());
    assert_eq!(at(&json, "/kills/0/victim/pid"), pid);
    assert_eq!(at(&json, "/kills/0/victim/is_container_main"), false);
    assert_eq!(at(&json, "/exits/0/exit_code"), 0);
    assert_eq!(at(&json, "/limit/whose"), "own");
    assert_eq!(at(&json, "/limit/limit_bytes"), 64 * MIB);
    let meaning = at(&json, "/meaning/0").as_str().unwrap_or_default();
    assert!(
        meaning.starts_with("Exit code 0 and OOMKilled=true"),
        "{json}"
    );
}

/// Seed 001: PID 1 is the hog and `--restart=on-failure:3` restarts it three times: four kills,
/// each of PID 1, and explain names each, the restarts and the limit, and advises from the peak.
#[test]
fn explain_a_restart_loop() {
    let test = "explain_a_restart_loop";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("explain-loop");
    let dir = temp_dir("explain-loop", 0o700);
    let (_, journal) = journal_in(&dir);
    let tracer = Tracer::start(&["--journal", &journal]);
    let id = run_restart_loop(&name, Duration::from_secs(60));
    let seen = tracer.wait_for(4, Duration::from_secs(10), |r| about(r, &id));
    assert_eq!(seen.len(), 4, "one kill per run: {seen:#?}");
    tracer.wait_for_exit(4, Duration::from_secs(10), |e| about(e, &id));
    tracer.stop().assert_success();

    let told = oomtrace(&["explain", &name, "--journal", &journal]);
    assert_eq!(told.code, Some(0), "stderr: {}", told.stderr);
    let mut parts = vec![
        "Exited 137, OOMKilled=true.".to_owned(),
        // Docker's own state: not restarting, with every retry of on-failure:3 made.
        "Docker stopped restarting it: on-failure:3 used all 3 retries.".into(),
        "Memory limit 32.0 MiB.".into(),
        "What the kernel did: 4 OOM kills".into(),
        "The container's own memory limit was hit: 32.0 MiB".into(),
        "The OOM killer killed the container's main process, its PID 1: dd (4 kills).".into(),
        "Docker restarted the container 3 times, then stopped restarting it: on-failure:3 used all 3 retries".into(),
        "Raise the memory limit above the peak seen (peak usage".into(),
    ];
    for pid in pids(&seen) {
        parts.push(format!("dd (pid {pid}) PID 1, the main process"));
    }
    told.expect_says(&parts.iter().map(String::as_str).collect::<Vec<_>>());

    let json = oomtrace(&["explain", &id[..12], "--journal", &journal, "--json"]).object();
    assert_eq!(at(&json, "/container/name"), name.as_str());
    assert_eq!(at(&json, "/kills").as_array().unwrap().len(), 4);
    assert_eq!(at(&json, "/docker/state"), "present");
    assert_eq!(at(&json, "/docker/restart_count"), 3);
    assert_eq!(at(&json, "/docker/restart_policy"), "on-failure");
    assert_eq!(at(&json, "/docker/restart_max_retries"), 3);
    assert_eq!(at(&json, "/docker/exit_code"), KILLED);
    assert_eq!(at(&json, "/limit/limit_bytes"), 32 * MIB);
    let peak = at(&json, "/limit/peak_usage_bytes")
        .as_u64()
        .expect("a peak");
    assert!((24 * MIB..=32 * MIB).contains(&peak), "peak {peak}");
}

/// The journal deleted after the incident: history and explain fall back to the kernel log,
/// and say what they therefore lack.
#[test]
fn without_the_journal_the_kernel_log_tells_what_it_can() {
    let test = "without_the_journal_the_kernel_log_tells_what_it_can";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("explain-nojournal");
    let dir = temp_dir("explain-nojournal", 0o700);
    let (path, journal) = journal_in(&dir);
    let tracer = Tracer::start(&["--journal", &journal]);
    // The kernel log must print this kill's cgroup: its rate limit may still be spent.
    wait_out_oom_log_ratelimit();
    let mut args = vec![
        "run",
        "--network=none",
        "--memory=32m",
        "--name",
        &name,
        IMAGE,
    ];
    args.extend(DD);
    let (code, stderr) = docker_code(&args);
    assert_eq!(code, Some(KILLED), "dd must be OOM-killed: {stderr}");
    let id = inspect(&name).id;
    let seen = tracer.wait_for(1, Duration::from_secs(5), |r| about(r, &id));
    let pid = field(&seen[0], "victim.pid").as_u64().expect("victim.pid");
    tracer.wait_for_exit(1, Duration::from_secs(10), |e| about(e, &id));
    tracer.stop().assert_success();
    remove_journal(&path);

    let (kills, ran) = history_of(&["--journal", &journal], "oom_kill", &id);
    assert_eq!(pids(&kills), BTreeSet::from([pid]), "{}", ran.stdout);
    assert!(
        ran.stderr
            .contains(&format!("there is no journal at {journal}")),
        "history must say the journal is missing: {}",
        ran.stderr
    );

    // Docker still knows it: its facts, the kill from the log, and what is missing. Docker
    // does not set OOMKilled for every OOM kill (it missed 17 of 100 in the soak): explain
    // repeats what Docker says, whichever it is.
    let docker_says = docker(&["inspect", "-f", "{{.State.OOMKilled}}", &name]);
    let told = oomtrace(&["explain", &name, "--journal", &journal]);
    assert_eq!(told.code, Some(0), "stderr: {}", told.stderr);
    told.expect_says(&[
        &format!("Exited 137, OOMKilled={docker_says}."),
        &format!("dd (pid {pid}) main process or not: unknown"),
        "The container's own memory limit was hit: 32.0 MiB",
        "What oomtrace cannot know here",
        &format!("There is no journal at {journal}"),
        "Without the journal, how each earlier run ended (exit code, OOMKilled) is not known",
        "Keep oomtrace watching",
    ]);

    // Removed: the log knows it by id only.
    docker(&["rm", &name]);
    let told = oomtrace(&["explain", &id[..12], "--journal", &journal]);
    assert_eq!(told.code, Some(0), "stderr: {}", told.stderr);
    told.expect_says(&[
        &format!("docker container {} (name not known", &id[..12]),
        "Docker no longer knows this container: it was removed.",
        &format!("dd (pid {pid})"),
        "Without the journal",
    ]);
    let by_name = oomtrace(&["explain", &name, "--journal", &journal]);
    assert_eq!(by_name.code, Some(1), "{}", by_name.stdout);
    assert_eq!(by_name.stdout, "");
    assert_eq!(by_name.stderr.lines().count(), 1, "{}", by_name.stderr);
    assert!(
        by_name
            .stderr
            .contains("the kernel log knows containers by id only"),
        "{}",
        by_name.stderr
    );
}

/// A container never OOM-killed: said so, exit 0, and `--json` one object. A name that
/// matches nothing: one sentence, exit 1. No name at all: a usage error, exit 2.
#[test]
fn explain_a_container_never_killed_and_one_that_does_not_exist() {
    let test = "explain_a_container_never_killed_and_one_that_does_not_exist";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("explain-calm");
    let dir = temp_dir("explain-calm", 0o700);
    let (_, journal) = journal_in(&dir);
    run_idle(&name, "64m");

    let told = oomtrace(&["explain", &name, "--journal", &journal]);
    assert_eq!(told.code, Some(0), "stderr: {}", told.stderr);
    told.expect_says(&[
        "Running, main process sh",
        "OOMKilled=false for this run.",
        "Memory limit 64.0 MiB.",
        "What the kernel did: no OOM kill of this container is recorded",
        "This container was never OOM-killed as far back as the kernel log goes",
    ]);
    let json = oomtrace(&["explain", &name, "--journal", &journal, "--json"]).object();
    assert_eq!(at(&json, "/kills"), &Value::Array(Vec::new()));
    assert_eq!(at(&json, "/docker/state"), "present");
    assert_eq!(at(&json, "/docker/running"), true);
    assert!(at(&json, "/limit").is_null());

    let missing = format!("{name}-nosuch");
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["explain", missing.as_str(), "--journal", &journal];
        args.extend(extra);
        let ran = oomtrace(&args);
        assert_eq!(ran.code, Some(1), "{extra:?}: {}", ran.stdout);
        assert_eq!(ran.stdout, "", "{extra:?}");
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one sentence: {}", ran.stderr);
        assert!(
            lines[0].starts_with(&format!("oomtrace: no container named \"{missing}\"")),
            "{}",
            lines[0]
        );
    }
    let ran = oomtrace(&["explain", "/", "--no-journal"]);
    assert_eq!(
        (ran.code, ran.stderr.lines().count()),
        (Some(2), 1),
        "{}",
        ran.stderr
    );
}
