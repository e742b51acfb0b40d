//! The Prometheus text parser on arbitrary text: no panic, and the filtered parse agrees with
//! the full one (the wanted subset within the limit, the `too_many` error, or the same error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::promtext::{self, Keep};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    let full = promtext::parse(text);
    if let Err(error) = &full {
        assert!(error.line >= 1 && error.line <= lines, "{error} in {lines} lines");
        assert!(!error.too_many);
    }
    // Filter on the first name the text holds, and a fixed one.
    let first = full
        .as_ref()
        .ok()
        .and_then(|e| e.samples.first())
        .map(|s| s.name.clone());
    let mut names = vec!["up"];
    if let Some(first) = &first {
        names.push(first);
    }
    let max = usize::from(data.first().copied().unwrap_or(0) % 8);
    let only = promtext::parse_only(
        text,
        Keep {
            names: &names,
            max_samples: max,
            optional: &[],
        },
    );
    match (&full, &only) {
        (Ok(full), Ok(only)) => {
            let wanted: Vec<_> = full
                .samples
                .iter()
                .filter(|s| names.contains(&s.name.as_str()))
                .collect();
            assert!(wanted.len() <= max);
            assert_eq!(only.samples.len(), wanted.len());
            for (got, want) in only.samples.iter().zip(wanted) {
                assert_eq!((&got.name, &got.labels), (&want.name, &want.labels));
                assert!(got.value.to_bits() == want.value.to_bits() || (got.value.is_nan() && want.value.is_nan()));
            }
        }
        (Ok(_), Err(error)) => assert!(error.too_many && error.line <= lines, "{error}"),
        (Err(full), Ok(_)) => panic!("parse_only accepted what parse refused: {full}"),
        (Err(full), Err(error)) if error.too_many => assert!(error.line < full.line),
        (Err(full), Err(error)) => assert_eq!(full, error),
    }
});
