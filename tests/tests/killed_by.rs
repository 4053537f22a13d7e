//! Who ended a container (issue 19), against the real Engine and the kernel's own record of the
//! signal: each way a Docker container dies gets one `container_exit` whose `killed_by` names
//! the sender (the runtime, a host shell, a process in a container), whose
//! `runtime_oom_killed_reason` says what Docker's OOMKilled flag meant that time, and whose
//! human line says the same in words. One watch gives both: the human view on its stdout, the
//! same events as JSON lines through `--output`.
//!
//! Docker's own facts (`docker inspect`) are read beside oomtrace's, so a test that fails says
//! whether Docker or oomtrace changed its story.
//!
//! The image, `oomtrace-busybox:latest`, is built locally by `cargo xtask setup`: no registry.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use oomtrace_tests::{
    CgroupMode, HumanWatch, KillOnDrop, docker::*, field, memory_hierarchy, not_applicable,
    poll_until, serial, wait_timeout,
};
use serde_json::Value;

/// A container's death to its exit line: Docker's `die` event, then one `docker inspect`.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A child process of the test's own that signals a container's main process: it takes
/// milliseconds.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// A hog in a container with the OOM killer disabled reaches its limit within a second.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Between the SIGTERM and the SIGKILL of `docker stop -t 1`, in seconds: Docker waits the
/// whole second after runc sent the SIGTERM, then starts runc again for the SIGKILL, which
/// takes milliseconds on an idle host and may take more on a busy one.
const STOP_GAP: std::ops::Range<f64> = 1.0..5.0;
/// PID 1 of a container that only `docker stop` or a signal ends: as a PID 1 with no handler,
/// busybox `sleep` ignores SIGTERM, so `docker stop` must send SIGKILL past its timeout.
const SLEEPER: [&str; 2] = ["sleep", "1000"];

/// oomtrace's human view, with the same events as JSON lines in a file (`--output`): one watch,
/// both formats of each event.
struct Watch {
    human: HumanWatch,
    json: String,
}

/// What one watch said about one container's exit.
struct Exit {
    /// The human line, from `container NAME exited` on (without the clock).
    line: String,
    /// Its `container_exit` event.
    json: Value,
    /// Every JSON event of the watch.
    events: Vec<Value>,
}

impl Watch {
    fn start(scratch: &Scratch) -> Self {
        let json = scratch.path("events.jsonl");
        Self {
            human: HumanWatch::start(&["--output", &json]),
            json,
        }
    }

    /// Waits for a human line that contains `text`, at most `timeout`.
    fn wait_for_line(&self, text: &str, timeout: Duration) {
        let lines = self
            .human
            .wait_until(timeout, |lines| lines.iter().any(|l| l.contains(text)));
        assert!(
            lines.iter().any(|l| l.contains(text)),
            "no line with {text:?} within {timeout:?}: {lines:#?}"
        );
    }

    /// Waits for the exit line of container `name` (id `id`), stops the watch, and returns the
    /// one exit line and the one `container_exit` event oomtrace wrote about it.
    fn exit_of(self, name: &str, id: &str) -> Exit {
        let exited = format!("  container {name} exited");
        self.wait_for_line(&exited, EXIT_TIMEOUT);
        let (lines, stderr) = self.human.stop();
        let events: Vec<Value> = std::fs::read_to_string(&self.json)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.json))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let ours: Vec<&String> = lines.iter().filter(|l| l.contains(&exited)).collect();
        assert_eq!(ours.len(), 1, "one exit line for {name}: {lines:#?}");
        let (_, line) = ours[0].split_once("  container ").expect("checked above");
        let exits: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"] == "container_exit" && e["container"]["id"] == id)
            .collect();
        assert_eq!(
            exits.len(),
            1,
            "one container_exit for {name}: {events:#?}; stderr {stderr:?}"
        );
        println!("{}", ours[0]);
        println!("{}", exits[0]);
        Exit {
            line: format!("container {line}"),
            json: exits[0].clone(),
            events,
        }
    }
}

/// `docker run -d --network=none ARGS`: the new container's id.
fn run(args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "--network=none"];
    all.extend(args);
    docker(&all)
}

/// Docker's `State.ExitCode` and `State.OOMKilled` of a container that has ended, which the
/// `container_exit` must give as they are.
fn docker_state(name: &str, exit: &Value) -> (i64, bool) {
    let state = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}}",
        name,
    ]);
    let words: Vec<&str> = state.split_whitespace().collect();
    let [running, code, flag] = words[..] else {
        panic!("unexpected docker inspect output for {name}: {state:?}")
    };
    assert_eq!(running, "false", "{name} has ended");
    let code: i64 = code.parse().expect("State.ExitCode");
    let flag = flag == "true";
    assert_eq!(field(exit, "exit_code"), code, "as Docker says: {exit}");
    assert_eq!(
        field(exit, "runtime_oom_killed"),
        flag,
        "as Docker says: {exit}"
    );
    (code, flag)
}

/// Checks `killed_by` is the runtime's SIGKILL, sent by runc on the host (a child of the
/// containerd shim), and returns runc's pid.
fn runtime_sigkill(exit: &Value) -> u64 {
    assert_eq!(field(exit, "killed_by.kind"), "runtime", "{exit}");
    assert_eq!(field(exit, "killed_by.signal"), "SIGKILL", "{exit}");
    assert!(field(exit, "killed_by.time").is_string(), "{exit}");
    assert!(field(exit, "killed_by.oom_id").is_null(), "{exit}");
    assert_eq!(field(exit, "killed_by.sender.comm"), "runc", "{exit}");
    assert_eq!(field(exit, "killed_by.sender.uid"), 0, "{exit}");
    assert_eq!(field(exit, "killed_by.sender.host_process"), true, "{exit}");
    assert!(
        field(exit, "killed_by.sender.container").is_null(),
        "{exit}"
    );
    assert!(
        field(exit, "killed_by.sender.parent.comm")
            .as_str()
            .is_some_and(|comm| comm.starts_with("containerd-shim")),
        "runc runs under the shim: {exit}"
    );
    field(exit, "killed_by.sender.pid")
        .as_u64()
        .expect("sender.pid")
}

/// The container's memory cgroup directory in the v1 hierarchy.
fn memory_dir(id: &str) -> std::path::PathBuf {
    let (_, root) = memory_hierarchy();
    root.join(docker_cgroup(id).trim_start_matches('/'))
}

fn oom_control(dir: &Path) -> String {
    let file = dir.join("memory.oom_control");
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
}

/// `docker stop -t 1` of a PID 1 that ignores SIGTERM: runc sends SIGTERM, which the kernel
/// drops, and a second later SIGKILL. The exit says both, and that this is how docker stop
/// ends a container past its timeout; Docker's flag is false, and so no reason is given.
#[test]
fn docker_stop_past_its_timeout_is_the_runtime_s_sigkill_after_an_ignored_sigterm() {
    let test = "docker_stop_past_its_timeout_is_the_runtime_s_sigkill_after_an_ignored_sigterm";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let scratch = Scratch::create("stop");
    let name = containers.name("stop");
    let watch = Watch::start(&scratch);
    let id = run(&["--name", &name, IMAGE, SLEEPER[0], SLEEPER[1]]);
    docker(&["stop", "-t", "1", &name]);

    let exit = watch.exit_of(&name, &id);
    let json = &exit.json;
    assert_eq!(docker_state(&name, json), (i64::from(KILLED), false));
    let runc = runtime_sigkill(json);
    assert_eq!(field(json, "killed_by.after.signal"), "SIGTERM", "{json}");
    assert_eq!(field(json, "killed_by.after.ignored"), true, "{json}");
    let before = field(json, "killed_by.after.seconds_before")
        .as_f64()
        .expect("seconds_before");
    assert!(STOP_GAP.contains(&before), "{json}");
    assert!(field(json, "runtime_oom_killed_reason").is_null(), "{json}");
    assert_eq!(field(json, "kills"), &Value::Array(vec![]), "{json}");
    assert_eq!(
        exit.line,
        format!(
            "container {name} exited 137 (Docker: OOMKilled=false): SIGKILL from the runtime \
             (runc, pid {runc}) {before:.1} s after its SIGTERM, which PID 1 ignored, as docker \
             stop does when its timeout runs out; 0 restarts so far"
        )
    );
}

/// `docker kill`: the runtime's SIGKILL with nothing before it.
#[test]
fn docker_kill_is_the_runtime_s_sigkill() {
    let test = "docker_kill_is_the_runtime_s_sigkill";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let scratch = Scratch::create("kill");
    let name = containers.name("kill");
    let watch = Watch::start(&scratch);
    let id = run(&["--name", &name, IMAGE, SLEEPER[0], SLEEPER[1]]);
    docker(&["kill", &name]);

    let exit = watch.exit_of(&name, &id);
    let json = &exit.json;
    assert_eq!(docker_state(&name, json), (i64::from(KILLED), false));
    let runc = runtime_sigkill(json);
    assert!(field(json, "killed_by.after").is_null(), "{json}");
    assert!(field(json, "runtime_oom_killed_reason").is_null(), "{json}");
    assert_eq!(
        exit.line,
        format!(
            "container {name} exited 137 (Docker: OOMKilled=false): SIGKILL from the runtime \
             (runc, pid {runc}), as docker kill does; 0 restarts so far"
        )
    );
}

/// `kill -9` of the container's main process from a shell on the host: the sender is that
/// shell, a host process, with the test as its parent; not the runtime.
#[test]
fn kill_9_from_a_host_shell_is_a_process_on_the_host() {
    let test = "kill_9_from_a_host_shell_is_a_process_on_the_host";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let scratch = Scratch::create("kill9");
    let name = containers.name("kill9");
    let watch = Watch::start(&scratch);
    let id = run(&["--name", &name, IMAGE, SLEEPER[0], SLEEPER[1]]);
    let main = inspect(&name).pid;
    assert!(main > 0, "{name} is not running");

    // The kernel names a sender's parent by the thread that forked it: this one.
    let parent_comm = std::fs::read_to_string("/proc/thread-self/comm").expect("own comm");
    let parent_comm = parent_comm.trim_end_matches('\n');
    let mut shell = KillOnDrop(
        Command::new("sh")
            .args(["-c", &format!("kill -9 {main}")])
            .stdin(Stdio::null())
            .spawn()
            .expect("sh starts"),
    );
    let shell_pid = shell.id();
    let status = wait_timeout(&mut shell, KILL_TIMEOUT)
        .unwrap_or_else(|| panic!("sh -c 'kill -9 {main}' outlived {KILL_TIMEOUT:?}"));
    assert!(status.success(), "kill -9 {main}: {status:?}");

    let exit = watch.exit_of(&name, &id);
    let json = &exit.json;
    assert_eq!(docker_state(&name, json), (i64::from(KILLED), false));
    assert_eq!(field(json, "killed_by.kind"), "process", "{json}");
    assert_eq!(field(json, "killed_by.signal"), "SIGKILL", "{json}");
    assert_eq!(field(json, "killed_by.sender.pid"), shell_pid, "{json}");
    assert_eq!(field(json, "killed_by.sender.comm"), "sh", "{json}");
    assert_eq!(field(json, "killed_by.sender.uid"), 0, "{json}");
    assert_eq!(field(json, "killed_by.sender.host_process"), true, "{json}");
    assert!(
        field(json, "killed_by.sender.container").is_null(),
        "{json}"
    );
    assert_eq!(
        field(json, "killed_by.sender.parent.pid"),
        std::process::id(),
        "{json}"
    );
    assert_eq!(
        field(json, "killed_by.sender.parent.comm"),
        parent_comm,
        "{json}"
    );
    assert!(field(json, "killed_by.after").is_null(), "{json}");
    assert!(field(json, "runtime_oom_killed_reason").is_null(), "{json}");
    assert_eq!(
        exit.line,
        format!(
            "container {name} exited 137 (Docker: OOMKilled=false): SIGKILL from sh (pid \
             {shell_pid}, uid 0), a process on the host, child of {parent_comm} (pid {}); 0 \
             restarts so far",
            std::process::id()
        )
    );
}

/// `docker exec C kill -TERM 1`: a process of the container's own ends its main process, which
/// handles SIGTERM and exits 143. The sender is named with the container it runs in.
#[test]
fn a_container_s_own_process_ending_its_main_process_is_named_with_its_container() {
    let test = "a_container_s_own_process_ending_its_main_process_is_named_with_its_container";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let scratch = Scratch::create("term");
    let name = containers.name("term");
    let watch = Watch::start(&scratch);
    // The sleep is PID 1's idle loop (sh runs the trap between commands).
    let main = "trap 'exit 143' TERM; while true; do sleep 1; done";
    let id = run(&["--name", &name, IMAGE, "sh", "-c", main]);
    docker(&["exec", &name, "kill", "-TERM", "1"]);

    let exit = watch.exit_of(&name, &id);
    let json = &exit.json;
    assert_eq!(docker_state(&name, json), (143, false));
    assert_eq!(field(json, "killed_by.kind"), "process", "{json}");
    assert_eq!(field(json, "killed_by.signal"), "SIGTERM", "{json}");
    assert_eq!(field(json, "killed_by.sender.comm"), "kill", "{json}");
    assert_eq!(field(json, "killed_by.sender.uid"), 0, "{json}");
    assert_eq!(
        field(json, "killed_by.sender.host_process"),
        false,
        "{json}"
    );
    assert_eq!(
        field(json, "killed_by.sender.container.id"),
        id.as_str(),
        "{json}"
    );
    assert_eq!(
        field(json, "killed_by.sender.container.name"),
        name.as_str(),
        "{json}"
    );
    assert!(field(json, "killed_by.after").is_null(), "{json}");
    assert!(field(json, "runtime_oom_killed_reason").is_null(), "{json}");
    let sender = field(json, "killed_by.sender.pid").as_u64().expect("pid");
    let parent = match field(json, "killed_by.sender.parent") {
        Value::Null => String::new(),
        parent => format!(
            ", child of {} (pid {})",
            field(parent, "comm").as_str().expect("comm"),
            field(parent, "pid")
        ),
    };
    assert_eq!(
        exit.line,
        format!(
            "container {name} exited 143 (Docker: OOMKilled=false): SIGTERM from kill (pid \
             {sender}, uid 0) in container {name}{parent}; 0 restarts so far"
        )
    );
}

/// A child OOM-killed, the container living on, then `docker kill`: Docker says OOMKilled=true
/// of a container the runtime's SIGKILL ended. The exit says who ended it, that this is not an
/// OOM kill, and which earlier kill Docker's flag is about.
#[test]
fn docker_kill_after_a_child_s_oom_kill_is_not_an_oom_kill_though_docker_says_so() {
    let test = "docker_kill_after_a_child_s_oom_kill_is_not_an_oom_kill_though_docker_says_so";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let scratch = Scratch::create("earlier");
    let name = containers.name("earlier");
    let watch = Watch::start(&scratch);
    let created = SystemTime::now();
    let id = run(&[
        "--memory=32m",
        "--memory-swap=32m",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "sleep 1000 & wait",
    ]);
    let mut exec = vec!["exec", name.as_str()];
    exec.extend(DD);
    let (code, stderr) = docker_code(&exec);
    assert_eq!(code, Some(KILLED), "dd must be OOM-killed: {stderr}");
    watch.wait_for_line(&format!("  {name}  dd (pid "), EXIT_TIMEOUT);
    assert!(inspect(&name).pid > 0, "PID 1 lives on after the kill");
    // Docker sets its flag before it sends its `oom` event: the flag is now what the exit
    // will say, and no race with the kill below decides it.
    let mut oom = Events::watch(&id, "oom", created, EXIT_TIMEOUT);
    assert_eq!(
        oom.next_event().as_deref(),
        Some("oom"),
        "Docker saw no oom"
    );
    drop(oom);
    docker(&["kill", &name]);

    let exit = watch.exit_of(&name, &id);
    let json = &exit.json;
    assert_eq!(docker_state(&name, json), (i64::from(KILLED), true));
    let runc = runtime_sigkill(json);
    assert!(field(json, "killed_by.after").is_null(), "{json}");
    assert_eq!(
        field(json, "runtime_oom_killed_reason"),
        "earlier_oom_kill",
        "{json}"
    );
    let kills: Vec<&Value> = exit
        .events
        .iter()
        .filter(|e| e["event"] == "oom_kill" && about(e, &id))
        .collect();
    assert_eq!(kills.len(), 1, "one kill in {name}: {kills:#?}");
    let kill = kills[0];
    assert_eq!(field(kill, "victim.comm"), "dd");
    assert_eq!(field(kill, "victim.is_container_main"), false, "{kill}");
    assert_eq!(
        field(json, "kills"),
        &Value::Array(vec![field(kill, "oom.id").clone()]),
        "{json}"
    );
    let victim = field(kill, "victim.pid");
    let head = format!(
        "container {name} exited 137 (Docker: OOMKilled=true): SIGKILL from the runtime (runc, \
         pid {runc}), as docker kill does; not an OOM kill, although Docker says \
         OOMKilled=true: dd (pid {victim}) was OOM-killed "
    );
    let tail = " s before and the container lived on; 0 restarts so far";
    let before = exit
        .line
        .strip_prefix(&head)
        .and_then(|rest| rest.strip_suffix(tail))
        .unwrap_or_else(|| panic!("{:?} is not {head:?} N.N{tail:?}", exit.line));
    assert!(
        before.parse::<f64>().is_ok_and(|s| s >= 0.0),
        "{}",
        exit.line
    );
}

/// cgroup v1's `--oom-kill-disable`: a hog stalls at the limit and the kernel kills nothing,
/// yet after `docker stop` (which must still end the stalled container) Docker says
/// OOMKilled=true. The exit says the runtime's SIGKILL ended it and why Docker's flag is set.
#[test]
fn oom_kill_disabled_stall_then_docker_stop_is_not_an_oom_kill_though_docker_says_so() {
    let test = "oom_kill_disabled_stall_then_docker_stop_is_not_an_oom_kill_though_docker_says_so";
    if !docker_ready(test) {
        return;
    }
    if memory_hierarchy().0 != CgroupMode::V1 {
        not_applicable(
            test,
            "--oom-kill-disable is memory.oom_control, which only cgroup v1 has",
        );
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let scratch = Scratch::create("nooomkill");
    let name = containers.name("nooomkill");
    let watch = Watch::start(&scratch);
    let created = SystemTime::now();
    let id = run(&[
        "--memory=32m",
        "--memory-swap=32m",
        "--oom-kill-disable",
        "--name",
        &name,
        IMAGE,
        SLEEPER[0],
        SLEEPER[1],
    ]);
    let dir = memory_dir(&id);
    let mut hog = KillOnDrop(
        Command::new("docker")
            .args(["exec", &name])
            .args(DD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker exec starts"),
    );
    let stalled = poll_until(STALL_TIMEOUT, || {
        oom_control(&dir).contains("under_oom 1") || hog.try_wait().expect("try_wait").is_some()
    });
    let control = oom_control(&dir);
    assert!(
        stalled && control.contains("under_oom 1"),
        "dd did not stall at {name}'s limit within {STALL_TIMEOUT:?} (exec: {:?}): {control}",
        hog.try_wait()
    );
    assert!(
        control.contains("oom_kill_disable 1") && control.contains("oom_kill 0"),
        "the kernel kills nothing: {control}"
    );
    // Docker's eventfd on memory.oom_control fired: what its flag will say.
    let mut oom = Events::watch(&id, "oom", created, EXIT_TIMEOUT);
    assert_eq!(
        oom.next_event().as_deref(),
        Some("oom"),
        "Docker saw no oom"
    );
    drop(oom);

    docker(&["stop", "-t", "1", &name]);
    // The stop ended the stalled hog with its container.
    let hog = wait_timeout(&mut hog, KILL_TIMEOUT)
        .unwrap_or_else(|| panic!("the stalled dd outlived docker stop by {KILL_TIMEOUT:?}"));
    assert_eq!(hog.code(), Some(KILLED), "docker exec of the stalled dd");

    let exit = watch.exit_of(&name, &id);
    let json = &exit.json;
    assert_eq!(docker_state(&name, json), (i64::from(KILLED), true));
    let runc = runtime_sigkill(json);
    assert_eq!(field(json, "killed_by.after.signal"), "SIGTERM", "{json}");
    assert_eq!(field(json, "killed_by.after.ignored"), true, "{json}");
    let before = field(json, "killed_by.after.seconds_before")
        .as_f64()
        .expect("seconds_before");
    assert!(STOP_GAP.contains(&before), "{json}");
    assert_eq!(
        field(json, "runtime_oom_killed_reason"),
        "oom_killer_disabled",
        "{json}"
    );
    assert_eq!(field(json, "kills"), &Value::Array(vec![]), "{json}");
    assert!(
        !exit
            .events
            .iter()
            .any(|e| e["event"] == "oom_kill" && about(e, &id)),
        "nothing was OOM-killed in {name}: {:#?}",
        exit.events
    );
    assert_eq!(
        exit.line,
        format!(
            "container {name} exited 137 (Docker: OOMKilled=true): SIGKILL from the runtime \
             (runc, pid {runc}) {before:.1} s after its SIGTERM, which PID 1 ignored, as docker \
             stop does when its timeout runs out; not an OOM kill, although Docker says \
             OOMKilled=true: the container hit its memory limit with the OOM killer disabled, \
             and nothing was killed; 0 restarts so far"
        )
    );
}

/// A container whose main process exits 0 by itself: an exit line, killed by nobody.
#[test]
fn a_container_that_exits_0_by_itself_was_killed_by_nobody() {
    let test = "a_container_that_exits_0_by_itself_was_killed_by_nobody";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let scratch = Scratch::create("true");
    let name = containers.name("true");
    let watch = Watch::start(&scratch);
    let cidfile = scratch.path("cid");
    docker(&[
        "run",
        "--network=none",
        "--name",
        &name,
        "--cidfile",
        &cidfile,
        IMAGE,
        "true",
    ]);
    let id = cid(&cidfile);

    let exit = watch.exit_of(&name, &id);
    let json = &exit.json;
    assert_eq!(docker_state(&name, json), (0, false));
    assert!(field(json, "killed_by").is_null(), "{json}");
    assert!(field(json, "runtime_oom_killed_reason").is_null(), "{json}");
    assert_eq!(field(json, "kills"), &Value::Array(vec![]), "{json}");
    assert_eq!(
        exit.line,
        format!("container {name} exited 0 (Docker: OOMKilled=false); 0 restarts so far")
    );
}
