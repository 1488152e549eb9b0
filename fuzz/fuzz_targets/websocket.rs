//! The frames a browser sends after the WebSocket upgrade: see
//! `wrenhub::fuzzing::websocket_frames` for the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrenhub::fuzzing::websocket_frames(data));
