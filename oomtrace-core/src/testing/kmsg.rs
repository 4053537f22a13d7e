//! The kernel-log parsers under arbitrary input: what the `kmsg` fuzz target runs, and the unit
//! tests run over every fixture cut and mutated.

use std::num::NonZeroU64;

use crate::source::kmsg::{
    DEFAULT_PAGE_SIZE, KillAssembler, KmsgKill, MAX_TASKS, Record, parse_record, parse_record_full,
    unescape,
};

/// Runs the record parser, the line parsers and the assembler over arbitrary bytes (lossy
/// UTF-8, split on `\n`); it must never panic. Each line is fed both as a record and as a bare
/// message, after a header that makes the lines that follow an OOM report. The first byte
/// picks the page size, so that huge ones reach the overflow checks.
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let shift = data.first().map_or(12, |byte| byte % 64);
    let page_size = NonZeroU64::new(1 << shift).unwrap_or(DEFAULT_PAGE_SIZE);
    let mut assembler = KillAssembler::with_page_size(page_size);
    let check = |kill: KmsgKill| {
        assert!(kill.tasks.len() <= MAX_TASKS);
        assert!(!kill.global || (kill.memcg_stat.is_none() && kill.memcg_usage_kb.is_none()));
    };
    let lines = std::iter::once("fuzz invoked oom-killer: ").chain(text.split('\n'));
    for (n, line) in lines.enumerate() {
        if let Ok(record) = parse_record(line) {
            let _ = assembler.push(&record).map(check);
        }
        let _ = parse_record_full(line).map(|(_, header)| header.is_kernel());
        let _ = assembler.push(&Record {
            seq: n as u64,
            usec: 0,
            message: line,
        });
        std::iter::from_fn(|| assembler.pop()).for_each(check);
        let _ = unescape(line);
    }
    let _ = assembler.has_pending();
    assembler.flush().into_iter().for_each(check);
}
