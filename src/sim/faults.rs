//! Fault configuration: [`FaultConfig`], its humantime serde, and the partial
//! updates accepted by `POST /-/faults`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{SimError, DEFAULT_LEAK_MAX};

/// The faults a simulator is currently exhibiting. `Default` means healthy.
///
/// Serialized with durations as humantime strings (`"250ms"`, `"5s"`); every field
/// is optional when deserializing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Listener closed: clients get connection refused.
    pub down: bool,
    /// `/health` and `/predict` are accepted but never answered.
    pub hang: bool,
    /// Latency added before each `/health` and `/predict` answer.
    #[serde(with = "humantime_serde")]
    pub slow: Duration,
    /// Fraction in `[0, 1]` of `/health` and `/predict` answered `500`, exactly
    /// (an accumulator, not a random draw: `0.02` fails 2 of every 100).
    pub error_rate: f64,
    /// `/health` reports `{"status":"degraded"}`.
    pub unhealthy: bool,
    /// Crash (listener and connections dropped until [`Sim::heal`](super::Sim::heal)) after this delay.
    #[serde(with = "humantime_serde::option")]
    pub crash_after: Option<Duration>,
    /// Bytes per second of memory allocated, touched and retained.
    pub leak_rate: u64,
    /// Cap on leaked memory, in bytes.
    pub leak_max: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            down: false,
            hang: false,
            slow: Duration::ZERO,
            error_rate: 0.0,
            unhealthy: false,
            crash_after: None,
            leak_rate: 0,
            leak_max: DEFAULT_LEAK_MAX,
        }
    }
}

impl FaultConfig {
    /// Checks the values are usable (`error_rate` finite and within `[0, 1]`).
    pub fn validate(&self) -> Result<(), SimError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(SimError::InvalidFaults(format!(
                "error_rate must be between 0 and 1, got {}",
                self.error_rate
            )));
        }
        Ok(())
    }
}

/// Merges a `POST /-/faults` body into `current`. Returns the new faults and, when
/// `down`/`down_for` asked for it, `Some(back_after)`.
pub(super) fn parse_patch(
    current: &FaultConfig,
    body: &[u8],
) -> Result<(FaultConfig, Option<Option<Duration>>), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("body must be a JSON object of fault fields".to_owned());
    };
    let mut f = current.clone();
    let mut go_down = None;
    for (key, v) in fields {
        let bad = |what: &str| format!("field `{key}`: expected {what}, got {v}");
        match key.as_str() {
            "down" => {
                if v.as_bool().ok_or_else(|| bad("a boolean"))? {
                    go_down = Some(go_down.flatten());
                }
            }
            "down_for" => go_down = Some(Some(duration_field(&key, &v)?)),
            "hang" => f.hang = v.as_bool().ok_or_else(|| bad("a boolean"))?,
            "unhealthy" => f.unhealthy = v.as_bool().ok_or_else(|| bad("a boolean"))?,
            "slow" => f.slow = duration_field(&key, &v)?,
            "crash_after" => {
                f.crash_after = match v {
                    Value::Null => None,
                    _ => Some(duration_field(&key, &v)?),
                }
            }
            "error_rate" => {
                let rate = v.as_f64().ok_or_else(|| bad("a number"))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!(
                        "field `error_rate`: must be between 0 and 1, got {v}"
                    ));
                }
                f.error_rate = rate;
            }
            "leak_rate" => f.leak_rate = v.as_u64().ok_or_else(|| bad("bytes per second"))?,
            "leak_max" => f.leak_max = v.as_u64().ok_or_else(|| bad("a number of bytes"))?,
            _ => {
                return Err(format!(
                    "unknown field `{key}`; expected one of down, down_for, hang, slow, \
                     error_rate, unhealthy, crash_after, leak_rate, leak_max"
                ))
            }
        }
    }
    Ok((f, go_down))
}

fn duration_field(key: &str, v: &Value) -> Result<Duration, String> {
    let Value::String(s) = v else {
        return Err(format!(
            "field `{key}`: expected a duration string like \"250ms\", got {v}"
        ));
    };
    humantime::parse_duration(s).map_err(|e| format!("field `{key}`: bad duration {s:?}: {e}"))
}

/// Serde for `Duration` as a humantime string (`"250ms"`).
mod humantime_serde {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string like \"250ms\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v).map_err(|e| E::custom(format!("bad duration {v:?}: {e}")))
        }
    }

    /// The same for `Option<Duration>` (`null` is `None`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(deserialize_with = "super::deserialize")] Duration);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(d)| d))
        }
    }
}
