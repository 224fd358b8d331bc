//! Quality and cost of the PII and secret detectors (`scan::pii::find_pii`).
//!
//! Precision and recall per detector over the labelled corpus `tests/scan-corpus/cases.jsonl`
//! (made by `tests/scan-corpus/generate.py`; see there for the format). A case counts per
//! detector: a true positive when the detector is expected and fires, a false positive when it
//! fires unexpected, a false negative when it is expected and stays silent. `out_of_scope`
//! cases (spelled-out digits, Unicode dashes, obfuscated addresses) are reported apart.
//! Run with `--nocapture` to see the table; `tests/scan_quality/presidio_compare.py` prints the
//! same table for Microsoft Presidio.

// Test helpers outside #[test] functions are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Instant;

use acp_filter::scan::pii::find_pii;
use acp_filter::scan::Detector;
use serde::Deserialize;

const DETECTORS: [Detector; 6] = [
    Detector::Ssn,
    Detector::PaymentCard,
    Detector::Email,
    Detector::Phone,
    Detector::Iban,
    Detector::Secret,
];

#[derive(Deserialize)]
struct Case {
    id: String,
    kind: String,
    text: String,
    expect: Vec<Detector>,
    #[serde(default)]
    values: Vec<(Detector, String)>,
}

fn corpus() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/scan-corpus/cases.jsonl"
    );
    let data = std::fs::read_to_string(path).expect("read the corpus");
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad case {l}: {e}")))
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Counts {
    fn precision(self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn short(s: &str) -> String {
    let one_line: String = s.chars().map(|c| if c == '\n' { '⏎' } else { c }).collect();
    if one_line.chars().count() > 110 {
        format!("{}…", one_line.chars().take(110).collect::<String>())
    } else {
        one_line
    }
}

#[test]
fn precision_and_recall_on_the_corpus() {
    let cases = corpus();
    assert!(cases.len() >= 1000, "the corpus has {} cases", cases.len());

    let mut counts = [Counts::default(); 6];
    let mut errors: Vec<String> = Vec::new();
    let mut spans_checked = 0;
    let mut span_errors: Vec<String> = Vec::new();
    let (mut oos_total, mut oos_found) = (0, 0);
    for case in &cases {
        let matches = find_pii(&case.text);
        let found: BTreeSet<Detector> = matches.iter().map(|m| m.detector).collect();
        let expected: BTreeSet<Detector> = case.expect.iter().copied().collect();
        if case.kind == "out_of_scope" {
            oos_total += 1;
            oos_found += usize::from(expected.iter().all(|d| found.contains(d)));
            continue;
        }
        for (k, d) in DETECTORS.iter().enumerate() {
            match (expected.contains(d), found.contains(d)) {
                (true, true) => counts[k].tp += 1,
                (false, true) => {
                    counts[k].fp += 1;
                    errors.push(format!(
                        "FP {:<13} {:<16} {}",
                        d.as_str(),
                        case.id,
                        short(&case.text)
                    ));
                }
                (true, false) => {
                    counts[k].fn_ += 1;
                    errors.push(format!(
                        "FN {:<13} {:<16} {}",
                        d.as_str(),
                        case.id,
                        short(&case.text)
                    ));
                }
                (false, false) => {}
            }
        }
        // The reported span is exactly the value.
        for (d, v) in &case.values {
            spans_checked += 1;
            let exact = matches
                .iter()
                .any(|m| m.detector == *d && case.text.get(m.start..m.end) == Some(v.as_str()));
            if !exact {
                let got: Vec<(&str, &str)> = matches
                    .iter()
                    .map(|m| {
                        (
                            m.detector.as_str(),
                            case.text.get(m.start..m.end).unwrap_or("?"),
                        )
                    })
                    .collect();
                span_errors.push(format!(
                    "{}: want {} {:?}, got {:?}",
                    case.id,
                    d.as_str(),
                    short(v),
                    got
                ));
            }
        }
    }

    println!(
        "\nPII/secret detectors on {} cases (tests/scan-corpus/cases.jsonl)\n",
        cases.len()
    );
    println!("| detector     | expected | TP   | FP | FN | precision | recall |");
    println!("|--------------|---------:|-----:|---:|---:|----------:|-------:|");
    for (k, d) in DETECTORS.iter().enumerate() {
        let c = counts[k];
        println!(
            "| {:<12} | {:>8} | {:>4} | {:>2} | {:>2} | {:>9.4} | {:>6.4} |",
            d.as_str(),
            c.tp + c.fn_,
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        );
    }
    println!(
        "\nexact spans: {}/{}",
        spans_checked - span_errors.len(),
        spans_checked
    );
    println!("out of scope (reported apart): {oos_found}/{oos_total} found");
    for e in errors.iter().take(40) {
        println!("{e}");
    }
    for e in span_errors.iter().take(20) {
        println!("span {e}");
    }

    let floor = |d: Detector| match d {
        Detector::Ssn | Detector::PaymentCard | Detector::Iban => 0.99,
        _ => 0.97,
    };
    for (k, d) in DETECTORS.iter().enumerate() {
        let c = counts[k];
        assert!(
            c.tp >= 50,
            "{}: only {} positives in the corpus",
            d.as_str(),
            c.tp
        );
        assert!(
            c.precision() >= floor(*d),
            "{} precision {:.4}",
            d.as_str(),
            c.precision()
        );
        assert!(
            c.recall() >= floor(*d),
            "{} recall {:.4}",
            d.as_str(),
            c.recall()
        );
    }
    assert!(
        span_errors.is_empty(),
        "{} inexact spans",
        span_errors.len()
    );
}

/// A typical 1 KiB tool result: English prose and JSON with ids, dates, prices and versions,
/// one email address.
fn typical_kib() -> String {
    let mut s = String::from(
        r#"{"jsonrpc":"2.0","id":17,"result":{"content":[{"type":"text","text":"Account summary for order ORD-2026-000123: the customer asked on 2026-03-15T14:23:07Z whether the March invoice (INV-88231, $1,234.56) could be split across two payment dates. Our agent replied that the billing system v2.14.3 supports installments of 3, 6 or 12 months, and that the first charge would land on 04/01/2026. Contact billing@example.com with questions. Items: 3 x SKU AB-1234 at 19.99 EUR, 1 x SKU CD-5678 at 249.00 EUR; shipping from warehouse 7 in Denver, tracking pending. Notes: the customer prefers email over phone and asked us not to call before 10:00. Previous tickets #4512 and #4513 were closed as duplicates. The loyalty tier is Gold (since 2019), with 12,480 points, expiring 2027-01-31."}],"isError":false,"meta":{"latency_ms":235,"region":"eu-west-1","trace":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}}}"#,
    );
    while s.len() < 1024 {
        s.push(' ');
    }
    s.truncate(1024);
    s
}

#[test]
fn cost_per_kib() {
    let text = typical_kib();
    assert_eq!(find_pii(&text).len(), 1);
    let rounds = if cfg!(debug_assertions) {
        2_000
    } else {
        50_000
    };
    let mut n = 0;
    let t = Instant::now();
    for _ in 0..rounds {
        n += find_pii(std::hint::black_box(&text)).len();
    }
    let per_kib = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    assert_eq!(n, rounds as usize);
    println!(
        "find_pii on a typical 1 KiB string: {per_kib:.2} µs ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}
