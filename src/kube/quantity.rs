//! Kubernetes resource quantities (`500m`, `1`, `512Mi`, `1G`, `12345n`, `1e3`): the text of
//! a CPU or memory limit in a pod spec and of a usage figure from the metrics API, as a number
//! (cores, bytes).
//!
//! The grammar is `resource.Quantity`'s: an optional sign, a decimal number, then one suffix: a
//! binary SI one (`Ki` … `Ei`), a decimal SI one (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`,
//! `E`) or a decimal exponent (`e3`, `E-2`).

/// A quantity that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Kubernetes quantity: {0:?}")]
pub(crate) struct QuantityError(String);

/// The value of `text`: `"500m"` → 0.5, `"512Mi"` → 536870912.
pub(crate) fn parse(text: &str) -> Result<f64, QuantityError> {
    let error = || QuantityError(text.chars().take(64).collect());
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return Err(error());
    }
    let value: f64 = number.parse().map_err(|_| error())?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| error())?;
            if !(-30..=30).contains(&power) {
                return Err(error());
            }
            10f64.powi(power)
        }
        _ => return Err(error()),
    };
    let value = value * multiplier;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 1e-12
    }

    #[test]
    fn cpu_and_memory_quantities_read_as_kubectl_means_them() {
        for (text, value) in [
            ("500m", 0.5),
            ("1", 1.0),
            ("0", 0.0),
            ("2.5", 2.5),
            ("12345n", 0.000_012_345),
            ("250u", 0.000_25),
            ("512Mi", 536_870_912.0),
            ("1024Ki", 1_048_576.0),
            ("1.5Gi", 1_610_612_736.0),
            ("1G", 1e9),
            ("128M", 128e6),
            ("1k", 1000.0),
            ("1e3", 1000.0),
            ("5E-3", 0.005),
            ("1E", 1e18),
            ("+3", 3.0),
            ("-1m", -0.001),
            (".5", 0.5),
        ] {
            let parsed = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(close(parsed, value), "{text}: {parsed} != {value}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "", "m", "Mi", "1.2.3", "12 Mi", "1mi", "1KiB", "1x", "1e", "1e99", "abc", "--1",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
        assert_eq!(
            parse("1x").unwrap_err().to_string(),
            "not a Kubernetes quantity: \"1x\""
        );
    }
}
