//! Just enough JSON for the bench: reading oomtrace's reports and bpftool's listings, and
//! writing `results.json`. The xtask builds with std and anyhow only, so no serde.

use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written, so a 64-bit nanosecond count loses no digit.
    Number(String),
    String(String),
    Array(Vec<Value>),
    /// Keys in the order written.
    Object(Vec<(String, Value)>),
}

impl Value {
    pub fn parse(text: &str) -> Option<Value> {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = parser.value(0)?;
        parser.skip_space();
        (parser.at == parser.bytes.len()).then_some(value)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of object keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().try_fold(self, |value, key| value.get(key))
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Number(raw) => raw.parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Indented JSON, two spaces a level; short arrays of numbers stay on one line.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        let pad = |out: &mut String, depth: usize| {
            out.push('\n');
            out.extend(std::iter::repeat_n("  ", depth));
        };
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Number(raw) => out.push_str(raw),
            Self::String(s) => write_string(out, s),
            Self::Array(items) if items.iter().all(|v| matches!(v, Self::Number(_))) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out, depth);
                }
                out.push(']');
            }
            Self::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    item.write(out, depth + 1);
                }
                if !items.is_empty() {
                    pad(out, depth);
                }
                out.push(']');
            }
            Self::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    write_string(out, key);
                    out.push_str(": ");
                    value.write(out, depth + 1);
                }
                if !members.is_empty() {
                    pad(out, depth);
                }
                out.push('}');
            }
        }
    }
}

/// Building values for `results.json`.
pub fn num(n: impl std::fmt::Display) -> Value {
    Value::Number(n.to_string())
}

/// A float with `decimals` digits after the point; `null` if it is not finite.
pub fn float(x: f64, decimals: usize) -> Value {
    if x.is_finite() {
        Value::Number(format!("{x:.decimals$}"))
    } else {
        Value::Null
    }
}

pub fn string(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

pub fn opt(value: Option<Value>) -> Value {
    value.unwrap_or(Value::Null)
}

pub fn object(members: Vec<(&str, Value)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.bytes[self.at..].starts_with(literal.as_bytes()) {
            self.at += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > 64 {
            return None;
        }
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'n' => self.eat("null").then_some(Value::Null),
            b't' => self.eat("true").then_some(Value::Bool(true)),
            b'f' => self.eat("false").then_some(Value::Bool(false)),
            b'"' => self.string().map(Value::String),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_space();
                if self.eat("]") {
                    return Some(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_space();
                    if self.eat("]") {
                        return Some(Value::Array(items));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                self.skip_space();
                if self.eat("}") {
                    return Some(Value::Object(members));
                }
                loop {
                    self.skip_space();
                    let key = self.string()?;
                    self.skip_space();
                    if !self.eat(":") {
                        return None;
                    }
                    members.push((key, self.value(depth + 1)?));
                    self.skip_space();
                    if self.eat("}") {
                        return Some(Value::Object(members));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.at += 1;
                }
                let raw = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
                raw.parse::<f64>().ok()?;
                Some(Value::Number(raw.to_string()))
            }
            _ => None,
        }
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat("\"") {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let escaped = *self.bytes.get(self.at)?;
                    self.at += 1;
                    let c = match escaped {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let unit = self.hex4()?;
                            if (0xd800..0xdc00).contains(&unit) && self.eat("\\u") {
                                let low = self.hex4()?;
                                let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                                char::from_u32(code)?
                            } else {
                                char::from_u32(unit).unwrap_or('\u{fffd}')
                            }
                        }
                        other => other as char,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let hex = std::str::from_utf8(self.bytes.get(self.at..self.at + 4)?).ok()?;
        self.at += 4;
        u32::from_str_radix(hex, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_oomtrace_report() {
        let line = r#"{"schema":1,"event":"oom_kill","boot_ns":18446744073709551615,"victim":{"pid":10390,"comm":"d\"d\u00e9"},"oom":{"kind":"killed"},"labels":null,"ids":[1, 2.5e3, -3],"ok":true}"#;
        let v = Value::parse(line).unwrap();
        assert_eq!(v.get("boot_ns").and_then(Value::as_u64), Some(u64::MAX));
        assert_eq!(
            v.path(&["victim", "pid"]).and_then(Value::as_u64),
            Some(10390)
        );
        assert_eq!(
            v.path(&["victim", "comm"]).and_then(Value::as_str),
            Some("d\"d\u{e9}")
        );
        assert_eq!(
            v.path(&["oom", "kind"]).and_then(Value::as_str),
            Some("killed")
        );
        assert_eq!(v.get("labels"), Some(&Value::Null));
        assert!(matches!(v.get("ids"), Some(Value::Array(ids)) if ids.len() == 3));
        assert_eq!(v.get("ok"), Some(&Value::Bool(true)));
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "{",
            "{\"a\" 1}",
            "[1,]",
            "oomtrace: watching",
            "{} x",
            "\"\\u12\"",
        ] {
            assert_eq!(Value::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn writes_what_it_reads() {
        let v = object(vec![
            ("name", string("a \"b\"\n")),
            ("runs", Value::Array(vec![float(1.25, 2), num(3)])),
            ("none", opt(None)),
            ("nested", object(vec![("x", Value::Bool(false))])),
            ("list", Value::Array(vec![string("s")])),
            ("nan", float(f64::NAN, 1)),
        ]);
        let text = v.pretty();
        assert!(text.contains("\"runs\": [1.25, 3]"), "{text}");
        assert_eq!(Value::parse(&text), Some(v));
    }
}
