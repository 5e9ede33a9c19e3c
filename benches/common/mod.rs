//! What the benchmarks share: `/proc` CPU accounting of this process and its threads, and the
//! parsers of their millisecond and second options.
// Each benchmark is its own crate and uses a part of this module.
#![allow(dead_code)]

/// CPU clock ticks (utime, stime) from the text of a `/proc/.../stat` file, and the `comm`.
pub fn parse_stat(text: &str) -> Option<(String, u64, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // After the `comm`: field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime = rest.get(11)?.parse().ok()?;
    let stime = rest.get(12)?.parse().ok()?;
    Some((comm, utime, stime))
}

/// (utime, stime) of the whole process, in clock ticks.
pub fn process_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let (_, u, s) = parse_stat(&text).expect("parse /proc/self/stat");
    (u, s)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn clock_ticks_per_s() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A `--...-ms` option: a whole number of milliseconds.
pub fn millis(v: &str) -> Result<std::time::Duration, String> {
    v.parse()
        .map(std::time::Duration::from_millis)
        .map_err(|_| format!("`{v}` is not a number of ms"))
}

/// A `--...-s` option: a whole number of seconds.
pub fn seconds(v: &str) -> Result<std::time::Duration, String> {
    v.parse()
        .map(std::time::Duration::from_secs)
        .map_err(|_| format!("`{v}` is not a number of s"))
}
