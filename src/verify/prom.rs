//! A small client for the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`), used for
//! the impact figures, the pre-incident latency baseline and memory readings.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::net::chain;

/// Bound on one API call.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// What can go wrong talking to Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// Nothing answered (refused, timeout, DNS, TLS).
    #[error("cannot reach Prometheus at {url} (--prometheus): {detail}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// An HTTP status that is not the API's.
    #[error("Prometheus at {url} answered HTTP {status} to `{query}`: {body}")]
    Status {
        /// The base URL.
        url: String,
        /// The status.
        status: u16,
        /// The query.
        query: String,
        /// The start of the body.
        body: String,
    },
    /// The API refused the query (bad PromQL, ...).
    #[error("Prometheus rejected `{query}`: {error_type}: {error}")]
    Api {
        /// The query.
        query: String,
        /// Prometheus' `errorType`.
        error_type: String,
        /// Prometheus' `error`.
        error: String,
    },
    /// The answer was not the API's JSON.
    #[error("Prometheus at {url} answered `{query}` with something that is not its API's JSON: {detail}")]
    Decode {
        /// The base URL.
        url: String,
        /// The query.
        query: String,
        /// The decode error.
        detail: String,
    },
    /// The query matched nothing.
    #[error(
        "`{query}` returned no data {when}; check the metric and label names and the time range"
    )]
    NoData {
        /// The query.
        query: String,
        /// Where in time (`at 2024-...`, `between ... and ...`).
        when: String,
    },
}

/// One series of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value (NaN and infinities as Prometheus sends them).
    pub value: f64,
}

/// One series of a range query.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)` in time order.
    pub points: Vec<(f64, f64)>,
}

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct Prom {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// Unix seconds of a time, as the API wants them.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

impl Prom {
    /// A client for the server at `base` (`http://127.0.0.1:9090`, a path prefix allowed).
    pub fn new(base: &str) -> Result<Prom, PromError> {
        let trimmed = base.trim().trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&trimmed).map_err(|e| PromError::Unreachable {
            url: base.to_string(),
            detail: format!("not a URL ({e})"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PromError::Unreachable {
                url: base.to_string(),
                detail: "the URL must be http:// or https://".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| PromError::Unreachable {
                url: trimmed.clone(),
                detail: chain(&e),
            })?;
        Ok(Prom {
            base: trimmed,
            http,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        path: &str,
        params: &[(&str, String)],
        query: &str,
    ) -> Result<Data, PromError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .map_err(|e| PromError::Unreachable {
                url: self.base.clone(),
                detail: chain(&e),
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| PromError::Unreachable {
            url: self.base.clone(),
            detail: chain(&e),
        })?;
        let env: Envelope = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(e) => {
                if !status.is_success() {
                    return Err(PromError::Status {
                        url: self.base.clone(),
                        status: status.as_u16(),
                        query: query.to_string(),
                        body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                    });
                }
                return Err(PromError::Decode {
                    url: self.base.clone(),
                    query: query.to_string(),
                    detail: e.to_string(),
                });
            }
        };
        if env.status != "success" {
            return Err(PromError::Api {
                query: query.to_string(),
                error_type: env.error_type.unwrap_or_else(|| "error".into()),
                error: env.error.unwrap_or_default(),
            });
        }
        env.data.ok_or_else(|| PromError::Decode {
            url: self.base.clone(),
            query: query.to_string(),
            detail: "no `data` in a success answer".into(),
        })
    }

    /// An instant query at `at`: every series (possibly none).
    pub async fn query(
        &self,
        query: &str,
        at: SystemTime,
    ) -> Result<Vec<InstantSample>, PromError> {
        let data = self
            .call(
                "/api/v1/query",
                &[
                    ("query", query.to_string()),
                    ("time", format!("{:.3}", unix(at))),
                ],
                query,
            )
            .await?;
        let decode = |detail: String| PromError::Decode {
            url: self.base.clone(),
            query: query.to_string(),
            detail,
        };
        match data.result_type.as_str() {
            "vector" => {
                let items: Vec<VectorItem> =
                    serde_json::from_value(data.result).map_err(|e| decode(e.to_string()))?;
                Ok(items
                    .into_iter()
                    .map(|i| InstantSample {
                        labels: i.metric,
                        value: value(&i.value.1),
                    })
                    .collect())
            }
            "scalar" => {
                let (_, v): (f64, String) =
                    serde_json::from_value(data.result).map_err(|e| decode(e.to_string()))?;
                Ok(vec![InstantSample {
                    labels: BTreeMap::new(),
                    value: value(&v),
                }])
            }
            other => Err(decode(format!("expected a vector, got a {other}"))),
        }
    }

    /// An instant query that must give exactly one finite number (several series: the largest).
    pub async fn query_value(&self, query: &str, at: SystemTime) -> Result<f64, PromError> {
        let samples = self.query(query, at).await?;
        samples
            .iter()
            .map(|s| s.value)
            .filter(|v| v.is_finite())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            .ok_or_else(|| PromError::NoData {
                query: query.to_string(),
                when: format!("at {}", super::human::time(at)),
            })
    }

    /// A range query over `[start, end]` every `step`.
    pub async fn query_range(
        &self,
        query: &str,
        start: SystemTime,
        end: SystemTime,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, PromError> {
        let data = self
            .call(
                "/api/v1/query_range",
                &[
                    ("query", query.to_string()),
                    ("start", format!("{:.3}", unix(start))),
                    ("end", format!("{:.3}", unix(end))),
                    ("step", format!("{}", step.as_secs_f64())),
                ],
                query,
            )
            .await?;
        if data.result_type != "matrix" {
            return Err(PromError::Decode {
                url: self.base.clone(),
                query: query.to_string(),
                detail: format!("expected a matrix, got a {}", data.result_type),
            });
        }
        let items: Vec<MatrixItem> =
            serde_json::from_value(data.result).map_err(|e| PromError::Decode {
                url: self.base.clone(),
                query: query.to_string(),
                detail: e.to_string(),
            })?;
        Ok(items
            .into_iter()
            .map(|i| RangeSeries {
                labels: i.metric,
                points: i.values.iter().map(|(t, v)| (*t, value(v))).collect(),
            })
            .collect())
    }
}

/// Fills `$name` placeholders of a query template.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    // Longest names first, so `$target` is not eaten by a `$t`.
    let mut vars: Vec<&(&str, &str)> = vars.iter().collect();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in vars {
        out = out.replace(&format!("${k}"), v);
    }
    out
}

/// A label value quoted for PromQL (`"a\"b"`).
pub fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A label matcher for one or several values: `="a"` or `=~"a|b"` (values regex-escaped).
pub fn matcher(values: &[String]) -> String {
    match values {
        [one] => format!("={}", quote(one)),
        many => {
            let alt: Vec<String> = many.iter().map(|v| regex::escape(v)).collect();
            format!("=~{}", quote(&alt.join("|")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_matchers() {
        assert_eq!(
            fill(
                "up{job=\"$job\"}[$range]",
                &[("job", "gw"), ("range", "5m")]
            ),
            "up{job=\"gw\"}[5m]"
        );
        assert_eq!(matcher(&["a\"b".into()]), "=\"a\\\"b\"");
        assert_eq!(
            matcher(&["gw.health".into(), "gw-predict".into()]),
            "=~\"gw\\\\.health|gw\\\\-predict\""
        );
    }

    #[test]
    fn values_as_prometheus_writes_them() {
        assert_eq!(value("1.5"), 1.5);
        assert_eq!(value("+Inf"), f64::INFINITY);
        assert!(value("NaN").is_nan());
    }
}
