//! Where logs go and how they look.

use crate::config::settings::LogFormat;

pub(super) fn init_logging(format: LogFormat) {
    init_logging_with(format, "info");
}

/// Logs go to stderr; `RUST_LOG` overrides `default_filter`.
pub(super) fn init_logging_with(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless; ignore it.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
