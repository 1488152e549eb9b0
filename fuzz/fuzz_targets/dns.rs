//! SRV answers from an untrusted DNS server: see `wrenhub::fuzzing::dns_srv` for the
//! properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrenhub::fuzzing::dns_srv(data));
