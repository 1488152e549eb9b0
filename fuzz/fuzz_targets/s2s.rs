//! Another server's bytes on an inbound stream through the stream state machine
//! and the router: see `wrenhub::fuzzing::s2s_stream` for the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrenhub::fuzzing::s2s_stream(data));
