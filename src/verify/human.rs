//! Figures for people: durations, percentages and times, formatted the same way in the text
//! summary, the progress line and the Markdown report.

use std::time::{Duration, SystemTime};

/// A duration at a useful precision: `850µs`, `1.25ms`, `12.5ms`, `250ms`, `3s`, `1.52s`,
/// `10m`, `1m30s`, `2h5m`, `30d`.
pub fn dur(d: Duration) -> String {
    let us = d.as_micros();
    if d.is_zero() {
        return "0s".to_string();
    }
    if us < 1_000 {
        return format!("{us}µs");
    }
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        return format!("{ms:.2}ms");
    }
    if ms < 100.0 {
        return format!("{ms:.1}ms");
    }
    if ms < 1_000.0 {
        return format!("{ms:.0}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        return if d.subsec_millis() == 0 {
            format!("{}s", d.as_secs())
        } else {
            format!("{secs:.2}s")
        };
    }
    let total = d.as_secs();
    let (days, h, m, s) = (
        total / 86_400,
        (total % 86_400) / 3600,
        (total % 3600) / 60,
        total % 60,
    );
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!("{days}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Seconds (as Prometheus gives them) as a duration string.
pub fn secs(s: f64) -> String {
    if s.is_finite() && s >= 0.0 {
        dur(Duration::from_secs_f64(s))
    } else {
        format!("{s}s")
    }
}

/// A ratio as a percentage with two decimals: `0.0167` → `1.67%`.
pub fn pct(r: f64) -> String {
    format!("{:.2}%", r * 100.0)
}

/// A wall-clock time as RFC 3339 UTC, to the second.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Seconds since the Unix epoch as RFC 3339 UTC.
pub fn epoch(s: f64) -> String {
    if s.is_finite() && s >= 0.0 {
        time(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s))
    } else {
        format!("{s}")
    }
}

/// A count with thousands separators: `12345` → `12,345`; fractions keep one decimal.
pub fn count(n: f64) -> String {
    let rounded = (n * 10.0).round() / 10.0;
    let whole = rounded.trunc() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    let frac = rounded - rounded.trunc();
    if frac.abs() >= 0.05 {
        out.push_str(&format!(".{}", (frac * 10.0).round() as u64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        let ms = Duration::from_millis;
        assert_eq!(dur(Duration::ZERO), "0s");
        assert_eq!(dur(Duration::from_micros(850)), "850µs");
        assert_eq!(dur(Duration::from_micros(1250)), "1.25ms");
        assert_eq!(dur(Duration::from_micros(12_500)), "12.5ms");
        assert_eq!(dur(ms(250)), "250ms");
        assert_eq!(dur(ms(3000)), "3s");
        assert_eq!(dur(ms(1520)), "1.52s");
        assert_eq!(dur(ms(600_000)), "10m");
        assert_eq!(dur(ms(90_000)), "1m30s");
        assert_eq!(dur(ms(7_500_000)), "2h5m");
        assert_eq!(dur(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(dur(Duration::from_secs(2592)), "43m12s");
    }

    #[test]
    fn counts_and_percentages() {
        assert_eq!(pct(0.0167), "1.67%");
        assert_eq!(count(3000.0), "3,000");
        assert_eq!(count(1234567.0), "1,234,567");
        assert_eq!(count(12.25), "12.3");
        assert_eq!(epoch(0.0), "1970-01-01T00:00:00Z");
    }
}
