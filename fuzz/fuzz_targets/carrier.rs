#![no_main]
//! `osprofiler_fuzz_checks::carrier`: its module says what is fuzzed and which properties hold.
libfuzzer_sys::fuzz_target!(|data: &[u8]| osprofiler_fuzz_checks::carrier::check(data));
