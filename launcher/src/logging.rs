//! The launcher's log, through the `log` facade: to standard error by default
//! (`cradle: message`, `cradle: warning: message`), to syslog with `--syslog`.
//! The one-line error a command ends with is always written to standard error as well.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug | Level::Trace => "debug: ",
        };
        eprintln!("cradle: {prefix}{}", record.args());
    }

    fn flush(&self) {}
}

static STDERR: Stderr = Stderr;

/// What [`init`] was given, for a launcher that execs itself again (see `handoff`).
static SETTINGS: std::sync::OnceLock<(i8, bool)> = std::sync::OnceLock::new();

/// The verbosity and syslog choice logging was set up with.
pub fn settings() -> (i8, bool) {
    SETTINGS.get().copied().unwrap_or((0, false))
}

/// Sets up logging: `verbosity` -1 (quiet: warnings and errors), 0 (also what happens to
/// the guest), 1 and more (debug).
pub fn init(verbosity: i8, syslog: bool) {
    let _ = SETTINGS.set((verbosity, syslog));
    let level = match verbosity {
        i8::MIN..=-1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    if syslog {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "cradle".into(),
            pid: std::process::id(),
        };
        match syslog::unix(formatter) {
            Ok(logger) => {
                if log::set_boxed_logger(Box::new(syslog::BasicLogger::new(logger))).is_ok() {
                    log::set_max_level(level);
                    return;
                }
            }
            Err(e) => eprintln!("cradle: warning: syslog: {e}; logging to standard error"),
        }
    }
    if log::set_logger(&STDERR).is_ok() {
        log::set_max_level(level);
    }
}
