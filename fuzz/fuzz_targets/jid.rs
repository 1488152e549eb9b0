//! JID parsing fed arbitrary bytes: see `wrenhub::fuzzing::jid_roundtrip` for the
//! properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrenhub::fuzzing::jid_roundtrip(data));
