//! libFuzzer entry point; the logic is `strait_fuzz::http1_request` (shared with the smoke test).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strait_fuzz::http1_request(data));
