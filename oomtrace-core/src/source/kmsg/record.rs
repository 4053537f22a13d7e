//! One `/dev/kmsg` record, `prio,seq,usec,flags[,more];message`, and the kernel's `\xNN`
//! escaping of its text. Everything above this layer reads messages, never raw lines.

use std::fmt;

/// One /dev/kmsg record: `prio,seq,usec,flags;message` (extra comma fields ignored).
/// Continuation lines (` KEY=VALUE`) are not records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's sequence number; it grows by one per record, so a gap means records were
    /// lost (overwritten in the ring buffer before they were read).
    pub seq: u64,
    /// CLOCK_MONOTONIC µs as the kernel stamps it.
    pub usec: u64,
    /// The text, still escaped as `/dev/kmsg` escapes it, without the trailing newline.
    pub message: &'a str,
}

/// The rest of a record's header, for a reader that wants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// `prio >> 3`: 0 for the kernel. Records written to `/dev/kmsg` from user space can never
    /// have facility 0, so a reader that looks for kernel lines should skip the others.
    pub facility: u32,
    /// `prio & 7`: 0 (emerg) to 7 (debug).
    pub level: u8,
    /// The flags field has `c` (or `+` on old kernels): the record is a fragment of a
    /// continued line.
    pub continued: bool,
}

impl RecordHeader {
    /// Whether the kernel itself logged the record.
    pub fn is_kernel(&self) -> bool {
        self.facility == 0
    }
}

/// Why a line is not a `/dev/kmsg` record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MalformedRecord {
    /// A ` KEY=VALUE` dictionary line that belongs to the record before it: skip it.
    Continuation,
    /// An empty line.
    Empty,
    /// There is no `;` between the header and the message.
    NoSeparator,
    /// The header lacks a field; names the field.
    MissingField(&'static str),
    /// A numeric header field is not a decimal number that fits; names the field and shows
    /// (the start of) the text.
    BadNumber { field: &'static str, text: String },
}

impl MalformedRecord {
    /// True for a ` KEY=VALUE` continuation line, which a reader should silently skip.
    pub fn is_continuation(&self) -> bool {
        matches!(self, MalformedRecord::Continuation)
    }
}

impl fmt::Display for MalformedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MalformedRecord::Continuation => f.write_str(
                "the line is a ` KEY=VALUE` continuation of the previous /dev/kmsg record, not a record",
            ),
            MalformedRecord::Empty => f.write_str("the line is empty, not a /dev/kmsg record"),
            MalformedRecord::NoSeparator => f.write_str(
                "the line has no `;` between a /dev/kmsg record header and its message",
            ),
            MalformedRecord::MissingField(field) => {
                write!(f, "the /dev/kmsg record header has no {field} field")
            }
            MalformedRecord::BadNumber { field, text } => write!(
                f,
                "the {field} field of the /dev/kmsg record header is not a decimal number: {text:?}"
            ),
        }
    }
}

impl std::error::Error for MalformedRecord {}

/// Splits one `/dev/kmsg` record. Only the first line of `line` is read, so a whole `read()`
/// buffer (a record followed by its ` KEY=VALUE` lines) can be passed as it is.
pub fn parse_record(line: &str) -> Result<Record<'_>, MalformedRecord> {
    parse_record_full(line).map(|(record, _)| record)
}

/// [`parse_record`], also returning the facility, level and continuation flag.
pub fn parse_record_full(line: &str) -> Result<(Record<'_>, RecordHeader), MalformedRecord> {
    let line = match line.find('\n') {
        Some(end) => &line[..end],
        None => line,
    };
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(MalformedRecord::Empty);
    }
    if line.starts_with(' ') {
        return Err(MalformedRecord::Continuation);
    }
    let (head, message) = line.split_once(';').ok_or(MalformedRecord::NoSeparator)?;
    let mut fields = head.split(',');
    let prio = header_number(fields.next(), "priority")?;
    let seq = header_number(fields.next(), "sequence number")?;
    let usec = header_number(fields.next(), "timestamp")?;
    let flags = fields
        .next()
        .filter(|flags| !flags.is_empty())
        .ok_or(MalformedRecord::MissingField("flags"))?;
    let facility = u32::try_from(prio >> 3).map_err(|_| MalformedRecord::BadNumber {
        field: "priority",
        text: prio.to_string(),
    })?;
    let header = RecordHeader {
        facility,
        level: (prio & 7) as u8,
        continued: flags.contains('c') || flags.contains('+'),
    };
    Ok((Record { seq, usec, message }, header))
}

fn header_number(text: Option<&str>, field: &'static str) -> Result<u64, MalformedRecord> {
    let text = text
        .filter(|text| !text.is_empty())
        .ok_or(MalformedRecord::MissingField(field))?;
    parse_u64(text).ok_or_else(|| MalformedRecord::BadNumber {
        field,
        text: text.chars().take(40).collect(),
    })
}

/// Text the kernel logged, unescaped: a string, and the exact bytes where they are not UTF-8.
/// The names the log prints (comms, cgroup paths) are bytes to the kernel, not text: a process
/// may name itself with any 15 bytes, and the string alone would keep only U+FFFD for those
/// that are not UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogText {
    text: String,
    /// `None` when `text` is exact.
    bytes: Option<Vec<u8>>,
}

impl LogText {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => LogText { text, bytes: None },
            Err(err) => {
                let bytes = err.into_bytes();
                LogText {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    bytes: Some(bytes),
                }
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact bytes, only when they are not UTF-8 (otherwise the string is exact).
    pub fn raw(&self) -> Option<&[u8]> {
        self.bytes.as_deref()
    }

    /// The string (U+FFFD for what is not UTF-8) and, only when something was replaced, the
    /// exact bytes.
    pub fn into_parts(self) -> (String, Option<Vec<u8>>) {
        (self.text, self.bytes)
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

impl std::ops::Deref for LogText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl From<&str> for LogText {
    fn from(text: &str) -> Self {
        LogText {
            text: text.to_owned(),
            bytes: None,
        }
    }
}

impl From<String> for LogText {
    fn from(text: String) -> Self {
        LogText { text, bytes: None }
    }
}

impl PartialEq<str> for LogText {
    fn eq(&self, other: &str) -> bool {
        self.bytes.is_none() && self.text == other
    }
}

impl PartialEq<&str> for LogText {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

/// Undoes `/dev/kmsg`'s `\xNN` escaping. The kernel escapes `\` itself, so this is exact,
/// bytes that are not UTF-8 included. A `\x` without two hex digits is kept as it is.
pub fn unescape(text: &str) -> LogText {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1] == b'x'
            && let (Some(high), Some(low)) = (
                char::from(bytes[i + 2]).to_digit(16),
                char::from(bytes[i + 3]).to_digit(16),
            )
            && let Ok(byte) = u8::try_from(high << 4 | low)
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    LogText::from_bytes(out)
}

/// A plain decimal number: no sign, no spaces, no `+`, which `str::parse` would accept.
pub(super) fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_record() {
        let record = parse_record("6,339,5140900,-;NET: Registered PF_INET6 protocol family")
            .expect("valid record");
        assert_eq!(
            record,
            Record {
                seq: 339,
                usec: 5140900,
                message: "NET: Registered PF_INET6 protocol family",
            }
        );
    }

    #[test]
    fn record_ignores_extra_header_fields_and_keeps_semicolons_in_the_message() {
        let record = parse_record("4,7,8,-,caller=T123;a;b,c=d").expect("valid record");
        assert_eq!((record.seq, record.usec, record.message), (7, 8, "a;b,c=d"));
    }

    #[test]
    fn record_reads_only_the_first_line_of_a_read_buffer() {
        let buffer = "6,168,540245,-;acpi PNP0A03:00: _OSC: OS supports [ASPM]\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n";
        let record = parse_record(buffer).expect("valid record");
        assert_eq!(record.message, "acpi PNP0A03:00: _OSC: OS supports [ASPM]");
    }

    #[test]
    fn record_may_have_an_empty_message() {
        assert_eq!(parse_record("6,1,2,-;").map(|r| r.message), Ok(""));
    }

    #[test]
    fn record_header_gives_facility_level_and_continuation() {
        let (_, header) = parse_record_full("3,378,1880692,-;x").expect("valid record");
        assert_eq!(
            header,
            RecordHeader {
                facility: 0,
                level: 3,
                continued: false
            }
        );
        assert!(header.is_kernel());
        let (_, header) = parse_record_full("14,5,6,c;x").expect("valid record");
        assert_eq!(
            (header.facility, header.level, header.continued),
            (1, 6, true)
        );
        assert!(!header.is_kernel());
    }

    #[test]
    fn continuation_lines_are_recognisable() {
        let error = parse_record(" SUBSYSTEM=acpi").expect_err("not a record");
        assert!(error.is_continuation());
        assert_eq!(error, MalformedRecord::Continuation);
    }

    #[test]
    fn malformed_records_are_errors_with_a_clear_sentence() {
        let cases: [(&str, MalformedRecord); 10] = [
            ("", MalformedRecord::Empty),
            ("\n", MalformedRecord::Empty),
            ("garbage", MalformedRecord::NoSeparator),
            ("6,1,2,-", MalformedRecord::NoSeparator),
            ("6,1;x", MalformedRecord::MissingField("timestamp")),
            ("6,1,2;x", MalformedRecord::MissingField("flags")),
            (",1,2,-;x", MalformedRecord::MissingField("priority")),
            (
                "a,1,2,-;x",
                MalformedRecord::BadNumber {
                    field: "priority",
                    text: "a".into(),
                },
            ),
            (
                "6,-1,2,-;x",
                MalformedRecord::BadNumber {
                    field: "sequence number",
                    text: "-1".into(),
                },
            ),
            (
                "6,1,18446744073709551616,-;x",
                MalformedRecord::BadNumber {
                    field: "timestamp",
                    text: "18446744073709551616".into(),
                },
            ),
        ];
        for (line, expected) in cases {
            let error = parse_record(line).expect_err(line);
            assert_eq!(error, expected, "{line:?}");
            assert!(!error.is_continuation());
            let sentence = error.to_string();
            assert!(sentence.starts_with("the ") && !sentence.contains('\n'));
        }
        assert!(
            MalformedRecord::MissingField("flags")
                .to_string()
                .contains("flags")
        );
        assert!(parse_record("+6,1,2,-;x").is_err());
        assert!(parse_record("6, 1,2,-;x").is_err());
        assert!(parse_record("99999999999999,1,2,-;x").is_err());
    }

    #[test]
    fn unescapes_kmsg_escapes() {
        assert_eq!(unescape(r"rcu: \x09RCU"), "rcu: \tRCU");
        assert_eq!(unescape(r"a\x5cb"), r"a\b");
        assert_eq!(unescape(r"ends with \x"), r"ends with \x");
        assert_eq!(unescape(r"\x4"), r"\x4");
        assert_eq!(unescape(r"\xzz"), r"\xzz");
        assert_eq!(unescape(r"\xc3\xa9"), "é");
    }

    /// Issue 16: a byte that is not UTF-8 came out as U+FFFD, and the name was lost.
    #[test]
    fn unescaping_keeps_bytes_that_are_not_utf8() {
        let cases: [(&str, &str, Option<&[u8]>); 5] = [
            (r"\xff", "\u{fffd}", Some(b"\xff")),
            (
                r"\x1b[31mEV\xffIL",
                "\x1b[31mEV\u{fffd}IL",
                Some(b"\x1b[31mEV\xffIL"),
            ),
            (r"a\xc3", "a\u{fffd}", Some(b"a\xc3")),
            (r"\xc3\xa9\x1b", "é\x1b", None),
            (r"plain", "plain", None),
        ];
        for (escaped, text, raw) in cases {
            let got = unescape(escaped);
            assert_eq!((got.as_str(), got.raw()), (text, raw), "{escaped}");
            // Text that is not exact never equals a string, U+FFFD or not.
            assert_eq!(got == text, raw.is_none(), "{escaped}");
        }
    }
}
