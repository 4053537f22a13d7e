//! tracefs `format` files: arbitrary text must parse or fail with a reason, never panic, and
//! every parsed field must have come from a `field:` line.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(format) = oomtrace_core::kernel::tracefs::parse_format(&text) {
        let field_lines = text.lines().filter(|l| l.trim().starts_with("field:")).count();
        assert!(format.fields.len() <= field_lines);
    }
});
