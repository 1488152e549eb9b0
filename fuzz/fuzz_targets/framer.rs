//! The stream framer fed arbitrary bytes, in one piece and in chunks: see
//! `wrenhub::fuzzing::framer_chunked` for the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrenhub::fuzzing::framer_chunked(data));
