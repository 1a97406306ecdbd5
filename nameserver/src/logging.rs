//! Process logging for every binary of the project: text for people, or one JSON object per
//! line for log collectors (`--log-format json`, env `TFS_LOG_FORMAT`). The level comes from
//! `RUST_LOG` (default info).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields (message included), spans.
    Json,
}

/// Installs the global subscriber (logs on stdout, which a container runtime collects).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only for a terminal: in a pod, stdout is a file, and escape codes would reach
    // `kubectl logs` and every log collector as text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).with_current_span(false).init(),
    }
}
