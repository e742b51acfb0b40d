//! A certificate's `notAfter`, read from its DER by hand, whatever the year.
//!
//! x509-cert (through `der`) refuses every date before 1970, so a certificate whose `notBefore`
//! is 1950 (UTCTime reaches back to 1950) did not parse at all and got no expiry reading, and
//! one that expired in 1960 never read "certificate expired". Only the path to the validity is
//! walked here: `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
//! serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, … }, … }`.

use std::time::{Duration, SystemTime};

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The `notAfter` of the DER certificate `der`; `None` when it is not one.
pub(crate) fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (tag, certificate, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (tag, validity, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    let seconds = parse_time(tag, time)?;
    Some(at(seconds))
}

/// The earliest `notAfter` of `chain`, of any year (also before 1970); `None` when
/// no certificate in it parses.
pub(crate) fn earliest_not_after<'a>(
    chain: impl IntoIterator<Item = &'a rustls::pki_types::CertificateDer<'a>>,
) -> Option<SystemTime> {
    chain.into_iter().filter_map(|der| not_after(der.as_ref())).min()
}

/// One DER element: its tag, its content and what follows it.
fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (length, &rest[count..])
    };
    if rest.len() < length {
        return None;
    }
    Some((tag, &rest[..length], &rest[length..]))
}

/// Seconds since the Unix epoch (negative before it) of a UTCTime (`YYMMDDHHMMSSZ`, 1950–2049)
/// or a GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.iter()
            .try_fold(0i64, |n, b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
    };
    let (year, at) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 15) => (digits(0..4)?, 4),
        _ => return None,
    };
    if text.last() != Some(&b'Z') {
        return None;
    }
    let month = digits(at..at + 2)?;
    let day = digits(at + 2..at + 4)?;
    let (hour, minute, second) = (
        digits(at + 4..at + 6)?,
        digits(at + 6..at + 8)?,
        digits(at + 8..at + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The moment `seconds` from the epoch, before it when negative.
fn at(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_both_kinds_and_of_any_year() {
        assert_eq!(parse_time(UTC_TIME, b"600101000000Z"), Some(-315_619_200));
        assert_eq!(parse_time(UTC_TIME, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(parse_time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(GENERALIZED_TIME, b"99991231235959Z"), Some(253_402_300_799));
        assert_eq!(parse_time(GENERALIZED_TIME, b"19700101000000Z"), Some(0));
        assert_eq!(parse_time(UTC_TIME, b"6001010000Z"), None);
        assert_eq!(parse_time(UTC_TIME, b"601301000000Z"), None);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn a_certificate_of_1950_to_1960_is_read_and_a_current_one_as_x509_cert_reads_it() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.example".to_owned()]).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(-631_152_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(-315_619_200).unwrap();
        let old = params.self_signed(&key).unwrap();
        assert_eq!(
            not_after(old.der()),
            Some(SystemTime::UNIX_EPOCH - Duration::from_secs(315_619_200))
        );
        let current = rcgen::CertificateParams::new(vec!["new.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        use x509_cert::der::Decode as _;
        let parsed = x509_cert::Certificate::from_der(current.der()).unwrap();
        assert_eq!(
            not_after(current.der()),
            Some(parsed.tbs_certificate.validity.not_after.to_system_time())
        );
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }
}
