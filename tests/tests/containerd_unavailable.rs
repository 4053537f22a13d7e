//! containerd down, or hung, under a running watch on a Kubernetes-shaped node: every kill is
//! still reported at once, with what the cgroup path says (the id, the pod's uid and QoS class)
//! and without names; why is said once; and once containerd answers again, kills are named
//! again. `check` says whether containerd answers.

use std::{
    os::unix::net::{UnixListener, UnixStream},
    path::PathBuf,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use oomtrace_tests::{
    Containerd, Pod, Qos, TempDir, Tracer, containerd_ready,
    docker::{DD_SH, IDLE_MAIN, KILLED, about, reports_about},
    kubernetes::{assert_kubelet_shape, assert_named_by_containerd, assert_unnamed},
    oomtrace_bin, run_within, serial, temp_dir,
};

/// 32 MiB: dd's 200 MiB cannot fit in it.
const LIMIT: u64 = 32 << 20;
/// What "at once" means for a report whose container cannot be named: a kill is reported
/// within milliseconds, and no wait on containerd may hold it back.
const AT_ONCE: Duration = Duration::from_secs(1);
/// A report follows its kill within milliseconds; this only bounds a bug.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// oomtrace says why containerd cannot be asked when it finds out, at the latest at the kill.
const WARNING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after containerd is back oomtrace may take to ask it again: kills are made until
/// one is named, within this.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// `check` asks containerd with a timeout of its own; a check that hangs on a silent socket
/// fails here.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// A unix socket that accepts every connection and never reads from it nor writes to it: a
/// containerd hung with its socket open, which only a client's own timeout gets past.
struct SilentSocket {
    _dir: TempDir,
    path: PathBuf,
    /// Every connection accepted, held open unread.
    held: Arc<Mutex<Vec<UnixStream>>>,
    closing: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl SilentSocket {
    fn bind() -> Self {
        let dir = temp_dir("silent", 0o700);
        let path = dir.path().join("containerd.sock");
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let closing = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (held, closing) = (Arc::clone(&held), Arc::clone(&closing));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if closing.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        held.lock().expect("held").push(stream);
                    }
                }
            })
        };
        Self {
            _dir: dir,
            path,
            held,
            closing,
            acceptor: Some(acceptor),
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 path")
    }

    /// How many connections it accepted: whether oomtrace tried it at all.
    fn connections(&self) -> usize {
        self.held.lock().expect("held").len()
    }
}

impl Drop for SilentSocket {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        // One more connection wakes the accept, which then sees it is closing.
        let _ = UnixStream::connect(&self.path);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The stderr lines that speak of containerd.
fn containerd_lines(stderr: &[String]) -> Vec<&String> {
    stderr.iter().filter(|l| l.contains("containerd")).collect()
}

/// containerd stopped while oomtrace watches: a kill in a running pod is reported at once,
/// unnamed or named as containerd said before it stopped, and why is said once; started again on the same socket, root and state, with the
/// task still running, containerd is asked again, and kills in the same container are named
/// again. The kills are sent through FIFOs: `ctr task exec` needs containerd.
#[test]
fn containerd_stopped_and_restarted_under_a_running_watch() {
    let test = "containerd_stopped_and_restarted_under_a_running_watch";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let pod = Pod::build(Qos::Burstable, "restarts", "worker").create(&containerd);
    let mut worker = pod.run_commanded("worker", Some(LIMIT));
    let task = worker.task.clone();
    let tracer = Tracer::start(&["--containerd-socket", containerd.socket()]);
    let ours = |r: &serde_json::Value| about(r, &task.id);

    containerd.stop();
    assert_eq!(worker.run(DD_SH), KILLED, "dd is OOM-killed");
    let killed = Instant::now();
    let during = tracer.wait_for(1, REPORT_TIMEOUT, ours);
    let latency = killed.elapsed();
    assert_eq!(during.len(), 1, "no report while containerd is down");
    assert!(latency < AT_ONCE, "reported {latency:?} after the kill");
    // Right or null: what containerd said before it stopped (if oomtrace had listed the task
    // by then) is still true of this container; otherwise the path's facts alone.
    if during[0]["container"]["runtime"] == "containerd" {
        assert_named_by_containerd(&during[0], &pod, &task, "worker", LIMIT, 1);
    } else {
        assert_unnamed(&during[0], &pod, &task);
    }
    tracer.wait_for_stderr("containerd", WARNING_TIMEOUT);
    let said_while_down = tracer.stderr_so_far();

    containerd.restart();
    let back = Instant::now();
    // oomtrace finds containerd back on its own schedule, which gives the test no sign: kills
    // are made until one is named, within RECONNECT_TIMEOUT.
    let mut kills = 1;
    let last = loop {
        assert_eq!(worker.run(DD_SH), KILLED, "dd is OOM-killed");
        kills += 1;
        let reports = tracer.wait_for(kills, REPORT_TIMEOUT, ours);
        assert_eq!(
            reports.len(),
            kills,
            "a kill after the restart: {reports:#?}"
        );
        let last = reports.last().expect("a report").clone();
        assert_kubelet_shape(&last, &pod, &task);
        if !last["container"]["name"].is_null() || back.elapsed() >= RECONNECT_TIMEOUT {
            break last;
        }
    };
    let stopped = tracer.stop();
    stopped.assert_success();

    assert_eq!(
        containerd_lines(&said_while_down).len(),
        1,
        "why containerd cannot be asked, said once: {said_while_down:?}"
    );
    assert_named_by_containerd(&last, &pod, &task, "worker", LIMIT, 1);
}

/// A containerd socket that accepts and never answers: two kills, each reported at once without
/// names, the reason said once for both.
#[test]
fn a_containerd_that_never_answers_holds_no_report_back() {
    let test = "a_containerd_that_never_answers_holds_no_report_back";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let silent = SilentSocket::bind();
    let containerd = Containerd::start();
    let pod = Pod::build(Qos::Guaranteed, "hung", "api")
        .memory_limit(2 * LIMIT)
        .create(&containerd);
    let task = pod.run_container("api", Some(LIMIT), IDLE_MAIN);
    let tracer = Tracer::start(&["--containerd-socket", silent.path()]);
    for kill in 1..=2 {
        assert_eq!(
            pod.exec(&task, DD_SH).code(),
            Some(KILLED),
            "dd is OOM-killed"
        );
        let killed = Instant::now();
        let reports = tracer.wait_for(kill, REPORT_TIMEOUT, |r| about(r, &task.id));
        let latency = killed.elapsed();
        assert_eq!(
            reports.len(),
            kill,
            "kill {kill} went unreported: {reports:#?}"
        );
        assert!(
            latency < AT_ONCE,
            "kill {kill} reported {latency:?} after it"
        );
    }
    tracer.wait_for_stderr("containerd", WARNING_TIMEOUT);
    let stopped = tracer.stop();
    stopped.assert_success();
    let ours = reports_about(&stopped.reports, &task.id);
    assert_eq!(ours.len(), 2, "{ours:#?}");
    for report in ours {
        assert_unnamed(report, &pod, &task);
    }

    assert!(
        silent.connections() > 0,
        "oomtrace never tried {}",
        silent.path()
    );
    let said = containerd_lines(&stopped.stderr);
    assert_eq!(said.len(), 1, "said once: {:?}", stopped.stderr);
}

/// `oomtrace check ARGS`: exit code and stdout, within [`CHECK_TIMEOUT`].
fn check(args: &[&str]) -> (Option<i32>, String) {
    let output = run_within(
        Command::new(oomtrace_bin()).arg("check").args(args),
        CHECK_TIMEOUT,
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `check --containerd-socket`: containerd answers, with its version; a socket that never
/// answers is said so, and does not hang the check.
#[test]
fn check_says_whether_containerd_answers() {
    let test = "check_says_whether_containerd_answers";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let version = containerd.version();
    let (code, out) = check(&["--containerd-socket", containerd.socket()]);
    assert_eq!(code, Some(0), "{out}");
    let answers = out.lines().find(|l| l.contains("containerd"));
    assert!(
        answers.is_some_and(|l| l.contains(&version)),
        "containerd {version} answers, in {out}"
    );

    let silent = SilentSocket::bind();
    let (code, out) = check(&["--containerd-socket", silent.path()]);
    assert_eq!(code, Some(0), "{out}");
    let why_not = out.lines().find(|l| l.contains("containerd"));
    assert!(
        why_not.is_some_and(|l| !l.contains(&version)),
        "containerd does not answer, in {out}"
    );
}

/// How long a containerd call may go unanswered before oomtrace counts containerd as away
/// (`CALL_WAIT` in oomtrace's containerd module), and a margin past it.
const PAST_CALL_WAIT: Duration = Duration::from_secs(8);

/// A containerd with nothing happening sends no event, and its event stream's answer comes with
/// the first one: a watch that waited for it would take a quiet containerd for an absent one,
/// say so, and reconnect every few seconds. Found by the bench: steady RSS doubled by the
/// reconnections. Past the time a call may take, nothing is said, and the first container
/// created after that quiet spell is named.
#[test]
fn a_quiet_containerd_is_not_taken_for_an_absent_one() {
    let test = "a_quiet_containerd_is_not_taken_for_an_absent_one";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let tracer = Tracer::start(&["--containerd-socket", containerd.socket()]);
    // The property is an absence over a span of time: the wait is the span, not a sync.
    let quiet = tracer.wait_for_stderr("containerd", PAST_CALL_WAIT);
    assert!(
        containerd_lines(&quiet).is_empty(),
        "a quiet containerd was taken for an absent one: {quiet:?}"
    );
    let pod = Pod::build(Qos::Burstable, "quiet", "late").create(&containerd);
    let task = pod.run_container("late", Some(LIMIT), &format!("exec {DD_SH}"));
    let reports = tracer.wait_for(1, REPORT_TIMEOUT, |r| about(r, &task.id));
    let stopped = tracer.stop();
    stopped.assert_success();
    assert_eq!(reports.len(), 1, "{:#?}", stopped.reports);
    assert_named_by_containerd(&reports[0], &pod, &task, "late", LIMIT, 1);
    assert!(
        containerd_lines(&stopped.stderr).is_empty(),
        "{:?}",
        stopped.stderr
    );
}
