//! Short, fixed-width renderings of numbers, durations and keys.

use std::time::Duration;

use crate::state::Unit;

/// A key shortened in the middle to at most `max` characters:
/// `4kjgWm…X5Hkcf`.
pub fn short_key(key: &str, max: usize) -> String {
    let n = key.chars().count();
    if n <= max {
        return key.to_string();
    }
    if max <= 1 {
        return "…".chars().take(max).collect();
    }
    let keep = max - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out: String = key.chars().take(head).collect();
    out.push('…');
    out.extend(key.chars().skip(n - tail));
    out
}

/// A text cut to `max` characters with a trailing ellipsis.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A count: `999`, `12.3K`, `4.5M`, `1.2G`.
pub fn count(n: u64) -> String {
    scaled(n, 1000, &["", "K", "M", "G", "T"])
}

/// Bytes, decimal units: `512B`, `1.2kB`, `3.4MB`.
pub fn bytes(n: u64) -> String {
    scaled(n, 1000, &["B", "kB", "MB", "GB", "TB"])
}

fn scaled(n: u64, base: u64, units: &[&str]) -> String {
    if n < base {
        return format!("{n}{}", units[0]);
    }
    let mut v = n as f64;
    let mut i = 0;
    while v >= base as f64 && i + 1 < units.len() {
        v /= base as f64;
        i += 1;
    }
    if v < 10.0 {
        format!("{v:.1}{}", units[i])
    } else {
        format!("{v:.0}{}", units[i])
    }
}

/// A value in the chart unit.
pub fn in_unit(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Packets => count(n),
        Unit::Bytes => bytes(n),
    }
}

/// The unit of the rates a title or header stands over: packets are bare
/// numbers under `pk/s`; bytes carry their own unit (`4.9kB`), so only the
/// time is left to say.
pub fn unit_rate(unit: Unit) -> &'static str {
    match unit {
        Unit::Packets => "pk/s",
        Unit::Bytes => "bytes/s",
    }
}

/// A rate that stands alone, with its unit: `7 pk/s`, `4.9kB/s`.
pub fn rate(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Packets => format!("{} pk/s", count(n)),
        Unit::Bytes => format!("{}/s", bytes(n)),
    }
}

/// Uptime: `42s`, `12m05s`, `3h02m`, `2d04h`.
pub fn uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A short delay: `250ms`, `2s`.
pub fn duration_short(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_shorten_in_the_middle() {
        assert_eq!(short_key("abcdefghij", 10), "abcdefghij");
        assert_eq!(short_key("abcdefghij", 7), "abc…hij");
        assert_eq!(short_key("abcdefghij", 6), "abc…ij");
        assert_eq!(short_key("abcdefghij", 1), "…");
        assert_eq!(cut("abcdef", 4), "abc…");
    }

    #[test]
    fn numbers() {
        assert_eq!(count(999), "999");
        assert_eq!(count(12_345), "12K");
        assert_eq!(count(1_234), "1.2K");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(2_413_000), "2.4MB");
        assert_eq!(uptime(59), "59s");
        assert_eq!(uptime(3725), "1h02m");
        assert_eq!(uptime(90_000), "1d01h");
        assert_eq!(duration_short(Duration::from_millis(250)), "250ms");
        assert_eq!(rate(7, Unit::Packets), "7 pk/s");
        assert_eq!(rate(4_900, Unit::Bytes), "4.9kB/s");
        assert_eq!(in_unit(4_900, Unit::Bytes), "4.9kB");
    }
}
