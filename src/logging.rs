//! Log output: JSON lines by default (what log pipelines parse), `VIGIL_LOG_FORMAT=text` for a
//! person at a terminal, `RUST_LOG` to filter (default `info`). Logs go to stderr so that
//! `vigil check` and `vigil validate` keep stdout for their report.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// Reads `VIGIL_LOG_FORMAT`; anything but `text` means JSON.
    pub fn from_env_value(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            _ => LogFormat::Json,
        }
    }
}

/// Installs the global subscriber and routes panics through it, so that even a panic is one
/// JSON line.
pub fn init(format: LogFormat, rust_log: Option<&str>) {
    let filter = rust_log
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
    if installed.is_err() {
        // Already installed (a second call in tests): keep the first.
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        tracing::error!(%location, panic = message, "Panic caught");
    }));
}
