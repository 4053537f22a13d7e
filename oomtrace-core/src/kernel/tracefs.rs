//! tracefs: where it is mounted, and the `format` file that describes a classic tracepoint's
//! record.

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// Where tracefs is mounted on current systems, then the old debugfs location.
/// Why a classic tracepoint cannot be used where [`root`] finds no tracefs.
pub const NOT_MOUNTED: &str =
    "tracefs is not mounted: mount it with `mount -t tracefs tracefs /sys/kernel/tracing`";

const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs root, if one is mounted: recognised by the `events` directory, because an
/// unmounted `/sys/kernel/tracing` is an empty directory.
pub fn root() -> Option<PathBuf> {
    TRACEFS_ROOTS
        .iter()
        .map(PathBuf::from)
        .find(|root| root.join("events").is_dir())
}

pub fn mark_victim_format_path(root: &Path) -> PathBuf {
    root.join("events/oom/mark_victim/format")
}

pub fn signal_generate_format_path(root: &Path) -> PathBuf {
    root.join("events/signal/signal_generate/format")
}

/// One `field:` line of a format file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The C declaration without the name, e.g. `unsigned long` or `__data_loc char[]`.
    pub c_type: String,
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    pub id: u32,
    /// The event's own fields, after the `common_*` header.
    pub fields: Vec<Field>,
}

impl Format {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct FormatError {
    pub line: usize,
    pub reason: &'static str,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for FormatError {}

/// Parses a tracefs `format` file.
pub fn parse_format(text: &str) -> Result<Format, FormatError> {
    let mut name = None;
    let mut id = None;
    let mut fields = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if let Some(value) = line.strip_prefix("name:") {
            name = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("ID:") {
            id = Some(value.trim().parse().map_err(|_| FormatError {
                line: line_no,
                reason: "the ID is not a number",
            })?);
        } else if line.starts_with("field:") {
            let field = parse_field(line).map_err(|reason| FormatError {
                line: line_no,
                reason,
            })?;
            if !field.name.starts_with("common_") {
                fields.push(field);
            }
        }
    }
    Ok(Format {
        name: name.ok_or(FormatError {
            line: 0,
            reason: "no `name:` line",
        })?,
        id: id.ok_or(FormatError {
            line: 0,
            reason: "no `ID:` line",
        })?,
        fields,
    })
}

/// `field:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;`
fn parse_field(line: &str) -> Result<Field, &'static str> {
    let mut declaration = None;
    let (mut offset, mut size, mut signed) = (None, None, None);
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':').ok_or("a part has no `key:value`")?;
        let number = || {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| "a number is malformed")
        };
        match key {
            "field" => declaration = Some(value.trim()),
            "offset" => offset = Some(number()?),
            "size" => size = Some(number()?),
            "signed" => signed = Some(number()? != 0),
            _ => {}
        }
    }
    let declaration = declaration.ok_or("no declaration")?;
    // The name is the last identifier; `char comm[16]` keeps its brackets on the name.
    let split = declaration
        .rfind(|c: char| c.is_whitespace())
        .ok_or("the declaration has no type")?;
    let (c_type, name) = (declaration[..split].trim(), declaration[split..].trim());
    let name = name.split('[').next().unwrap_or(name);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("the field name is malformed");
    }
    Ok(Field {
        c_type: c_type.to_owned(),
        name: name.to_owned(),
        offset: offset.ok_or("no offset")?,
        size: size.ok_or("no size")?,
        signed: signed.ok_or("no signed flag")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn parses_every_captured_format() {
        // (file, id, comm signedness): Debian 6.1 prints `signed:1` for the __data_loc.
        let cases = [
            ("mark_victim-format-6.18.txt", 609, false),
            ("mark_victim-format-debian-6.12.117.txt", 584, false),
            ("mark_victim-format-debian-6.1.0-56.txt", 506, true),
        ];
        for (file, id, comm_signed) in cases {
            let format = parse_format(&fixture(file)).unwrap();
            assert_eq!(format.name, "mark_victim", "{file}");
            assert_eq!(format.id, id, "{file}");
            let names: Vec<_> = format.fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "pid",
                    "comm",
                    "total_vm",
                    "anon_rss",
                    "file_rss",
                    "shmem_rss",
                    "uid",
                    "pgtables",
                    "oom_score_adj"
                ],
                "{file}"
            );
            let at = |n: &str| {
                let f = format.field(n).unwrap();
                (f.offset, f.size)
            };
            assert_eq!(at("pid"), (8, 4), "{file}");
            assert_eq!(at("comm"), (12, 4), "{file}");
            assert_eq!(at("total_vm"), (16, 8), "{file}");
            assert_eq!(at("uid"), (48, 4), "{file}");
            assert_eq!(at("pgtables"), (56, 8), "{file}");
            assert_eq!(at("oom_score_adj"), (64, 2), "{file}");
            let comm = format.field("comm").unwrap();
            assert_eq!(comm.c_type, "__data_loc char[]", "{file}");
            assert_eq!(comm.signed, comm_signed, "{file}");
            assert!(format.field("oom_score_adj").unwrap().signed);
        }
    }

    #[test]
    fn parses_the_pid_only_layout() {
        let format =
            parse_format(&fixture("mark_victim-format-pid-only-reconstructed.txt")).unwrap();
        assert_eq!(format.fields.len(), 1);
        let pid = format.field("pid").unwrap();
        assert_eq!(
            (pid.c_type.as_str(), pid.offset, pid.size, pid.signed),
            ("int", 8, 4, true)
        );
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        let cases = [
            (
                "name: x\nID: 1\n\tfield:int pid;\toffset:eight;\tsize:4;\tsigned:1;\n",
                3,
            ),
            ("name: x\nID: 1\n\tfield:int pid;\tsize:4;\tsigned:1;\n", 3),
            ("name: x\nID: one\n", 2),
            (
                "name: x\nID: 1\n\tfield:pid;\toffset:8;\tsize:4;\tsigned:1;\n",
                3,
            ),
            (
                "name: x\nID: 1\n\tfield:int p-d;\toffset:8;\tsize:4;\tsigned:1;\n",
                3,
            ),
            ("ID: 1\n", 0),
        ];
        for (text, line) in cases {
            let err = parse_format(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn keeps_array_names_without_brackets() {
        let text = "name: x\nID: 7\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n";
        let format = parse_format(text).unwrap();
        assert_eq!(format.fields[0].name, "comm");
        assert_eq!(format.fields[0].c_type, "char");
    }
}
