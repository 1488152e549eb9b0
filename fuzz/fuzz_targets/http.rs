//! What an HTTP client sends the HTTPS listener: see `wrenhub::fuzzing::http_request`
//! for the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrenhub::fuzzing::http_request(data));
