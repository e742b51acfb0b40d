//! A parser for the Prometheus text exposition format (0.0.4), enough to read another
//! process's `/metrics`: `# TYPE` lines, samples `name{label="value",…} value [timestamp]`,
//! label-value escapes (`\\`, `\"`, `\n`), `NaN` and `±Inf`.
//!
//! Written here rather than taken from the `prometheus-parse` crate: that crate pulls regex
//! and chrono for what is a line tokenizer, and has seen few releases; the format is small and
//! stable, and a hand-written tokenizer reports the line of a malformed sample. `# HELP` text
//! and timestamps are read past and dropped; vigil needs only names, labels and values.

use std::collections::HashMap;

/// A metric family's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `{a="1",b="2"}` (empty for no labels), without `except`: a stable key for a series.
    pub fn label_key(&self, except: &str) -> String {
        let parts: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| k != except)
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", parts.join(","))
        }
    }
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name → declared type.
    pub types: HashMap<String, MetricType>,
    /// [`Keep::optional`]'s names had more samples than the limit: none of theirs was kept.
    pub optional_dropped: bool,
}

impl Exposition {
    /// The samples of one exact name.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    pub fn type_of(&self, family: &str) -> Option<MetricType> {
        self.types.get(family).copied()
    }
}

/// A malformed line, or one sample past the limit of [`parse_only`]; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
    /// The text is well formed so far, only larger than the caller reads.
    pub too_many: bool,
}

/// Parses a whole exposition; the first malformed line is an error (as Prometheus rejects
/// such a scrape).
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    parse_with(text, None)
}

/// What [`parse_only`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct Keep<'a> {
    /// The metric names whose samples and `# TYPE` are kept.
    pub names: &'a [&'a str],
    /// More samples of those names than this is an error.
    pub max_samples: usize,
    /// Names kept as well, with a limit of `max_samples` of their own: past it none of their
    /// samples is kept and [`Exposition::optional_dropped`] says so, and the parse goes on. What
    /// the caller can do without (a latency histogram of many series) never costs it what it
    /// cannot (a pool's figures).
    pub optional: &'a [&'a str],
}

/// Parses an exposition, keeping only the samples and types of `keep.names` and at most
/// `keep.max_samples` of them: what the parse holds is bounded by what the caller reads, not by
/// what the other side sends. Every line is still checked.
pub fn parse_only(text: &str, keep: Keep<'_>) -> Result<Exposition, ParseError> {
    parse_with(text, Some(keep))
}

fn parse_with(text: &str, keep: Option<Keep<'_>>) -> Result<Exposition, ParseError> {
    let optional = |name: &str| keep.is_some_and(|k| k.optional.contains(&name));
    let wanted = |name: &str| keep.is_none_or(|k| k.names.contains(&name)) || optional(name);
    let mut out = Exposition::default();
    let (mut required, mut optionals) = (0usize, 0usize);
    for (index, line) in text.lines().enumerate() {
        // Messages quote the input: keep them one short line however long the input line is.
        let error = |message: String| ParseError {
            line: index + 1,
            message: truncate(message, 160),
            too_many: false,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                    return Err(error("TYPE needs a name and a type".to_owned()));
                };
                let kind = match kind {
                    "counter" => MetricType::Counter,
                    "gauge" => MetricType::Gauge,
                    "histogram" => MetricType::Histogram,
                    "summary" => MetricType::Summary,
                    _ => MetricType::Untyped,
                };
                if wanted(name) {
                    out.types.insert(name.to_owned(), kind);
                }
            }
            continue;
        }
        let sample = parse_sample(line).map_err(error)?;
        if !wanted(&sample.name) {
            continue;
        }
        if let Some(keep) = keep {
            if optional(&sample.name) {
                optionals += 1;
                out.optional_dropped |= optionals > keep.max_samples;
                if out.optional_dropped {
                    continue;
                }
            } else if required >= keep.max_samples {
                return Err(ParseError {
                    line: index + 1,
                    message: format!("more than {} samples of the metrics read", keep.max_samples),
                    too_many: true,
                });
            } else {
                required += 1;
            }
        }
        out.samples.push(sample);
    }
    if let Some(keep) = keep
        && out.optional_dropped
    {
        out.samples.retain(|s| !keep.optional.contains(&s.name.as_str()));
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let mut cursor = Cursor { rest: line };
    let name = cursor
        .name()
        .ok_or_else(|| format!("expected a metric name in {line:?}"))?;
    let mut labels = Vec::new();
    cursor.skip_spaces();
    if cursor.eat('{') {
        loop {
            cursor.skip_spaces();
            if cursor.eat('}') {
                break;
            }
            let label = cursor.name().ok_or("expected a label name")?;
            cursor.skip_spaces();
            if !cursor.eat('=') {
                return Err(format!("expected '=' after label {label}"));
            }
            cursor.skip_spaces();
            let value = cursor.quoted()?;
            labels.push((label.to_owned(), value));
            cursor.skip_spaces();
            if cursor.eat(',') {
                continue;
            }
            if cursor.eat('}') {
                break;
            }
            return Err("expected ',' or '}' in labels".to_owned());
        }
    }
    let mut rest = cursor.rest.split_whitespace();
    let value = rest.next().ok_or_else(|| format!("{name}: missing value"))?;
    let value = parse_value(value).ok_or_else(|| format!("{name}: not a number: {value:?}"))?;
    if let Some(timestamp) = rest.next()
        && timestamp.parse::<i64>().is_err()
    {
        return Err(format!("{name}: not a timestamp: {timestamp:?}"));
    }
    if rest.next().is_some() {
        return Err(format!("{name}: unexpected text after the value"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn name(&mut self) -> Option<&'a str> {
        let end = self
            .rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
            .map_or(self.rest.len(), |(i, _)| i);
        if end == 0 {
            return None;
        }
        let (name, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(name)
    }

    fn quoted(&mut self) -> Result<String, String> {
        if !self.eat('"') {
            return Err("expected a quoted label value".to_owned());
        }
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err("unterminated label value".to_owned())
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), with `…` when cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_labels_escapes_and_special_values() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
                    x_total{a=\"b\\\"c\\\\d\\ne\", pool = \"p1\",} 4.5 1700000000000\n\
                    h_bucket{le=\"+Inf\"} 7\nnan_metric NaN\nneg -Inf\n# EOF\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.type_of("x_total"), Some(MetricType::Counter));
        assert_eq!(parsed.samples.len(), 5);
        let second = &parsed.samples[1];
        assert_eq!(second.label("a"), Some("b\"c\\d\ne"));
        assert_eq!(second.label("pool"), Some("p1"));
        assert_eq!(second.value, 4.5);
        assert_eq!(parsed.samples[2].label("le"), Some("+Inf"));
        assert!(parsed.samples[3].value.is_nan());
        assert_eq!(parsed.samples[4].value, f64::NEG_INFINITY);
        assert_eq!(parsed.named("x_total").count(), 2);
        assert_eq!(second.label_key("a"), "{pool=\"p1\"}");
    }

    #[test]
    fn a_name_inside_a_label_value_or_help_is_not_a_sample() {
        let text = "# HELP connection_pool_in_use see connection_pool_max 9\nother{note=\"connection_pool_max 9\"} 1\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.named("connection_pool_max").count(), 0);
    }

    #[test]
    fn a_filtered_parse_keeps_only_what_is_asked_and_at_most_so_many() {
        let text = "# TYPE a counter\n# TYPE b gauge\na 1\nb{x=\"1\"} 2\nb{x=\"2\"} 3\nc 4\n";
        let keep = Keep {
            names: &["b"],
            max_samples: 2,
            optional: &[],
        };
        let only = parse_only(text, keep).unwrap();
        assert_eq!(only.samples.len(), 2);
        assert!(only.samples.iter().all(|s| s.name == "b"));
        assert_eq!(only.type_of("a"), None, "types of other names are not kept");
        assert_eq!(only.type_of("b"), Some(MetricType::Gauge));
        let error = parse_only(text, Keep { max_samples: 1, ..keep }).unwrap_err();
        assert_eq!(
            (error.line, error.message.as_str(), error.too_many),
            (5, "more than 1 samples of the metrics read", true)
        );
        assert!(
            parse_only("b 1\nnot valid\n", keep).is_err(),
            "other lines are still checked"
        );
    }

    #[test]
    fn optional_names_past_their_limit_are_dropped_and_the_rest_kept() {
        let text = "pool 5\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"2\"} 2\nh_bucket{le=\"+Inf\"} 3\n";
        let keep = Keep {
            names: &["pool"],
            max_samples: 3,
            optional: &["h_bucket"],
        };
        let fits = parse_only(text, keep).unwrap();
        assert_eq!((fits.samples.len(), fits.optional_dropped), (4, false));
        let over = parse_only(text, Keep { max_samples: 2, ..keep }).unwrap();
        assert!(over.optional_dropped);
        assert_eq!(
            over.samples.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["pool"]
        );
        // The names that must fit still fail past the limit.
        let required = parse_only("pool 1\npool 2\n", Keep { max_samples: 1, ..keep }).unwrap_err();
        assert!(required.too_many);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        assert_eq!(parse("ok 1\nbad{a=\"x} 1\n").unwrap_err().line, 2);
        assert!(parse("x{a=b} 1").is_err());
        assert!(parse("x one").is_err());
        assert!(parse("x 1 2 3").is_err());
        assert!(parse("{a=\"b\"} 1").is_err());
    }
}
