//! libFuzzer entry point; the logic is `strait_fuzz::config` (shared with the smoke test).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strait_fuzz::config(data));
