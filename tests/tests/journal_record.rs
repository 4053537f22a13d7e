//! The record is right however many watches run: the service's watch and a person's, side by
//! side on one journal, and a `--since` watch replaying the past. Each kill and exit is in the
//! journal once, and `history`, `explain` and the replay count each once and name it as the
//! journal named it. Real kernel, real Docker Engine, the journal in a scratch directory.
//!
//! Every assertion is about the test's own containers: other OOM tests may run on the host at
//! the same time.

use std::time::Duration;

use oomtrace_tests::{
    Tracer,
    docker::*,
    field,
    record::{history_of, journal_in, journal_lines, oomtrace},
    serial, temp_dir,
};
use serde_json::Value;

/// The journal's events of `event` about the container `id`.
fn journaled(lines: &[Value], event: &str, id: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["event"] == event && about(l, id))
        .cloned()
        .collect()
}

/// `history --json ARGS`: its events of `event` about the container `id`.
fn history(args: &[&str], event: &str, id: &str) -> Vec<Value> {
    history_of(args, event, id).0
}

/// Two watches at once on one journal, as the service's and a person's run during an incident;
/// a restart loop of two kills, each of PID 1, and two exits. Each watch reports all four
/// events on its own stdout; the journal, `history` and `explain` hold each once.
#[test]
fn two_watches_on_one_journal_record_each_kill_and_exit_once() {
    let test = "two_watches_on_one_journal_record_each_kill_and_exit_once";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("record-two");
    let dir = temp_dir("record-two", 0o700);
    let (path, journal) = journal_in(&dir);
    let service = Tracer::start(&["--journal", &journal]);
    let person = Tracer::start(&["--journal", &journal]);
    let id = run_restart_loop_of(&name, 1, Duration::from_secs(60));
    for watch in [&service, &person] {
        let kills = watch.wait_for(2, Duration::from_secs(10), |r| about(r, &id));
        assert_eq!(kills.len(), 2, "each watch shows both kills: {kills:#?}");
        let exits = watch.wait_for_exit(2, Duration::from_secs(10), |e| about(e, &id));
        assert_eq!(exits.len(), 2, "each watch shows both exits: {exits:#?}");
    }
    service.stop().assert_success();
    person.stop().assert_success();

    let lines = journal_lines(&path);
    let kills = journaled(&lines, "oom_kill", &id);
    assert_eq!(kills.len(), 2, "each kill once in the journal: {kills:#?}");
    assert_eq!(journaled(&lines, "container_exit", &id).len(), 2);
    for kill in &kills {
        assert_eq!(field(kill, "container.name"), name.as_str(), "{kill}");
        assert!(field(kill, "host.boot_id").is_string(), "{kill}");
        assert_eq!(kill.get("past"), Some(&Value::Bool(false)), "{kill}");
    }

    assert_eq!(history(&["--journal", &journal], "oom_kill", &id).len(), 2);
    assert_eq!(
        history(&["--journal", &journal], "container_exit", &id).len(),
        2
    );
    let told = oomtrace(&["explain", &name, "--journal", &journal]);
    assert_eq!(told.code, Some(0), "stderr: {}", told.stderr);
    told.expect_says(&[
        "What the kernel did: 2 OOM kills",
        "A watch recorded 2 exits",
    ]);
    let json = oomtrace(&["explain", &name, "--journal", &journal, "--json"]).object();
    assert_eq!(json["kills"].as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(json["exits"].as_array().map(Vec::len), Some(2), "{json}");
}

/// Seed 000 with two watches running: PID 1 survives a `docker exec` dd's kill, then
/// `docker stop`: exit 0 with OOMKilled=true, told once and explained after `docker rm`.
#[test]
fn seed_000_with_two_watches_is_explained_once() {
    let test = "seed_000_with_two_watches_is_explained_once";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("record-seed0");
    let dir = temp_dir("record-seed0", 0o700);
    let (path, journal) = journal_in(&dir);
    let id = run_idle(&name, "64m");
    let service = Tracer::start(&["--journal", &journal]);
    let person = Tracer::start(&["--journal", &journal]);
    let mut exec = vec!["exec", name.as_str()];
    exec.extend(DD);
    let (code, stderr) = docker_code(&exec);
    assert_eq!(code, Some(KILLED), "dd must be OOM-killed: {stderr}");
    docker(&["stop", "--time", "10", &name]);
    for watch in [&service, &person] {
        assert_eq!(
            watch
                .wait_for_exit(1, Duration::from_secs(10), |e| about(e, &id))
                .len(),
            1,
            "no container_exit for {name}"
        );
    }
    service.stop().assert_success();
    person.stop().assert_success();
    let lines = journal_lines(&path);
    assert_eq!(journaled(&lines, "oom_kill", &id).len(), 1);
    assert_eq!(journaled(&lines, "container_exit", &id).len(), 1);
    // Removed, so only the journal tells the exit: once, as it holds it.
    docker(&["rm", &name]);

    let told = oomtrace(&["explain", &name, "--journal", &journal]);
    assert_eq!(told.code, Some(0), "stderr: {}", told.stderr);
    // For the record of how it reads: the closing note quotes it.
    eprintln!("{}", told.stdout);
    told.expect_says(&[
        "Docker no longer knows this container: it was removed.",
        "exited 0, OOMKilled=true",
        "What the kernel did: 1 OOM kill",
        "A watch recorded 1 exit",
        "Exit code 0 and OOMKilled=true hold at once",
        "The service itself is not what gets killed",
    ]);
}

/// A watch started with `--since` after earlier kills replays them without writing them back,
/// then journals the new kill alone; a removed container's kill is found by the name the
/// journal kept, by `history` and by the replay, and the summary counts what it showed.
#[test]
fn a_since_watch_journals_only_what_is_new_and_replays_by_journaled_names() {
    let test = "a_since_watch_journals_only_what_is_new_and_replays_by_journaled_names";
    if !docker_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let removed = containers.name("record-rm");
    let later = containers.name("record-later");
    let dir = temp_dir("record-since", 0o700);
    let (path, journal) = journal_in(&dir);

    // The earlier kill, in a container removed at once.
    let first = Tracer::start(&["--journal", &journal]);
    let cidfile = dir.path().join("removed.cid");
    let removed_id = run_rm_hog(&removed, &cidfile.to_string_lossy());
    let seen = first.wait_for(1, Duration::from_secs(10), |r| about(r, &removed_id));
    assert_eq!(seen.len(), 1, "no report for {removed}");
    first
        .wait_for_exit(1, Duration::from_secs(10), |e| about(e, &removed_id))
        .first()
        .unwrap_or_else(|| panic!("no container_exit for {removed}"));
    first.stop().assert_success();
    let before = journal_lines(&path);

    // The watch with --since: the past first, then live.
    let since = Tracer::start(&["--journal", &journal, "--since", "10m"]);
    let replayed = since.wait_for(1, Duration::from_secs(10), |r| about(r, &removed_id));
    assert_eq!(replayed.len(), 1, "the earlier kill, replayed once");
    assert_eq!(field(&replayed[0], "past"), true);
    assert_eq!(field(&replayed[0], "container.name"), removed.as_str());
    assert_eq!(field(&replayed[0], "container.image"), IMAGE);
    let later_id = run_rm_hog(&later, &dir.path().join("later.cid").to_string_lossy());
    let live = since.wait_for(1, Duration::from_secs(10), |r| about(r, &later_id));
    assert_eq!(live.len(), 1, "no report for {later}");
    since
        .wait_for_exit(1, Duration::from_secs(10), |e| about(e, &later_id))
        .first()
        .unwrap_or_else(|| panic!("no container_exit for {later}"));
    since.stop().assert_success();

    let after = journal_lines(&path);
    assert_eq!(after[..before.len()], before[..], "nothing rewritten");
    let added = &after[before.len()..];
    assert!(
        added
            .iter()
            .all(|l| about(l, &later_id) && l["past"] != true),
        "the journal grew by the new kill and its exit only: {added:#?}"
    );
    assert_eq!(journaled(added, "oom_kill", &later_id).len(), 1);

    let kills = history(&["--journal", &journal], "oom_kill", &removed_id);
    assert_eq!(kills.len(), 1, "{kills:#?}");
    assert_eq!(field(&kills[0], "container.name"), removed.as_str());
    assert_eq!(
        history(&["--journal", &journal], "oom_kill", &later_id).len(),
        1
    );

    // By the journaled name of a container Docker no longer knows, without writing.
    let replay = Tracer::start(&[
        "--journal",
        &journal,
        "--no-journal-write",
        "--since",
        "1h",
        "-c",
        &removed,
        "--timeout",
        "2s",
    ]);
    let stopped = replay.wait_exit(Duration::from_secs(20));
    stopped.assert_success();
    let found: Vec<&Value> = stopped
        .reports
        .iter()
        .filter(|r| about(r, &removed_id))
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", stopped.reports);
    assert_eq!(field(found[0], "container.name"), removed.as_str());
    assert!(
        !stopped
            .stderr
            .iter()
            .any(|l| l.contains("matches no container")),
        "{:?}",
        stopped.stderr
    );
    let shown = stopped.reports.len();
    let summary = format!(
        "{shown} OOM kill{} reported ({shown} from before the watch)",
        if shown == 1 { "" } else { "s" }
    );
    assert!(
        stopped.stderr.iter().any(|l| l.contains(&summary)),
        "no `{summary}`: {:?}",
        stopped.stderr
    );
    assert_eq!(
        journal_lines(&path),
        after,
        "--no-journal-write wrote nothing"
    );
}
