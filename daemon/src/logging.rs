//! Where nymd's log goes and in which form.
//!
//! - **journald** when systemd connected stderr to the journal
//!   (`JOURNAL_STREAM` names stderr's device and inode, see
//!   `systemd.exec(5)`): native journal records through `tracing-journald`,
//!   with the level as `PRIORITY` and every structured field of an event and
//!   of its spans as a journal field prefixed `NYMD_`. Every identity's
//!   runner runs in a span with `identity = <id>`, so all its records (and
//!   those of its app sessions and mixnet client) carry `NYMD_IDENTITY`:
//!   `journalctl -u nymd NYMD_IDENTITY=alice`.
//! - **text** on stderr, coloured only when stderr is a terminal (and
//!   `NO_COLOR` is unset): a file, a pipe or another supervisor's log gets no
//!   escape codes.
//! - **json**: one JSON object per line on stderr (tracing-subscriber's
//!   format: `timestamp`, `level`, `fields`, `target`, `span`, `spans`).
//!
//! `--log-format auto` (the default) picks journald under systemd and text
//! otherwise. If the journal's socket cannot be reached, text on stderr is
//! used instead and the first record says why.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// Prefix of nymd's own journal fields (`identity` → `NYMD_IDENTITY`).
pub const JOURNAL_FIELD_PREFIX: &str = "NYMD";

/// The form of the log (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// journald when stderr is connected to the journal, else text.
    #[default]
    Auto,
    /// Human-readable lines on stderr (colour only on a terminal).
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// Native journald records (fails over to text if journald is absent).
    Journald,
}

/// What [`init`] set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// Native records to journald.
    Journald,
    /// Text on stderr; `ansi` says whether it is coloured.
    Text {
        /// Colour escape codes are written.
        ansi: bool,
    },
    /// JSON lines on stderr.
    Json,
}

/// Whether `JOURNAL_STREAM` (`<device>:<inode>`, decimal) names the file
/// behind `stderr_dev`/`stderr_ino`.
pub fn journal_stream_matches(value: Option<&str>, stderr_dev: u64, stderr_ino: u64) -> bool {
    let Some((dev, ino)) = value.and_then(|v| v.trim().split_once(':')) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(stderr_dev) && ino.parse::<u64>().ok() == Some(stderr_ino)
}

/// Whether this process's stderr is the journal stream systemd set up.
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        #[allow(clippy::useless_conversion)] // dev_t and ino_t differ per target.
        Ok(st) => journal_stream_matches(Some(&value), u64::from(st.st_dev), u64::from(st.st_ino)),
        Err(_) => false,
    }
}

/// Whether text on stderr should be coloured: a terminal, and no `NO_COLOR`.
pub fn stderr_wants_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The filter: `NYMD_LOG` if set and valid, else `level`, else `info`.
fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_env("NYMD_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The journald layer: nymd's fields prefixed `NYMD_`, levels mapped as
/// syslog does (info → 6, debug and trace → 7).
pub fn journald_layer() -> std::io::Result<tracing_journald::Layer> {
    use tracing_journald::{Priority, PriorityMappings};
    Ok(tracing_journald::layer()?
        .with_field_prefix(Some(JOURNAL_FIELD_PREFIX.to_owned()))
        .with_syslog_identifier("nymd".to_owned())
        .with_priority_mappings(PriorityMappings {
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
            ..PriorityMappings::new()
        }))
}

/// Install the process-wide subscriber. Call once, before the runtime
/// starts. A second call (tests) leaves the first subscriber in place.
pub fn init(format: LogFormat, level: &str) -> LogTarget {
    let want_journal = match format {
        LogFormat::Auto => stderr_is_journal(),
        LogFormat::Journald => true,
        LogFormat::Text | LogFormat::Json => false,
    };
    let mut journal_error = None;
    if want_journal {
        match journald_layer() {
            Ok(layer) => {
                let _ = tracing_subscriber::registry()
                    .with(filter(level))
                    .with(layer)
                    .try_init();
                return LogTarget::Journald;
            }
            Err(e) => journal_error = Some(e),
        }
    }
    let target = if format == LogFormat::Json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter(level))
            .with_writer(std::io::stderr)
            .try_init();
        LogTarget::Json
    } else {
        let ansi = stderr_wants_colour();
        let _ = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_env_filter(filter(level))
            .with_writer(std::io::stderr)
            .try_init();
        LogTarget::Text { ansi }
    };
    if let Some(e) = journal_error {
        tracing::warn!(
            "cannot write to the journal ({e}); logging to stderr instead \
             (is systemd-journald running? /run/systemd/journal/socket)"
        );
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_matches(Some("8:1234"), 8, 1234));
        assert!(journal_stream_matches(Some(" 8:1234\n"), 8, 1234));
        assert!(!journal_stream_matches(Some("8:1235"), 8, 1234));
        assert!(!journal_stream_matches(Some("9:1234"), 8, 1234));
        assert!(!journal_stream_matches(Some("8"), 8, 1234));
        assert!(!journal_stream_matches(Some("a:b"), 8, 1234));
        assert!(!journal_stream_matches(Some(""), 8, 1234));
        assert!(!journal_stream_matches(None, 8, 1234));
    }
}
