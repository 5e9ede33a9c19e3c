use std::collections::HashMap;

use super::*;

const HOUR: i64 = 3_600_000;

fn ms(rfc3339: &str) -> Millis {
    rfc3339
        .parse::<Timestamp>()
        .expect("a time")
        .as_millisecond()
}

fn window(start: &str, duration: &str, every: Option<&str>, tz: &str) -> WindowSpec {
    let p = Parts {
        name: "w",
        start: Some(start),
        duration: Some(duration),
        every,
        tz: Some(tz),
        ..Parts::default()
    };
    WindowSpec::check(&p, "config").expect("a good window")
}

fn starts(w: &WindowSpec, from: &str, to: &str) -> Vec<Millis> {
    w.occurrences(ms(from), ms(to))
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

#[test]
fn recurrence_grammar() {
    assert_eq!(parse_every("day"), Ok(Every::Days(1)));
    assert_eq!(parse_every("Week"), Ok(Every::Days(7)));
    assert_eq!(parse_every("3 days"), Ok(Every::Days(3)));
    assert_eq!(parse_every("2 weeks"), Ok(Every::Days(14)));
    let mut mon_thu = [false; 7];
    mon_thu[0] = true;
    mon_thu[3] = true;
    assert_eq!(parse_every("monday,thursday"), Ok(Every::Weekdays(mon_thu)));
    assert_eq!(parse_every("mon, thu"), Ok(Every::Weekdays(mon_thu)));
    for bad in [
        "fortnight",
        "0 days",
        "400 days",
        "3 months",
        "mo",
        "monday,funday",
        "",
    ] {
        assert!(parse_every(bad).is_err(), "{bad} should not parse");
    }
}

#[test]
fn daily_window_keeps_its_wall_clock_time_across_berlin_spring_forward() {
    // 03:00 in Berlin: 02:00Z in winter (CET), 01:00Z from 29 March 2026 (CEST).
    let w = window("2026-03-27T03:00:00", "1h", Some("day"), "Europe/Berlin");
    let s = starts(&w, "2026-03-27T00:00:00Z", "2026-03-31T00:00:00Z");
    assert_eq!(
        s,
        vec![
            ms("2026-03-27T02:00:00Z"),
            ms("2026-03-28T02:00:00Z"),
            ms("2026-03-29T01:00:00Z"),
            ms("2026-03-30T01:00:00Z"),
        ]
    );
    // A start inside the skipped hour moves forward by the gap (02:30 → 03:30 CEST).
    let w = window("2026-03-28T02:30:00", "30m", Some("day"), "Europe/Berlin");
    let s = starts(&w, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z");
    assert_eq!(
        s,
        vec![ms("2026-03-28T01:30:00Z"), ms("2026-03-29T01:30:00Z")]
    );
}

#[test]
fn weekly_window_keeps_its_wall_clock_time_across_new_york_fall_back() {
    // Sundays 09:00 in New York: 13:00Z in EDT, 14:00Z from 1 November 2026 (EST).
    let w = window(
        "2026-10-25T09:00:00",
        "2h",
        Some("sunday"),
        "America/New_York",
    );
    let s = starts(&w, "2026-10-20T00:00:00Z", "2026-11-10T00:00:00Z");
    assert_eq!(
        s,
        vec![
            ms("2026-10-25T13:00:00Z"),
            ms("2026-11-01T14:00:00Z"),
            ms("2026-11-08T14:00:00Z"),
        ]
    );
    // The same by `week`.
    let w = window(
        "2026-10-25T09:00:00",
        "2h",
        Some("week"),
        "America/New_York",
    );
    let s = starts(&w, "2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z");
    assert_eq!(s, vec![ms("2026-11-01T14:00:00Z")]);
    // A repeated hour takes its first (01:30 EDT on 1 November).
    let w = window(
        "2026-10-31T01:30:00",
        "10m",
        Some("day"),
        "America/New_York",
    );
    let s = starts(&w, "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z");
    assert_eq!(s, vec![ms("2026-11-01T05:30:00Z")]);
}

#[test]
fn weekday_lists_and_ranges_far_from_the_start() {
    // 2026-06-01 is a Monday.
    let w = window("2026-06-01T22:00:00Z", "1h", Some("mon,thu"), "UTC");
    let s = starts(&w, "2026-06-01T00:00:00Z", "2026-06-12T00:00:00Z");
    assert_eq!(
        s,
        vec![
            ms("2026-06-01T22:00:00Z"),
            ms("2026-06-04T22:00:00Z"),
            ms("2026-06-08T22:00:00Z"),
            ms("2026-06-11T22:00:00Z"),
        ]
    );
    // Ten years on, without walking every day in between past the bound.
    let s = starts(&w, "2036-06-02T00:00:00Z", "2036-06-03T00:00:00Z");
    assert_eq!(s, vec![ms("2036-06-02T22:00:00Z")]); // a Monday
                                                     // An occurrence that began before `from` and is still on counts.
    let s = starts(&w, "2026-06-01T22:30:00Z", "2026-06-02T00:00:00Z");
    assert_eq!(s, vec![ms("2026-06-01T22:00:00Z")]);
    // Nothing before the first start.
    assert!(starts(&w, "2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z").is_empty());
}

#[test]
fn covered_merges_overlaps_and_maps_targets_to_components() {
    let mut a = window("2026-01-01T10:00:00Z", "2h", None, "UTC");
    a.components = vec!["gw".into()];
    let b = window("2026-01-01T11:00:00Z", "2h", None, "UTC"); // all components
    let mut c = window("2026-01-01T20:00:00Z", "1h", None, "UTC");
    c.components = vec!["other".into()];
    let map: HashMap<String, String> = [("gw/0".to_string(), "gw".to_string())].into();
    let cal = Calendar::new(vec![a, b, c], map);
    let (from, to) = (ms("2026-01-01T00:00:00Z"), ms("2026-01-02T00:00:00Z"));
    assert_eq!(cal.covered("gw/0", from, to), 3 * HOUR);
    assert_eq!(cal.covered("gw", from, to), 3 * HOUR);
    assert_eq!(cal.covered("other", from, to), 3 * HOUR);
    assert_eq!(cal.covered("x", from, to), 2 * HOUR);
    assert_eq!(
        cal.covered("gw", ms("2026-01-01T11:30:00Z"), ms("2026-01-01T12:00:00Z")),
        HOUR / 2
    );
    assert_eq!(cal.windows(from, to).len(), 3);
    assert_eq!(cal.windows(from, ms("2026-01-01T10:30:00Z")).len(), 1);
}

fn problems(p: Parts<'_>) -> Vec<Problem> {
    WindowSpec::check(&p, "api").expect_err("should be refused")
}

#[test]
fn bad_windows_name_their_field() {
    let base = Parts {
        name: "w",
        start: Some("2026-01-01T10:00:00Z"),
        duration: Some("1h"),
        ..Parts::default()
    };
    let p = problems(Parts {
        end: Some("2026-01-01T09:00:00Z"),
        duration: None,
        ..base.clone()
    });
    assert_eq!(p[0].0, "end");
    assert!(p[0].1.contains("end after it starts"), "{p:?}");
    let p = problems(Parts {
        tz: Some("Mars/Olympus"),
        ..base.clone()
    });
    assert_eq!(p[0].0, "tz");
    assert!(p[0].1.contains("Mars/Olympus"), "{p:?}");
    let p = problems(Parts {
        every: Some("sometimes"),
        ..base.clone()
    });
    assert_eq!(p[0].0, "every");
    let p = problems(Parts {
        every: Some("day"),
        duration: Some("25h"),
        ..base.clone()
    });
    assert_eq!(p[0].0, "duration");
    let p = problems(Parts {
        start: Some("tomorrow"),
        ..base.clone()
    });
    assert_eq!(p[0].0, "start");
    let p = problems(Parts {
        end: Some("2026-01-01T12:00:00Z"),
        ..base.clone()
    });
    assert_eq!(p[0].0, "duration");
    let p = problems(Parts {
        duration: None,
        ..base.clone()
    });
    assert_eq!(p[0].0, "end");
    let p = problems(Parts {
        name: " ",
        ..base.clone()
    });
    assert_eq!(p[0].0, "name");
}
