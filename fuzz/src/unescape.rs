//! Reads the human view's escapes back, written apart from `output::escape` so the target
//! checks the escaping against its documented form rather than against itself: `\\`, `\xNN`
//! (a control character, or a byte that was not UTF-8) and `\u{NNNN}`.

/// The bytes `shown` stands for; `None` for a `\` the escaping never writes.
pub fn unescape(shown: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(shown.len());
    let mut chars = shown.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        match chars.next()? {
            '\\' => bytes.push(b'\\'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                bytes.push(lower_hex(&hex, 2)? as u8);
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(lower_hex(&hex, 4)?)?;
                bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            _ => return None,
        }
    }
    Some(bytes)
}

/// Lowercase hex of exactly `digits` digits, as the escaping writes it (`{:02x}`, `{:04x}`;
/// nothing it escapes needs more than four).
fn lower_hex(hex: &str, digits: usize) -> Option<u32> {
    let well_formed =
        hex.len() == digits && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed.then(|| u32::from_str_radix(hex, 16).ok())?
}

/// What a terminal acts on or what changes how the text around it reads: C0, DEL and C1
/// controls, Unicode's whole `Bidi_Control` set (the Arabic letter mark, the LRM and RLM marks,
/// embeddings, overrides, isolates), zero-width characters, line and paragraph separators, and
/// the byte-order mark. None may reach the operator's terminal raw.
pub fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
        )
}
