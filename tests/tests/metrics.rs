//! `--metrics-addr` end to end: real kills in a real container, scraped over plain HTTP, and
//! the series surviving the container's restart and recreation; the kills seen held against
//! the kernel's count, filtered or not; oomtrace's own protection from the OOM killer; an
//! address that cannot be served.
//!
//! Other test binaries may OOM-kill at the same time: only this test's containers' series are
//! checked for values, and the node-wide counts only against each other.

use std::{
    net::{SocketAddr, TcpListener},
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use oomtrace_tests::{
    Hog, MemCgroup, Sample, Tracer,
    docker::{
        Containers, DD, IMAGE, KILLED, about, docker, docker_code, docker_ready, inspect, run_idle,
    },
    hog_bin, http_get, metrics_addr, oomtrace_bin, privileged, run_within, samples, serial,
    spawn_ready,
};

/// A kill is reported well within this once `docker exec` has returned.
const REPORT_WAIT: Duration = Duration::from_secs(10);
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const WARNING: &str = "oomtrace: cannot set its own oom_score_adj to -1000";

/// The `oomtrace_oom_kills_total` series of the container named `name`.
fn kills_of(exposition: &str, name: &str) -> Vec<Sample> {
    samples(exposition, "oomtrace_oom_kills_total")
        .into_iter()
        .filter(|s| s.labels["container"] == name)
        .collect()
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The node-wide counts of one scrape: the kernel's, and the kills oomtrace saw by kind.
#[derive(Clone, Copy, Debug, Default)]
struct NodeCounts {
    kernel: f64,
    killed: f64,
    marked: f64,
    unknown: f64,
    group_victims: f64,
}

impl NodeCounts {
    fn of(exposition: &str) -> Self {
        let one = |name: &str| {
            let found = samples(exposition, name);
            assert_eq!(found.len(), 1, "one {name}: {exposition}");
            found[0].value
        };
        let seen = samples(exposition, "oomtrace_oom_kills_seen_total");
        let kind = |kind: &str| {
            let found: Vec<&Sample> = seen.iter().filter(|s| s.labels["kind"] == kind).collect();
            assert_eq!(
                found.len(),
                1,
                "one seen count of kind {kind}: {exposition}"
            );
            found[0].value
        };
        Self {
            kernel: one("oomtrace_kernel_oom_kills_total"),
            killed: kind("killed"),
            marked: kind("marked"),
            unknown: kind("unknown"),
            group_victims: one("oomtrace_oom_group_victims_seen_total"),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            kernel: self.kernel - before.kernel,
            killed: self.killed - before.killed,
            marked: self.marked - before.marked,
            unknown: self.unknown - before.unknown,
            group_victims: self.group_victims - before.group_victims,
        }
    }

    /// What the missed-kills rule of deploy/prometheus-rules.yaml holds a healthy node to: the
    /// kernel counted at least the kills seen, and at most those that may be counted twice
    /// more. Kills the kernel counts before the tracer is told fall outside for a moment.
    fn agree(self) -> bool {
        self.kernel >= self.killed && self.kernel <= self.killed + self.unknown + self.group_victims
    }
}

/// Scrapes until the counts since `before` show at least `kills` kills seen and agree with the
/// kernel's, or fails the test after [`REPORT_WAIT`].
fn wait_for_agreement(addr: SocketAddr, before: NodeCounts, kills: f64) -> NodeCounts {
    let deadline = Instant::now() + REPORT_WAIT;
    loop {
        let counts = NodeCounts::of(&scrape(addr)).since(before);
        if counts.killed >= kills && counts.agree() {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "after {REPORT_WAIT:?}, the counts since the first scrape, {counts:?}, show fewer than {kills} kills seen or disagree with the kernel's"
        );
        // A scrape costs microseconds; this only paces them.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `dd` run in the container `name`, OOM-killed there, and oomtrace's report of it seen.
fn kill_in(tracer: &Tracer, name: &str, id: &str, reports_so_far: usize) {
    let mut exec = vec!["exec", name];
    exec.extend(DD);
    let (code, stderr) = docker_code(&exec);
    assert_eq!(
        code,
        Some(KILLED),
        "dd in {name} must be OOM-killed: {stderr}"
    );
    let seen = tracer.wait_for(reports_so_far + 1, REPORT_WAIT, |r| about(r, id));
    assert_eq!(
        seen.len(),
        reports_so_far + 1,
        "no report of the kill in {name}"
    );
}

/// cAdvisor's OOM counter starts over when a container is recreated (cadvisor#3015).
/// oomtrace's is labelled by name, so one series counts every kill of the workload: before a
/// restart, after it, and in a new container of the same name.
#[test]
fn a_restarted_or_recreated_container_keeps_its_series() {
    let test = "a_restarted_or_recreated_container_keeps_its_series";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("metrics");
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let tracer = Tracer::start(&["--metrics-addr", "127.0.0.1:0"]);
    let addr = metrics_addr(&tracer.stderr_so_far());

    let version = run_within(Command::new(oomtrace_bin()).arg("--version"), RUN_TIMEOUT);
    let version = String::from_utf8_lossy(&version.stdout);
    let version = version.trim().strip_prefix("oomtrace ").expect("a version");
    let body = scrape(addr);
    let build = samples(&body, "oomtrace_build_info");
    assert_eq!(build.len(), 1, "{body}");
    assert_eq!(build[0].labels["version"], version);
    assert_eq!(build[0].value, 1.0);
    let dropped = samples(&body, "oomtrace_events_dropped_total");
    for reason in ["ring_buffer_full", "unreadable", "not_written_stdout"] {
        assert!(
            dropped.iter().any(|s| s.labels["reason"] == reason),
            "no drop count for {reason}: {body}"
        );
    }
    assert!(kills_of(&body, &name).is_empty(), "{body}");
    let before = NodeCounts::of(&body);

    let first = run_idle(&name, "64m");
    kill_in(&tracer, &name, &first, 0);
    let body = scrape(addr);
    let series = kills_of(&body, &name);
    assert_eq!(series.len(), 1, "{body}");
    let labels = &series[0].labels;
    assert_eq!(series[0].value, 1.0, "{body}");
    assert_eq!(labels["scope"], "container");
    assert_eq!(labels["image"], IMAGE);
    assert_eq!(labels["kind"], "killed");
    for unset in ["compose_project", "k8s_namespace", "k8s_pod"] {
        assert_eq!(labels[unset], "", "{unset}");
    }

    // The same container, run again.
    docker(&["restart", "--time", "10", &name]);
    assert_eq!(inspect(&name).id, first);
    kill_in(&tracer, &name, &first, 1);
    let series = kills_of(&scrape(addr), &name);
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].value, 2.0, "{series:?}");

    // A new container of the same name: a new id, the same workload.
    docker(&["rm", "-f", &name]);
    let second = run_idle(&name, "64m");
    assert_ne!(second, first);
    kill_in(&tracer, &name, &second, 0);
    let body = scrape(addr);
    let series = kills_of(&body, &name);
    assert_eq!(series.len(), 1, "one series for {name}: {series:?}");
    assert_eq!(series[0].value, 3.0, "{series:?}");
    for id in [&first, &second] {
        assert!(
            !body.contains(&id[..12]),
            "a container id in the labels: {body}"
        );
    }
    let last: Vec<Sample> = samples(&body, "oomtrace_last_oom_kill_timestamp_seconds")
        .into_iter()
        .filter(|s| s.labels["container"] == name)
        .collect();
    assert_eq!(last.len(), 1, "{body}");
    assert!(
        last[0].value >= started,
        "the last kill at {} is before the test started at {started}",
        last[0].value
    );
    let kernel = samples(&body, "oomtrace_kernel_oom_kills_total");
    assert!(
        kernel.len() == 1 && kernel[0].value >= 3.0,
        "the kernel counted at least these 3 kills: {kernel:?}"
    );
    wait_for_agreement(addr, before, 3.0);

    let stopped = tracer.stop();
    stopped.assert_success();
}

/// A kill `--comm` hides is not shown, so it is counted against no workload; but it is seen,
/// and the kernel's count agrees with the kills seen, which is what tells a kill the filters
/// hid from one the tracer missed.
#[test]
fn a_kill_the_filters_hide_is_seen_all_the_same() {
    let test = "a_kill_the_filters_hide_is_seen_all_the_same";
    if !privileged(test) {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("metrics-hidden", 32);
    let tracer = Tracer::start(&[
        "--metrics-addr",
        "127.0.0.1:0",
        "--comm",
        "oomtrace-e2e-nobody",
    ]);
    let addr = metrics_addr(&tracer.stderr_so_far());
    let before = NodeCounts::of(&scrape(addr));

    let mut hog = Hog::spawn(&hog_bin(env!("CARGO_BIN_EXE_hog")), &cgroup, 500, &[]);
    hog.expect_oom_killed();
    let seen = wait_for_agreement(addr, before, 1.0);
    // On cgroup v1 no kill can be counted twice.
    if cgroup.mode == oomtrace_tests::CgroupMode::V1 {
        assert_eq!(seen.group_victims, 0.0, "{seen:?}");
    }
    let body = scrape(addr);
    assert!(
        samples(&body, "oomtrace_oom_kills_total").is_empty(),
        "every kill is hidden, so none is shown: {body}"
    );

    let stopped = tracer.stop();
    stopped.assert_success();
    assert!(stopped.reports.is_empty(), "{:?}", stopped.reports);
    assert!(
        stopped
            .stderr
            .iter()
            .any(|l| l.starts_with("oomtrace: 0 OOM kills reported, ")
                && !l.contains(", 0 filtered out")),
        "the hog's kill is counted as filtered out: {:?}",
        stopped.stderr
    );
}

/// oomtrace started with oom_score_adj 321 (by a shell that then execs it) and without
/// CAP_SYS_RESOURCE, whatever the test runs with, with `flags`: its oom_score_adj once ready,
/// and its stderr so far. Also checks that the metrics endpoint serves nothing but /metrics.
fn score_after_start_without_cap_sys_resource(flags: &[&str]) -> (i32, Vec<String>) {
    // Raising one's own oom_score_adj needs no capability; lowering it below where it was
    // set needs CAP_SYS_RESOURCE, which setpriv takes away before the exec.
    let mut command = Command::new("setpriv");
    command
        .args([
            "--bounding-set=-sys_resource",
            "--inh-caps=-sys_resource",
            "sh",
            "-c",
            "echo 321 > /proc/self/oom_score_adj && exec \"$0\" \"$@\"",
        ])
        .arg(oomtrace_bin())
        .args([
            "--json",
            "--no-journal",
            "--no-enrich",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(flags);
    let (child, stderr) = spawn_ready(command);
    let file = format!("/proc/{}/oom_score_adj", child.id());
    let score = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    let lines = stderr.snapshot();
    let addr = metrics_addr(&lines);
    assert_eq!(http_get(addr, "/").0, 404);
    assert_eq!(http_get(addr, "/metrics").0, 200);
    drop(child);
    (score.trim().parse().expect("a score"), lines)
}

/// Without the capability to lower its oom_score_adj, oomtrace says so in one line and
/// watches on; `--no-oom-protect` does not try. The -1000 itself is checked where root holds
/// CAP_SYS_RESOURCE: `the_tracer_protects_itself_from_the_oom_killer_unless_told_not_to` in
/// the kernel matrix's guests.
#[test]
fn without_cap_sys_resource_the_tracer_warns_once_and_watches_on() {
    let test = "without_cap_sys_resource_the_tracer_warns_once_and_watches_on";
    if !privileged(test) {
        return;
    }
    let _serial = serial();
    let (score, stderr) = score_after_start_without_cap_sys_resource(&["--no-oom-protect"]);
    assert_eq!(score, 321, "--no-oom-protect leaves it alone");
    assert!(
        !stderr.iter().any(|l| l.contains("oom_score_adj")),
        "{stderr:?}"
    );

    let (score, stderr) = score_after_start_without_cap_sys_resource(&[]);
    // The failure is one line, and the watch goes on: it became ready.
    assert_eq!(score, 321, "{stderr:?}");
    let warnings: Vec<&String> = stderr.iter().filter(|l| l.starts_with(WARNING)).collect();
    assert_eq!(warnings.len(), 1, "{stderr:?}");
}

/// An address that cannot be served ends oomtrace before it traces: one sentence, exit 1.
#[test]
fn an_address_in_use_is_refused_before_tracing() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("its address").to_string();
    let output = run_within(
        Command::new(oomtrace_bin()).args(["--no-journal", "--no-enrich", "--metrics-addr", &addr]),
        RUN_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("oomtrace: cannot serve metrics at {addr}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("watching"), "{stderr}");
}

/// 300 clients that connect and send half a request, from anywhere the port is reachable,
/// cannot keep Prometheus out: a scrape beside them is answered whole within a second.
#[test]
fn slow_clients_cannot_keep_a_scrape_out() {
    use std::io::Write as _;
    const SLOW_CLIENTS: usize = 300;
    let test = "slow_clients_cannot_keep_a_scrape_out";
    if !privileged(test) {
        return;
    }
    let tracer = Tracer::start(&["--metrics-addr", "127.0.0.1:0"]);
    let addr = metrics_addr(&tracer.stderr_so_far());
    let slow: Vec<std::net::TcpStream> = (0..SLOW_CLIENTS)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect_timeout(&addr, RUN_TIMEOUT)
                .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: ")
                .expect("half a request");
            stream
        })
        .collect();
    let started = std::time::Instant::now();
    let (status, body) = http_get(addr, "/metrics");
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(samples(&body, "oomtrace_build_info").len(), 1, "{body}");
    assert!(
        took < Duration::from_secs(1),
        "a scrape beside {SLOW_CLIENTS} slow clients took {took:?}"
    );
    drop(slow);
    tracer.stop().assert_success();
}
