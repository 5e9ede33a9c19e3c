//! A minimal decoder of the Prometheus protobuf exposition, written from `metrics.proto`
//! independently of watchfire's encoder, and a parser of the text format's lines, so a test can
//! compare the two outputs of the same state family by family.

#![allow(dead_code)]

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn read_varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*pos];
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
        assert!(shift < 64, "varint too long");
    }
}

/// The fields of one message, in order.
pub fn fields(b: &[u8]) -> Vec<(u32, Field<'_>)> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let key = read_varint(b, &mut pos);
        let (num, wire) = ((key >> 3) as u32, key & 7);
        let f = match wire {
            0 => Field::Varint(read_varint(b, &mut pos)),
            1 => {
                let v = u64::from_le_bytes(b[pos..pos + 8].try_into().unwrap());
                pos += 8;
                Field::Fixed64(v)
            }
            2 => {
                let n = read_varint(b, &mut pos) as usize;
                let s = &b[pos..pos + n];
                pos += n;
                Field::Bytes(s)
            }
            5 => {
                let v = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap());
                pos += 4;
                Field::Fixed32(v)
            }
            w => panic!("wire type {w} at {pos}"),
        };
        out.push((num, f));
    }
    out
}

/// The byte offset just after the first `k` delimited messages of a body.
pub fn prefix(b: &[u8], k: usize) -> usize {
    let mut pos = 0;
    for _ in 0..k {
        let n = read_varint(b, &mut pos) as usize;
        pos += n;
    }
    pos
}

/// The varint-delimited messages of a body.
pub fn delimited(b: &[u8]) -> Vec<&[u8]> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let n = read_varint(b, &mut pos) as usize;
        out.push(&b[pos..pos + n]);
        pos += n;
    }
    out
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn string(f: Field) -> String {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).expect("UTF-8"),
        other => panic!("not a string: {other:?}"),
    }
}

fn double(f: Field) -> f64 {
    match f {
        Field::Fixed64(v) => f64::from_bits(v),
        other => panic!("not a double: {other:?}"),
    }
}

fn uint(f: Field) -> u64 {
    match f {
        Field::Varint(v) => v,
        other => panic!("not a varint: {other:?}"),
    }
}

fn bytes(f: Field<'_>) -> &[u8] {
    match f {
        Field::Bytes(b) => b,
        other => panic!("not bytes: {other:?}"),
    }
}

/// The native part of a `Histogram`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NativePart {
    pub schema: i64,
    pub zero_threshold: f64,
    pub zero_count: u64,
    /// `(index, count)` of each bucket the spans cover, counts made absolute.
    pub buckets: Vec<(i64, i64)>,
    /// The spans as sent.
    pub spans: Vec<(i64, u64)>,
}

/// A metric's label pairs.
pub type Labels = Vec<(String, String)>;

/// One decoded series set of a family.
#[derive(Debug, Clone, Default)]
pub struct Family {
    pub name: String,
    pub help: String,
    /// `metrics.proto`'s `MetricType` number.
    pub kind: u64,
    /// Sample lines as the text format would name them, with their values.
    pub lines: Vec<(String, f64)>,
    /// Each metric's labels and, for histograms, the native part when present.
    pub natives: Vec<(Labels, Option<NativePart>, u64)>,
}

fn escape(v: &str, quote: bool) -> String {
    let mut s = String::new();
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' if quote => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn series(name: &str, labels: &[(String, String)], extra: Option<(&str, String)>) -> String {
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v, true)))
        .collect();
    if let Some((k, v)) = extra {
        pairs.push(format!("{k}=\"{v}\""));
    }
    if pairs.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", pairs.join(","))
    }
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

fn native_part(h: &[(u32, Field)]) -> Option<NativePart> {
    let mut n = NativePart::default();
    let mut seen = false;
    let mut deltas = Vec::new();
    for (num, f) in h {
        match num {
            5 => {
                n.schema = unzigzag(uint(*f));
                seen = true;
            }
            6 => {
                n.zero_threshold = double(*f);
                seen = true;
            }
            7 => n.zero_count = uint(*f),
            12 => {
                let mut span = (0, 0);
                for (k, v) in fields(bytes(*f)) {
                    match k {
                        1 => span.0 = unzigzag(uint(v)),
                        2 => span.1 = uint(v),
                        _ => {}
                    }
                }
                n.spans.push(span);
            }
            13 => match f {
                // Packed, or one value per field.
                Field::Bytes(b) => {
                    let mut pos = 0;
                    while pos < b.len() {
                        deltas.push(unzigzag(read_varint(b, &mut pos)));
                    }
                }
                Field::Varint(v) => deltas.push(unzigzag(*v)),
                other => panic!("positive_delta {other:?}"),
            },
            _ => {}
        }
    }
    if !seen {
        return None;
    }
    let mut d = deltas.into_iter();
    let (mut index, mut count) = (0i64, 0i64);
    // The first span's offset is its first index; each next one's, the gap after the last.
    for (offset, length) in n.spans.clone() {
        index += offset;
        for _ in 0..length {
            count += d.next().expect("a delta per bucket");
            n.buckets.push((index, count));
            index += 1;
        }
    }
    assert!(d.next().is_none(), "more deltas than buckets");
    Some(n)
}

/// Decodes one `MetricFamily` into text-format lines.
pub fn family(b: &[u8]) -> Family {
    let mut fam = Family::default();
    let mut metrics = Vec::new();
    for (num, f) in fields(b) {
        match num {
            1 => fam.name = string(f),
            2 => fam.help = string(f),
            3 => fam.kind = uint(f),
            4 => metrics.push(bytes(f)),
            n => panic!("MetricFamily field {n}"),
        }
    }
    let name = fam.name.clone();
    for m in metrics {
        let mut labels = Vec::new();
        let mut value = None;
        for (num, f) in fields(m) {
            match num {
                1 => {
                    let mut pair = (String::new(), String::new());
                    for (k, v) in fields(bytes(f)) {
                        match k {
                            1 => pair.0 = string(v),
                            2 => pair.1 = string(v),
                            _ => {}
                        }
                    }
                    labels.push(pair);
                }
                2..=5 | 7 => value = Some((num, bytes(f))),
                n => panic!("Metric field {n}"),
            }
        }
        let (kind, v) = value.expect("a value message");
        let v = fields(v);
        let get = |n: u32| v.iter().find(|(k, _)| *k == n).map(|(_, f)| *f);
        match kind {
            2 | 3 | 5 => {
                let x = get(1).map(double).unwrap_or(0.0);
                fam.lines.push((series(&name, &labels, None), x));
            }
            4 => {
                for (k, q) in &v {
                    if *k == 3 {
                        let q = fields(bytes(*q));
                        let qv = |n: u32| q.iter().find(|(k, _)| *k == n).map(|(_, f)| double(*f));
                        let line = series(&name, &labels, Some(("quantile", num(qv(1).unwrap()))));
                        fam.lines.push((line, qv(2).unwrap_or(0.0)));
                    }
                }
                let count = get(1).map(uint).unwrap_or(0);
                // proto2: a sum not sent is a sum not written.
                if let Some(sum) = get(2).map(double) {
                    fam.lines
                        .push((series(&format!("{name}_sum"), &labels, None), sum));
                }
                fam.lines.push((
                    series(&format!("{name}_count"), &labels, None),
                    count as f64,
                ));
            }
            7 => {
                let count = get(1).map(uint).unwrap_or(0);
                let sum = get(2).map(double).unwrap_or(0.0);
                let bucket = format!("{name}_bucket");
                for (k, b) in &v {
                    if *k == 3 {
                        let b = fields(bytes(*b));
                        let cum = b
                            .iter()
                            .find(|(k, _)| *k == 1)
                            .map(|(_, f)| uint(*f))
                            .unwrap_or(0);
                        let le = b
                            .iter()
                            .find(|(k, _)| *k == 2)
                            .map(|(_, f)| double(*f))
                            .unwrap();
                        fam.lines
                            .push((series(&bucket, &labels, Some(("le", num(le)))), cum as f64));
                    }
                }
                fam.lines.push((
                    series(&bucket, &labels, Some(("le", "+Inf".into()))),
                    count as f64,
                ));
                fam.lines
                    .push((series(&format!("{name}_sum"), &labels, None), sum));
                fam.lines.push((
                    series(&format!("{name}_count"), &labels, None),
                    count as f64,
                ));
                fam.natives.push((labels.clone(), native_part(&v), count));
            }
            k => panic!("Metric value field {k}"),
        }
    }
    fam
}

/// Decodes a whole delimited body.
pub fn families(body: &[u8]) -> Vec<Family> {
    delimited(body).into_iter().map(family).collect()
}

/// `metrics.proto`'s number of a `# TYPE` word.
pub fn type_number(word: &str) -> u64 {
    match word {
        "counter" => 0,
        "gauge" => 1,
        "summary" => 2,
        "untyped" => 3,
        "histogram" => 4,
        w => panic!("type {w}"),
    }
}

/// The text format parsed into the same shape: families with at least one sample.
pub fn text_families(text: &str) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    let mut help = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (_, h) = rest.split_once(' ').unwrap_or((rest, ""));
            help = h.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            out.push(Family {
                name: name.to_string(),
                help: std::mem::take(&mut help),
                kind: type_number(kind),
                ..Family::default()
            });
        } else if !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
            };
            out.last_mut()
                .expect("a family")
                .lines
                .push((series.to_string(), v));
        }
    }
    out.retain(|f| !f.lines.is_empty());
    out
}

/// Asserts the protobuf body and the text body carry the same families, help, types, series
/// and values (NaN equal to NaN); returns the decoded families.
pub fn assert_same(body: &[u8], text: &str) -> Vec<Family> {
    let got = families(body);
    let want = text_families(text);
    let names = |f: &[Family]| f.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want), "family names");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(escape(&g.help, false), w.help, "help of {}", g.name);
        assert_eq!(g.kind, w.kind, "type of {}", g.name);
        let series = |f: &Family| f.lines.iter().map(|l| l.0.clone()).collect::<Vec<_>>();
        assert_eq!(series(g), series(w), "series of {}", g.name);
        for (gl, wl) in g.lines.iter().zip(&w.lines) {
            assert_eq!(gl.0, wl.0, "series of {}", g.name);
            assert!(
                gl.1 == wl.1 || (gl.1.is_nan() && wl.1.is_nan()),
                "{}: protobuf {} text {}",
                gl.0,
                gl.1,
                wl.1
            );
        }
    }
    got
}
