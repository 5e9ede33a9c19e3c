//! The protobuf exposition carries what the text exposition carries: every family, help text,
//! type, label and value of the same state, decoded by an independent decoder
//! (`tests/proto/mod.rs`); the probe duration also as a native histogram whose buckets are the
//! HDR histogram's; `/metrics` answers in the format `Accept` asks for, with its content type.

mod common;
mod proto;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchfire::expo::{catalog, proto::Encoder, Family, Format, LabelSet, Type, Writer};
use watchfire::probe::{Outcome, Phases, Reason};
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::state::Thresholds;

const T: Thresholds = Thresholds {
    down_after: 2,
    up_after: 1,
};

fn outcome(us: u64, result: Result<(), Reason>) -> Outcome {
    let planned = Instant::now();
    let started = planned + Duration::from_micros(us / 10);
    Outcome {
        planned,
        started,
        finished: started + Duration::from_micros(us),
        phases: Phases::default(),
        status: Some(200),
        body_bytes: 12,
        result,
        detail: None,
        reused_connection: false,
    }
}

/// A runtime with four targets that probe once an hour (against a closed port), and recorded
/// outcomes: a spread of latencies, failures, one target never probed; at `detail: full`, so
/// every per-target family is compared in both formats.
async fn runtime(dir: &std::path::Path) -> (Arc<Runtime>, CancellationToken) {
    let path = dir.join("watchfire.yaml");
    std::fs::write(
        &path,
        "metrics:\n  detail: full\n\
         defaults:\n  interval: 1h\n\
         targets:\n\
         \x20 - name: fast\n    url: http://127.0.0.1:9/\n    labels: { team: \"a\\\"b\\\\c\\nd\" }\n\
         \x20 - name: spread\n    url: http://127.0.0.1:9/\n\
         \x20 - name: failing\n    url: http://127.0.0.1:9/\n\
         \x20 - name: idle\n    url: http://127.0.0.1:9/\n",
    )
    .unwrap();
    let cfg = watchfire::config::load(&path).expect("config loads");
    let cancel = CancellationToken::new();
    let rt = Runtime::start(cfg, None, RuntimeOptions::default(), cancel.clone())
        .await
        .expect("runtime starts");
    for t in rt.targets().iter() {
        let mut s = t.stats.lock().unwrap();
        match t.spec.name.as_str() {
            "fast" => {
                for i in 0..50 {
                    s.record(&outcome(300 + i, Ok(())), T);
                }
            }
            "spread" => {
                let mut us = 90.0f64;
                while us < 3e6 {
                    s.record(&outcome(us as u64, Ok(())), T);
                    us *= 1.05;
                }
            }
            "failing" => {
                for r in [Reason::Refused, Reason::Timeout, Reason::Refused] {
                    s.record(&outcome(2000, Err(r)), T);
                }
            }
            _ => {}
        }
    }
    (rt, cancel)
}

/// Text and protobuf bodies of one unchanged state (rendered again if a probe ran between).
fn both(rt: &Runtime, registry: &prometheus::Registry) -> (String, Vec<u8>) {
    loop {
        let text = watchfire::server::metrics_body(rt, registry);
        let body = watchfire::server::metrics_encoded(rt, registry, Format::Protobuf);
        if watchfire::server::metrics_body(rt, registry) == text {
            return (text, body);
        }
    }
}

#[tokio::test]
async fn protobuf_carries_every_family_label_and_value_of_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, cancel) = runtime(dir.path()).await;
    let (text, body) = both(&rt, &prometheus::Registry::new());
    let fams = proto::assert_same(&body, &text);
    // The families of a probed target, its escaped label and the summaries are all there.
    let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
    for f in [
        catalog::PROBE_SUCCESS,
        catalog::PROBES_TOTAL,
        catalog::PROBE_DURATION,
        catalog::SCHEDULE_LAG,
        catalog::PROBE_LATENCY,
        catalog::BUILD_INFO,
    ] {
        assert!(names.contains(&f.name), "{} missing: {names:?}", f.name);
    }
    let latency = fams
        .iter()
        .find(|f| f.name == catalog::PROBE_LATENCY.name)
        .unwrap();
    assert_eq!(latency.kind, 2, "a summary");
    assert!(latency
        .lines
        .iter()
        .any(|(l, _)| l.starts_with("watchfire_probe_latency_seconds{target=\"fast\",team=\"a\\\"b\\\\c\\nd\",quantile=\"0.99\"}")));
    // The protobuf body is the smaller one.
    assert!(body.len() < text.len(), "{} vs {}", body.len(), text.len());
    cancel.cancel();
}

#[tokio::test]
async fn the_duration_histogram_is_native_too_and_its_buckets_are_the_hdr_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, cancel) = runtime(dir.path()).await;
    let (_, body) = both(&rt, &prometheus::Registry::new());
    let fams = proto::families(&body);
    let duration = fams
        .iter()
        .find(|f| f.name == catalog::PROBE_DURATION.name)
        .expect("the duration family");
    assert_eq!(duration.kind, 4, "a histogram");
    assert_eq!(duration.natives.len(), rt.targets().len());
    for t in rt.targets().iter() {
        let s = t.stats.lock().unwrap();
        let (_, native, count) = duration
            .natives
            .iter()
            .find(|(l, _, _)| l[0] == ("target".to_string(), t.spec.name.clone()))
            .expect("one histogram per target");
        let native = native.as_ref().expect("native fields");
        // Classic count, native count and HDR count agree.
        assert_eq!(*count, s.duration.count(), "{}", t.spec.name);
        let in_buckets: i64 = native.buckets.iter().map(|(_, c)| c).sum();
        assert_eq!(
            in_buckets as u64 + native.zero_count,
            *count,
            "{}",
            t.spec.name
        );
        assert_eq!(native.schema, i64::from(watchfire::metrics::NATIVE_SCHEMA));
        assert!(native.zero_threshold > 0.0);
        let want = s
            .latency
            .to_native(watchfire::metrics::NATIVE_SCHEMA, s.duration.sum);
        let want: Vec<(i64, i64)> = want
            .buckets
            .iter()
            .map(|(i, c)| (i64::from(*i), *c as i64))
            .collect();
        assert_eq!(native.buckets, want, "{}", t.spec.name);
        if s.probes() == 0 {
            // Empty, but still marked native: one span of no buckets.
            assert_eq!(native.spans, vec![(0, 0)]);
        } else {
            // Each bucket holds values in (2^((i-1)/8), 2^(i/8)]: HDR's max is in the last.
            let max = s.latency.quantile(1.0).unwrap().as_secs_f64();
            let (last, _) = *native.buckets.last().unwrap();
            let hi = 2f64.powf(last as f64 / 8.0);
            assert!(max <= hi * (1.0 + 1e-9) && max > hi / 2f64.powf(1.0 / 8.0) * (1.0 - 1e-9));
        }
    }
    cancel.cancel();
}

#[test]
fn registry_families_are_written_in_either_format() {
    let registry = watchfire::metrics::process_registry();
    let c = prometheus::IntCounterVec::new(
        prometheus::Opts::new("jobs_total", "Jobs done, \"quoted\" \\ and\nnewline."),
        &["kind"],
    )
    .unwrap();
    c.with_label_values(&["a\"b"]).inc_by(3);
    c.with_label_values(&["plain"]).inc();
    registry.register(Box::new(c)).unwrap();
    let g = prometheus::Gauge::new("temperature", "A gauge.").unwrap();
    g.set(-1.5);
    registry.register(Box::new(g)).unwrap();
    let h = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("work_seconds", "A histogram.").buckets(vec![0.1, 1.0]),
    )
    .unwrap();
    for v in [0.05, 0.5, 0.7, 3.0] {
        h.observe(v);
    }
    registry.register(Box::new(h)).unwrap();
    let mut text = String::new();
    watchfire::metrics::render_registry(&registry, &mut Writer::new(&mut text));
    let mut enc = Encoder::new();
    watchfire::metrics::render_registry(&registry, &mut Writer::proto(&mut enc));
    let body = enc.into_bytes();
    // The process metrics move between two gathers: compare the stable families exactly and
    // the process ones by name and type.
    let fams = proto::families(&body);
    let text_fams = proto::text_families(&text);
    let names = |f: &[proto::Family]| f.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fams), names(&text_fams));
    assert!(names(&fams).contains(&"process_cpu_seconds_total".to_string()));
    let stable = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.contains("process_"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let stable_text = stable(&text);
    let stable_fams: Vec<Vec<u8>> = proto::delimited(&body)
        .into_iter()
        .filter(|m| !proto::family(m).name.starts_with("process_"))
        .map(|m| {
            let mut v = Vec::new();
            let mut n = m.len();
            while n >= 0x80 {
                v.push((n as u8) | 0x80);
                n >>= 7;
            }
            v.push(n as u8);
            v.extend_from_slice(m);
            v
        })
        .collect();
    proto::assert_same(&stable_fams.concat(), &stable_text);
    // The text is what the prometheus crate's own encoder writes (Prometheus parses it).
    use prometheus::Encoder as _;
    let mut theirs = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut theirs)
        .unwrap();
    assert_eq!(stable(&String::from_utf8(theirs).unwrap()), stable_text);
}

#[test]
fn the_writer_gathers_summaries_and_leaves_out_empty_families() {
    const S: Family = Family {
        name: "s_seconds",
        kind: Type::Summary,
        help: "S.",
    };
    const E: Family = Family {
        name: "empty",
        kind: Type::Gauge,
        help: "Never sampled.",
    };
    const H: Family = Family {
        name: "h_seconds",
        kind: Type::Histogram,
        help: "H.",
    };
    let write = |w: &mut Writer| {
        w.header(&E);
        w.header(&S);
        let a = LabelSet::of(&[("target", "a")]);
        let b = LabelSet::of(&[("target", "b")]);
        for (set, base) in [(&a, 1.0), (&b, 2.0)] {
            w.sample_in(&S, set, &[("quantile", "0.5")], base);
            w.sample_in(&S, set, &[("quantile", "1")], f64::NAN);
            w.sum(&S, set, base * 10.0);
            w.count(&S, set, 7u64);
        }
        // Only a count (as the lag summary before any probe).
        w.count(&S, &LabelSet::new(), 0u64);
        w.header(&H);
        w.histogram(&H, &a, &[0.5, 1.0], &[1, 0, 2], 4.5);
        w.native_histogram(&H, &b, &[0.5], &[0, 0], 0.0, None);
        w.header_parts("dynamic_total", "", Type::Counter);
        w.sample_parts("dynamic_total", &[("x", "y")], 5u32);
        // A sample without a header: an untyped family of its own in protobuf.
        w.sample_parts("loose", &[], true);
    };
    let mut text = String::new();
    write(&mut Writer::new(&mut text));
    let mut enc = Encoder::new();
    write(&mut Writer::proto(&mut enc));
    let body = enc.into_bytes();
    let fams = proto::families(&body);
    let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["s_seconds", "h_seconds", "dynamic_total", "loose"]);
    assert_eq!(fams[3].kind, 3);
    // The header-less sample belongs to the family before it in text: compare the rest.
    let cut = text.find("loose").unwrap();
    let n = proto::prefix(&body, 3);
    proto::assert_same(&body[..n], &text[..cut]);
    // Summaries: one metric per label set (4 series each), and the count-only one.
    assert_eq!(fams[0].lines.len(), 4 * 2 + 1);
    assert_eq!(fams[1].natives.len(), 2);
    assert!(fams[1].natives.iter().all(|(_, n, _)| n.is_none()));
}

/// GET /metrics with `accept`: status, content type, body.
async fn fetch(addr: std::net::SocketAddr, accept: Option<&str>) -> (u16, String, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .uri("/metrics")
        .header("host", addr.to_string());
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, ct, body)
}

#[tokio::test]
async fn metrics_answers_in_the_format_accept_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, cancel) = runtime(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(watchfire::server::AppState {
        runtime: rt.clone(),
        registry: prometheus::Registry::new(),
    });
    let c = cancel.clone();
    let srv = tokio::spawn(watchfire::server::serve(listener, state, async move {
        c.cancelled().await
    }));
    let proto_accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                        encoding=delimited;q=0.8,application/openmetrics-text;version=1.0.0;q=0.6,\
                        text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
    let (status, ct, body) = fetch(addr, Some(proto_accept)).await;
    assert_eq!(status, 200);
    assert_eq!(ct, Format::Protobuf.content_type());
    assert!(ct.starts_with("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"));
    let fams = proto::families(&body);
    assert!(fams.iter().any(|f| f.name == catalog::PROBE_DURATION.name));
    for accept in [
        None,
        Some("application/openmetrics-text;version=1.0.0"),
        Some("garbage;;;=,"),
        Some("text/plain;version=0.0.4"),
        Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0"),
    ] {
        let (status, ct, body) = fetch(addr, accept).await;
        assert_eq!(status, 200, "{accept:?}");
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("# TYPE watchfire_probe_duration_seconds histogram"));
    }
    cancel.cancel();
    srv.await.unwrap().unwrap();
}
