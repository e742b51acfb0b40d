//! Log output: JSON lines by default (what log pipelines parse), `VIGIL_LOG_FORMAT=text` for a
//! person at a terminal, `RUST_LOG` to filter (default `info`). Logs go to stderr so that
//! `vigil check` and `vigil validate` keep stdout for their report.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write as _};

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

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

/// `RUST_LOG` as `level` and `target=level` directives, comma-separated (`info`,
/// `vigil=debug,tokio_postgres=warn`); `info` when unset, empty or unreadable. A targets filter
/// rather than tracing's `EnvFilter`: the span and field matching that needs a regex engine in the
/// binary is not something a sidecar's logs are filtered by.
fn filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .map(str::trim)
        .filter(|directives| !directives.is_empty())
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

/// Installs the global subscriber and routes panics through it, so that even a panic is one
/// JSON line.
///
/// A log line that cannot be written (stderr a pipe whose reader has gone, a full disk behind a
/// redirect) is dropped: never a panic, which the panic hook would try to log again and turn
/// into an abort, taking the drain after SIGTERM with it.
pub fn init(format: LogFormat, rust_log: Option<&str>) {
    let filter = filter(rust_log);
    let builder = tracing_subscriber::fmt()
        // On a failed write tracing-subscriber would report it with `eprintln!`, which panics
        // when stderr is what failed.
        .log_internal_errors(false)
        .with_writer(|| QuietStderr);
    let installed = match format {
        LogFormat::Json => builder.event_format(JsonLines).finish().with(filter).try_init(),
        // Colours only for a person at a terminal: `kubectl logs` and log shippers read the
        // escape sequences as text.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .finish()
            .with(filter)
            .try_init(),
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

/// Writes `vigil: <message>` and a newline to stderr, the way the command reports what stopped
/// it; a stderr that cannot be written is ignored (there is nowhere else to say it).
pub fn to_stderr(message: impl fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "vigil: {message}");
}

/// stderr, whose failures are ignored: a log line that cannot be written is lost, and nothing
/// else happens.
struct QuietStderr;

impl io::Write for QuietStderr {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // One line a call: written whole under the lock, so that lines from threads never mix.
        let _ = io::stderr().lock().write_all(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// A log field that JSON lines carry as JSON (an array, an object), not as the string of its
/// Debug text: `checks = %logging::json(&names)` writes `"checks":["system"]` in JSON lines and
/// `checks=["system"]` in text lines. (tracing's own structured values, `valuable`, are
/// unstable.)
pub fn json<T: Serialize>(value: T) -> JsonField<T> {
    JsonField(value)
}

/// See [`json`].
pub struct JsonField<T>(T);

thread_local! {
    /// Set while a [`JsonField`] formats itself, so that [`JsonLines`] can tell its text is JSON.
    static FORMATTED_JSON: Cell<bool> = const { Cell::new(false) };
}

impl<T: Serialize> fmt::Display for JsonField<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(&self.0).map_err(|_| fmt::Error)?;
        FORMATTED_JSON.set(true);
        f.write_str(&text)
    }
}

impl<T: Serialize> fmt::Debug for JsonField<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One JSON object a line, as tracing-subscriber's `json().flatten_event(true)` writes them
/// (`timestamp`, `level`, the event's fields, `target`), except that a [`JsonField`] stays JSON.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Map::new();
        line.insert("timestamp".to_owned(), Value::String(timestamp));
        line.insert("level".to_owned(), Value::String(meta.level().as_str().to_owned()));
        event.record(&mut JsonVisitor(&mut line));
        line.insert("target".to_owned(), Value::String(meta.target().to_owned()));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Puts an event's fields into a JSON object: numbers and booleans as such, a [`JsonField`] as
/// its JSON, everything else as text.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        FORMATTED_JSON.set(false);
        let text = format!("{value:?}");
        if FORMATTED_JSON.replace(false)
            && let Ok(json) = serde_json::from_str::<Value>(&text)
        {
            return self.put(field, json);
        }
        self.put(field, Value::String(text));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing::Level;

    #[test]
    fn rust_log_reads_levels_and_targets_and_anything_else_is_info() {
        let set = super::filter(Some("vigil=debug,warn"));
        assert!(set.would_enable("vigil::checks::postgres", &Level::DEBUG));
        assert!(!set.would_enable("hyper", &Level::INFO));
        assert!(set.would_enable("hyper", &Level::WARN));
        for unset in [None, Some(""), Some("  "), Some("vigil=loud")] {
            let info = super::filter(unset);
            assert!(info.would_enable("vigil", &Level::INFO), "{unset:?}");
            assert!(!info.would_enable("vigil", &Level::DEBUG), "{unset:?}");
        }
    }

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_keep_json_fields_as_json_and_the_rest_as_before() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let names = vec!["system".to_owned(), "upstream:orders".to_owned()];
            tracing::info!(
                listen = %"127.0.0.1:9476",
                checks = %json(&names),
                listed = ?names,
                runs = 3u64,
                ratio = 0.5,
                ready = true,
                "Serving"
            );
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["checks"], serde_json::json!(["system", "upstream:orders"]));
        assert_eq!(line["listed"], r#"["system", "upstream:orders"]"#, "? stays a string");
        assert_eq!(line["message"], "Serving");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["listen"], "127.0.0.1:9476");
        assert_eq!(
            (line["runs"].as_u64(), line["ratio"].as_f64(), line["ready"].as_bool()),
            (Some(3), Some(0.5), Some(true))
        );
        assert_eq!(line["target"], module_path!());
        let keys: Vec<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.first(), Some(&"timestamp"));
        assert_eq!(keys.last(), Some(&"target"));
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn json_fields_read_as_json_in_text_too() {
        assert_eq!(json(["system"]).to_string(), r#"["system"]"#);
        assert_eq!(format!("{:?}", json(["a", "b"])), r#"["a","b"]"#);
    }
}
