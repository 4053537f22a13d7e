//! /dev/kmsg records and the OOM report assembler: arbitrary bytes must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oomtrace_core::testing::kmsg::fuzz_one(data);
});
