//! What the process sets up with the operating system at start: a private umask
//! and data directory (REVIEW S13), and enough file descriptors for the session
//! pool (S20).

use std::path::Path;

/// Files the process creates are private from the first byte: the store (SCRAM
/// keys, the dialback secret, every message), keys, the control socket.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The data dir is 0700 and the store file 0600, whoever created them and however
/// (a `mkdir` with the default 0755 before the first start).
pub fn make_private(dir: &Path, file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        log::warn!("{} had mode {mode:03o}; set to 700 (it holds keys and messages)", dir.display());
    }
    if file.exists() {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// File descriptors the process needs besides its connections (listeners, the
/// store, the control socket, DNS, s2s links being set up).
const RESERVED_FDS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns how many
/// connections fit in it (`None`: no limit).
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            log::warn!("cannot raise the open-file limit to {:?}: {e}", limit.maximum);
        }
    }
    getrlimit(Resource::Nofile).current.map(|n| n.saturating_sub(RESERVED_FDS))
}
