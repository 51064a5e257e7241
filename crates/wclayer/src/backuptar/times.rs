//! Time conversions between tar (PAX `secs[.frac]` strings, Unix seconds) and Windows FILETIME
//! (100 ns ticks since 1601-01-01 UTC), as go-winio's backuptar does them.

use super::DialectError;

/// FILETIME of the Unix epoch (1970-01-01 UTC).
pub const UNIX_EPOCH_FILETIME: u64 = 116_444_736_000_000_000;

/// FILETIME that hcsshim stores for atime/ctime when the tar header carries none: Go's zero
/// `time.Time` overflows in `UnixNano()` (go-winio `strconv.go`; layer-tar.md §B3 GO-QUIRK).
/// Kept so that a plain-USTAR layer imports with the same times as on Windows.
pub const GO_ZERO_TIME_FILETIME: u64 = 48_491_090_211_286_549;

/// The largest FILETIME Windows accepts (i64::MAX ticks, 30828-09-14 02:48:05.4775807 UTC).
pub const MAX_FILETIME: u64 = i64::MAX as u64;

const NANOS_PER_TICK: i128 = 100;

/// A point in time as Unix seconds plus a signed nanosecond part (same sign as the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixTime {
    /// Whole seconds since 1970-01-01 UTC (negative before).
    pub secs: i64,
    /// Nanoseconds beyond `secs`, with the same sign as the time.
    pub nanos: i32,
}

impl UnixTime {
    fn total_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }
}

/// Parses a PAX time record (`"1620000000.1234567"`, `"-1.5"`): decimal seconds, an optional
/// fraction of which only the first 9 digits count (Go `parsePAXTime`).
pub fn parse_pax_time(s: &str) -> Result<UnixTime, DialectError> {
    let bad = || DialectError::BadTime(s.to_string());
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let digits = whole
        .strip_prefix('-')
        .or_else(|| whole.strip_prefix('+'))
        .unwrap_or(whole);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: i64 = whole.parse().map_err(|_| bad())?;
    let negative = whole.starts_with('-');
    let nanos = match frac {
        None => 0,
        Some(f) => {
            if !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let mut n: i32 = 0;
            for i in 0..9 {
                let d = f.as_bytes().get(i).map_or(0, |b| i32::from(b - b'0'));
                n = n * 10 + d;
            }
            if negative {
                -n
            } else {
                n
            }
        }
    };
    Ok(UnixTime { secs, nanos })
}

/// Formats a time the way Go's archive/tar writes PAX times: trailing zeros of the fraction
/// trimmed, no fraction when it is zero.
pub fn format_pax_time(t: UnixTime) -> String {
    let total = t.total_nanos();
    let negative = total < 0;
    let abs = total.unsigned_abs();
    let secs = abs / 1_000_000_000;
    let nanos = abs % 1_000_000_000;
    let sign = if negative { "-" } else { "" };
    if nanos == 0 {
        return format!("{sign}{secs}");
    }
    let frac = format!("{nanos:09}");
    format!("{sign}{secs}.{}", frac.trim_end_matches('0'))
}

/// Converts a Unix time to FILETIME, truncating sub-100 ns precision toward zero like Go's
/// integer division. Times before 1601 cannot be represented, nor times after 30828-09-14:
/// Windows takes a FILETIME as a signed 64-bit count (LARGE_INTEGER) and cannot set a larger one.
pub fn unix_to_filetime(t: UnixTime) -> Result<u64, DialectError> {
    let ticks = t.total_nanos() / NANOS_PER_TICK + i128::from(UNIX_EPOCH_FILETIME);
    if ticks > i128::from(MAX_FILETIME) {
        return Err(DialectError::TimeOutOfRange(format_pax_time(t)));
    }
    u64::try_from(ticks).map_err(|_| DialectError::TimeOutOfRange(format_pax_time(t)))
}

/// Converts a FILETIME to Unix time (exact: FILETIME has 100 ns resolution).
pub fn filetime_to_unix(ft: u64) -> UnixTime {
    let rel = i128::from(ft) - i128::from(UNIX_EPOCH_FILETIME);
    let total = rel * NANOS_PER_TICK;
    // Split so that secs and nanos have the same sign, as PAX formatting expects.
    let secs = total / 1_000_000_000;
    let nanos = total % 1_000_000_000;
    UnixTime {
        // |rel| < 2^64 ticks => |secs| < 2^64 * 1e-7 < 2^41: fits.
        secs: secs as i64,
        nanos: nanos as i32,
    }
}

/// Parses a PAX time record straight to FILETIME.
pub fn pax_time_to_filetime(s: &str) -> Result<u64, DialectError> {
    unix_to_filetime(parse_pax_time(s)?)
}

/// Formats a FILETIME as a PAX time record.
pub fn filetime_to_pax_time(ft: u64) -> String {
    format_pax_time(filetime_to_unix(ft))
}

/// FILETIME of whole Unix seconds (a USTAR mtime field).
pub fn unix_secs_to_filetime(secs: i64) -> Result<u64, DialectError> {
    unix_to_filetime(UnixTime { secs, nanos: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_and_fractional_seconds() {
        assert_eq!(parse_pax_time("0").unwrap(), UnixTime { secs: 0, nanos: 0 });
        assert_eq!(
            parse_pax_time("1620000000.1234567").unwrap(),
            UnixTime {
                secs: 1_620_000_000,
                nanos: 123_456_700
            }
        );
        // more than 9 digits are truncated, not rounded
        assert_eq!(
            parse_pax_time("1.9999999999").unwrap(),
            UnixTime {
                secs: 1,
                nanos: 999_999_999
            }
        );
        assert_eq!(
            parse_pax_time("5.").unwrap(),
            UnixTime { secs: 5, nanos: 0 }
        );
    }

    #[test]
    fn parses_negative_times_like_go() {
        assert_eq!(
            parse_pax_time("-1.5").unwrap(),
            UnixTime {
                secs: -1,
                nanos: -500_000_000
            }
        );
        // "-0.25" has zero whole seconds but is still negative
        assert_eq!(
            parse_pax_time("-0.25").unwrap(),
            UnixTime {
                secs: 0,
                nanos: -250_000_000
            }
        );
        assert_eq!(
            pax_time_to_filetime("-1.5").unwrap(),
            UNIX_EPOCH_FILETIME - 15_000_000
        );
        assert_eq!(format_pax_time(parse_pax_time("-0.25").unwrap()), "-0.25");
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "abc", "1.2.3", "1.x", "--1", "1e5", " 1"] {
            assert!(parse_pax_time(s).is_err(), "{s:?}");
        }
        // before 1601
        assert!(pax_time_to_filetime("-11644473601").is_err());
        assert_eq!(pax_time_to_filetime("-11644473600").unwrap(), 0);
        // after 30828-09-14 02:48:05.4775807 (i64::MAX ticks)
        assert_eq!(
            pax_time_to_filetime("910692730085.4775807").unwrap(),
            MAX_FILETIME
        );
        assert!(pax_time_to_filetime("910692730085.4775808").is_err());
        assert!(pax_time_to_filetime("922337203685").is_err());
    }

    #[test]
    fn filetime_conversion_truncates_below_100ns() {
        assert_eq!(pax_time_to_filetime("0").unwrap(), UNIX_EPOCH_FILETIME);
        assert_eq!(
            pax_time_to_filetime("1.00000019").unwrap(),
            UNIX_EPOCH_FILETIME + 10_000_001
        );
        assert_eq!(
            filetime_to_pax_time(UNIX_EPOCH_FILETIME + 10_000_001),
            "1.0000001"
        );
        assert_eq!(filetime_to_pax_time(UNIX_EPOCH_FILETIME - 1), "-0.0000001");
        assert_eq!(filetime_to_pax_time(0), "-11644473600");
    }

    #[test]
    fn round_trip_filetime_pax() {
        for ft in [
            0u64,
            1,
            99,
            UNIX_EPOCH_FILETIME,
            132_600_000_000_000_123,
            u64::MAX / 2,
        ] {
            assert_eq!(
                pax_time_to_filetime(&filetime_to_pax_time(ft)).unwrap(),
                ft,
                "{ft}"
            );
        }
    }
}
