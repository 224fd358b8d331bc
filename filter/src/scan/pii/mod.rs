//! PII and secret detectors: US SSNs, payment cards, emails, phone numbers, IBANs and
//! credentials, found by hand-written linear scans over the bytes of the text (no regex).
//!
//! # How a scan runs
//!
//! [`find_pii`] walks the bytes once. A class table says which bytes can start something:
//!
//! * a digit that starts a run of digits: the numeric detectors (SSN, card, phone; an IBAN
//!   when the run follows two capital letters), each a small parser from that position;
//! * `@`: the email detector, which looks back over the local part and forward over the domain;
//! * the first byte of a secret (`A`KIA…, `-----BEGIN`, `B`earer, `e`yJ…, `g`hp_…, `x`ox…).
//!
//! Everything else is skipped with one table look-up, so text without digits, `@` or those
//! letters costs one pass and no detector work (a secret's first two bytes are checked before
//! its detector runs, so the many `e`s of English cost little). After a hit the scan resumes at its end, so
//! the inside of a private key block or a JWT is never rescanned. Nothing allocates except the
//! result vector.
//!
//! # Overlaps
//!
//! Detectors may report overlapping spans (an email whose local part is a phone number, a card
//! number inside an IBAN). [`find_pii`] sorts by start and, when two spans overlap, keeps the
//! longer one; on equal length the more specific detector wins, in the order
//! secret > IBAN > card > SSN > email > phone. The result is sorted and non-overlapping.
//!
//! # Boundaries
//!
//! A numeric value must stand alone: the byte before it is not a letter, digit or `_`, nor a
//! `-`, `.` or `/` glued to a letter or digit (`ORD-123456789`, `v1.2.415-555-2671`), and the same
//! holds after it. So digits inside longer runs, identifiers, UUIDs, versions and decimals are
//! not reported. Non-ASCII characters that do not fold (below) count as separators (so
//! `電話4155552671` works).
//!
//! # Unicode
//!
//! Text with non-ASCII characters is first folded to the ASCII the detectors read (digits of
//! every script, full-width forms, Unicode dashes and spaces; see `fold.rs`); the walk runs over
//! the folded copy and each match is mapped back to the original characters, with what was
//! normalised inside it in [`Match::normalized`]. ASCII text is walked as it is.
//!
//! Every reported span starts and ends on a `char` boundary of the original text.

mod bytes;
mod card;
mod email;
mod fold;
mod iban;
mod phone;
mod secret;
mod ssn;

use self::bytes::{at, before, digits_end, left_ok};
use super::gate::Gate;
use super::{Detector, Match};

/// Every SSN, payment card, email, phone, IBAN and secret in `text`, sorted by start and
/// non-overlapping (see the module docs for the overlap rule).
pub fn find_pii(text: &str) -> Vec<Match> {
    find_gated(text, Gate::of(text))
}

/// [`find_pii`] once `gate` (of `text`) is known.
pub(in crate::scan) fn find_gated(text: &str, gate: Gate) -> Vec<Match> {
    if !gate.pii() {
        return Vec::new();
    }
    let folded = gate.non_ascii().then(|| fold::fold(text)).flatten();
    let found = find_ascii(folded.as_ref().map_or(text, |f| f.text.as_str()));
    let Some(folded) = folded else {
        return found;
    };
    found
        .into_iter()
        .map(|m| {
            let (start, end) = folded.span(m.start, m.end);
            Match {
                start,
                end,
                normalized: folded.normalized(m.start, m.end),
                ..m
            }
        })
        .collect()
}

/// [`find_pii`] over text as written.
fn find_ascii(text: &str) -> Vec<Match> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    // Jump from one byte that can start something to the next (one table look-up per byte).
    while let Some(k) = b
        .get(i..)
        .and_then(|rest| rest.iter().position(|&c| CLASS[usize::from(c)] != 0))
    {
        i += k;
        let c = at(b, i);
        i = match CLASS[usize::from(c)] {
            DIGIT => digit_run(b, i, &mut found),
            AT => match email::detect(b, i) {
                Some((start, end)) => {
                    found.push(Match::new(Detector::Email, start, end));
                    end
                }
                None => i + 1,
            },
            _ if !secret::plausible(c, at(b, i + 1)) => i + 1,
            _ => match secret::detect(b, i) {
                Some((start, end)) => {
                    found.push(Match::new(Detector::Secret, start, end));
                    end.max(i + 1)
                }
                None => i + 1,
            },
        };
    }
    resolve_overlaps(found)
}

/// The numeric detectors at `s`, the first digit of a run. Returns where the scan goes on.
fn digit_run(b: &[u8], s: usize, found: &mut Vec<Match>) -> usize {
    let run_end = digits_end(b, s);
    let prev = before(b, s);
    // An IBAN: two capital letters, then the check digits.
    if prev.is_ascii_uppercase() && s >= 2 {
        if let Some(end) = iban::detect(b, s - 2) {
            found.push(Match::new(Detector::Iban, s - 2, end));
            return end;
        }
    }
    // After a '+' only an international phone number makes sense.
    if prev == b'+' {
        if let Some(end) = phone::e164(b, s - 1) {
            found.push(Match::new(Detector::Phone, s - 1, end));
            return end;
        }
        return run_end;
    }
    if !left_ok(b, s) {
        return run_end;
    }
    let hit = if let Some(end) = card::detect(b, s, run_end) {
        Some(Match::new(Detector::PaymentCard, s, end))
    } else if let Some(end) = ssn::detect(b, s, run_end) {
        Some(Match::new(Detector::Ssn, s, end))
    } else {
        phone::nanp(b, s, run_end).map(|(start, end)| Match::new(Detector::Phone, start, end))
    };
    match hit {
        Some(m) => {
            found.push(m);
            m.end
        }
        None => run_end,
    }
}

/// Sorted by start; of two overlapping matches the longer (then the more specific) stays.
fn resolve_overlaps(mut found: Vec<Match>) -> Vec<Match> {
    if found.len() < 2 {
        return found;
    }
    found.sort_by_key(|m| m.start);
    let mut out: Vec<Match> = Vec::with_capacity(found.len());
    for m in found {
        match out.last_mut() {
            Some(last) if m.start < last.end => {
                if rank(&m) > rank(last) {
                    *last = m;
                }
            }
            _ => out.push(m),
        }
    }
    out
}

/// Which of two overlapping matches to keep: the longer, then the more specific detector.
fn rank(m: &Match) -> (usize, u8) {
    let specificity = match m.detector {
        Detector::Secret => 6,
        Detector::Iban => 5,
        Detector::PaymentCard => 4,
        Detector::Ssn => 3,
        Detector::Email => 2,
        Detector::Phone => 1,
        Detector::Ssrf => 0,
    };
    (m.end.saturating_sub(m.start), specificity)
}

const DIGIT: u8 = 1;
const AT: u8 = 2;
const SECRET: u8 = 3;

/// What a byte may start: a digit run, an email (`@`) or a secret (its first byte).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = DIGIT;
        d += 1;
    }
    t[b'@' as usize] = AT;
    let triggers = secret::TRIGGERS;
    let mut k = 0;
    while k < triggers.len() {
        t[triggers[k] as usize] = SECRET;
        k += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The (detector, matched text) pairs of `text`.
    pub(super) fn hits(text: &str) -> Vec<(Detector, &str)> {
        find_pii(text)
            .into_iter()
            .map(|m| (m.detector, &text[m.start..m.end]))
            .collect()
    }

    pub(super) fn only(text: &str, d: Detector) -> Vec<&str> {
        hits(text)
            .into_iter()
            .filter(|(x, _)| *x == d)
            .map(|(_, s)| s)
            .collect()
    }

    #[test]
    fn empty_and_plain_text_find_nothing() {
        assert!(find_pii("").is_empty());
        assert!(find_pii("hello world, nothing to see here").is_empty());
        assert!(find_pii("{\"status\":\"ok\",\"items\":[1,2,3],\"total\":42.5}").is_empty());
    }

    #[test]
    fn several_detectors_sorted_and_disjoint() {
        let text = "SSN 219-45-6780, card 4111 1111 1111 1111, mail bob.smith+x@example.co.uk, \
                    call (415) 555-2671, IBAN DE89 3704 0044 0532 0130 00, key AKIAIOSFODNN7EXAMPLE";
        let got = hits(text);
        assert_eq!(
            got,
            vec![
                (Detector::Ssn, "219-45-6780"),
                (Detector::PaymentCard, "4111 1111 1111 1111"),
                (Detector::Email, "bob.smith+x@example.co.uk"),
                (Detector::Phone, "(415) 555-2671"),
                (Detector::Iban, "DE89 3704 0044 0532 0130 00"),
                (Detector::Secret, "AKIAIOSFODNN7EXAMPLE"),
            ]
        );
        let ms = find_pii(text);
        for w in ms.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
    }

    #[test]
    fn overlap_keeps_longer_span() {
        // The local part is a phone number (with context); the whole email is longer.
        assert_eq!(
            hits("phone 4155552671@vtext.com"),
            vec![(Detector::Email, "4155552671@vtext.com")]
        );
        let ms = resolve_overlaps(vec![
            Match::new(Detector::Phone, 0, 10),
            Match::new(Detector::Secret, 5, 40),
            Match::new(Detector::Email, 41, 50),
        ]);
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].detector, Detector::Secret);
        assert_eq!(ms[1].detector, Detector::Email);
        // Equal length: the more specific detector.
        let ms = resolve_overlaps(vec![
            Match::new(Detector::Phone, 0, 10),
            Match::new(Detector::Ssn, 0, 10),
        ]);
        assert_eq!(ms, vec![Match::new(Detector::Ssn, 0, 10)]);
    }

    /// (detector, matched original text, normalisation names) of `text`.
    fn normalized(text: &str) -> Vec<(Detector, &str, Vec<&'static str>)> {
        find_pii(text)
            .into_iter()
            .map(|m| {
                (
                    m.detector,
                    &text[m.start..m.end],
                    m.normalized.names().collect(),
                )
            })
            .collect()
    }

    #[test]
    fn unicode_digits_and_separators_are_folded() {
        use Detector::*;
        let cases: &[(&str, Detector, &str, &[&str])] = &[
            (
                "SSN ５３６-２２-１２３４",
                Ssn,
                "５３６-２２-１２３４",
                &["fullwidth_digits"],
            ),
            (
                "SSN 536\u{2013}22\u{2013}1234",
                Ssn,
                "536\u{2013}22\u{2013}1234",
                &["unicode_separators"],
            ),
            (
                "ssn ５３６－２２－１２３４",
                Ssn,
                "５３６－２２－１２３４",
                &["fullwidth_digits", "unicode_separators"],
            ),
            ("رقم ٥٣٦٢٢١٢٣٤ ssn", Ssn, "٥٣٦٢٢١٢٣٤", &["unicode_digits"]),
            (
                "card 4111\u{a0}1111\u{a0}1111\u{a0}1111",
                PaymentCard,
                "4111\u{a0}1111\u{a0}1111\u{a0}1111",
                &["unicode_separators"],
            ),
            (
                "card ４１１１　１１１１　１１１１　１１１１",
                PaymentCard,
                "４１１１　１１１１　１１１１　１１１１",
                &["fullwidth_digits", "unicode_separators"],
            ),
            (
                "pan 𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏",
                PaymentCard,
                "𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏",
                &["unicode_digits"],
            ),
            (
                "card 4111\u{200b}1111\u{200b}1111\u{200b}1111",
                PaymentCard,
                "4111\u{200b}1111\u{200b}1111\u{200b}1111",
                &["invisible_characters"],
            ),
            (
                "tel ４１５-５５５-２６７１",
                Phone,
                "４１５-５５５-２６７１",
                &["fullwidth_digits"],
            ),
            (
                "phone 415\u{2011}555\u{2011}2671",
                Phone,
                "415\u{2011}555\u{2011}2671",
                &["unicode_separators"],
            ),
            (
                "call ＋44 20 7946 0958",
                Phone,
                "＋44 20 7946 0958",
                &["unicode_separators"],
            ),
            (
                "ＳＳＮ： ５３６２２１２３４",
                Ssn,
                "５３６２２１２３４",
                &["fullwidth_digits"],
            ),
            (
                "mail bob＠example.com",
                Email,
                "bob＠example.com",
                &["fullwidth_letters"],
            ),
            ("SSN 536-22-1234 ok ５", Ssn, "536-22-1234", &[]),
        ];
        for &(text, d, value, names) in cases {
            assert_eq!(normalized(text), vec![(d, value, names.to_vec())], "{text}");
        }
        // Unicode that folds into nothing the detectors want stays clean.
        assert!(find_pii("５ apples, ２ pears – and a café").is_empty());
        // A Unicode digit glued to a number is part of it now (no longer a separator).
        assert!(find_pii("SSN ٣536-22-1234").is_empty());
    }

    #[test]
    fn spans_are_char_boundaries_in_unicode_text() {
        let text = "Ünïcødé ☎ 電話4155552671 — ssn：123456789 ✉ jöhn@x.io café 4111111111111111€";
        for m in find_pii(text) {
            assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
        }
        assert_eq!(only(text, Detector::PaymentCard), vec!["4111111111111111"]);
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // A deterministic pseudo-random walk over bytes that matter to the detectors, cut at
        // every length, plus truncated prefixes of real values.
        let alphabet: Vec<char> =
            "0123456789 -.()+@_/:#AKIBEGRDSxoyJeghpbasecurityPRIVATE KEY-----\n\\é☎"
                .chars()
                .collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(state % 64) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            for m in find_pii(&s) {
                assert!(m.start < m.end && m.end <= s.len());
                assert!(s.is_char_boundary(m.start) && s.is_char_boundary(m.end));
            }
        }
        let samples = [
            "+1 (415) 555-2671",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
            "Bearer abcdefghijklmnop1234",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "GB82 WEST 1234 5698 7654 32",
            "john.doe@example.com",
            "4111-1111-1111-1111",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "xoxb-123456789012-abcdefghij",
        ];
        for s in samples {
            for n in 0..=s.len() {
                if let Some(p) = s.get(..n) {
                    let _ = find_pii(p);
                }
                if let Some(p) = s.get(n..) {
                    let _ = find_pii(p);
                }
            }
        }
    }

    #[test]
    fn long_adversarial_inputs_are_handled() {
        // Each pattern repeated to 256 KiB must scan in time proportional to its length: a
        // quadratic detector would take seconds here even in an optimised build.
        let patterns = [
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nMIIE ",
            "a@",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@",
            "@aaaaaaaaaa.",
            "4111 ",
            "4111-",
            "+1 ",
            "1 ",
            "(415) ",
            "ssn 12345678 ",
            "phone ",
            "eyJhbGciOiJIUzI1NiJ9.",
            "Bearer ",
            "Bearer aaaaaaaaaaaaaaaa",
            "AKIA",
            "ghp_",
            "xoxb-1",
            "DE89 ",
            "0",
        ];
        for p in patterns {
            let text = p.repeat(256 * 1024 / p.len());
            let _ = find_pii(&text);
        }
    }
}
