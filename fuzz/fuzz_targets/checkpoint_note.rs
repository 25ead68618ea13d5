#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| credledger_api::fuzzing::checkpoint_note(data));
