//! Parsers of what userspace OOM killers write about their own kills: earlyoom's lines on its
//! stderr ([`earlyoom`]) and systemd-oomd's journal line and bus signal ([`systemd_oomd`]).
//! The kernel's record of the signal says who killed whom (`userspace_oom_kill`); only the
//! killer's own record says what it acted on: available memory and free swap, or a cgroup's
//! memory pressure or the machine's swap use.
//!
//! Pure functions of one message, as the killer printed it: the journal's `MESSAGE` field, or a
//! line of the killer's stderr. Reading the system's log is the caller's business. Each format
//! is quoted from the killer's source in the fixture its tests read, with the version it was
//! taken from; a line of any other shape is not read at all, so what is read is right.

pub mod earlyoom;
pub mod systemd_oomd;

use std::fmt;

/// A percentage as both killers print it, with exactly two decimals (earlyoom's `%5.2lf`,
/// systemd's `%lu.%02lu` and `%i.%02i`), kept in hundredths so that nothing printed is lost to
/// floating point: 9.48 % is 948.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent {
    pub hundredths: u64,
}

impl Percent {
    /// `"9.48"` (padding allowed around it, as a printf width adds); nothing else, not even
    /// `"9.5"`, since no killer prints that.
    pub fn parse(text: &str) -> Option<Self> {
        let (whole, fraction) = text.trim().split_once('.')?;
        if fraction.len() != 2 {
            return None;
        }
        let whole = number(whole)?;
        let fraction = number(fraction)?;
        Some(Self {
            hundredths: whole.checked_mul(100)?.checked_add(fraction)?,
        })
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}%", self.hundredths / 100, self.hundredths % 100)
    }
}

/// A non-negative decimal integer, with the padding a printf width adds around it.
pub(crate) fn number(text: &str) -> Option<u64> {
    let text = text.trim_matches(' ');
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// What a printf format's conversions printed, for a format made of `literals` with one
/// conversion between each two: `text` must start with the first literal and end with the
/// last, and each conversion's output is the text up to the next literal's first occurrence.
/// Only for conversions whose output cannot hold the literal after them (numbers); a name or a
/// path is cut out by its caller, which knows where it may end.
pub(crate) fn scan<'a>(text: &'a str, literals: &[&str]) -> Option<Vec<&'a str>> {
    let (first, rest) = literals.split_first()?;
    let (last, middle) = rest.split_last()?;
    let mut text = text.strip_prefix(first)?;
    let mut fields = Vec::with_capacity(rest.len());
    for literal in middle {
        let at = text.find(literal)?;
        fields.push(&text[..at]);
        text = &text[at + literal.len()..];
    }
    fields.push(text.strip_suffix(last)?);
    Some(fields)
}

/// The line without its line break and without the colour codes earlyoom wraps it in when its
/// stderr is a terminal (`\e[33m` before, `\e[0m` after the line break, so at the start of the
/// next line).
pub(crate) fn plain(line: &str) -> &str {
    let mut line = line.trim_end_matches(['\n', '\r']);
    while let Some(rest) = line.strip_prefix("\u{1b}[") {
        match rest.find('m') {
            Some(end) if rest[..end].bytes().all(|b| b.is_ascii_digit() || b == b';') => {
                line = &rest[end + 1..];
            }
            _ => break,
        }
    }
    while let Some(start) = line.rfind("\u{1b}[") {
        let code = &line[start + 2..];
        match code.strip_suffix('m') {
            Some(code) if code.bytes().all(|b| b.is_ascii_digit() || b == b';') => {
                line = &line[..start];
            }
            _ => break,
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_is_two_decimals_exactly() {
        let cases = [
            ("9.48", Some(948)),
            (" 9.48", Some(948)),
            ("100.00", Some(10_000)),
            ("0.00", Some(0)),
            ("62.11", Some(6211)),
            ("9.5", None),
            ("9.480", None),
            ("-1.00", None),
            ("nan", None),
            ("", None),
            ("1,00", None),
        ];
        for (text, hundredths) in cases {
            assert_eq!(
                Percent::parse(text).map(|p| p.hundredths),
                hundredths,
                "{text:?}"
            );
        }
        assert_eq!(Percent { hundredths: 948 }.to_string(), "9.48%");
        assert_eq!(Percent { hundredths: 10_000 }.to_string(), "100.00%");
    }

    #[test]
    fn scans_a_format_s_conversions() {
        assert_eq!(
            scan("a 1 b  2 c", &["a ", " b ", " c"]),
            Some(vec!["1", " 2"])
        );
        assert_eq!(scan("a 1 b 2", &["a ", " b ", ""]), Some(vec!["1", "2"]));
        assert_eq!(scan("a 1 b 2 d", &["a ", " b ", " c"]), None);
        assert_eq!(scan("x 1 b 2 c", &["a ", " b ", " c"]), None);
    }

    #[test]
    fn strips_the_colour_of_a_terminal() {
        let cases = [
            ("sending SIGTERM\n", "sending SIGTERM"),
            ("\u{1b}[33msending SIGTERM\n", "sending SIGTERM"),
            ("\u{1b}[0m\u{1b}[33msending SIGTERM\n", "sending SIGTERM"),
            ("\u{1b}[33msending SIGTERM\u{1b}[0m", "sending SIGTERM"),
            ("\u{1b}[xsending", "\u{1b}[xsending"),
        ];
        for (line, want) in cases {
            assert_eq!(plain(line), want, "{line:?}");
        }
    }
}
