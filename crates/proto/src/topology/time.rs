//! A minimal UTC timestamp for the handful of dates nym-api and topology
//! files carry. Two text forms are understood:
//!
//! - RFC 3339 (`2026-05-01T10:05:00.123Z`, any `±HH:MM` offset), used by the
//!   topology file, `Interval` and key-rotation info;
//! - the `time` crate's default display form
//!   (`2026-05-01 10:05:00.123 +00:00:00`), which nym-api writes into
//!   `metadata.refreshed_at`.
//!
//! Years are limited to 0000–9999, as in the `time` crate's default build.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, UTC, with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

/// Seconds from the Unix epoch to 0000-01-01T00:00:00Z.
const MIN_SECS: i64 = -62_167_219_200;
/// Seconds from the Unix epoch to 9999-12-31T23:59:59Z.
const MAX_SECS: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is in 1..=31 and m in 1..=12 by construction.
    (y, m as u32, d as u32)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// A tiny cursor over ASCII text.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.pos.checked_add(n)?;
        let part = self.s.get(self.pos..end)?;
        let mut v: u32 = 0;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        self.pos = end;
        Some(v)
    }

    fn byte(&mut self) -> Option<u8> {
        let c = *self.s.get(self.pos)?;
        self.pos += 1;
        Some(c)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.byte()? == want).then_some(())
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos == self.s.len()
    }

    /// One or more digits as a fraction of a second (beyond 9 digits the
    /// extra precision is dropped).
    fn fraction(&mut self) -> Option<u32> {
        let start = self.pos;
        let mut nanos: u32 = 0;
        let mut count = 0usize;
        while let Some(c) = self.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            if count < 9 {
                nanos = nanos * 10 + u32::from(c - b'0');
            }
            count += 1;
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        for _ in count..9 {
            nanos *= 10;
        }
        Some(nanos)
    }
}

/// Date and time-of-day parts before the offset is applied.
struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

impl Parts {
    fn read(c: &mut Cursor<'_>, separators: &[u8]) -> Option<Self> {
        let year = i64::from(c.digits(4)?);
        c.expect(b'-')?;
        let month = c.digits(2)?;
        c.expect(b'-')?;
        let day = c.digits(2)?;
        if !separators.contains(&c.byte()?) {
            return None;
        }
        let hour = c.digits(2)?;
        c.expect(b':')?;
        let minute = c.digits(2)?;
        c.expect(b':')?;
        let second = c.digits(2)?;
        let parts = Parts {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanos: 0,
        };
        let valid = (1..=12).contains(&parts.month)
            && parts.day >= 1
            && parts.day <= days_in_month(parts.year, parts.month)
            && parts.hour < 24
            && parts.minute < 60
            && parts.second < 60;
        valid.then_some(parts)
    }

    fn to_timestamp(&self, offset_secs: i64) -> Option<Timestamp> {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - offset_secs;
        Timestamp::from_unix(secs, self.nanos)
    }
}

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// From seconds and nanoseconds since the Unix epoch. `None` if the
    /// nanoseconds are ≥ 10⁹ or the date falls outside years 0000–9999.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Self> {
        if nanos >= 1_000_000_000 || !(MIN_SECS..=MAX_SECS).contains(&secs) {
            return None;
        }
        Some(Self { secs, nanos })
    }

    /// From a `SystemTime` (the caller's clock), clamped to years 0000–9999.
    pub fn from_system_time(t: SystemTime) -> Self {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    (whole.saturating_neg(), 0)
                } else {
                    (
                        whole.saturating_neg().saturating_sub(1),
                        1_000_000_000 - d.subsec_nanos(),
                    )
                }
            }
        };
        if secs > MAX_SECS {
            Self {
                secs: MAX_SECS,
                nanos: 999_999_999,
            }
        } else if secs < MIN_SECS {
            Self {
                secs: MIN_SECS,
                nanos: 0,
            }
        } else {
            Self { secs, nanos }
        }
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        let sub = Duration::from_nanos(u64::from(self.nanos));
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.secs.unsigned_abs()) + sub
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs()) + sub
        }
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_secs(self) -> i64 {
        self.secs
    }

    /// Nanoseconds past the whole second.
    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// Parse RFC 3339: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (`t`/`z`
    /// accepted in lower case too).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let mut c = Cursor::new(s);
        let mut parts = Parts::read(&mut c, b"Tt")?;
        if c.peek() == Some(b'.') {
            c.pos += 1;
            parts.nanos = c.fraction()?;
        }
        let offset = match c.byte()? {
            b'Z' | b'z' => 0,
            sign @ (b'+' | b'-') => {
                let h = c.digits(2)?;
                c.expect(b':')?;
                let m = c.digits(2)?;
                if h > 23 || m > 59 {
                    return None;
                }
                let v = i64::from(h * 3600 + m * 60);
                if sign == b'-' {
                    -v
                } else {
                    v
                }
            }
            _ => return None,
        };
        if !c.at_end() {
            return None;
        }
        parts.to_timestamp(offset)
    }

    /// Parse the `time` crate's display form that nym-api writes:
    /// `YYYY-MM-DD HH:MM:SS.frac ±HH[:MM[:SS]]`.
    pub fn parse_nym_display(s: &str) -> Option<Self> {
        let mut c = Cursor::new(s);
        let mut parts = Parts::read(&mut c, b" ")?;
        c.expect(b'.')?;
        parts.nanos = c.fraction()?;
        c.expect(b' ')?;
        let negative = match c.byte()? {
            b'+' => false,
            b'-' => true,
            _ => return None,
        };
        let h = c.digits(2)?;
        let mut m = 0;
        let mut sec = 0;
        if c.peek() == Some(b':') {
            c.pos += 1;
            m = c.digits(2)?;
            if c.peek() == Some(b':') {
                c.pos += 1;
                sec = c.digits(2)?;
            }
        }
        if !c.at_end() || h > 25 || m > 59 || sec > 59 {
            return None;
        }
        let v = i64::from(h * 3600 + m * 60 + sec);
        parts.to_timestamp(if negative { -v } else { v })
    }

    /// What nym clients do with `metadata.refreshed_at`: RFC 3339, else the
    /// display form, else the Unix epoch. Never fails.
    pub fn parse_lenient(s: &str) -> Self {
        Self::parse_rfc3339(s)
            .or_else(|| Self::parse_nym_display(s))
            .unwrap_or(Self::UNIX_EPOCH)
    }

    fn civil(self) -> (i64, u32, u32, u32, u32, u32) {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        // rem is in 0..86400.
        let rem = rem as u32;
        (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
    }

    /// RFC 3339 in UTC, with the fraction only when non-zero and without
    /// trailing zeros: `2026-05-01T10:05:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        let (y, mo, d, h, mi, s) = self.civil();
        let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        out.push('Z');
        out
    }

    /// The display form nym-api writes, in UTC:
    /// `2026-05-01 10:05:00.123 +00:00:00` (at least one fraction digit).
    pub fn to_nym_display(self) -> String {
        let (y, mo, d, h, mi, s) = self.civil();
        let frac = format!("{:09}", self.nanos);
        let mut frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            frac = "0";
        }
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{frac} +00:00:00")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Strict RFC 3339 in JSON (topology file metadata, `Interval`, key-rotation
/// info).
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid timestamp \"{s}\": expected RFC 3339, e.g. \"2026-05-01T00:00:00Z\""
            ))
        })
    }
}

/// Serde adapter for nym-api's `metadata.refreshed_at`: written in the display
/// form, read leniently (any string; unparsable means the Unix epoch).
pub mod lenient_display {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write the display form.
    pub fn serialize<S: Serializer>(t: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&t.to_nym_display())
    }

    /// Read any string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Timestamp::parse_lenient(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        let t = Timestamp::parse_rfc3339("2026-05-01T10:05:00.123Z").expect("rfc3339");
        assert_eq!(t.unix_secs(), 1_777_629_900);
        assert_eq!(t.subsec_nanos(), 123_000_000);
        assert_eq!(t.to_rfc3339(), "2026-05-01T10:05:00.123Z");
        assert_eq!(t.to_nym_display(), "2026-05-01 10:05:00.123 +00:00:00");
        assert_eq!(
            Timestamp::parse_nym_display("2026-05-01 10:05:00.123 +00:00:00"),
            Some(t)
        );
        assert_eq!(
            Timestamp::parse_nym_display("2026-05-01 12:05:00.123 +02"),
            Some(t)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-05-01T12:35:00.123+02:30"),
            Some(t)
        );
        assert_eq!(Timestamp::UNIX_EPOCH.to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_nym_display(),
            "1970-01-01 00:00:00.0 +00:00:00"
        );
        let leap = Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").expect("leap day");
        assert_eq!(leap.unix_secs(), 1_709_164_800);
    }

    #[test]
    fn rejects_and_lenient() {
        for bad in [
            "",
            "2026-05-01",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T00:00:00",
            "2026-05-01T00:00:00.Z",
            "2026-05-01T00:00:00Zjunk",
            "2026-05-01 00:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
            assert_eq!(
                Timestamp::parse_lenient(bad),
                Timestamp::UNIX_EPOCH,
                "{bad}"
            );
        }
        assert_eq!(
            Timestamp::parse_lenient("yesterday-ish"),
            Timestamp::UNIX_EPOCH
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = Timestamp::parse_rfc3339(&s);
            let _ = Timestamp::parse_nym_display(&s);
        }

        #[test]
        fn both_forms_round_trip(secs in MIN_SECS..=MAX_SECS, nanos in 0u32..1_000_000_000) {
            let t = Timestamp::from_unix(secs, nanos).expect("in range");
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
            prop_assert_eq!(Timestamp::parse_nym_display(&t.to_nym_display()), Some(t));
            prop_assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        }
    }
}
