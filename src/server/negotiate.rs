//! `/metrics` content negotiation: the exposition format an `Accept` header asks for.
//!
//! Prometheus lists the formats it takes with `q=` weights; 2.42 with native histograms on
//! sends (as recorded by `tests/e2e_native.rs`)
//! `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,
//! application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;
//! q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`. watchfire speaks the protobuf format (that `proto=` and
//! `encoding=delimited` only) and the text format 0.0.4; the best-weighted of those wins (on a
//! tie, the more specific range, then the first listed). Anything else — OpenMetrics text,
//! other types, other versions, a malformed header, none — is answered in the text format,
//! never with an error, as Prometheus clients do.

use crate::expo::Format;

/// The protobuf media type and the parameters it must carry.
const PROTOBUF: &str = "application/vnd.google.protobuf";
const PROTO_PARAM: &str = "io.prometheus.client.MetricFamily";

/// The format to answer a `/metrics` request whose `Accept` header is `accept`.
pub fn metrics_format(accept: Option<&[u8]>) -> Format {
    let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return Format::Text;
    };
    // (format, q, specificity): the best so far.
    let mut best: Option<(Format, f64, u8)> = None;
    for range in accept.split(',') {
        let Some((format, q, specific)) = parse_range(range) else {
            continue;
        };
        if q <= 0.0 {
            continue;
        }
        if best.is_none_or(|(_, bq, bs)| q > bq || (q == bq && specific > bs)) {
            best = Some((format, q, specific));
        }
    }
    best.map(|(f, _, _)| f).unwrap_or(Format::Text)
}

/// One media range: the format it names (when watchfire speaks it), its weight and how
/// specific it is (2 a full type, 1 `type/*`, 0 `*/*`).
fn parse_range(range: &str) -> Option<(Format, f64, u8)> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim();
    let (mut q, mut proto, mut encoding, mut version) = (1.0, None, None, None);
    for p in parts {
        let (k, v) = p.split_once('=')?;
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "q" => q = v.parse::<f64>().ok().filter(|q| (0.0..=1.0).contains(q))?,
            "proto" => proto = Some(v),
            "encoding" => encoding = Some(v),
            "version" => version = Some(v),
            _ => {}
        }
    }
    let media = media.to_ascii_lowercase();
    let format = match media.as_str() {
        PROTOBUF if proto == Some(PROTO_PARAM) && encoding == Some("delimited") => {
            (Format::Protobuf, 2)
        }
        "text/plain" if version.is_none_or(|v| v == "0.0.4") => (Format::Text, 2),
        "text/*" => (Format::Text, 1),
        "*/*" => (Format::Text, 0),
        _ => return None,
    };
    Some((format.0, q, format.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(accept: &str) -> Format {
        metrics_format(Some(accept.as_bytes()))
    }

    #[test]
    fn prometheus_with_native_histograms_gets_protobuf() {
        // What Prometheus 2.42 sends with --enable-feature=native-histograms.
        let sent = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                    encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,\
                    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;\
                    q=0.5,*/*;q=0.1";
        assert_eq!(f(sent), Format::Protobuf);
        // The brief's shorter form, with spaces.
        assert_eq!(
            f(
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
               encoding=delimited; q=0.7, text/plain; version=0.0.4; q=0.3, */*; q=0.1"
            ),
            Format::Protobuf
        );
    }

    #[test]
    fn prometheus_without_the_feature_gets_text() {
        let sent = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(f(sent), Format::Text);
    }

    #[test]
    fn weights_decide() {
        let proto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                     encoding=delimited";
        assert_eq!(f(&format!("{proto};q=0.2,text/plain;q=0.9")), Format::Text);
        assert_eq!(
            f(&format!("text/plain;q=0.5,{proto};q=0.6")),
            Format::Protobuf
        );
        // A tie: the full type beats the wildcard.
        assert_eq!(f(&format!("*/*,{proto}")), Format::Protobuf);
        assert_eq!(
            f(&format!("{proto};q=0.5,text/plain;q=0.5")),
            Format::Protobuf
        );
        assert_eq!(f(&format!("text/plain;q=0.5,{proto};q=0.5")), Format::Text);
        // q=0 refuses.
        assert_eq!(f(&format!("{proto};q=0,text/plain;q=0.1")), Format::Text);
        assert_eq!(f(&format!("{proto};q=0")), Format::Text);
        // Quoted parameters and upper case.
        assert_eq!(
            f("Application/Vnd.Google.Protobuf; Proto=\"io.prometheus.client.MetricFamily\"; Encoding=\"delimited\""),
            Format::Protobuf
        );
    }

    #[test]
    fn what_watchfire_does_not_speak_falls_back_to_text() {
        for accept in [
            "",
            "application/openmetrics-text;version=1.0.0",
            "application/json",
            // Protobuf, but not delimited MetricFamily messages.
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
            "application/vnd.google.protobuf;proto=other.Message;encoding=delimited",
            "application/vnd.google.protobuf",
            "text/plain;version=9.9.9",
            ";;;,,,===",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=abc",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=2",
            "application/vnd.google.protobuf;proto;encoding=delimited",
            "\u{1F525}/\u{1F525}",
        ] {
            assert_eq!(f(accept), Format::Text, "{accept:?}");
        }
        assert_eq!(metrics_format(None), Format::Text);
        assert_eq!(metrics_format(Some(b"\xff\xfe")), Format::Text);
    }
}
