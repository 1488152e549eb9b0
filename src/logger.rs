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
        line.push_str(&format!("{:5} {}\n", record.level(), record.args()));
        // One write per line, so lines from one process never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger; call once at start.
pub fn init(level: log::LevelFilter) {
    let timestamps = std::env::var_os("JOURNAL_STREAM").is_none();
    if log::set_boxed_logger(Box::new(StderrLogger { timestamps })).is_ok() {
        log::set_max_level(level);
    }
}
