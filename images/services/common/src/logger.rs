//! A `log` backend writing one line per record to stderr, which the shim
//! forwards to containerd's log. Level from `LOG_LEVEL` (error, warn, info,
//! debug, trace; default info).

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    service: &'static str,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // One write per line so concurrent tasks never interleave mid-line;
        // a failed write to stderr has nowhere to be reported.
        let line = format!("{} {:<5} {}: {}\n", crate::time::now(), record.level(), self.service, record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger for `service`. Safe to call more than once (later
/// calls only change nothing).
pub fn init(service: &'static str) {
    let level = parse_level(std::env::var("LOG_LEVEL").ok().as_deref());
    if log::set_boxed_logger(Box::new(StderrLogger { service })).is_ok() {
        log::set_max_level(level);
    }
}

fn parse_level(value: Option<&str>) -> LevelFilter {
    match value.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        Some("off") => LevelFilter::Off,
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => Level::Info.to_level_filter(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level(None), LevelFilter::Info);
        assert_eq!(parse_level(Some("DEBUG")), LevelFilter::Debug);
        assert_eq!(parse_level(Some("nonsense")), LevelFilter::Info);
    }
}
