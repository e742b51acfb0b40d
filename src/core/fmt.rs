//! How the agent prints a figure for a person: one way for each kind of value, so that a
//! duration, a share, a size or a time reads the same in a reason, a hint, `/diag` and the log.
//! The JSON keeps raw values and units; these are for text.

use std::time::{Duration, SystemTime};

use crate::core::outcome::Unit;

/// A configured duration as it is written in the configuration: `5s`, `250ms`, `2m`. Rounded to
/// the millisecond (above one), so that a measured one never reads `799ms 999us 539ns`.
pub fn duration(d: Duration) -> String {
    let d = if d >= Duration::from_millis(1) {
        Duration::from_millis(u64::try_from((d.as_nanos() + 500_000) / 1_000_000).unwrap_or(u64::MAX))
    } else {
        d
    };
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

/// How long ago or ahead, in its largest whole unit: `3y` (from two years), `3d`, `5h`, `12m`,
/// `30s`.
pub fn age(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 2 * 31_556_952 => format!("{}y", s / 31_556_952),
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
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(_) => humantime::format_rfc3339_millis(t).to_string(),
        Err(before) => before_epoch(before.duration(), true),
    }
}

/// A wall-clock time to the second: `2026-11-23T20:24:05Z`.
pub fn timestamp_seconds(t: SystemTime) -> String {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(_) => humantime::format_rfc3339_seconds(t).to_string(),
        Err(before) => before_epoch(before.duration(), false),
    }
}

/// A time `before` the Unix epoch, as [`timestamp`] writes later ones (humantime cannot: a
/// certificate's `notAfter` can be 1960).
fn before_epoch(before: Duration, millis: bool) -> String {
    let nanos = i128::try_from(before.as_nanos()).unwrap_or(i128::MAX);
    let total_ms = -(nanos / 1_000_000) - i128::from(nanos % 1_000_000 != 0);
    let seconds = i64::try_from(total_ms.div_euclid(1000)).unwrap_or(i64::MIN);
    let ms = total_ms.rem_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let (h, m, s) = (of_day / 3_600, of_day % 3_600 / 60, of_day % 60);
    match millis {
        true => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z"),
        false => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
        Unit::Seconds if value >= 0.0 => seconds(Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)),
        Unit::Bytes if value >= 0.0 => bytes(value as u64),
        Unit::Ratio => percent_precise(value),
        Unit::Flag => (if value != 0.0 { "yes" } else { "no" }).to_owned(),
        Unit::Cores => format!("{} cores", trimmed(value, 3)),
        Unit::Seconds | Unit::Bytes | Unit::Count | Unit::None => number(value),
    }
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
        // A dependency's absurd figure is printed, not a panic.
        assert!(!figure(1e20, Unit::Seconds).is_empty());
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
    fn configured_durations_read_as_written() {
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_nanos(799_999_539)), "800ms");
        assert_eq!(duration(Duration::from_micros(1_500_400)), "1s 500ms");
    }

    #[test]
    fn times_before_1970_are_written_too() {
        let t = SystemTime::UNIX_EPOCH - Duration::from_secs(315_619_200);
        assert_eq!(timestamp_seconds(t), "1960-01-01T00:00:00Z");
        assert_eq!(timestamp(t - Duration::from_millis(1)), "1959-12-31T23:59:59.999Z");
        assert_eq!(
            timestamp_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)),
            "1970-01-02T00:00:00Z"
        );
        assert_eq!(age(Duration::from_secs(66 * 31_556_952 + 5)), "66y");
        assert_eq!(age(Duration::from_secs(400 * 86_400)), "400d");
    }
}
