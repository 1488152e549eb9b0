//! A few-line logger to stderr (journald and procd read stderr). Under systemd
//! (`JOURNAL_STREAM` set) the journal stamps lines itself, so no timestamp is added.

use std::io::Write;
use std::time::SystemTime;

struct StderrLogger {
    timestamps: bool,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::with_capacity(128);
        if self.timestamps {
            line.push_str(&crate::clock::utc_timestamp(SystemTime::now()));
            line.push(' ');
        }
        line.push_str(&format!("{:5} ", record.level()));
        push_escaped(&mut line, &record.args().to_string());
        line.push('\n');
        // One write per line, so lines from one process never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Appends a message with control characters escaped, so text a peer chose (a
/// dialback `type`, a JID) cannot forge log lines (REVIEW S16).
fn push_escaped(line: &mut String, message: &str) {
    for c in message.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
}

/// Installs the logger; call once at start.
pub fn init(level: log::LevelFilter) {
    let timestamps = std::env::var_os("JOURNAL_STREAM").is_none();
    if log::set_boxed_logger(Box::new(StderrLogger { timestamps })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_from_peers_cannot_start_a_log_line() {
        let mut line = String::new();
        super::push_escaped(&mut line, "type x\n2026-12-01T00:00:00Z INFO  alice@hub.lan authenticated\r\u{1b}[2J");
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\u{1b}'), "{line}");
        assert!(line.contains("\\n2026"), "{line}");
    }
}
