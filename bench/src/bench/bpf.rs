//! The BPF programs and maps a tool holds, found among its file descriptors, and what the bench
//! reads of them without disturbing the tool: a program's run counts.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::sys::{self, ProgStats};
use crate::console::stdout_within;

/// bpftool answers in well under a second; this bounds a machine in trouble.
const BPFTOOL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prog,
    Map,
}

impl Kind {
    fn of_link(target: &std::ffi::OsStr) -> Option<Self> {
        match target.to_str()? {
            "anon_inode:bpf-prog" => Some(Self::Prog),
            "anon_inode:bpf-map" => Some(Self::Map),
            _ => None,
        }
    }

    /// fdinfo's line for the object's id, and bpftool's word for the kind.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::Prog => ("prog_id:", "prog"),
            Self::Map => ("map_id:", "map"),
        }
    }
}

/// A BPF program or map a process holds.
#[derive(Clone, Debug)]
pub struct Held {
    pub kind: Kind,
    /// Its descriptor in the holder.
    pub fd: u32,
    /// As bpftool shows it: the kernel keeps 15 bytes of a name, bpftool the whole name where
    /// the object's BTF has it.
    pub name: String,
}

/// Every BPF program and map `pid` holds, named by bpftool (fdinfo has ids, not names).
pub fn held_by(pid: u32) -> Result<Vec<Held>> {
    let dir = format!("/proc/{pid}/fd");
    let mut held = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("could not list {dir}"))? {
        let entry = entry?;
        let Some(kind) = std::fs::read_link(entry.path())
            .ok()
            .and_then(|target| Kind::of_link(target.as_os_str()))
        else {
            continue;
        };
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let (id_line, word) = kind.words();
        // The descriptor may have been closed since the listing: skip it, as one not held.
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix(id_line))
            .and_then(|id| id.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let shown = stdout_within(
            Command::new("bpftool").args(["--json", word, "show", "id", &id.to_string()]),
            BPFTOOL_TIMEOUT,
        )?;
        let name = serde_json::from_str::<serde_json::Value>(&shown)
            .ok()
            .and_then(|shown| shown["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        held.push(Held { kind, fd, name });
    }
    Ok(held)
}

/// The first of `held` of `kind` whose name starts with `prefix`: a program's name as the
/// kernel keeps it is cut to 15 bytes, and bpftool shows the whole one where BTF has it.
pub fn find<'a>(held: &'a [Held], kind: Kind, prefix: &str) -> Option<&'a Held> {
    held.iter()
        .find(|h| h.kind == kind && h.name.starts_with(prefix))
}

/// A program's run counts so far, read from its holder's fdinfo.
pub fn prog_stats(pid: u32, prog: &Held) -> Result<ProgStats> {
    sys::prog_stats(pid, prog.fd)
}
