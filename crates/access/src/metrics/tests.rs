//! The rendered text read back by a small strict parser of the 0.0.4 format written here:
//! what was recorded is what a scraper reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// A sample read back: its name, its labels, its value's text.
type Sample = (String, Vec<(String, String)>, String);

/// One metric family as read back.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: String,
    samples: Vec<Sample>,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || (colon && c == b':'))
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || (colon && c == b':'))
}

/// Reads a quoted label value after its opening quote; the value and the rest after the
/// closing quote. Only `\\`, `\"` and `\n` escapes are accepted.
fn read_quoted(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                other => return Err(format!("bad escape {other:?}")),
            },
            '\n' => return Err("raw newline in a label value".into()),
            c => out.push(c),
        }
    }
    Err("unterminated label value".into())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value: {line:?}"))?;
    let name = &line[..end];
    if !is_name(name, true) {
        return Err(format!("bad sample name {name:?}"));
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            let eq = rest.find('=').ok_or("label without =")?;
            let label = &rest[..eq];
            if !is_name(label, false) {
                return Err(format!("bad label name {label:?}"));
            }
            let r = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let (value, r) = read_quoted(r)?;
            labels.push((label.to_owned(), value));
            if let Some(r) = r.strip_prefix(',') {
                rest = r;
            } else if let Some(r) = r.strip_prefix('}') {
                rest = r;
                break;
            } else {
                return Err(format!("after a label: {r:?}"));
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.is_empty() || value.contains(' ') {
        return Err(format!("bad value {value:?}"));
    }
    Ok((name.to_owned(), labels, value.to_owned()))
}

fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("bad help escape {other:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Splits a line on its first `\n`, the line terminator; every line must end with one.
fn lines(text: &str) -> Result<Vec<&str>, String> {
    let Some(body) = text.strip_suffix('\n') else {
        return if text.is_empty() {
            Ok(Vec::new())
        } else {
            Err("text not ended by a newline".into())
        };
    };
    Ok(body.split('\n').collect())
}

fn parse(text: &str) -> Result<Vec<Family>, String> {
    let mut families: Vec<Family> = Vec::new();
    let all = lines(text)?;
    let mut it = all.into_iter().peekable();
    while let Some(line) = it.next() {
        let help_line = line
            .strip_prefix("# HELP ")
            .ok_or_else(|| format!("expected # HELP, got {line:?}"))?;
        let (name, help) = help_line.split_once(' ').ok_or("HELP without text")?;
        if !is_name(name, true) {
            return Err(format!("bad metric name {name:?}"));
        }
        let type_line = it.next().ok_or("HELP without TYPE")?;
        let kind = type_line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.strip_prefix(name))
            .and_then(|t| t.strip_prefix(' '))
            .ok_or_else(|| format!("bad TYPE line {type_line:?}"))?;
        if !["counter", "gauge", "histogram"].contains(&kind) {
            return Err(format!("unknown type {kind:?}"));
        }
        if families.iter().any(|f| f.name == name) {
            return Err(format!("family {name} twice"));
        }
        let mut samples = Vec::new();
        while let Some(next) = it.peek() {
            if next.starts_with('#') {
                break;
            }
            let s = parse_sample(next)?;
            let allowed = match kind {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| s.0 == format!("{name}{suffix}")),
                _ => s.0 == name,
            };
            if !allowed {
                return Err(format!("sample {} in family {name}", s.0));
            }
            samples.push(s);
            it.next();
        }
        families.push(Family {
            name: name.to_owned(),
            help: unescape_help(help)?,
            kind: kind.to_owned(),
            samples,
        });
    }
    Ok(families)
}

fn family<'a>(fams: &'a [Family], name: &str) -> &'a Family {
    fams.iter().find(|f| f.name == name).expect("the family")
}

/// A counter family's label values and counts; each label value once.
fn counter_values(f: &Family, label: &str) -> BTreeMap<String, u64> {
    assert_eq!(f.kind, "counter");
    let mut out = BTreeMap::new();
    for (_, labels, value) in &f.samples {
        assert_eq!(labels.len(), 1);
        assert_eq!(labels[0].0, label);
        let fresh = out.insert(labels[0].1.clone(), value.parse().unwrap());
        assert!(fresh.is_none(), "label value {:?} twice", labels[0].1);
    }
    out
}

fn parse_float(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        s => s.parse().unwrap(),
    }
}

/// A histogram read back: (le, cumulative count) in order, the sum, the count. Checks that
/// the buckets are cumulative, end with `+Inf`, and that it equals the count.
fn histogram_values(f: &Family) -> (Vec<(f64, u64)>, f64, u64) {
    assert_eq!(f.kind, "histogram");
    let mut buckets = Vec::new();
    let (mut sum, mut count) = (None, None);
    for (name, labels, value) in &f.samples {
        if name.ends_with("_bucket") {
            assert!(sum.is_none() && count.is_none(), "buckets first");
            assert_eq!(labels.len(), 1);
            assert_eq!(labels[0].0, "le");
            buckets.push((parse_float(&labels[0].1), value.parse::<u64>().unwrap()));
        } else if name.ends_with("_sum") {
            assert!(labels.is_empty());
            sum = Some(parse_float(value));
        } else {
            assert!(labels.is_empty());
            count = Some(value.parse::<u64>().unwrap());
        }
    }
    let (sum, count) = (sum.expect("a _sum"), count.expect("a _count"));
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
    );
    assert_eq!(buckets.last().map(|b| b.0), Some(f64::INFINITY));
    assert_eq!(buckets.last().map(|b| b.1), Some(count));
    (buckets, sum, count)
}

#[test]
fn names_are_checked_at_construction() {
    for bad in ["", "1abc", "a-b", "a b", "é", "a\n"] {
        assert_eq!(
            Gauge::new(bad, "h").err(),
            Some(MetricsError::MetricName(bad.into()))
        );
        assert!(Histogram::new(bad, "h", &[]).is_err());
        assert!(Counters::new(bad, "h", "l", 1).is_err());
    }
    for good in ["a", "_a", ":a", "a:b_c9", "ippin_decisions_total"] {
        assert!(Gauge::new(good, "h").is_ok(), "{good}");
    }
    for bad in ["", "__reserved", "le", "a:b", "1x", "a-b"] {
        assert_eq!(
            Counters::new("m", "h", bad, 1).err(),
            Some(MetricsError::LabelName(bad.into()))
        );
    }
    assert!(matches!(
        Counters::new("m", "h", "reason", 0),
        Err(MetricsError::Bound { bound: 0, .. })
    ));
    assert!(Counters::new("m", "h", "reason", MAX_LABEL_VALUES + 1).is_err());
    for bad in [
        &[1.0, 1.0][..],
        &[2.0, 1.0],
        &[f64::NAN],
        &[f64::INFINITY],
        &[0.1, f64::NEG_INFINITY],
    ] {
        assert!(
            matches!(
                Histogram::new("h", "h", bad),
                Err(MetricsError::Buckets { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn exact_text_of_each_kind() {
    let c = Counters::new("req_total", "Requests.\nBy \\ code.", "code", 2)
        .unwrap()
        .with_values(&["ok"]);
    c.inc("denied");
    c.add("denied", 2);
    c.inc("third"); // over the bound
    c.inc(OTHER);
    let h = Histogram::new("lat_seconds", "Latency.", &[0.5, 1.0]).unwrap();
    for v in [0.5, 0.25, 1.0, 3.0, f64::NAN] {
        h.observe(v);
    }
    let g = Gauge::new("rev", "Revision.").unwrap();
    g.set(7);
    g.add(-10);
    let mut r = Registry::new();
    r.register(Arc::new(c)).unwrap();
    r.register(Arc::new(h)).unwrap();
    r.register(Arc::new(g)).unwrap();
    assert_eq!(
        r.render(),
        "# HELP req_total Requests.\\nBy \\\\ code.\n\
         # TYPE req_total counter\n\
         req_total{code=\"ok\"} 0\n\
         req_total{code=\"denied\"} 3\n\
         req_total{code=\"other\"} 2\n\
         # HELP lat_seconds Latency.\n\
         # TYPE lat_seconds histogram\n\
         lat_seconds_bucket{le=\"0.5\"} 2\n\
         lat_seconds_bucket{le=\"1\"} 3\n\
         lat_seconds_bucket{le=\"+Inf\"} 4\n\
         lat_seconds_sum 4.75\n\
         lat_seconds_count 4\n\
         # HELP rev Revision.\n\
         # TYPE rev gauge\n\
         rev -3\n"
    );
}

#[test]
fn label_values_are_escaped_and_long_ones_are_other() {
    let c = Counters::new("c", "h", "v", 8).unwrap();
    c.inc("a\"b\\c\nd");
    c.inc(&"x".repeat(MAX_LABEL_VALUE_BYTES + 1));
    c.inc(&"y".repeat(MAX_LABEL_VALUE_BYTES));
    let mut out = String::new();
    c.render(&mut out);
    assert!(out.contains("c{v=\"a\\\"b\\\\c\\nd\"} 1\n"), "{out}");
    assert_eq!(c.get(OTHER), 1);
    assert_eq!(c.get(&"y".repeat(MAX_LABEL_VALUE_BYTES)), 1);
}

#[test]
fn the_registry_refuses_clashing_names() {
    let mut r = Registry::new();
    r.register(Arc::new(Histogram::new("h", "x", &[1.0]).unwrap()))
        .unwrap();
    assert_eq!(
        r.register(Arc::new(Gauge::new("h_count", "x").unwrap())),
        Err(MetricsError::Duplicate("h_count".into()))
    );
    assert_eq!(
        r.register(Arc::new(Gauge::new("h", "x").unwrap())),
        Err(MetricsError::Duplicate("h".into()))
    );
    r.register(Arc::new(Gauge::new("g", "x").unwrap())).unwrap();
    assert_eq!(parse(&r.render()).unwrap().len(), 2);
}

#[test]
fn concurrent_records_all_count() {
    let c = Arc::new(Counters::new("c", "h", "v", 4).unwrap());
    let h = Arc::new(Histogram::new("h", "h", &[0.5]).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (c, h) = (c.clone(), h.clone());
            std::thread::spawn(move || {
                for i in 0..1000 {
                    // Six values for four slots: two of them go to "other".
                    c.inc(["a", "b", "c", "d", "e", "f"][(i + t) % 6]);
                    h.observe(if i % 2 == 0 { 0.25 } else { 1.0 });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut out = String::new();
    c.render(&mut out);
    h.render(&mut out);
    let fams = parse(&out).unwrap();
    let counts = counter_values(family(&fams, "c"), "v");
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 4000);
    let (buckets, sum, count) = histogram_values(family(&fams, "h"));
    assert_eq!(buckets, [(0.5, 2000), (f64::INFINITY, 4000)]);
    assert_eq!((sum, count), (2000.0 * 0.25 + 2000.0, 4000));
}

proptest! {
    /// Arbitrary label values (quotes, backslashes, newlines, any Unicode) read back as
    /// themselves with their counts; past the bound, under "other".
    #[test]
    fn counters_round_trip(
        values in proptest::collection::vec(any::<String>(), 0..40),
        bound in 1usize..16,
        help in any::<String>(),
    ) {
        let c = Counters::new("fam_total", &help, "reason", bound).unwrap();
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        let mut kept: Vec<String> = Vec::new();
        for v in &values {
            c.inc(v);
            let own = v != OTHER && v.len() <= MAX_LABEL_VALUE_BYTES
                && (kept.contains(v) || kept.len() < bound);
            if own && !kept.contains(v) {
                kept.push(v.clone());
            }
            *expected.entry(if own { v.clone() } else { OTHER.into() }).or_default() += 1;
        }
        let mut out = String::new();
        c.render(&mut out);
        let fams = parse(&out).map_err(|e| TestCaseError::fail(format!("{e}\n{out}")))?;
        prop_assert_eq!(fams.len(), 1);
        prop_assert_eq!(&fams[0].help, &help);
        prop_assert_eq!(counter_values(&fams[0], "reason"), expected);
    }

    /// Observations read back: per-bucket counts cumulative, `+Inf` equal to the count, the
    /// sum equal to the sum of the observations (added in the same order).
    #[test]
    fn histogram_round_trip(
        mut bounds in proptest::collection::vec(-1e6f64..1e6, 0..10),
        obs in proptest::collection::vec(prop_oneof![-1e7f64..1e7, Just(0.0), Just(f64::NAN)], 0..100),
    ) {
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let h = Histogram::new("lat_seconds", "h", &bounds).unwrap();
        let mut sum = 0.0;
        for v in &obs {
            h.observe(*v);
            if !v.is_nan() {
                sum += v;
            }
        }
        let mut out = String::new();
        h.render(&mut out);
        let fams = parse(&out).map_err(|e| TestCaseError::fail(format!("{e}\n{out}")))?;
        let (buckets, got_sum, count) = histogram_values(&fams[0]);
        prop_assert_eq!(count, obs.iter().filter(|v| !v.is_nan()).count() as u64);
        prop_assert_eq!(got_sum.to_bits(), sum.to_bits());
        prop_assert_eq!(buckets.len(), bounds.len() + 1);
        for (le, cumulative) in buckets {
            let want = obs.iter().filter(|v| **v <= le).count() as u64;
            prop_assert_eq!(cumulative, want, "le {}", le);
        }
    }

    /// Gauges read back as set.
    #[test]
    fn gauge_round_trip(v in any::<i64>()) {
        let g = Gauge::new("g", "h").unwrap();
        g.set(v);
        let mut out = String::new();
        g.render(&mut out);
        let fams = parse(&out).unwrap();
        prop_assert_eq!(fams[0].samples[0].2.parse::<i64>().unwrap(), v);
    }
}
