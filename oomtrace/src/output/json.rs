//! The JSON view: one object per line, the contract a log pipeline ingests (schema 1 in the
//! README). Strings are kept exact; serde escapes what JSON requires.

use crate::report::{ContainerExit, Report};

/// Appends the report as one JSON object and a newline.
pub fn json_line(report: &Report, out: &mut Vec<u8>) {
    write_line(report, out);
}

/// Writes a container exit as one JSON object and a newline into an in-memory buffer.
pub fn write_exit(exit: &ContainerExit, mut out: impl std::io::Write) {
    let _ = serde_json::to_writer(&mut out, exit);
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
}
