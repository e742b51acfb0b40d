//! How the agent prints a figure for a person: one way for each kind of value, so that a
//! duration, a share, a size or a time reads the same in a reason, a hint, `/diag` and the log.
//! The JSON keeps raw values and units; these are for text.

use std::time::{Duration, SystemTime};

use crate::core::outcome::Unit;

/// A configured duration as it is written in the configuration: `5s`, `250ms`, `2m`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A measured duration, short: `1.4s`, `250ms`, `0.3ms` below a millisecond.
pub fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{}s", trimmed(d.as_secs_f64(), 2))
    } else if d >= Duration::from_millis(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ms", trimmed(d.as_secs_f64() * 1000.0, 2))
    }
}

/// How long ago or ahead, in its largest whole unit: `3d`, `5h`, `12m`, `30s`.
pub fn age(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A share as a whole percent: `53%`.
pub fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// A share with one decimal where it matters: `2.1 %`-style figures for `/diag`, `0.4%`.
pub fn percent_precise(ratio: f64) -> String {
    let pct = ratio * 100.0;
    if pct.abs() >= 10.0 {
        format!("{pct:.0}%")
    } else {
        format!("{}%", trimmed(pct, 1))
    }
}

/// Sizes as people read limits: whole MiB below a GiB, GiB with a decimal above (`653MiB`,
/// `1.5GiB`); below a MiB, KiB.
pub fn bytes(value: u64) -> String {
    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let v = value as f64;
    if v < MIB {
        format!("{:.0}KiB", v / KIB)
    } else if v < 1024.0 * MIB {
        format!("{:.0}MiB", v / MIB)
    } else {
        format!("{:.1}GiB", v / MIB / 1024.0)
    }
}

/// A wall-clock time with milliseconds: `2026-11-23T20:24:05.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A wall-clock time to the second: `2026-11-23T20:24:05Z`.
pub fn timestamp_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A number without noise: whole numbers without decimals, others to four significant places.
pub fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        format!("{n:.4}")
    }
}

/// An observed figure in the units `kubectl top` and `kubectl describe` print: `0.3ms`,
/// `653MiB`, `2.1%`, `yes`, `0.25 cores`, `12`.
pub fn figure(value: f64, unit: Unit) -> String {
    if !value.is_finite() {
        return "unknown".to_owned();
    }
    match unit {
        Unit::Seconds if value >= 0.0 => seconds(Duration::from_secs_f64(value)),
        Unit::Bytes if value >= 0.0 => bytes(value as u64),
        Unit::Ratio => percent_precise(value),
        Unit::Flag => (if value != 0.0 { "yes" } else { "no" }).to_owned(),
        Unit::Cores => format!("{} cores", trimmed(value, 3)),
        Unit::Seconds | Unit::Bytes | Unit::Count | Unit::None => number(value),
    }
}

/// Text from outside (an operator's drain reason, a peer's answer) as one printable line of at
/// most `max_bytes`: line breaks and tabs become spaces, an escape sequence (`ESC [ … m`) and
/// every other control or bidi-override character become `?`, so that nothing read can move a
/// terminal's cursor, recolour it or reorder what follows; cut with `…` at a character boundary.
///
/// Issue 23 brings `core::text` for every reason; until it lands this is the one such function,
/// and it should become a call to it.
pub fn one_line(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '\u{1b}' => {
                out.push('?');
                // A CSI sequence: `[`, parameters, one final byte from `@` to `~`.
                if chars.next_if_eq(&'[').is_some() {
                    for p in chars.by_ref() {
                        if ('@'..='~').contains(&p) {
                            break;
                        }
                    }
                }
            }
            c if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => out.push('?'),
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    if trimmed.len() <= max_bytes {
        return trimmed.to_owned();
    }
    let mut end = max_bytes.saturating_sub('…'.len_utf8());
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

/// `value` to at most `places` decimals, trailing zeros dropped: `1.4`, `2`, `0.25`.
fn trimmed(value: f64, places: usize) -> String {
    let text = format!("{value:.places$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_durations_are_short() {
        assert_eq!(seconds(Duration::from_millis(1400)), "1.4s");
        assert_eq!(seconds(Duration::from_secs(2)), "2s");
        assert_eq!(seconds(Duration::from_millis(250)), "250ms");
        assert_eq!(seconds(Duration::from_micros(300)), "0.3ms");
    }

    #[test]
    fn figures_read_as_kubectl_prints_them() {
        assert_eq!(figure(0.0003, Unit::Seconds), "0.3ms");
        assert_eq!(figure(684_339_200.0, Unit::Bytes), "653MiB");
        assert_eq!(figure(0.0206, Unit::Ratio), "2.1%");
        assert_eq!(figure(0.53, Unit::Ratio), "53%");
        assert_eq!(figure(1.0, Unit::Flag), "yes");
        assert_eq!(figure(0.0, Unit::Flag), "no");
        assert_eq!(figure(0.25, Unit::Cores), "0.25 cores");
        assert_eq!(figure(12.0, Unit::Count), "12");
        assert_eq!(figure(f64::NAN, Unit::Ratio), "unknown");
        assert_eq!(figure(1.5 * 1024.0 * 1024.0 * 1024.0, Unit::Bytes), "1.5GiB");
    }

    #[test]
    fn outside_text_becomes_one_printable_bounded_line() {
        assert_eq!(one_line("  forensics\n\tby ops ", 200), "forensics  by ops");
        assert_eq!(one_line("a\u{1b}[31mred\u{1b}[0m\u{7}b", 200), "a?red??b");
        assert_eq!(one_line("x\u{202e}y\u{0}", 200), "x?y?");
        let long = "é".repeat(300);
        let cut = one_line(&long, 200);
        assert!(cut.len() <= 200 && cut.ends_with('…'), "{cut}");
        assert_eq!(one_line("short", 5), "short");
    }

    #[test]
    fn configured_durations_read_as_written() {
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
    }
}
