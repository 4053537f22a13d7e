//! The README is the JSON contract's reference: every field the code writes is in its table,
//! and its examples are lines the code would write, with no field missing or made up.

use std::collections::BTreeSet;

use serde_json::Value;

use oomtrace_core::report::{
    Container, ContainerExit, KillSummary, MemcgStat, OomContext, Pod, Report, TopTask,
};

const README: &str = include_str!("../../README.md");

/// Objects the table documents whole, with their keys in one cell.
const DOCUMENTED_WHOLE: [&str; 4] = [
    "container.labels",
    "container.pod",
    "oom.memcg_stat",
    "oom.top_tasks",
];

/// A report with every object present, so every key is written.
fn full_report() -> Report {
    let mut report = oomtrace_core::testing::report();
    report.container = Some(Container {
        runtime: "docker",
        id: "4f2c".repeat(16),
        name: Some("web".into()),
        labels: Some([("com.docker.compose.project".to_owned(), "shop".to_owned())].into()),
        pod: Some(Pod {
            uid: "b67e5888-667c-48fb-824e-7c2b4da2cb28".into(),
            namespace: Some("default".into()),
            name: Some("web-0".into()),
            qos: Some("burstable"),
        }),
        ..Container::default()
    });
    // Names that are not UTF-8, so that their `_hex` fields are written too.
    let not_utf8 = || Some(b"d\xffd".to_vec());
    report.victim.comm_bytes = not_utf8();
    report.victim.thread_comm_bytes = not_utf8();
    report.trigger.comm_bytes = not_utf8();
    report.cgroup.path_bytes = not_utf8();
    report.oom = Some(OomContext {
        memcg_bytes: not_utf8(),
        memcg_stat: Some(MemcgStat::default()),
        top_tasks: Some(vec![TopTask {
            pid: 1,
            comm: "d\u{fffd}d".into(),
            comm_bytes: not_utf8(),
            rss_bytes: 4096,
        }]),
        ..OomContext::default()
    });
    report
}

fn full_exit() -> ContainerExit {
    let report = full_report();
    ContainerExit {
        schema: 1,
        event: "container_exit",
        time: report.time,
        container: report.container.clone().expect("a container"),
        exit_code: Some(0),
        runtime_oom_killed: Some(true),
        restart_count: Some(0),
        restarting: Some(false),
        kills: vec![Some(1)],
        host: None,
        last_kill: Some(KillSummary::of(&report)),
    }
}

/// Every key path in `value`, objects' own included (`victim`, `victim.pid`, ...).
fn key_paths(value: &Value, prefix: &str, into: &mut BTreeSet<String>) {
    if let Value::Object(map) = value {
        for (key, inner) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if !DOCUMENTED_WHOLE.contains(&path.as_str()) {
                key_paths(inner, &path, into);
            }
            into.insert(path);
        }
    }
}

fn documented(path: &str) -> bool {
    // Objects (`victim`, `trigger`) are documented through their fields.
    README.contains(&format!("`{path}`")) || README.contains(&format!("`{path}.")) || {
        let last = path.rsplit('.').next().unwrap_or(path);
        // The exit event's own table names its fields without a prefix.
        README.contains(&format!("| `{last}` |"))
    }
}

#[test]
fn every_field_written_is_in_the_readme_s_table() {
    let mut paths = BTreeSet::new();
    key_paths(
        &serde_json::to_value(full_report()).unwrap(),
        "",
        &mut paths,
    );
    key_paths(&serde_json::to_value(full_exit()).unwrap(), "", &mut paths);
    let missing: Vec<&String> = paths.iter().filter(|p| !documented(p)).collect();
    assert!(missing.is_empty(), "not in the README: {missing:?}");
}

/// The README's example lines: what the JSON example block after `oomtrace --json` holds.
fn examples() -> Vec<Value> {
    let block = README
        .split("$ sudo oomtrace --json\n")
        .nth(1)
        .expect("the README shows `$ sudo oomtrace --json`");
    block
        .lines()
        .take_while(|line| !line.starts_with("```"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn the_readme_s_examples_are_lines_the_code_writes() {
    let examples = examples();
    assert!(examples.len() >= 2, "a kill and an exit");
    for example in &examples {
        let event = example["event"].as_str().expect("event");
        // Read back and written again, as the journal does: a field the code does not know, or
        // one it writes that the example lacks, changes the line.
        let written = match event {
            "oom_kill" => {
                let report: Report = serde_json::from_value(example.clone()).expect("a report");
                serde_json::to_value(report).unwrap()
            }
            "container_exit" => {
                let exit: ContainerExit = serde_json::from_value(example.clone()).expect("exit");
                serde_json::to_value(exit).unwrap()
            }
            other => panic!("unknown event {other}"),
        };
        let (mut have, mut want) = (BTreeSet::new(), BTreeSet::new());
        key_paths(example, "", &mut have);
        key_paths(&written, "", &mut want);
        assert_eq!(have, want, "the {event} example's fields");
        assert_eq!(
            *example, written,
            "the {event} example reads back unchanged"
        );
    }
}
