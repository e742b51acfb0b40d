//! Property tests for the Prometheus text parser (issue 12, "Hostile inputs, bounded cost"):
//! what a gateway's `/metrics` sends is not trusted, so arbitrary text never panics, a
//! well-formed exposition reads back exactly, and the filtered parse never holds more than it
//! was asked to.

use std::collections::HashMap;

use proptest::prelude::*;
use vigil::promtext::{self, Exposition, Keep, MetricType, ParseError, Sample};

const CASES: u32 = 256;

/// One generated exposition line, with what it must parse to.
#[derive(Debug, Clone)]
enum Line {
    Sample {
        text: String,
        sample: Sample,
    },
    Type {
        text: String,
        name: String,
        kind: MetricType,
    },
    /// `# HELP`, a bare comment or a blank line: read past.
    Ignored(String),
}

fn metric_name() -> impl Strategy<Value = String> {
    // A few fixed names so that filters and `# TYPE` lines hit samples, and free ones.
    prop_oneof![
        3 => prop::sample::select(vec!["up", "http_requests_total", "pool:in_use", "_x", "a1"]).prop_map(str::to_owned),
        2 => "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
    ]
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}"
}

/// Label values: anything, the escaped characters weighted in.
fn label_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            2 => Just('\\'),
            2 => Just('"'),
            2 => Just('\n'),
            1 => Just(' '),
            1 => Just('}'),
            1 => Just(','),
            1 => Just('='),
            4 => any::<char>(),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0),
        6 => any::<f64>(),
        3 => (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
    ]
}

/// The ways an exposition may spell a value.
fn spell(value: f64, plain: bool) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        if plain { "+Inf" } else { "Inf" }.to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else if plain {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

fn gap() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", " ", "\t", "  "])
}

fn sample_line() -> impl Strategy<Value = Line> {
    (
        metric_name(),
        prop::collection::vec((label_name(), label_value(), gap(), gap()), 0..4),
        any::<bool>(),
        any::<bool>(),
        value(),
        any::<bool>(),
        prop::option::of(any::<i64>()),
        gap(),
    )
        .prop_map(|(name, labels, braces, trailing_comma, value, style, timestamp, gap)| {
            let mut text = name.clone();
            if braces || !labels.is_empty() {
                text.push_str(gap);
                text.push('{');
                let parts: Vec<String> = labels
                    .iter()
                    .map(|(k, v, before, after)| format!("{before}{k}{after}={before}\"{}\"{after}", escape(v)))
                    .collect();
                text.push_str(&parts.join(","));
                if trailing_comma && !labels.is_empty() {
                    text.push(',');
                }
                text.push('}');
            }
            text.push(' ');
            text.push_str(&spell(value, style));
            if let Some(timestamp) = timestamp {
                text.push_str(&format!(" {timestamp}"));
            }
            text.push_str(gap);
            let labels = labels.into_iter().map(|(k, v, _, _)| (k, v)).collect();
            Line::Sample {
                text,
                sample: Sample { name, labels, value },
            }
        })
}

fn type_line() -> impl Strategy<Value = Line> {
    let kinds = vec![
        ("counter", MetricType::Counter),
        ("gauge", MetricType::Gauge),
        ("histogram", MetricType::Histogram),
        ("summary", MetricType::Summary),
        ("untyped", MetricType::Untyped),
        ("whatever", MetricType::Untyped),
    ];
    (metric_name(), prop::sample::select(kinds)).prop_map(|(name, (word, kind))| Line::Type {
        text: format!("# TYPE {name} {word}"),
        name,
        kind,
    })
}

fn ignored_line() -> impl Strategy<Value = Line> {
    prop_oneof![
        ("[a-z_]{1,8}", "[^\n\r]{0,30}").prop_map(|(name, help)| format!("# HELP {name} {help}")),
        "#[^\n\r]{0,20}".prop_filter("not a TYPE line", |c| !c
            .trim_start_matches('#')
            .trim_start()
            .starts_with("TYPE")),
        Just(String::new()),
        Just("   ".to_owned()),
    ]
    .prop_map(Line::Ignored)
}

fn exposition() -> impl Strategy<Value = (Vec<Line>, bool)> {
    (
        prop::collection::vec(
            prop_oneof![6 => sample_line(), 2 => type_line(), 1 => ignored_line()],
            0..40,
        ),
        any::<bool>(),
    )
}

fn render(lines: &[Line], crlf: bool) -> String {
    let end = if crlf { "\r\n" } else { "\n" };
    lines
        .iter()
        .map(|line| match line {
            Line::Sample { text, .. } | Line::Type { text, .. } | Line::Ignored(text) => format!("{text}{end}"),
        })
        .collect()
}

/// Samples equal, NaN included (bit for bit: `-0` stays `-0`).
fn same_samples(got: &[Sample], want: &[&Sample]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(want) {
        prop_assert_eq!(&got.name, &want.name);
        prop_assert_eq!(&got.labels, &want.labels);
        prop_assert!(
            got.value.to_bits() == want.value.to_bits() || (got.value.is_nan() && want.value.is_nan()),
            "{} parsed as {}, written {}",
            got.name,
            got.value,
            want.value
        );
    }
    Ok(())
}

fn line_count(text: &str) -> usize {
    text.lines().count()
}

fn assert_error_in_input(text: &str, error: &ParseError) -> Result<(), TestCaseError> {
    prop_assert!(
        error.line >= 1 && error.line <= line_count(text),
        "error names line {} of a {}-line input: {error}",
        error.line,
        line_count(text)
    );
    prop_assert!(!error.message.is_empty());
    // Messages quote the input, cut to 160 bytes plus an ellipsis.
    prop_assert!(error.message.len() <= 160 + '…'.len_utf8(), "{}", error.message);
    Ok(())
}

/// Text close enough to an exposition to reach every branch of the tokenizer.
fn hostile_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("=".to_owned()),
        Just(",".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("# TYPE ".to_owned()),
        Just("NaN".to_owned()),
        Just("+Inf".to_owned()),
        Just("-Inf".to_owned()),
        "[a-z_:]{1,6}",
        "-?[0-9]{1,4}(\\.[0-9]{1,3})?",
        "\\PC{1,4}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ];
    prop_oneof![
        any::<String>().prop_map(|s| s.chars().take(512).collect()),
        prop::collection::vec(fragment, 0..64).prop_map(|parts| parts.concat()),
    ]
}

fn keep_names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(metric_name(), 0..4)
}

/// `parse_only` against `parse` on the same text: the wanted subset, at most `max` of it, or
/// the `too_many` error at the sample past the limit; a malformed text never parses.
fn check_parse_only(text: &str, names: &[String], max: usize) -> Result<(), TestCaseError> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let keep = Keep {
        names: &names,
        max_samples: max,
        optional: &[],
    };
    let full = promtext::parse(text);
    let only = promtext::parse_only(text, keep);
    match (&full, &only) {
        (Ok(full), Ok(only)) => {
            let wanted: Vec<&Sample> = full
                .samples
                .iter()
                .filter(|s| names.contains(&s.name.as_str()))
                .collect();
            prop_assert!(
                wanted.len() <= max,
                "{} wanted samples, limit {max}, parsed anyway",
                wanted.len()
            );
            prop_assert!(only.samples.len() <= max);
            same_samples(&only.samples, &wanted)?;
            let types: HashMap<String, MetricType> = full
                .types
                .iter()
                .filter(|(name, _)| names.contains(&name.as_str()))
                .map(|(name, kind)| (name.clone(), *kind))
                .collect();
            prop_assert_eq!(&only.types, &types);
        }
        (Ok(full), Err(error)) => {
            prop_assert!(error.too_many, "a text parse() accepts refused by parse_only: {error}");
            let wanted = full.samples.iter().filter(|s| names.contains(&s.name.as_str())).count();
            prop_assert!(wanted > max, "too_many with {wanted} wanted samples, limit {max}");
            assert_error_in_input(text, error)?;
        }
        (Err(full), Ok(_)) => {
            prop_assert!(false, "parse_only accepted what parse refused: {full}");
        }
        (Err(full), Err(error)) => {
            assert_error_in_input(text, error)?;
            if error.too_many {
                prop_assert!(
                    error.line < full.line,
                    "too_many at {} past the malformed {}",
                    error.line,
                    full.line
                );
            } else {
                prop_assert_eq!(error, full, "the same malformed line, the same error");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_and_errors_name_a_line_of_it(text in hostile_text()) {
        if let Err(error) = promtext::parse(&text) {
            prop_assert!(!error.too_many, "parse has no limit: {error}");
            assert_error_in_input(&text, &error)?;
        }
    }

    #[test]
    fn a_well_formed_exposition_parses_back_to_its_samples((lines, crlf) in exposition()) {
        let text = render(&lines, crlf);
        let parsed: Exposition = promtext::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let want: Vec<&Sample> = lines
            .iter()
            .filter_map(|line| match line {
                Line::Sample { sample, .. } => Some(sample),
                _ => None,
            })
            .collect();
        same_samples(&parsed.samples, &want)?;
        let mut types = HashMap::new();
        for line in &lines {
            if let Line::Type { name, kind, .. } = line {
                types.insert(name.clone(), *kind);
            }
        }
        prop_assert_eq!(&parsed.types, &types);
    }

    #[test]
    fn the_filtered_parse_of_an_exposition_is_the_wanted_subset_within_the_limit(
        (lines, crlf) in exposition(),
        names in keep_names(),
        max in 0usize..12,
    ) {
        let text = render(&lines, crlf);
        check_parse_only(&text, &names, max)?;
        // Past the limit, the error names the line of the first sample over it.
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let over = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| matches!(line, Line::Sample { sample, .. } if names.contains(&sample.name)))
            .nth(max)
            .map(|(index, _)| index + 1);
        let got = promtext::parse_only(&text, Keep {
                names: &refs,
                max_samples: max,
                optional: &[],
            },
        );
        prop_assert_eq!(got.err().map(|e| (e.line, e.too_many)), over.map(|line| (line, true)));
    }

    #[test]
    fn the_filtered_parse_of_hostile_text_agrees_with_the_full_one(
        text in hostile_text(),
        names in keep_names(),
        max in 0usize..6,
    ) {
        check_parse_only(&text, &names, max)?;
    }
}
