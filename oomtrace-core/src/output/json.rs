//! The JSON view: one object per line, the contract a log pipeline ingests (schema 1 in the
//! README). Strings are kept exact; serde escapes what JSON requires.

use crate::report::{ContainerExit, Report};

/// Appends the report as one JSON object and a newline.
pub fn json_line(report: &Report, out: &mut Vec<u8>) {
    write_line(report, out);
}

/// Writes a container exit as one JSON object and a newline into an in-memory buffer.
pub fn write_exit(exit: &ContainerExit, out: impl std::io::Write) {
    write_event(exit, out);
}

/// Writes any event of the schema (`userspace_oom_kill`, `oom_stall`, ...) as one JSON
/// object and a newline into an in-memory buffer.
pub fn write_event(event: &impl serde::Serialize, mut out: impl std::io::Write) {
    let _ = serde_json::to_writer(&mut out, event);
    let _ = out.write_all(b"\n");
}

/// Writes the report as one JSON object and a newline into an in-memory buffer.
pub fn write_line(report: &Report, mut out: impl std::io::Write) {
    // Plain structs of strings and numbers into memory: serialising cannot fail.
    let _ = serde_json::to_writer(&mut out, report);
    let _ = out.write_all(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing as fixtures;
    use crate::{kernel::cgroups::CgroupMode, source::ebpf::decode};
    use oomtrace_common::{attach_mode, field};

    fn report() -> Report {
        fixtures::report()
    }

    #[test]
    fn json_keeps_the_schema_1_contract() {
        let mut out = Vec::new();
        json_line(&report(), &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["schema"], 1);
        assert_eq!(json["event"], "oom_kill");
        assert_eq!(json["time"], "2026-11-22T04:47:30.033410Z");
        assert_eq!(json["boot_ns"], 123_456_789);
        let victim = &json["victim"];
        for (key, want) in [
            ("pid", serde_json::json!(10390)),
            ("tid", serde_json::json!(10391)),
            ("ns_pid", serde_json::json!(7)),
            ("comm", serde_json::json!("dd")),
            ("thread_comm", serde_json::json!("dd-worker")),
            ("uid", serde_json::json!(0)),
            ("oom_score_adj", serde_json::json!(500)),
            ("rss_anon_bytes", serde_json::json!(209_715_200)),
            ("rss_file_bytes", serde_json::json!(4096)),
            ("rss_shmem_bytes", serde_json::json!(0)),
            ("swap_bytes", serde_json::json!(0)),
            ("total_vm_bytes", serde_json::json!(211_000_000)),
            ("pgtables_bytes", serde_json::json!(450_560)),
        ] {
            assert_eq!(victim[key], want, "victim.{key}");
        }
        assert_eq!(json["trigger"]["pid"], 10390);
        assert_eq!(json["trigger"]["tid"], 10391);
        assert_eq!(json["trigger"]["comm"], "dd-worker");
        assert_eq!(json["cgroup"]["id"], 4242);
        assert_eq!(json["cgroup"]["path"], "/docker/4f2c");
        assert_eq!(json["cgroup"]["mode"], "v1");
        assert!(json.as_object().unwrap().contains_key("container"));
        assert!(json["container"].is_null());
        assert_eq!(json["source"], "tp_btf");
    }

    #[test]
    fn json_writes_null_for_what_the_kernel_did_not_give() {
        let mut event = fixtures::raw_event();
        event.fields = field::TID | field::THREAD_COMM;
        event.attach_mode = attach_mode::TRACEPOINT;
        let report = decode(&event, &fixtures::decoding(CgroupMode::V1)).unwrap();
        let mut out = Vec::new();
        json_line(&report, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for key in [
            "pid",
            "ns_pid",
            "comm",
            "uid",
            "rss_anon_bytes",
            "swap_bytes",
        ] {
            let value = json["victim"]
                .get(key)
                .unwrap_or_else(|| panic!("{key} missing"));
            assert!(value.is_null(), "victim.{key} = {value}");
        }
        assert!(json["cgroup"]["path"].is_null());
        assert!(json["cgroup"]["mode"].is_null());
    }

    /// A report whose every kernel-given name holds bytes that are not UTF-8.
    fn with_names_that_are_not_utf8() -> Report {
        let mut report = report();
        let set = |text: &mut Option<String>, slot: &mut Option<Vec<u8>>, bytes: &[u8]| {
            let (lossy, raw) = crate::report::kernel_text(bytes);
            (*text, *slot) = (Some(lossy), raw);
        };
        let v = &mut report.victim;
        set(&mut v.comm, &mut v.comm_bytes, b"\x1b[31mEV\xffIL");
        set(&mut v.thread_comm, &mut v.thread_comm_bytes, b"t\xfe");
        let t = &mut report.trigger;
        set(&mut t.comm, &mut t.comm_bytes, b"\xc3");
        let c = &mut report.cgroup;
        set(&mut c.path, &mut c.path_bytes, b"/docker/a\xffb");
        let mut oom = crate::report::OomContext::default();
        set(&mut oom.memcg, &mut oom.memcg_bytes, b"/docker");
        set(
            &mut oom.group_memcg,
            &mut oom.group_memcg_bytes,
            b"/docker/a\xffb",
        );
        oom.top_tasks = Some(vec![crate::report::TopTask {
            pid: 10390,
            comm: "\u{1b}[31mEV\u{fffd}IL".into(),
            comm_bytes: Some(b"\x1b[31mEV\xffIL".to_vec()),
            rss_bytes: 4096,
        }]);
        report.oom = Some(oom);
        report
    }

    /// Issue 16: JSON had only the string with U+FFFD, and a journal read back lost the bytes.
    #[test]
    fn names_that_are_not_utf8_keep_every_byte_as_hex() {
        let report = with_names_that_are_not_utf8();
        let mut out = Vec::new();
        write_line(&report, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let cases = [
            (
                "victim",
                "comm",
                "\u{1b}[31mEV\u{fffd}IL",
                Some("1b5b33316d4556ff494c"),
            ),
            ("victim", "thread_comm", "t\u{fffd}", Some("74fe")),
            ("trigger", "comm", "\u{fffd}", Some("c3")),
            (
                "cgroup",
                "path",
                "/docker/a\u{fffd}b",
                Some("2f646f636b65722f61ff62"),
            ),
            (
                "oom",
                "group_memcg",
                "/docker/a\u{fffd}b",
                Some("2f646f636b65722f61ff62"),
            ),
            // Valid UTF-8: the string is exact, and no `_hex` is written.
            ("oom", "memcg", "/docker", None),
        ];
        for (object, key, text, hex) in cases {
            assert_eq!(json[object][key], text, "{object}.{key}");
            let field = json[object].get(format!("{key}_hex"));
            assert_eq!(field.and_then(|h| h.as_str()), hex, "{object}.{key}_hex");
        }
        let task = &json["oom"]["top_tasks"][0];
        assert_eq!(task["comm_hex"], "1b5b33316d4556ff494c");

        // Read back, as history and explain read the journal: the same report, bytes and all.
        let back: Report = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            back,
            Report {
                facts: None,
                ..report
            }
        );
    }

    #[test]
    fn journal_lines_from_before_a_field_still_read() {
        let mut report = report();
        report.container = Some(crate::report::Container {
            runtime: "kubernetes",
            id: "4f2c".repeat(16),
            pod: Some(crate::report::Pod {
                uid: "b67e5888-667c-48fb-824e-7c2b4da2cb28".into(),
                namespace: None,
                name: None,
                qos: Some("burstable"),
                containers: Some(2),
            }),
            ..crate::report::Container::default()
        });
        let mut out = Vec::new();
        write_line(&report, &mut out);
        let mut json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["container"]["pod"]["containers"], 2);
        // Fields added since schema 1 began, which older journals do not have.
        let added = [("/container/pod", "containers"), ("/oom", "group_memcg")];
        for (object, key) in added {
            json.pointer_mut(object)
                .and_then(serde_json::Value::as_object_mut)
                .and_then(|object| object.remove(key))
                .unwrap_or_else(|| panic!("{object}/{key} written"));
        }
        let back: Report = serde_json::from_value(json).expect("an older line reads");
        let pod = back.container.and_then(|c| c.pod).unwrap();
        assert_eq!(pod.containers, None, "unknown, not 0");
    }

    #[test]
    fn an_ordinary_report_writes_no_hex_fields() {
        let mut out = Vec::new();
        write_line(&report(), &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(!line.contains("_hex"), "{line}");
    }

    #[test]
    fn malformed_hex_reads_back_as_no_bytes() {
        let mut out = Vec::new();
        write_line(&with_names_that_are_not_utf8(), &mut out);
        let line = String::from_utf8(out).unwrap();
        for bad in [
            "1b5b33316d4556ff494",
            "1b5b33316d4556ff49zz",
            "1B5B33316D4556FF494C",
        ] {
            let edited = line.replace("1b5b33316d4556ff494c", bad);
            let back: Report = serde_json::from_str(&edited).expect("the line still reads");
            assert_eq!(back.victim.comm_bytes, None, "{bad}");
            assert_eq!(back.victim.comm.as_deref(), Some("\u{1b}[31mEV\u{fffd}IL"));
            let tasks = back.oom.and_then(|o| o.top_tasks).unwrap();
            assert_eq!(tasks[0].comm_bytes, None, "{bad}");
        }
        let nulled = line.replace("\"1b5b33316d4556ff494c\"", "null");
        let back: Report = serde_json::from_str(&nulled).unwrap();
        assert_eq!(back.victim.comm_bytes, None);
    }
}

/// The README is the JSON contract's reference: every field the code writes is in its table,
/// and its examples are lines the code would write, with no field missing or made up.
#[cfg(test)]
mod readme_contract {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use crate::report::{
        Container, ContainerExit, EarlierSignal, KillSummary, KilledBy, MemcgStat, OomContext, Pod,
        Report, Sender, SenderContainer, SenderParent, TopTask,
    };

    const README: &str = include_str!("../../../README.md");

    /// Objects the table documents whole, with their keys in one cell.
    const DOCUMENTED_WHOLE: [&str; 6] = [
        "container.labels",
        "container.pod",
        "killed_by.after",
        "killed_by.sender",
        "oom.memcg_stat",
        "oom.top_tasks",
    ];

    /// A report with every object present, so every key is written.
    fn full_report() -> Report {
        let mut report = crate::testing::report();
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
                containers: Some(2),
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
            group_memcg_bytes: not_utf8(),
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
            killed_by: Some(KilledBy {
                kind: Some("runtime"),
                signal: Some("SIGKILL"),
                time: report.time,
                oom_id: None,
                sender: Some(Sender {
                    pid: 4242,
                    tid: 4242,
                    comm: "runc".into(),
                    comm_bytes: Some(b"ru\xffnc".to_vec()),
                    uid: Some(0),
                    host_process: Some(true),
                    container: Some(SenderContainer {
                        id: "c".repeat(64),
                        name: Some("sidecar".into()),
                    }),
                    parent: Some(SenderParent {
                        pid: 4000,
                        comm: "containerd-shim".into(),
                    }),
                }),
                after: Some(EarlierSignal {
                    signal: Some("SIGTERM"),
                    seconds_before: 10.0,
                    ignored: true,
                }),
            }),
            runtime_oom_killed_reason: Some("earlier_oom_kill"),
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
                    let exit: ContainerExit =
                        serde_json::from_value(example.clone()).expect("exit");
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
}
