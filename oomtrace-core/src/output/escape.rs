//! Untrusted strings on the operator's terminal. A process names itself (`comm`), and whoever
//! starts a container or makes a cgroup names those; any of them may hold escape sequences
//! that would recolour, move or rewrite what the terminal shows. The human view shows every
//! such character in a visible form instead; JSON keeps the strings exact.
//!
//! Escaped: C0 controls and DEL as `\xNN`, C1 controls and the Unicode controls that reorder
//! or hide text (bidi overrides, isolates, zero-width and line separators) as `\u{NNNN}`,
//! bytes that are not UTF-8 as `\xNN`, and `\` itself as `\\`, so every escape reads one way.

use std::fmt::Write as _;

/// Appends `text` to `out` with every character a terminal would act on made visible.
pub fn push_visible(out: &mut String, text: &str) {
    for c in text.chars() {
        push_char(out, c);
    }
}

/// `text` made visible; see [`push_visible`].
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_visible(&mut out, text);
    out
}

/// Appends bytes that may not be UTF-8: the valid stretches as [`push_visible`] does, every
/// other byte as `\xNN`.
pub fn push_visible_bytes(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        push_visible(out, chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
}

/// `bytes` made visible; see [`push_visible_bytes`].
pub fn visible_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    push_visible_bytes(&mut out, bytes);
    out
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\0'..='\x1f' | '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Characters a terminal acts on or that change how the text around them reads.
fn needs_escape(c: char) -> bool {
    matches!(c,
        // C1 controls, CSI (U+009B) among them.
        '\u{80}'..='\u{9f}'
        // The Arabic letter mark, the one bidi mark outside the block below.
        | '\u{061c}'
        // Zero-width characters and the bidi marks.
        | '\u{200b}'..='\u{200f}'
        // Line and paragraph separators, bidi embeddings and overrides.
        | '\u{2028}'..='\u{202e}'
        // Bidi isolates.
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_become_visible() {
        let cases = [
            ("dd", "dd"),
            ("web-1_db.2", "web-1_db.2"),
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
            ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
            ("bell\x07", "bell\\x07"),
            ("del\x7f", "del\\x7f"),
            ("\u{9b}31m", "\\u{009b}31m"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("iso\u{2066}late", "iso\\u{2066}late"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("ar\u{61c}mark", "ar\\u{061c}mark"),
            ("back\\x1b", "back\\\\x1b"),
            ("ünïcödé ok 日本", "ünïcödé ok 日本"),
            ("", ""),
        ];
        for (raw, shown) in cases {
            assert_eq!(visible(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_show_as_hex() {
        let mut out = String::new();
        push_visible_bytes(&mut out, b"ok\xff\xfe\x1b\xc3\xa9");
        assert_eq!(out, "ok\\xff\\xfe\\x1bé");
    }

    #[test]
    fn nothing_escaped_holds_a_control_character() {
        // Every char up to U+FFFF, escaped, leaves no control for the terminal to act on.
        let all: String = (0u32..=0xffff).filter_map(char::from_u32).collect();
        let shown = visible(&all);
        assert!(
            !shown.chars().any(|c| c.is_control() || needs_escape(c)),
            "a control character got through"
        );
    }
}
