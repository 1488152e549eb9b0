//! The one source of secret randomness (salts, nonces, secrets, stream ids): the
//! OS generator. If it fails there is no safe way on: a zero dialback secret or a
//! predictable nonce would be forever (REVIEW S15), so the process stops with a
//! clear message instead (release builds abort on panic). The server checks it once
//! at start ([`check`]), so a broken generator stops it before it serves anyone.

/// Fills `buf` with secret random bytes, or stops the process.
pub fn fill(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        log::error!("the operating system's random generator failed ({e}); stopping");
        panic!("the operating system's random generator failed: {e}");
    }
}

/// At start: the generator works.
pub fn check() -> Result<(), String> {
    getrandom::fill(&mut [0u8; 16]).map_err(|e| format!("the operating system's random generator failed: {e}"))
}
