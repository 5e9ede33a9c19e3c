//! Parsers for the verify and impact flags: times (RFC 3339, relative, Unix seconds), ratios
//! (`1%`, `0.01`) and `[METHOD] URL [BODY]` targets.

use std::time::{Duration, SystemTime};

/// A point in time as given on the command line, resolved against "now" when used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// An absolute time.
    At(SystemTime),
    /// Now plus (`true`) or minus (`false`) a duration.
    Relative(bool, Duration),
}

impl TimeSpec {
    /// The absolute time, relative forms taken from `now`.
    pub fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            TimeSpec::At(t) => t,
            TimeSpec::Relative(true, d) => now + d,
            TimeSpec::Relative(false, d) => now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// Parses `now`, `-15m`, `now-15m`, `+5m`, RFC 3339 (`2024-05-01T12:00:00Z`,
/// `2024-05-01T14:00:00+02:00`, `2024-05-01 12:00:00` as UTC) or Unix seconds (`1714564800`).
pub fn parse_time(s: &str) -> Result<TimeSpec, String> {
    let t = s.trim();
    let hint = "write RFC 3339 (2024-05-01T12:00:00Z), a relative time (-15m, now-1h) or `now`";
    if t == "now" {
        return Ok(TimeSpec::Relative(false, Duration::ZERO));
    }
    let rel = t.strip_prefix("now").unwrap_or(t);
    if let Some(d) = rel.strip_prefix('-') {
        return humantime::parse_duration(d.trim())
            .map(|d| TimeSpec::Relative(false, d))
            .map_err(|e| format!("`{s}`: {e}; {hint}"));
    }
    if let Some(d) = rel.strip_prefix('+') {
        return humantime::parse_duration(d.trim())
            .map(|d| TimeSpec::Relative(true, d))
            .map_err(|e| format!("`{s}`: {e}; {hint}"));
    }
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let secs: f64 = t
            .parse()
            .map_err(|_| format!("`{s}` is not a time; {hint}"))?;
        return Ok(TimeSpec::At(
            SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs),
        ));
    }
    parse_rfc3339(t)
        .map(TimeSpec::At)
        .map_err(|e| format!("`{s}` is not a time ({e}); {hint}"))
}

/// RFC 3339 with `Z`, a numeric offset, or none (UTC).
fn parse_rfc3339(t: &str) -> Result<SystemTime, String> {
    // A numeric offset is the last 6 characters `+HH:MM` / `-HH:MM`, after the seconds.
    let (base, offset) = match t
        .len()
        .checked_sub(6)
        .and_then(|i| t.get(i..).map(|o| (i, o)))
    {
        Some((i, o))
            if i >= 19
                && (o.starts_with('+') || o.starts_with('-'))
                && o.as_bytes().get(3) == Some(&b':') =>
        {
            let h: u64 = o[1..3].parse().map_err(|_| "bad offset hours")?;
            let m: u64 = o[4..6].parse().map_err(|_| "bad offset minutes")?;
            if h > 23 || m > 59 {
                return Err("offset out of range".into());
            }
            let secs = Duration::from_secs(h * 3600 + m * 60);
            (&t[..i], Some((o.starts_with('+'), secs)))
        }
        _ => (t, None),
    };
    let utc = humantime::parse_rfc3339_weak(base).map_err(|e| e.to_string())?;
    Ok(match offset {
        // 14:00+02:00 is 12:00 UTC.
        Some((true, d)) => utc.checked_sub(d).ok_or("time before 1970")?,
        Some((false, d)) => utc + d,
        None => utc,
    })
}

/// Parses a ratio: `1%`, `99.9%`, or a fraction `0.01` (0..=1). Percentages are shifted as
/// decimals, so `99.9%` is exactly the `f64` nearest 0.999 (not 99.9 / 100).
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a ratio; write e.g. `1%` or `0.01`");
    let r: f64 = match t.strip_suffix('%') {
        Some(n) => shift_percent(n.trim()).ok_or_else(bad)?,
        None => {
            let v: f64 = t.parse().map_err(|_| bad())?;
            if v > 1.0 {
                return Err(format!("`{s}` is above 1; write a percentage as `{v}%`"));
            }
            v
        }
    };
    if !r.is_finite() || !(0.0..=1.0).contains(&r) {
        return Err(format!("`{s}` is outside 0..100%"));
    }
    Ok(r)
}

/// `99.9` → `0.999` by moving the decimal point two places, then parsing.
fn shift_percent(num: &str) -> Option<f64> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let padded = format!("{:0>3}", if int.is_empty() { "0" } else { int });
    let (a, b) = padded.split_at(padded.len() - 2);
    format!("{a}.{b}{frac}").parse().ok()
}

/// Parses a positive factor (`1.5`).
pub fn parse_factor(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; write e.g. `1.5`"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("`{s}` must be a positive number"));
    }
    Ok(v)
}

/// A `--target` value: `URL`, `METHOD URL` or `METHOD URL BODY` (the body is JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetArg {
    /// Method, when given.
    pub method: Option<String>,
    /// The URL.
    pub url: String,
    /// JSON body, when given.
    pub body: Option<String>,
}

/// Splits a `--target` value.
pub fn parse_target(s: &str) -> Result<TargetArg, String> {
    let t = s.trim();
    let (first, rest) = split_word(t);
    let (method, url, rest) = if first.contains("://") {
        (None, first, rest)
    } else {
        let (url, rest) = split_word(rest);
        if url.is_empty() || !first.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "`{s}`: write `URL`, `METHOD URL` or `METHOD URL JSON`, e.g. \
                 'POST http://127.0.0.1:8000/predict {{\"data\": [[1,2,3,4]]}}'"
            ));
        }
        (Some(first.to_ascii_uppercase()), url, rest)
    };
    let body = (!rest.trim().is_empty()).then(|| rest.trim().to_string());
    Ok(TargetArg {
        method,
        url: url.to_string(),
        body,
    })
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        match parse_time(s).expect("parses") {
            TimeSpec::At(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn times_in_every_form() {
        let noon = humantime::parse_rfc3339("2024-05-01T12:00:00Z").expect("valid");
        assert_eq!(at("2024-05-01T12:00:00Z"), noon);
        assert_eq!(at("2024-05-01T14:00:00+02:00"), noon);
        assert_eq!(at("2024-05-01T07:30:00-04:30"), noon);
        assert_eq!(at("2024-05-01 12:00:00"), noon);
        assert_eq!(at("1714564800"), noon);
        let now = SystemTime::now();
        let m15 = Duration::from_secs(900);
        assert_eq!(parse_time("-15m").expect("ok").resolve(now), now - m15);
        assert_eq!(parse_time("now-15m").expect("ok").resolve(now), now - m15);
        assert_eq!(parse_time("now").expect("ok").resolve(now), now);
        assert_eq!(parse_time("+15m").expect("ok").resolve(now), now + m15);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("-15x").is_err());
    }

    #[test]
    fn ratios() {
        assert_eq!(parse_ratio("1%"), Ok(0.01));
        assert_eq!(parse_ratio("0.01"), Ok(0.01));
        assert_eq!(parse_ratio("99.9%"), Ok(0.999));
        assert!(parse_ratio("99.9").expect_err("above 1").contains("99.9%"));
        assert!(parse_ratio("abc").is_err());
        assert!(parse_ratio("-1%").is_err());
        assert!(parse_ratio("101%").is_err());
        assert_eq!(parse_ratio("0.5%"), Ok(0.005));
        assert_eq!(parse_ratio("100%"), Ok(1.0));
    }

    #[test]
    fn targets_with_method_and_body() {
        assert_eq!(
            parse_target("http://h/health"),
            Ok(TargetArg {
                method: None,
                url: "http://h/health".into(),
                body: None
            })
        );
        let t = parse_target(r#"post http://h/predict {"data": [[1, 2]]}"#).expect("ok");
        assert_eq!(t.method.as_deref(), Some("POST"));
        assert_eq!(t.body.as_deref(), Some(r#"{"data": [[1, 2]]}"#));
        assert!(parse_target("POST").is_err());
    }
}
