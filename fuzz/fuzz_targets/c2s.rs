//! A client's bytes through the stream state machine and the router, against an
//! in-memory store: see `wrenhub::fuzzing::c2s_stream` for the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrenhub::fuzzing::c2s_stream(data));
